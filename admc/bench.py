"""``admc bench``: train (or reuse) each method on the same splits and seeds, and compare them.

Methods share one interface: a :class:`~admc.config.TrainConfig` whose ``method`` (one of
``admc.methods.METHODS``) selects what the model is made of (its completer of missing rows, its
fusion, how its encoders are trained).  Within a seed every method whose encoders are the ITFN
reuses the same frozen ITFN, as in the paper's ablation.

The work is a grid of cells, one per fold (a dataset of ``--folds``, or the one ``--data``), seed
and method: train the method (or reuse its run directory: same configuration and data) and measure
it (:func:`admc.bench_eval.evaluate_cell`).  Each finished cell is written at once, atomically, to
``OUT/cells/<stem>.json`` (:mod:`admc.cells`); ``resume=True`` reuses every cell whose key (method,
seed, fold, dataset fingerprint, configuration, evaluation settings and the SHA-256 of its run's
run.json) matches, so an interrupted bench continues where it stopped.  Then the cells are pooled
(mean and standard deviation over folds and seeds) into ``results.json`` and ``results.md``
(:mod:`admc.bench_report`), and with ``figures=True`` Figure 3 is drawn (:mod:`admc.figures`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from admc.bench_eval import evaluate_cell, start_steps
from admc.bench_report import results_markdown
from admc.cells import read_cell, write_cell
from admc.formats import BENCH_FORMAT
from admc.outdir import atomic_write_text, file_sha256
from admc.config import DataConfig, TrainConfig
from admc.data import FeatureDataset
from admc.methods import METHODS, config_for_method
from admc.regimes import training_data
from admc.run import RunError, load_run, read_run_meta, save_run
from admc.runtime import log, progress, seed_everything
from admc.train import train


class BenchError(ValueError):
    """Bench inputs that cannot be compared (folds of different schemas); the message names the directory."""


def _config_for(base: TrainConfig, method: str, seed: int) -> TrainConfig:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    cfg = copy.deepcopy(base)
    cfg.method, cfg.seed = method, seed
    return cfg


def _reusable(run_dir: Path, cfg: TrainConfig, ds: FeatureDataset) -> bool:
    try:
        meta = read_run_meta(run_dir)
    except RunError:
        return False
    # a run keeps the configuration its method resolved (admc_paper: the paper variant's settings)
    return meta.get("config") == config_for_method(cfg).to_json() \
        and meta.get("dataset", {}).get("fingerprint") == fingerprint(ds)


def dataset_record(ds: FeatureDataset) -> dict:
    """What a run keeps of its training data (run.json ``dataset``): path, name, fingerprint, and the
    ``feature_set`` its meta.json names (which extractors made it; the live app loads those)."""
    rec = {"path": str(ds.path), "name": ds.name, "fingerprint": fingerprint(ds)}
    if isinstance(ds.meta.get("feature_set"), str):
        rec["feature_set"] = ds.meta["feature_set"]
    return rec


def fingerprint(ds: FeatureDataset) -> str:
    """Identity of a dataset's contents: SHA-256 over its name, schema and every split's labels, ids,
    rows, offsets and presence (permuted labels or one changed feature give another fingerprint)."""
    h = hashlib.sha256()
    h.update(ds.name.encode("utf-8") + b"\0" + json.dumps(ds.schema.to_json(), sort_keys=True).encode("utf-8"))
    for s, sp in sorted(ds.splits.items()):
        h.update(f"\0split {s} {len(sp)}\0".encode("utf-8"))
        h.update(np.ascontiguousarray(sp.labels, dtype=np.int64).tobytes())
        h.update("\0".join(str(i) for i in sp.ids).encode("utf-8"))
        for m in sorted(sp.rows):
            for arr in (sp.rows[m], sp.offsets[m], sp.present[m]):
                a = np.ascontiguousarray(arr)
                h.update(f"\0{m} {a.dtype.str} {a.shape}\0".encode("utf-8"))
                h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def check_folds(folds: list[FeatureDataset]) -> None:
    """Every fold has the first one's schema and is a dataset of its own (:class:`BenchError` naming
    the directory otherwise)."""
    first = folds[0]
    seen = {fingerprint(first): first.path}
    for ds in folds[1:]:
        diff = first.schema.differences(ds.schema)
        if diff:
            raise BenchError(f"--folds {ds.path}: schema differs from {first.path}: " + "; ".join(diff))
        fp = fingerprint(ds)
        if fp in seen:
            raise BenchError(f"--folds {ds.path}: the same data as {seen[fp]} (a fold listed twice?)")
        seen[fp] = ds.path


def _agg(values: list) -> tuple:
    """Mean and std over cells (folds x seeds) of nested dicts of floats."""
    if isinstance(values[0], dict):
        mean, std = {}, {}
        for k in values[0]:
            mean[k], std[k] = _agg([v[k] for v in values])
        return mean, std
    arr = np.array(values, dtype=float)
    return float(arr.mean()), float(arr.std())


@dataclass(frozen=True)
class Cell:
    fold: int
    seed: int
    method: str

    def stem(self, folds: int) -> str:
        """``admc-seed0``; with several folds ``fold2-admc-seed0`` (folds counted from 1)."""
        return (f"fold{self.fold + 1}-" if folds > 1 else "") + f"{self.method}-seed{self.seed}"


class SeedITFN:
    """The frozen ITFN that the methods of one fold and seed share: the first model that trained one
    (in memory, or loaded from its run directory only when a later method needs it for training)."""

    def __init__(self, device):
        self.device, self.model, self.run_dir = device, None, None

    def offer(self, method: str, run_dir: Path, model=None) -> None:
        if self.run_dir is None and getattr(METHODS[method], "shares_itfn", True):
            self.run_dir, self.model = run_dir, model

    def for_training(self, method: str):
        if self.run_dir is None or not getattr(METHODS[method], "shares_itfn", True):
            return None
        if self.model is None:
            self.model, _ = load_run(self.run_dir, self.device)
        return self.model


def run_bench(data: FeatureDataset | list[FeatureDataset], out: Path, methods: list[str], base: TrainConfig,
              seeds: list[int], split: str = "test", missing_rates=(), runs: int = 1, device=torch.device("cpu"),
              command: list[str] | None = None, resume: bool = False, figures: bool = False) -> dict:
    folds = list(data) if isinstance(data, (list, tuple)) else [data]
    check_folds(folds)
    for method in methods:  # every method's settings are checked before anything trains
        config_for_method(_config_for(base, method, 0))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    grid = [Cell(f, s, m) for f in range(len(folds)) for s in seeds for m in methods]
    results: dict[Cell, dict] = {}
    reused = 0
    bar = progress(total=len(grid), desc="bench cells", unit="cell", leave=True)
    for fold, ds in enumerate(folds):
        for seed in seeds:
            itfn = SeedITFN(device)
            for method in methods:
                cell = Cell(fold, seed, method)
                stem = cell.stem(len(folds))
                bar.set_postfix_str(stem)
                res, was_reused = _one_cell(cell, stem, ds, out, base, itfn, split, missing_rates, runs, device,
                                            command, resume)
                results[cell] = res
                reused += was_reused
                bar.update(1)
    bar.close()
    res = _pool(folds, methods, seeds, grid, results, split, base)
    res["cells"] = {"total": len(grid), "reused": reused}
    if figures:
        res["figures"] = _figures(folds, seeds[0], methods, out, results, split, device)
    res["seconds"] = round(time.time() - t0, 1)
    res = {"format": BENCH_FORMAT, **res}
    atomic_write_text(out / "results.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(out / "results.md", results_markdown(res, folds[0].names))
    return res


def _one_cell(cell: Cell, stem: str, ds: FeatureDataset, out: Path, base: TrainConfig, itfn: SeedITFN, split: str,
              missing_rates, runs: int, device, command, resume: bool) -> tuple[dict, bool]:
    """Train or reuse one method on one fold and seed, and measure it (or reuse its measurement)."""
    cfg = _config_for(base, cell.method, cell.seed)
    run_dir, cell_file = out / "runs" / stem, out / "cells" / f"{stem}.json"
    key = {"method": cell.method, "seed": cell.seed, "fold": cell.fold, "dataset": fingerprint(ds),
           "config": config_for_method(cfg).to_json(), "split": split, "missing_rates": [float(r) for r in missing_rates],
           "runs": runs}
    model = None
    if _reusable(run_dir, cfg, ds):
        key["run"] = file_sha256(run_dir / "run.json")
        if resume:
            got = read_cell(cell_file, key)
            if got is not None:
                log(f"reused cell {cell_file}")
                itfn.offer(cell.method, run_dir)
                return got, True
        log(f"reusing run {run_dir}")
        model, _ = load_run(run_dir, device)
    else:
        shared = itfn.for_training(cell.method)  # (loading a run draws random numbers: before seeding)
        seed_everything(cell.seed)
        log(f"training {stem}")
        model, info = train(ds, cfg, device, encoders_from=shared)
        save_run(model, run_dir, info, command, dataset_record(ds))
        key["run"] = file_sha256(run_dir / "run.json")
    itfn.offer(cell.method, run_dir, model)
    train_split = training_data(ds["train"], ds.names, base.data, cell.seed).split  # what every method trains on
    result = evaluate_cell(model, ds, split, train_split, cell.seed, missing_rates, runs)
    return write_cell(cell_file, key, result), False


def role(method: str, traits: dict) -> str:
    """The method's row of the paper's Table 5: ``joint`` (encoders trained with the fusion), ``mmer``
    (frozen ITFN + MMER), ``itfn`` (frozen ITFN, no MMER), ``late`` or ``other``."""
    spec = METHODS[method]
    if getattr(spec, "model", None) is not None:
        return "other"
    if getattr(spec, "encoders", "itfn") == "joint":
        return "joint"
    if traits.get("fusion") == "late":
        return "late"
    return "mmer" if traits.get("mmer") else "itfn"


def _pool(folds, methods, seeds, grid, results, split, base) -> dict:
    res: dict = {"dataset": ", ".join(ds.name for ds in folds), "split": split, "seeds": seeds,
                 "folds": [dataset_record(ds) for ds in folds], "methods": {}}
    if base.data != DataConfig():  # a reduced train split (admc.regimes): say so with the results
        res["train_data"] = asdict(base.data)
    generated, full = {}, {}
    for method in methods:
        cells = [results[c] for c in grid if c.method == method]
        mean, std = _agg([c["eval"] for c in cells])
        entry = {**mean, "std": std, "cells": len(cells)}
        if "completion" in cells[0]:
            entry["completion"] = _agg([c["completion"] for c in cells])[0]
            entry["completion_val"] = _agg([c["completion_val"] for c in cells])[0]
        if len(folds) > 1:
            entry["per_fold"] = [
                _agg([{k: results[c]["eval"][k] for k in ("average", "pooled", "full")}
                      for c in grid if c.method == method and c.fold == f])[0] for f in range(len(folds))]
        res["methods"][method] = entry
        if "generated" in cells[0]:
            g_mean, g_std = _agg([c["generated"] for c in cells])
            generated[method] = {**g_mean, "std": g_std}
        full[method] = {"role": role(method, cells[0]["traits"]), **entry["full"], "std": std["full"]}
    if generated:
        res["generated"] = generated
    res["full_modality"] = {"methods": full, "notes": _full_notes({r["role"] for r in full.values()})}
    return res


def _full_notes(roles: set[str]) -> list[str]:
    """What the full-input study lacks of the paper's three rows, and how to add it."""
    notes = []
    if "joint" not in roles:
        joint = [m for m, spec in METHODS.items() if getattr(spec, "encoders", "itfn") == "joint"]
        notes.append(f"Jointly_training: add {joint[0]} to --methods" if joint else
                     "Jointly_training: skipped, this version has no method with jointly trained encoders")
    if "itfn" not in roles:
        notes.append("Use_ITFN: no method with the frozen ITFN and no MMER ran (zero_fill is one, or any "
                     "completing method with --set fusion.mmer=false)")
    if "mmer" not in roles:
        notes.append("MMER: no method with MMER ran (admc is one)")
    return notes


def _figures(folds: list[FeatureDataset], seed: int, methods: list[str], out: Path, results: dict, split: str,
             device) -> dict[str, str]:
    """Figure 3 of every method that completes, from its run on the first fold and seed."""
    from admc.figures import figure3

    ds, drawn = folds[0], {}
    todo = [m for m in methods if results[Cell(0, seed, m)]["traits"].get("completes")]
    for method in progress(todo, desc="Figure 3", unit="figure"):
        model, _ = load_run(out / "runs" / Cell(0, seed, method).stem(len(folds)), device)
        steps = start_steps(model) or [None]
        rel = f"figures/figure3_{method}.png"
        figure3(model, ds[split], seed, steps, out / rel, f"{method}, {ds.name} {split} split, seed {seed}")
        log(f"wrote {out / rel}")
        drawn[method] = rel
    return drawn
