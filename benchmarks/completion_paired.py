#!/usr/bin/env python
"""Paired statistics of an ``admc bench`` and the one thing a generative completer can do that a
regression cannot: marginalize the classifier over sampled completions (issue 25).

    python benchmarks/completion_paired.py --bench benchmarks/_work/paired5_mfeat3_shared_full \
        --data benchmarks/_work/mfeat3 --out benchmarks/results/completion/paired_mfeat3_shared_full \
        [--reference admc] [--samples 16] [--steps 10,20] [--seeds 0,1] [--threads 1] \
        [--conditions extremes] [--parts DIR]
    python benchmarks/completion_paired.py --run weights/starter --data benchmarks/_work/starter/paired \
        --out benchmarks/results/completion/paired_starter_shipped --samples 8 --steps 10

writes OUT.json (every number, per seed) and OUT.md. Two parts:

1. **Each method's own model** (every run of the bench, seeds as the bench ran them): per seed, test
   and validation UA averaged over the missing-modality conditions and with full input (predictions
   as ``admc evaluate`` makes them); mean and sample std over seeds; the paired difference of each
   method to ``--reference`` with a 95 % bootstrap interval (the test samples resampled, the same
   draw for both methods and every seed and condition; 2,000 draws).
2. **One classifier, every completer** (the reference run's fusion networks, its temperatures refitted
   per fill on validation): the completions of zero fill, the ridge prior, the reference ADN with its
   shipped sampler, every other completing method of the bench (its completer on the same encoders),
   the ADN's multi-step reverse process (DDIM from noise, steps chosen on validation completion MSE),
   the mean of K DDPM samples (a plug-in), and **the marginal**: the classifier's probabilities averaged
   over the same K DDPM samples (drawn once, in one batched chain; steps chosen on validation NLL); and the same two for a non-parametric
   sampler, hot-deck (the missing rows of the K training samples nearest in the available rows: their
   mean as a plug-in, and the marginal over them), which separates "marginalizing pays" from "the
   diffusion samples well". Per fill: UA, NLL, ECE, AURC (max probability;
   for the marginal also the members' agreement and the mutual information) over the missing
   conditions, completion MSE; paired bootstrap intervals against the ridge plug-in and the shipped ADN.
   This is the fair comparison where the classifier never sees completions
   (``--fusion shared --set fusion.shared_patterns=full``); with per-condition classifiers each one was
   trained on its own method's completions, which the other fills are not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.neighbors import NearestNeighbors

from admc.calibration import area_under_risk_coverage, expected_calibration_error, fit_temperature, \
    negative_log_likelihood
from admc.completion import RidgeFill, ZeroFill
from admc.data import DatasetError, load_dataset, missing_conditions
from admc.marginal import MarginalPrediction, completion_logits, fit_marginal_temperature, sampled_logits
from admc.metrics import scores
from admc.outdir import FILE_KINDS, OutputError, check_out_file, file_sha256
from admc.run import RunError, load_run, read_run_meta
from admc.runtime import set_quiet
from benchmarks.machine_info import machine

BOOTSTRAP = 2000
PART_FORMAT = 1        # --parts: a saved seed is reused only under the same format (raise it when part 2 changes)


def _runs(bench: Path) -> dict[str, dict[int, Path]]:
    """method -> seed -> run directory of an admc bench output (``runs/METHOD-seedN``)."""
    out: dict[str, dict[int, Path]] = {}
    for d in sorted((bench / "runs").glob("*-seed*")):
        m = re.fullmatch(r"(.+)-seed(\d+)", d.name)
        if m and (d / "run.json").is_file():
            out.setdefault(m.group(1), {})[int(m.group(2))] = d
    return out


def _masks(names):
    return [(c, torch.tensor(mask)) for c, mask in missing_conditions(names)]


def _ua(y, pred) -> float:
    return scores(y, pred)["ua"]


# ---- bootstrap -------------------------------------------------------------------------------------
def bootstrap_ua_diff(correct_a: np.ndarray, correct_b: np.ndarray, y: np.ndarray, seed: int = 0,
                      draws: int = BOOTSTRAP) -> dict:
    """Paired bootstrap of UA(a) - UA(b) in points, ``correct_* [S, K, n]`` (seeds, conditions, test
    samples: the UA of each (seed, condition) averaged): the test samples resampled with replacement,
    one draw shared by both and by every seed and condition."""
    rng = np.random.default_rng(seed)
    n = correct_a.shape[-1]
    classes = np.unique(y)
    onehot = (y[None, :] == classes[:, None]).astype(np.float64)                  # [C, n]

    def ua(correct, w):                                                           # w [D, n]
        flat = correct.reshape(-1, n).astype(np.float64)                          # [SK, n]
        per_class = np.stack([(w * onehot[c]) @ flat.T / (w @ onehot[c])[:, None] for c in range(len(classes))])
        return 100.0 * per_class.mean(axis=0).mean(axis=1)                        # [D]

    point = float(ua(correct_a, np.ones((1, n)))[0] - ua(correct_b, np.ones((1, n)))[0])
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)
    diffs = ua(correct_a, w) - ua(correct_b, w)
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": round(point, 3), "ci95": [round(float(lo), 3), round(float(hi), 3)],
            "share_above_zero": round(float((diffs > 0).mean()), 4)}


def seed_interval(diffs: list[float]) -> dict:
    """Per-seed paired differences and the 95 % t interval of their mean (the training noise, which
    the bootstrap over test samples does not see)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return {"per_seed": [round(float(x), 3) for x in d], "t95": None}
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"per_seed": [round(float(x), 3) for x in d],
            "t95": [round(float(d.mean()) - half, 3), round(float(d.mean()) + half, 3)]}


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(v.mean()), 3), "std": round(float(v.std(ddof=1)), 3) if len(v) > 1 else None,
            "per_seed": [round(float(x), 3) for x in v]}


