"""The paper variant's reverse process in every reading of Eq. 3-4, measured (issue 11, section 1).

Per seed: the ITFN encoders are trained once and frozen, the paper's ADN (unconditional epsilon
model on full samples) is trained once, and the linear prior is fitted (for ``sdedit_ridge`` and the
``ridge`` reference).  Every reading then completes the same samples: the start step n is chosen on
validation from the grid twice, by completion MSE and by UA of the frozen unimodal heads on the
generated rows; test completion MSE / cosine / head UA per condition at the n chosen by MSE are
reported next to zero fill (the train mean) and the ridge estimate.  With ``--fusion`` each reading
also gets fusion classifiers (one per condition up to 3 modalities, one shared above) trained on its
own completions (MMER off: the missing
conditions are what a reading changes) and its WA/UA per condition on test.

    python benchmarks/paper_readings.py --data benchmarks/_work/mfeat3 --seeds 0,1,2 --stride 10 \
        --out benchmarks/results/completion/paper_readings_mfeat3
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from admc.config import TrainConfig
from admc.data import load_dataset, missing_conditions
from admc.diagnostics import head_ua
from admc.diffusion.process import Diffusion
from admc.evaluate import evaluate
from admc.pipeline import OPTIONAL_STATE, ADMCModel
from admc.runtime import seed_everything, set_quiet
from admc.train import fit_standardization, train_fusion, train_unimodal

# name -> the ADN settings of that reading (on top of the paper variant)
READINGS = {
    "noise": dict(reading="noise"),
    "sdedit_mean": dict(reading="sdedit_mean"),
    "sdedit_ridge": dict(reading="sdedit_ridge"),
    "official": dict(reading="official"),
    "official_clamp": dict(reading="official_clamp"),
    "noise+repaint": dict(reading="noise", resample=3, jump=5),
    "sdedit_ridge-k8": dict(reading="sdedit_ridge", num_samples=8),
}


@torch.no_grad()
def condition_batch(z_full: torch.Tensor, masks: list[tuple[bool, ...]], picks: list[np.ndarray]):
    """Every missing condition in one batch: block k holds the full samples ``picks[k]`` with
    availability ``masks[k]``; also the blocks' slices."""
    avail = torch.cat([torch.tensor(m).expand(len(p), -1) for m, p in zip(masks, picks)])
    ends = np.cumsum([len(p) for p in picks])
    slices = [slice(int(e - len(p)), int(e)) for e, p in zip(ends, picks)]
    return z_full[torch.from_numpy(np.concatenate(picks))], avail, slices


def condition_picks(n: int, conditions: int, per_condition: int | None, seed: int) -> list[np.ndarray]:
    """Which full samples each condition completes: all of them, or a seeded random ``per_condition``
    (different per condition, the same for every reading: the mean over the conditions still sees
    ``conditions * per_condition`` completions)."""
    if per_condition is None or per_condition >= n:
        return [np.arange(n)] * conditions
    rng = np.random.default_rng(seed + 11)
    return [np.sort(rng.choice(n, per_condition, replace=False)) for _ in range(conditions)]


@torch.no_grad()
def per_condition(model: ADMCModel, diff: Diffusion, z_full, y, conds, masks, picks, n, seed) -> dict:
    zb, ab, slices = condition_batch(z_full, masks, picks)
    diff.set_start_step(n)
    filled = diff.complete(zb, ab, torch.Generator().manual_seed(seed + 5))
    out = {}
    for cond, mask, sl, p in zip(conds, masks, slices, picks):
        f, miss = filled[sl], ~ab[sl]
        truth = zb[sl]
        out[cond] = {"mse": float(((f - truth)[miss] ** 2).mean()),
                     "cos": float(torch.nn.functional.cosine_similarity(f[miss], truth[miss], dim=-1).mean()),
                     "ua_generated": head_ua(model, f, mask, y[p])}
    return out


def _mean(d: dict, key: str) -> float:
    return float(np.mean([v[key] for v in d.values()]))


