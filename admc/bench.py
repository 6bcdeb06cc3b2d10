"""``admc bench``: train (or reuse) each method on the same split and compare them.

Methods share one interface: a :class:`~admc.config.TrainConfig` whose ``method`` (one of
``admc.pipeline.METHODS``) selects the completer of missing rows (``admc``: the ADN + MMER;
``admc_paper``: the paper's own ADN recipe; ``ridge_fill``: the ridge estimate alone, no diffusion;
``zero_fill``: the train mean, the paper's "w/o ADN" ablation; ``late_fusion``: the mean of the
unimodal heads' probabilities over the available modalities).
Within a seed every method reuses the same frozen ITFN encoders, as in the paper's ablation.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from admc.config import DataConfig, TrainConfig
from admc.data import FeatureDataset, missing_conditions
from admc.diagnostics import RidgeCompleter, completion_report
from admc.evaluate import evaluate
from admc.pipeline import METHODS, config_for_method
from admc.regimes import training_data
from admc.run import RunError, load_run, read_run_meta, save_run
from admc.runtime import log, seed_everything
from admc.train import train



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
    return meta.get("config") == cfg.to_json() and meta.get("dataset", {}).get("fingerprint") == fingerprint(ds)


def dataset_record(ds: FeatureDataset) -> dict:
    """What a run keeps of its training data (run.json ``dataset``): path, name, fingerprint, and the
    ``feature_set`` its meta.json names (which extractors made it; the live app loads those)."""
    rec = {"path": str(ds.path), "name": ds.name, "fingerprint": fingerprint(ds)}
    if isinstance(ds.meta.get("feature_set"), str):
        rec["feature_set"] = ds.meta["feature_set"]
    return rec


def fingerprint(ds: FeatureDataset) -> str:
    """Cheap identity of a dataset: name, schema, split sizes and label sums."""
    parts = [ds.name, json.dumps(ds.schema.to_json(), sort_keys=True)]
    for s, sp in sorted(ds.splits.items()):
        parts.append(f"{s}:{len(sp)}:{int(sp.labels.sum())}:{float(sum(r.sum() for r in sp.rows.values())):.6g}")
    return "|".join(parts)


def _agg(values: list[dict]) -> tuple[dict, dict]:
    """Mean and std over seeds of nested dicts of floats."""
    if isinstance(values[0], dict):
        mean, std = {}, {}
        for k in values[0]:
            mean[k], std[k] = _agg([v[k] for v in values])
        return mean, std
    arr = np.array(values, dtype=float)
    return float(arr.mean()), float(arr.std())


def run_bench(ds: FeatureDataset, out: Path, methods: list[str], base: TrainConfig, seeds: list[int],
              split: str = "test", missing_rates=(), runs: int = 1, device=torch.device("cpu"),
              command: list[str] | None = None) -> dict:
    for method in methods:  # every method's settings are checked before anything trains
        config_for_method(_config_for(base, method, 0))
    out.mkdir(parents=True, exist_ok=True)
    per_method: dict[str, list[dict]] = {m: [] for m in methods}
    diag: dict[str, dict[str, list]] = {m: {"val": [], split: []} for m in methods}
    t0 = time.time()
    for seed in seeds:
        encoders_from = None
        train_split = training_data(ds["train"], ds.names, base.data, seed).split  # what every method trains on
        for method in methods:
            cfg = _config_for(base, method, seed)
            run_dir = out / "runs" / f"{method}-seed{seed}"
            if _reusable(run_dir, cfg, ds):
                log(f"reusing {run_dir}")
                model, _ = load_run(run_dir, device)
            else:
                seed_everything(seed)
                log(f"training {method} (seed {seed})")
                model, info = train(ds, cfg, device, encoders_from=encoders_from)
                save_run(model, run_dir, info, command, dataset_record(ds))
            if encoders_from is None:
                encoders_from = model
            emb = model.embed(ds[split])
            per_method[method].append(evaluate(model, ds[split], seed, missing_rates, runs, embedded=emb))
            if model.completes:
                # the reference ridge sees the full training samples the method saw
                z_tr, p_tr = model.embed(train_split)
                full = z_tr[p_tr.all(dim=1)]
                ridge = RidgeCompleter(full.cpu().numpy()) if len(full) >= 10 else None
                for sp, e in (("val", model.embed(ds["val"])), (split, emb)):
                    diag[method][sp].append(completion_report(model, e[0], e[1], ds[sp].labels, ridge, seed))
    results: dict = {"dataset": ds.name, "split": split, "seeds": seeds, "methods": {},
                     "seconds": round(time.time() - t0, 1)}
    if base.data != DataConfig():  # a reduced train split (admc.regimes): say so with the results
        results["train_data"] = asdict(base.data)
    for method, rows in per_method.items():
        mean, std = _agg(rows)
        entry = {**mean, "std": std}
        if diag[method][split]:
            entry["completion"] = _agg(diag[method][split])[0]
            entry["completion_val"] = _agg(diag[method]["val"])[0]
        results["methods"][method] = entry
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(results, ds.names))
    return results


def _f(x: float) -> str:
    return f"{x:.1f}"


def results_markdown(res: dict, names: list[str]) -> str:
    """Tables laid out like the paper's Table 1 (WA/UA per condition) and Table 3 (missing rates)."""
    conds = [c for c, _ in missing_conditions(names)]
    seeds = res.get("seeds", [])
    lines = [f"# {res['dataset']} ({res['split']} split, {len(seeds)} seed(s): {seeds})", ""]
    if "train_data" in res:
        td = res["train_data"]
        said = ([f"{td['train_missing_rate']:g} of its modality entries missing"] if td["train_missing_rate"] else []) \
            + ([f"labels on {td['label_fraction']:g} of its samples"] if td["label_fraction"] < 1 else [])
        lines += [f"Train split reduced: {', '.join(said)}.", ""]
    lines.append("## Missing-modality conditions: WA/UA (%), mean over seeds (std of UA)")
    lines.append("")
    lines.append("| Method | " + " | ".join("{" + c + "}" for c in conds) + " | Average | Full |")
    lines.append("|---" * (len(conds) + 3) + "|")
    for m, r in res["methods"].items():
        cells = [f"{_f(r['conditions'][c]['wa'])}/{_f(r['conditions'][c]['ua'])} (±{_f(r['std']['conditions'][c]['ua'])})"
                 for c in conds]
        cells.append(f"{_f(r['average']['wa'])}/{_f(r['average']['ua'])} (±{_f(r['std']['average']['ua'])})")
        cells.append(f"{_f(r['full']['wa'])}/{_f(r['full']['ua'])} (±{_f(r['std']['full']['ua'])})")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    first = next(iter(res["methods"].values()))
    if "missing_rate" in first:
        rates = list(first["missing_rate"])
        lines += ["", "## Random missing rate: F1/ACC (%)", ""]
        lines.append("| Method | " + " | ".join(rates) + " |")
        lines.append("|---" * (len(rates) + 1) + "|")
        for m, r in res["methods"].items():
            lines.append(f"| {m} | " + " | ".join(
                f"{_f(r['missing_rate'][k]['f1'])}/{_f(r['missing_rate'][k]['acc'])}" for k in rates) + " |")
    for m, r in res["methods"].items():
        if "completion" not in r:
            continue
        lines += ["", f"## Completion quality of {m} ({res['split']} split, standardized embeddings)", ""]
        lines.append("| Condition | MSE | cos | MSE zero-fill | MSE ridge | UA of unimodal heads on generated rows |")
        lines.append("|---|---|---|---|---|---|")
        for c in conds:
            d = r["completion"][c]
            ridge = f"{d['mse_ridge']:.3f}" if "mse_ridge" in d else "-"
            lines.append(f"| {c} | {d['mse']:.3f} | {d['cos']:.3f} | {d['mse_zero']:.3f} | {ridge} | "
                         f"{_f(d['ua_generated'])} |")
    return "\n".join(lines) + "\n"