# ---- part 1: each method's own model ---------------------------------------------------------------
@torch.no_grad()
def own_predictions(model, split, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(correct [K, n] over the missing conditions, correct_full [n])`` of the model's calibrated
    argmax (the generator seeded as ``admc evaluate`` seeds it)."""
    z, present = model.embed(split)
    if not bool(present.all()):
        raise SystemExit(f"{split.name}: the paired study needs every modality present in every sample")
    out = []
    for _, mask in _masks(model.schema.names) + [("full", torch.ones(model.M, dtype=torch.bool))]:
        avail = mask[None].expand(len(split), -1)
        gen = torch.Generator().manual_seed(seed)
        out.append(model.predict_logits(z, avail, gen).argmax(-1).cpu().numpy() == split.labels)
    return np.stack(out[:-1]), out[-1]


def _ua_rows(correct: np.ndarray, y: np.ndarray) -> float:
    """Mean over the conditions (rows) of the UA of each row's predictions."""
    return float(np.mean([_ua(y, np.where(c, y, -1)) for c in correct]))


def own_models(runs, ds, methods, reference) -> dict:
    y_te, y_va = ds["test"].labels, ds["val"].labels
    res: dict = {"methods": {}, "paired": {}}
    correct: dict[str, dict[int, np.ndarray]] = {}
    for method in methods:
        rec = {"test_average_ua": [], "test_full_ua": [], "val_average_ua": [], "val_full_ua": [], "seeds": []}
        correct[method] = {}
        for seed, run_dir in sorted(runs[method].items()):
            model, _ = load_run(run_dir)
            c_te, f_te = own_predictions(model, ds["test"], seed)
            c_va, f_va = own_predictions(model, ds["val"], seed)
            correct[method][seed] = c_te
            rec["seeds"].append(seed)
            rec["test_average_ua"].append(_ua_rows(c_te, y_te))
            rec["test_full_ua"].append(_ua_rows(f_te[None], y_te))
            rec["val_average_ua"].append(_ua_rows(c_va, y_va))
            rec["val_full_ua"].append(_ua_rows(f_va[None], y_va))
            print(f"  own {method} seed {seed}: test avg UA {rec['test_average_ua'][-1]:.2f} "
                  f"val {rec['val_average_ua'][-1]:.2f}", file=sys.stderr)
        res["methods"][method] = {"seeds": rec.pop("seeds"), **{k: _summary(v) for k, v in rec.items()}}
    for method in methods:
        if method == reference:
            continue
        seeds = sorted(set(correct[method]) & set(correct[reference]))
        res["paired"][f"{reference} - {method}"] = {
            "seeds": seeds,
            "test_average_ua": bootstrap_ua_diff(np.stack([correct[reference][s] for s in seeds]),
                                                 np.stack([correct[method][s] for s in seeds]), y_te),
            "test_average_ua_over_seeds": seed_interval([_ua_rows(correct[reference][s], y_te) -
                                                         _ua_rows(correct[method][s], y_te) for s in seeds]),
            "val_average_ua_per_seed": [
                round(res["methods"][reference]["val_average_ua"]["per_seed"][res["methods"][reference]["seeds"].index(s)]
                      - res["methods"][method]["val_average_ua"]["per_seed"][res["methods"][method]["seeds"].index(s)], 3)
                for s in seeds]}
    return res


# ---- part 2: one classifier, every completer -------------------------------------------------------
class _Fill:
    """One way of classifying a missing condition with the reference classifier: ``logits(z, avail,
    gen) -> [K, n, C]`` (K = 1 for a plug-in) and the completion it plugs in (None for the marginal)."""

    def __init__(self, name: str, completer, samples: int = 1, marginal: bool = False, about: str = ""):
        self.name, self.completer, self.samples, self.marginal, self.about = name, completer, samples, marginal, about

    def logits(self, model, z, avail, gen) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.marginal:
            return sampled_logits(model, self.completer, z, avail, self.samples, gen), None
        filled = self.completer.complete(z * avail[..., None], avail, gen)
        return model.fusion_logits(filled, avail)[None], filled


class NeighbourRows:
    """Hot-deck completion, the non-parametric conditional sampler: the missing rows of the ``k``
    training samples nearest (Euclidean, standardized embeddings) in the available rows. Their mean
    is a k-nearest-neighbour regression (a plug-in); the k rows themselves are k draws from the
    empirical p(missing | available), to marginalize over like the ADN's samples."""

    def __init__(self, z_train: torch.Tensor, k: int):
        self.z_train, self.k = z_train, k
        self._index: dict[tuple[bool, ...], NearestNeighbors] = {}   # one per availability pattern

    def draws(self, z: torch.Tensor, avail: torch.Tensor, gen=None) -> torch.Tensor:
        """``[k, n, M, E]``: ``z`` with its missing rows replaced by each neighbour's (``gen`` unused:
        the neighbours are deterministic)."""
        cols = avail[0].bool()
        key = tuple(cols.tolist())
        if key not in self._index:
            self._index[key] = NearestNeighbors(n_neighbors=self.k).fit(self.z_train[:, cols].flatten(1).numpy())
        _, idx = self._index[key].kneighbors(z[:, cols].flatten(1).numpy())
        keep = avail.bool()[..., None]
        return torch.stack([torch.where(keep, z, self.z_train[torch.from_numpy(idx[:, j])]) for j in range(self.k)])


class SharedDraws:
    """K completions of each (split, condition) from the reference ADN's DDPM chain of ``steps``
    steps, drawn once in one batched call and shared by the plug-in (their mean) and the marginal
    (the classifier over each): both fills see the same samples, and the chain runs once."""

    def __init__(self, adn, steps: int, k: int):
        self.adn, self.k, self._cache = adn.with_sampler("ddpm", steps), k, {}

    def draws(self, z: torch.Tensor, avail: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        key = (z.data_ptr(), tuple(avail[0].tolist()))
        if key not in self._cache:
            self._cache[key] = self.adn.draw(z * avail[..., None], avail, self.k, gen)
        return self._cache[key]


class _DrawsFill(_Fill):
    """The plug-in mean of K draws (``source.draws(z, avail, gen) -> [K, n, M, E]``) or the marginal
    over them."""

    def __init__(self, name: str, source, marginal: bool, about: str = ""):
        super().__init__(name, None, source.k, marginal, about)
        self.source = source

    def logits(self, model, z, avail, gen):
        draws = self.source.draws(z, avail, gen)
        if self.marginal:
            return completion_logits(model, draws, avail), None
        filled = draws.mean(dim=0)
        return model.fusion_logits(filled, avail)[None], filled


def _same_encoders(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(("encoders.", "emb_mean", "emb_std"))]
    return all(torch.equal(sa[k], sb[k]) for k in keys)


@torch.no_grad()
def _run_fill(model, fill: _Fill, z, y, masks, seed: int) -> dict:
    """Per missing condition: logits [K, n, C] and completion MSE of the missing rows."""
    out = {"logits": [], "mse": []}
    for k, (_, mask) in enumerate(masks):
        avail = mask[None].expand(len(z), -1)
        gen = torch.Generator().manual_seed(seed * 7919 + k)
        logits, filled = fill.logits(model, z, avail, gen)
        out["logits"].append(logits.double().cpu().numpy())
        if filled is not None:
            miss = ~mask
            out["mse"].append(float(((filled[:, miss] - z[:, miss]) ** 2).mean()))
    return out


def _temperature(logits: np.ndarray, y: np.ndarray, marginal: bool) -> float:
    """One condition's temperature on validation: of the K members' mean (marginal) or of the plug-in."""
    return fit_marginal_temperature(logits, y) if marginal else fit_temperature(logits[0], y)


def _val_nll(val: dict, y_va, marginal: bool, temperatures=None) -> float:
    """Mean over the missing conditions of the validation NLL at each condition's temperature."""
    if temperatures is None:
        temperatures = [_temperature(lv, y_va, marginal) for lv in val["logits"]]
    return float(np.mean([negative_log_likelihood(MarginalPrediction.from_logits(lv, t).probs, y_va)
                          for lv, t in zip(val["logits"], temperatures)]))


def _metrics(val: dict, test: dict, y_va, y_te, marginal: bool, names=None) -> tuple[dict, np.ndarray]:
    """Temperatures per condition fitted on validation, then the test metrics pooled over the
    missing conditions (UA averaged over them; per condition UA and NLL under ``condition_<name>``).
    Returns the metrics and correct [K, n]."""
    probs, agree, mi, correct, uas, per, temps = [], [], [], [], [], {}, []
    for k, (lv, lt) in enumerate(zip(val["logits"], test["logits"])):
        t = _temperature(lv, y_va, marginal)
        temps.append(t)
        pred = MarginalPrediction.from_logits(lt, t)
        p = pred.probs
        probs.append(p)
        agree.append(pred.agreement_then_confidence)
        mi.append(pred.mutual_information)
        c = p.argmax(1) == y_te
        correct.append(c)
        uas.append(_ua(y_te, p.argmax(1)))
        if names is not None:
            per[f"condition_{names[k]}_ua"] = uas[-1]
            per[f"condition_{names[k]}_nll"] = negative_log_likelihood(p, y_te)
    P, Y = np.concatenate(probs), np.concatenate([y_te] * len(probs))
    C = np.concatenate(correct)
    m = {"average_ua": float(np.mean(uas)), "nll": negative_log_likelihood(P, Y),
         "ece": 100.0 * expected_calibration_error(P, Y), "aurc": 100.0 * area_under_risk_coverage(P.max(1), C)}
    if marginal:
        m["aurc_agreement"] = 100.0 * area_under_risk_coverage(np.concatenate(agree), C)
        m["aurc_mutual_information"] = 100.0 * area_under_risk_coverage(-np.concatenate(mi), C)
    m.update(per)
    if test["mse"]:
        m["mse"] = float(np.mean(test["mse"]))
        m["val_mse"] = float(np.mean(val["mse"]))
    m["val_average_ua"] = float(np.mean([_ua(y_va, MarginalPrediction.from_logits(lv).probs.argmax(1))
                                         for lv in val["logits"]]))
    m["val_nll"] = _val_nll(val, y_va, marginal, temps)
    return m, np.stack(correct)


CONDITION_SETS = ("all", "extremes")


def part2_masks(names, which: str = "all"):
    """The missing conditions part 2 runs: ``all`` of them, or the ``extremes`` (one modality missing,
    or one present: 2M of the 2^M - 2 conditions, where a completer has the most and the least to go
    on; the study's cost grows with the conditions, and 6 views have 62)."""
    masks = _masks(names)
    if which == "extremes":
        m = len(names)
        masks = [(c, k) for c, k in masks if int(k.sum()) in (1, m - 1)]
    return masks


def one_classifier_seed(runs, ds, reference: str, samples: int, steps: list[int], conditions: str,
                        seed: int) -> dict:
    """Part 2 for one seed: ``{"fills": {name: {"about", "metrics", "correct" [conditions, n]}},
    "chosen": {kind: fill}, "checks": {method: same encoders}, "condition_count"}``."""
    y_te, y_va = ds["test"].labels, ds["val"].labels
    model, _ = load_run(runs[reference][seed])
    masks = part2_masks(model.schema.names, conditions)
    z_va, _ = model.embed(ds["val"])
    z_te, _ = model.embed(ds["test"])
    adn = model.completer
    fills = [_Fill("zero_fill", ZeroFill(), about="the train mean"),
             _Fill("ridge_fill", RidgeFill(model.prior, model.cfg.adn), about="the ridge prior's estimate")]
    fills.append(_Fill(f"{reference} (shipped: {adn.cfg.sampler})", adn,
                       about=f"the reference ADN with its own sampler ({adn.cfg.sampler}, K={adn.cfg.num_samples})"))
    checks = {}
    for method, by_seed in runs.items():
        if method in (reference, "zero_fill", "ridge_fill") or seed not in by_seed:
            continue
        other, _ = load_run(by_seed[seed])
        if not other.completes:
            continue
        same = _same_encoders(model, other)
        checks[method] = same
        if same:
            fills.append(_Fill(method, other.completer, about=f"{method}'s completer on the same encoders"))
    # the multi-step reverse process and the sampled fills: steps chosen on validation
    grid = {}
    for s in steps:
        shared = SharedDraws(adn, s, samples)
        for kind, fill in (("ddim", _Fill(f"ddim{s}", adn.with_sampler("ddim", s))),
                           ("ddpm_mean", _DrawsFill(f"ddpm{s}_mean{samples}", shared, False)),
                           ("marginal", _DrawsFill(f"marginal_ddpm{s}_K{samples}", shared, True))):
            v = _run_fill(model, fill, z_va, y_va, masks, seed)
            score = float(np.mean(v["mse"])) if kind != "marginal" else _val_nll(v, y_va, True)
            if kind not in grid or score < grid[kind][0]:
                grid[kind] = (score, fill, v)
    chosen = {k: g[1].name for k, g in grid.items()}
    labels = {"ddim": f"{reference} DDIM (multi-step, steps on val MSE)",
              "ddpm_mean": f"{reference} mean of {samples} DDPM samples (plug-in, steps on val MSE)",
              "marginal": f"{reference} marginal over {samples} DDPM samples (steps on val NLL)"}
    for kind, (_, fill, _v) in grid.items():
        fill.name, fill.about = labels[kind], fill.name
    fills += [g[1] for g in grid.values()]
    z_tr, p_tr = model.embed(ds["train"])
    rows = NeighbourRows(z_tr[p_tr.all(dim=1)], samples)
    fills += [_DrawsFill(f"hot-deck mean of {samples} neighbours (plug-in)", rows, False,
                         "k-nearest-neighbour regression on the available rows"),
              _DrawsFill(f"hot-deck marginal over {samples} neighbours", rows, True,
                         "the classifier averaged over the missing rows of the k nearest training samples")]
    out = {}
    for fill in fills:
        cached = next((g[2] for g in grid.values() if g[1] is fill), None)
        v = cached if cached is not None else _run_fill(model, fill, z_va, y_va, masks, seed)
        t = _run_fill(model, fill, z_te, y_te, masks, seed)
        m, c = _metrics(v, t, y_va, y_te, fill.marginal, [c for c, _ in masks])
        out[fill.name] = {"about": fill.about, "metrics": m, "correct": c}
        print(f"  one classifier seed {seed} {fill.name}: UA {m['average_ua']:.2f} NLL {m['nll']:.3f} "
              f"ECE {m['ece']:.2f} AURC {m['aurc']:.2f}", file=sys.stderr)
    return {"fills": out, "chosen": chosen, "checks": checks, "condition_count": len(masks)}


class SeedParts:
    """Part 2's finished seeds kept in a folder (``--parts``), so a long study resumes where it stopped
    and its seeds can run in separate processes: ``seed<S>.json`` (every number but the per-sample
    correctness, and the key it was made under) beside ``seed<S>.npz`` (the correctness arrays).  A part
    is reused only under the same key: the runs (the SHA-256 of each run.json), the dataset and the
    study's settings, and with the arrays its JSON was saved with (their SHA-256)."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    @staticmethod
    def key(runs, ds, reference, samples, steps, conditions, seed) -> dict:
        from admc.bench import fingerprint

        return {"runs": {m: file_sha256(by[seed] / "run.json")
                         for m, by in sorted(runs.items()) if seed in by},
                "dataset": fingerprint(ds), "reference": reference, "samples": samples, "steps": list(steps),
                "conditions": conditions, "seed": seed, "format": PART_FORMAT}

    def load(self, key: dict) -> dict | None:
        if self.folder is None:
            return None
        meta_path, arr_path = self.folder / f"seed{key['seed']}.json", self.folder / f"seed{key['seed']}.npz"
        if not (meta_path.is_file() and arr_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key:
                return None
            if file_sha256(arr_path) != meta.get("arrays_sha256"):
                raise ValueError(f"{arr_path.name} is not the one saved with it")
            with np.load(arr_path, allow_pickle=False) as arrays:
                for i, rec in enumerate(meta["part"]["fills"].values()):
                    rec["correct"] = arrays[f"fill{i}"]
        except (OSError, ValueError, KeyError) as e:
            print(f"  --parts: {meta_path} not reused ({e})", file=sys.stderr)
            return None
        return meta["part"]

    def save(self, key: dict, part: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fills = {name: {k: v for k, v in rec.items() if k != "correct"} for name, rec in part["fills"].items()}
        arrays = {f"fill{i}": rec["correct"] for i, rec in enumerate(part["fills"].values())}
        arr_path, meta_path = self.folder / f"seed{key['seed']}.npz", self.folder / f"seed{key['seed']}.json"
        tmp = arr_path.with_name(arr_path.stem + ".part.npz")
        np.savez(tmp, **arrays)
        tmp.replace(arr_path)
        tmp = meta_path.with_suffix(".json.part")
        tmp.write_text(json.dumps({"key": key, "arrays_sha256": file_sha256(arr_path),
                                   "part": {**part, "fills": fills}}, indent=1) + "\n")
        tmp.replace(meta_path)


def one_classifier(runs, ds, reference: str, samples: int, steps: list[int], conditions: str = "all",
                   parts: SeedParts | None = None) -> dict:
    y_te = ds["test"].labels
    parts = parts or SeedParts(None)
    per_fill: dict[str, dict] = {}
    correct: dict[str, dict[int, np.ndarray]] = {}
    chosen: dict[str, dict] = {}
    about: dict[str, str] = {}
    checks: dict[str, list] = {}
    count = 0
    for seed in sorted(runs[reference]):
        key = SeedParts.key(runs, ds, reference, samples, steps, conditions, seed)
        part = parts.load(key)
        if part is None:
            part = one_classifier_seed(runs, ds, reference, samples, steps, conditions, seed)
            parts.save(key, part)
        else:
            print(f"  one classifier seed {seed}: reused from {parts.folder}", file=sys.stderr)
        chosen[str(seed)] = part["chosen"]
        count = part["condition_count"]
        for method, same in part["checks"].items():
            checks.setdefault(method, []).append(same)
        for name, rec in part["fills"].items():
            r = per_fill.setdefault(name, {"seeds": [], "metrics": {}})
            r["seeds"].append(seed)
            for k, x in rec["metrics"].items():
                r["metrics"].setdefault(k, []).append(x)
            correct.setdefault(name, {})[seed] = np.asarray(rec["correct"], bool)
            about[name] = rec["about"]
    res = {"fills": {k: {"seeds": v["seeds"], "about": about[k], **{m: _summary(x) for m, x in v["metrics"].items()}}
                     for k, v in per_fill.items()},
           "chosen_steps": chosen, "same_encoders": checks, "paired": {},
           "conditions": conditions, "condition_count": count}
    shipped = next(k for k in per_fill if k.startswith(f"{reference} (shipped"))
    for base in ("ridge_fill", shipped):
        for name in per_fill:
            if name == base:
                continue
            seeds = sorted(set(correct[name]) & set(correct[base]))
            res["paired"][f"{name} - {base}"] = {
                **bootstrap_ua_diff(np.stack([correct[name][s] for s in seeds]),
                                    np.stack([correct[base][s] for s in seeds]), y_te),
                "over_seeds": seed_interval([_ua_rows(correct[name][s], y_te) - _ua_rows(correct[base][s], y_te)
                                             for s in seeds])}
    return res


# ---- report ----------------------------------------------------------------------------------------
def _cell(s: dict, digits: int = 1) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}" if s.get("std") is not None else f"{s['mean']:.{digits}f}"


def _interval(iv) -> str:
    return "-" if iv is None else f"[{iv[0]:+.2f}, {iv[1]:+.2f}]"


def _conditions_said(one: dict) -> str:
    if one.get("conditions") == "extremes":
        return f"the {one['condition_count']} with one modality missing or one present"
    return f"all {one['condition_count']}" if "condition_count" in one else "all"


def markdown(res: dict) -> str:
    own, one = res["own_models"], res.get("one_classifier")
    lines = [f"# Paired completion study: {res['dataset']} ({res['bench']})", "",
             f"Command: `{res['command']}`  ", f"Machine: {res['machine']}; {res['seconds']:.0f} s", "",
             "## Each method's own model (test UA, mean ± sample std over seeds)", "",
             "| method | seeds | avg missing conditions | per seed | full | val avg missing (per seed) |", "|---|---|---|---|---|---|"]
    for m, r in own["methods"].items():
        lines.append(f"| {m} | {len(r['seeds'])} | {_cell(r['test_average_ua'])} | "
                     f"{' / '.join(f'{x:.1f}' for x in r['test_average_ua']['per_seed'])} | {_cell(r['test_full_ua'])} | "
                     f"{' / '.join(f'{x:.1f}' for x in r['val_average_ua']['per_seed'])} |")
    lines += ["", "Paired differences (test UA averaged over the missing conditions and seeds; 95 % bootstrap "
              "interval over the test samples; the t interval over the seeds' differences, the training noise):", "",
              "| difference | points | 95 % bootstrap (test samples) | test per seed | 95 % t (seeds) | val per seed |",
              "|---|---|---|---|---|---|"]
    for k, d in own["paired"].items():
        t, s = d["test_average_ua"], d["test_average_ua_over_seeds"]
        lines.append(f"| {k} | {t['diff']:+.2f} | [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}] | "
                     f"{' / '.join(f'{x:+.1f}' for x in s['per_seed'])} | {_interval(s['t95'])} | "
                     f"{' / '.join(f'{x:+.1f}' for x in d['val_average_ua_per_seed'])} |")
    if one:
        lines += ["", "## One classifier (the reference run's), every completer", "",
                  "Temperatures refitted per fill and condition on validation. Test, pooled over the missing "
                  f"conditions ({_conditions_said(one)}; UA: their average); mean ± sample std over seeds. "
                  "AURC in % (lower is better). The DDPM mean and the marginal use the same K samples.", "",
                  "| fill | UA | NLL | ECE % | AURC (max prob) | AURC (agreement, ties by max prob) | AURC (mutual inf.) | completion MSE test / val |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in one["fills"].items():
            mse = f"{r['mse']['mean']:.3f} / {r['val_mse']['mean']:.3f}" if "mse" in r else "-"
            lines.append(f"| {name} | {_cell(r['average_ua'])} | {_cell(r['nll'], 3)} | {_cell(r['ece'])} | "
                         f"{_cell(r['aurc'], 2)} | {_cell(r['aurc_agreement'], 2) if 'aurc_agreement' in r else '-'} | "
                         f"{_cell(r['aurc_mutual_information'], 2) if 'aurc_mutual_information' in r else '-'} | {mse} |")
        conds = [k[len("condition_"):-len("_ua")] for k in next(iter(one["fills"].values())) if
                 k.startswith("condition_") and k.endswith("_ua")]
        if len(conds) <= 7:
            lines += ["", "Per condition, test UA / NLL:", "", "| fill | " + " | ".join(conds) + " |",
                      "|---|" + "---|" * len(conds)]
            for name, r in one["fills"].items():
                lines.append(f"| {name} | " + " | ".join(
                    f"{r[f'condition_{c}_ua']['mean']:.1f} / {r[f'condition_{c}_nll']['mean']:.3f}" for c in conds) + " |")
        lines += ["", "Paired UA differences (95 % bootstrap interval over the test samples; t interval over "
                  "the seeds):", "", "| difference | points | 95 % bootstrap | per seed | 95 % t (seeds) |",
                  "|---|---|---|---|---|"]
        for k, t in one["paired"].items():
            name, _, base = k.partition(" - ")
            s = t.get("over_seeds") or seed_interval(list(np.subtract(one["fills"][name]["average_ua"]["per_seed"],
                                                                      one["fills"][base]["average_ua"]["per_seed"])))
            lines.append(f"| {k} | {t['diff']:+.2f} | [{t['ci95'][0]:+.2f}, {t['ci95'][1]:+.2f}] | "
                         f"{' / '.join(f'{x:+.1f}' for x in s['per_seed'])} | {_interval(s['t95'])} |")
        lines += ["", f"Steps chosen on validation, per seed: {json.dumps(one['chosen_steps'])}  ",
                  f"Other methods' completers used only where their encoders equal the reference's: "
                  f"{json.dumps(one['same_encoders'])}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, help="an admc bench output directory (its runs/)")
    ap.add_argument("--run", type=Path, help="instead of --bench: one trained run (e.g. weights/starter), "
                                             "compared with the fills of part 2 on its own classifier")
    ap.add_argument("--data", type=Path, help="the dataset the bench ran on")
    ap.add_argument("--out", type=Path, required=True, help="output stem: writes OUT.json and OUT.md")
    ap.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT.json / OUT.md this script did not write")
    ap.add_argument("--reference", default="admc", help="the method whose classifier part 2 uses")
    ap.add_argument("--samples", type=int, default=16, help="K sampled completions")
    ap.add_argument("--steps", default="10,20", help="reverse-step grid for the sampled fills")
    ap.add_argument("--seeds", default=None, help="only these seeds of the bench, e.g. 0,1 (default: all)")
    ap.add_argument("--no-one-classifier", action="store_true", help="part 1 only")
    ap.add_argument("--conditions", choices=CONDITION_SETS, default="all",
                    help="part 2's missing conditions: all, or the extremes (one modality missing or one present)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--parts", type=Path, default=None,
                    help="keep part 2's finished seeds in this folder and reuse them (resume; seeds run as "
                         "separate processes with --seeds S --parts DIR, then one run over all seeds combines)")
    a = ap.parse_args(argv)
    if a.parts is not None and a.parts.exists() and not a.parts.is_dir():
        ap.error(f"--parts {a.parts}: exists and is not a directory")
    try:
        for suffix in ((".md",) if a.render else (".json", ".md")):
            check_out_file(a.out.with_suffix(suffix), "completion-study", overwrite=a.overwrite,
                           inputs={"--data": a.data} if a.data else None)
    except OutputError as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    if a.render:
        src = a.out.with_suffix(".json")
        if not src.is_file():
            ap.error(f"--render: no {src}")
        if not FILE_KINDS["completion-study"][1](src):
            ap.error(f"--render: {src} is not a result of this script")
        a.out.with_suffix(".md").write_text(markdown(json.loads(src.read_text())))
        print(a.out.with_suffix(".md"))
        return 0
    if (a.bench is None) == (a.run is None) or a.data is None:
        ap.error("--data and one of --bench or --run are required (or --render)")
    if a.run is not None:
        try:
            meta = read_run_meta(a.run)
        except RunError as e:
            ap.exit(2, f"{ap.prog}: error: {e}\n")
        a.reference = meta["method"]
        runs = {a.reference: {int(meta["config"]["seed"]): a.run}}
    else:
        runs = _runs(a.bench) if (a.bench / "runs").is_dir() else {}
    if a.reference not in runs:
        ap.error(f"--bench {a.bench}: no runs/{a.reference}-seedN there (or --reference names another method)")
    if a.seeds:
        try:
            keep = {int(s) for s in a.seeds.split(",")}
        except ValueError:
            ap.error(f"--seeds: expected comma-separated integers, got {a.seeds!r}")
        runs = {m: {s: d for s, d in by.items() if s in keep} for m, by in runs.items()}
        if not runs[a.reference]:
            ap.error(f"--seeds {a.seeds}: no run of {a.reference} with these seeds in {a.bench}")
    try:
        steps = [int(s) for s in a.steps.split(",")]
    except ValueError:
        ap.error(f"--steps: expected comma-separated integers, got {a.steps!r}")
    if a.samples < 2:
        ap.error("--samples must be at least 2")
    if a.threads:
        torch.set_num_threads(a.threads)
    set_quiet(True)
    t0 = time.time()
    try:
        ds = load_dataset(a.data)
        methods = [m for m in runs if all(s in runs[m] for s in runs[a.reference])]
        res = {"command": " ".join(["python", "benchmarks/completion_paired.py", *(argv or sys.argv[1:])]),
               "bench": str(a.bench or a.run), "dataset": ds.name, "machine": machine(),
               "samples": a.samples, "steps": steps, "reference": a.reference,
               "own_models": own_models(runs, ds, methods, a.reference)}
        if not a.no_one_classifier:
            res["one_classifier"] = one_classifier(runs, ds, a.reference, a.samples, steps, a.conditions,
                                                   SeedParts(a.parts))
    except (RunError, DatasetError) as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    a.out.with_suffix(".md").write_text(markdown(res))
    print(a.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