def run(data: Path, out: Path, seeds: list[int], readings: list[str], stride: int, grid: list[int],
        fusion: bool, adn_epochs: int | None, cache: Path | None = None, per_cond: int | None = None,
        available: set[int] | None = None) -> dict:
    ds = load_dataset(data)
    conds_masks = [(c, m) for c, m in missing_conditions(ds.names) if available is None or sum(m) in available]
    conds, masks = [c for c, _ in conds_masks], [m for _, m in conds_masks]
    result = {"dataset": ds.name, "seeds": seeds, "stride": stride, "grid": grid, "conditions": conds,
              "per_condition": per_cond,
              "available": sorted(available) if available else None, "readings": {r: {"per_seed": []} for r in readings}, "reference": {"per_seed": []}}
    for seed in seeds:
        seed_everything(seed)
        cfg = TrainConfig(method="admc_paper", seed=seed)
        cfg.adn.reading, cfg.adn.stride, cfg.adn.start_grid = "sdedit_ridge", stride, grid
        cfg.fusion.mmer = False
        if adn_epochs:
            cfg.adn.epochs = adn_epochs
        base = ADMCModel(ds.schema, cfg)
        t0 = time.time()
        cached = cache / f"{ds.name}-seed{seed}.safetensors" if cache else None
        if cached is not None and cached.is_file():  # the trained ITFN + ADN of an interrupted run
            state = load_file(cached)
            clip = float(state.pop("clip_range"))
            loaded = base.load_state_dict(state, strict=False)  # a cache from before calibration/OOD lacks them
            bad = [k for k in loaded.missing_keys if not k.startswith(OPTIONAL_STATE)] + loaded.unexpected_keys
            if bad:
                raise SystemExit(f"paper_readings: {cached}: not this model's state ({bad[:3]})")
            base.completer.clip_range = clip
            base.requires_grad_(False)
            train_info = json.loads(cached.with_suffix(".json").read_text())
        else:
            train_unimodal(base, ds["train"], ds["val"], torch.device("cpu"), seed)
            fit_standardization(base, ds["train"])
        emb = {s: base.embed(ds[s]) for s in ("train", "val", "test")}
        full = {s: emb[s][0][emb[s][1].all(1)] for s in emb}
        ys = {s: ds[s].labels[emb[s][1].all(1).numpy()] for s in emb}
        if cached is None or not cached.is_file():
            train_info = base.completer.fit(full["train"], full["val"], seed)
            if cached is not None:
                cache.mkdir(parents=True, exist_ok=True)
                save_file({**{k: v.contiguous() for k, v in base.state_dict().items()},
                           "clip_range": torch.tensor(base.completer.clip_range)}, cached)
                cached.with_suffix(".json").write_text(json.dumps({"best_epoch": train_info["best_epoch"]}))
        t_train = time.time() - t0
        print(f"seed {seed}: ITFN + paper ADN trained in {t_train:.0f} s (epoch {train_info['best_epoch']})", flush=True)
        ref, picks = {}, {}
        for s in ("val", "test"):
            picks[s] = condition_picks(len(full[s]), len(masks), per_cond, seed + (s == "test"))
            zb, ab, slices = condition_batch(full[s], masks, picks[s])
            ridge = torch.where(ab[..., None], zb, base.prior(zb * ab[..., None], ab))
            ref[s] = {}
            for cond, sl in zip(conds, slices):
                miss = ~ab[sl]
                ref[s][cond] = {"mse_zero": float((zb[sl][miss] ** 2).mean()),
                                "mse_ridge": float(((ridge[sl] - zb[sl])[miss] ** 2).mean())}
        result["reference"]["per_seed"].append({"seed": seed, **ref, "train_seconds": t_train,
                                                "adn_best_epoch": train_info["best_epoch"]})
        for r in readings:
            rc = copy.deepcopy(base.cfg)  # the paper variant (admc_paper's settings applied)
            for k, v in READINGS[r].items():
                setattr(rc.adn, k, v)
            diff = Diffusion(base.denoiser, rc.adn, base.prior)
            assert diff.variant == "paper"
            diff.clip_range = base.completer.clip_range
            t1 = time.time()
            n_grid = grid if diff.uses_start_step else [None]
            val = {str(n): per_condition(base, diff, full["val"], ys["val"], conds, masks, picks["val"], n, seed) for n in n_grid}
            by_mse = min(val, key=lambda n: _mean(val[n], "mse"))
            by_ua = max(val, key=lambda n: _mean(val[n], "ua_generated"))
            n_star = None if by_mse == "None" else int(by_mse)
            test = per_condition(base, diff, full["test"], ys["test"], conds, masks, picks["test"], n_star, seed)
            row = {"seed": seed, "n_by_mse": n_star, "n_by_ua": None if by_ua == "None" else int(by_ua),
                   "val_mse_by_n": {n: _mean(v, "mse") for n, v in val.items()},
                   "val_ua_by_n": {n: _mean(v, "ua_generated") for n, v in val.items()},
                   "test": test, "completion_seconds": time.time() - t1}
            if fusion:
                t2 = time.time()
                m = ADMCModel(ds.schema, rc)
                missing = m.load_state_dict(base.state_dict(), strict=False).missing_keys
                assert not missing, missing
                m.completer.clip_range = diff.clip_range
                m.completer.set_start_step(n_star)
                m.encoders.requires_grad_(False)
                m.denoiser.requires_grad_(False)
                train_fusion(m, *emb["train"], ds["train"].labels, *emb["val"], ds["val"].labels, seed)
                ev = evaluate(m, ds["test"], seed, (), 1, embedded=emb["test"])
                row["wa_ua"] = {c: {"wa": ev["conditions"][c]["wa"], "ua": ev["conditions"][c]["ua"]} for c in conds}
                row["wa_ua"]["average"] = {"wa": ev["average"]["wa"], "ua": ev["average"]["ua"]}
                row["fusion_seconds"] = time.time() - t2
            result["readings"][r]["per_seed"].append(row)
            print(f"seed {seed} {r}: n={n_star} (by UA {row['n_by_ua']}), test MSE "
                  + " ".join(f"{c}:{v['mse']:.3f}" for c, v in test.items())
                  + (f", UA avg {row['wa_ua']['average']['ua']:.1f}" if fusion else "")
                  + f" ({row['completion_seconds']:.0f}s)", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    return result


def _ms(vals) -> str:
    return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"


def markdown(res: dict) -> str:
    conds = res["conditions"]
    refs = res["reference"]["per_seed"]
    lines = [f"# Paper-variant readings on {res['dataset']} (test split, seeds {res['seeds']}, stride {res['stride']})",
             "", "Completion MSE of the missing rows (standardized embeddings; mean ± std over seeds) at the n "
             "chosen on validation by MSE." + (f" Each condition completes a seeded random {res['per_condition']} of "
                                                "the split's full samples." if res.get("per_condition") else "")
             + (f" Conditions with {res['available']} modalities available only." if res.get("available") else ""), "",
             "| Reading | n (by MSE / by UA) | " + " | ".join(conds) + " | mean | cos | head UA |",
             "|---" * (len(conds) + 5) + "|"]
    for name, key in (("zero fill (train mean)", "mse_zero"), ("ridge (linear prior)", "mse_ridge")):
        cells = [_ms([r["test"][c][key] for r in refs]) for c in conds]
        mean = _ms([np.mean([r["test"][c][key] for c in conds]) for r in refs])
        lines.append(f"| {name} | - | " + " | ".join(cells) + f" | {mean} | - | - |")
    for r, d in res["readings"].items():
        rows = d["per_seed"]
        if not rows:
            continue
        ns = ", ".join(f"{x['n_by_mse']}/{x['n_by_ua']}" for x in rows)
        cells = [_ms([x["test"][c]["mse"] for x in rows]) for c in conds]
        mean = _ms([np.mean([x["test"][c]["mse"] for c in conds]) for x in rows])
        cos = np.mean([np.mean([x["test"][c]["cos"] for c in conds]) for x in rows])
        ua = np.mean([np.mean([x["test"][c]["ua_generated"] for c in conds]) for x in rows])
        lines.append(f"| {r} | {ns} | " + " | ".join(cells) + f" | {mean} | {cos:.3f} | {ua:.1f} |")
    if any("wa_ua" in x for d in res["readings"].values() for x in d["per_seed"]):
        lines += ["", "Fusion trained on each reading's completions (one classifier per condition with up to 3 "
                  "modalities, one shared classifier above; MMER off): WA/UA (%) on test, mean over the seeds listed "
                  "(± the std of the average UA). Average: over every missing condition, not only the columns shown.", "",
                  "| Reading | seeds | " + " | ".join(conds) + " | Average |", "|---" * (len(conds) + 3) + "|"]
        for r, d in res["readings"].items():
            rows = [x for x in d["per_seed"] if "wa_ua" in x]
            if not rows:
                continue
            cells = [f"{np.mean([x['wa_ua'][c]['wa'] for x in rows]):.1f}/{np.mean([x['wa_ua'][c]['ua'] for x in rows]):.1f}"
                     for c in conds + ["average"]]
            if len(rows) > 1:
                cells[-1] += f" (±{np.std([x['wa_ua']['average']['ua'] for x in rows]):.1f})"
            seeds = ",".join(str(x["seed"]) for x in rows)
            lines.append(f"| {r} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _merge_seeds(into: dict, part: dict) -> None:
    """``into["per_seed"]`` with ``part``'s seeds added; a seed in both takes ``part``'s row (a later run
    of that seed, e.g. again with ``--fusion``, replaces the earlier one)."""
    new = {x["seed"] for x in part["per_seed"]}
    into["per_seed"] = sorted([x for x in into["per_seed"] if x["seed"] not in new] + part["per_seed"],
                              key=lambda x: x["seed"])


def merge(parts: list[Path], out: Path) -> dict:
    """One result from runs of the same dataset and settings on different seeds (or readings)."""
    res = None
    for part in parts:
        r = json.loads(part.with_suffix(".json").read_text())
        if res is None:
            res = r
            continue
        for key in ("dataset", "stride", "grid", "conditions"):
            if r[key] != res[key]:
                raise SystemExit(f"paper_readings: --merge: {part}: {key} differs from {parts[0]}")
        res["seeds"] = sorted(set(res["seeds"]) | set(r["seeds"]))
        _merge_seeds(res["reference"], r["reference"])
        for name, d in r["readings"].items():
            _merge_seeds(res["readings"].setdefault(name, {"per_seed": []}), d)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path)
    p.add_argument("--merge", default=None, metavar="OUT1,OUT2,...",
                   help="only merge earlier outputs (paths without suffix) into --out")
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.json and .md)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--readings", default=",".join(READINGS))
    p.add_argument("--stride", type=int, default=10, help="respaced chains (1 = the paper's every step)")
    p.add_argument("--grid", default="10,30,50,80,200,500,1000")
    p.add_argument("--fusion", action="store_true", help="also WA/UA per condition with fusion on each reading")
    p.add_argument("--per-condition", type=int, default=None, metavar="N",
                   help="each condition completes a seeded random N of the split's full samples (default: all; "
                        "mfeat6's 62 conditions need it on CPU)")
    p.add_argument("--available", default=None, metavar="K1,K2",
                   help="only the conditions with K1, K2, ... modalities available (default: every one)")
    p.add_argument("--adn-epochs", type=int, default=None)
    p.add_argument("--cache", type=Path, default=None,
                   help="keep each seed's trained ITFN + ADN here and reuse it (resume an interrupted run)")
    a = p.parse_args()
    if a.merge:
        merge([Path(x) for x in a.merge.split(",") if x], a.out)
        return
    if a.data is None:
        p.error("--data is required (unless --merge)")
    set_quiet(True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    readings = [r for r in a.readings.split(",") if r]
    unknown = set(readings) - set(READINGS)
    if unknown:
        raise SystemExit(f"paper_readings: --readings: unknown {sorted(unknown)}; choose from {', '.join(READINGS)}")
    run(a.data, a.out, [int(s) for s in a.seeds.split(",")], readings, a.stride,
        [int(n) for n in a.grid.split(",")], a.fusion, a.adn_epochs, a.cache, a.per_condition,
        {int(k) for k in a.available.split(",")} if a.available else None)


if __name__ == "__main__":
    main()
