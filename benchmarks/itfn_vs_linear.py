#!/usr/bin/env python
"""Each modality alone: the ITFN head against a logistic regression on its pooled features (issue 14).

    OMP_NUM_THREADS=1 python benchmarks/itfn_vs_linear.py --data DIR --out OUT.json [--seed S] \
        [--variant NAME=itfn.dropout=0.5,itfn.weight_decay=0.001 ...] [--no-default] [--no-linear]
    python benchmarks/itfn_vs_linear.py --report OUT1.json OUT2.json ... > table.md

Per modality: validation and test UA of the ITFN encoder + head (``admc.train.train_unimodal``, early
stopping on validation UA) for each ITFN variant (``default`` = the configuration's defaults), and
of the ``linear`` method's single-modality regression (``admc.baselines.linear``: mean/std-pooled,
standardized features, class-balanced logistic regression, C from ``linear.c_grid`` on validation
UA).  An existing OUT.json is added to (a variant of the same name replaced).  ``--report`` lays
results out as one markdown table (mean over the seeds of each dataset) and names, per dataset, the
variant with the best mean validation UA over the modalities: the choice reads validation only; the
test numbers stand beside it, unused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


from admc.pooling import pooled_split  # noqa: E402
from admc.config import TrainConfig  # noqa: E402
from admc.overrides import with_overrides  # noqa: E402
from admc.data import load_dataset  # noqa: E402
from admc.metrics import scores  # noqa: E402
from admc.pipeline import ADMCModel  # noqa: E402
from admc.runtime import seed_everything  # noqa: E402
from admc.train import _predict_unimodal, train_unimodal  # noqa: E402
from benchmarks.machine_info import cpu_name  # noqa: E402


def itfn_scores(ds, cfg: TrainConfig, seed: int) -> dict:
    """{modality: {"val_ua", "test_ua", "epochs"}} of the ITFN trained with ``cfg``."""
    seed_everything(seed)
    model = ADMCModel(ds.schema, cfg)
    dev = torch.device("cpu")
    val = train_unimodal(model, ds["train"], ds["val"], dev, seed)
    out = {}
    for mod in ds.schema.modalities:
        idx = np.flatnonzero(ds["test"].present[mod.name])
        pred = _predict_unimodal(model.encoders[mod.name], ds["test"], mod.name, idx, cfg.itfn.max_len, dev)
        out[mod.name] = {"val_ua": val[mod.name]["ua"], "test_ua": scores(ds["test"].labels[idx], pred)["ua"],
                         "epochs": val[mod.name]["epochs"]}
    return out


def linear_scores(ds, cfg: TrainConfig) -> dict:
    """{modality: {"val_ua", "test_ua", "C"}}: the ``linear`` method's single-modality regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    out = {}
    for mod in ds.schema.modalities:
        X, y = {}, {}
        for s in ("train", "val", "test"):
            keep = ds[s].present[mod.name]
            X[s], y[s] = pooled_split(ds[s], mod.name, mod.kind)[keep], ds[s].labels[keep]
        scaler = StandardScaler().fit(X["train"])
        best = None
        for c in cfg.linear.c_grid:
            clf = LogisticRegression(C=c, max_iter=cfg.linear.max_iter, class_weight="balanced")
            clf.fit(scaler.transform(X["train"]), y["train"])
            v = scores(y["val"], clf.predict(scaler.transform(X["val"])))["ua"]
            if best is None or v > best[0]:
                best = (v, c, clf)
        test = scores(y["test"], best[2].predict(scaler.transform(X["test"])))["ua"]
        out[mod.name] = {"val_ua": best[0], "test_ua": test, "C": best[1]}
    return out


def report(paths: list[str]) -> str:
    """Markdown: per dataset and modality, val/test UA of the linear regression and of every ITFN
    variant (mean over the seeds of the files), and the variant chosen on mean validation UA."""
    by_ds: dict[str, list[dict]] = {}
    for p in paths:
        got = json.loads(Path(p).read_text())
        for r in got.get("runs", [got]):  # one run per file, or a file of several (results/features/itfn_vs_linear.json)
            by_ds.setdefault(r["dataset"], []).append(r)
    lines = ["| dataset (seeds) | model | per modality: val / test UA | mean val UA | mean test UA |",
             "|---|---|---|---|---|"]
    chosen = []
    for name, runs in by_ds.items():
        seeds = sorted(r["seed"] for r in runs)
        mods = list(runs[0]["linear"])
        rows = {"linear": [r["linear"] for r in runs]}
        for v in runs[0]["itfn"]:
            rows[f"ITFN {v}"] = [r["itfn"][v]["modalities"] for r in runs if v in r["itfn"]]
        best = None
        for label, got in rows.items():
            val = {m: float(np.mean([g[m]["val_ua"] for g in got])) for m in mods}
            test = {m: float(np.mean([g[m]["test_ua"] for g in got])) for m in mods}
            cells = ", ".join(f"{m} {val[m]:.1f} / {test[m]:.1f}" for m in mods)
            mv, mt = np.mean(list(val.values())), np.mean(list(test.values()))
            lines.append(f"| {name} ({','.join(map(str, seeds))}) | {label} ({len(got)} seeds) | {cells} | "
                         f"{mv:.2f} | {mt:.2f} |")
            if label != "linear" and (best is None or mv > best[1]):
                best = (label, mv)
        chosen.append(f"- {name}: best mean validation UA: {best[0]} ({best[1]:.2f})")
    return "\n".join(lines + [""] + chosen) + "\n"


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--report":
        print(report(argv[1:]), end="")
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=section.key=value,...")
    ap.add_argument("--no-default", action="store_true", help="skip the default ITFN")
    ap.add_argument("--no-linear", action="store_true")
    a = ap.parse_args(argv)
    ds = load_dataset(a.data)
    variants = ([] if a.no_default else [("default", [])]) + [
        (v.split("=", 1)[0], v.split("=", 1)[1].split(",")) for v in a.variant]
    out_path = Path(a.out)
    res = json.loads(out_path.read_text()) if out_path.is_file() else {}
    res.update({"dataset": ds.name, "seed": a.seed, "cpu": cpu_name(), "torch_threads": torch.get_num_threads()})
    res.setdefault("itfn", {})
    if not a.no_linear:
        t0 = time.time()
        res["linear"] = linear_scores(ds, TrainConfig())
        res["linear_seconds"] = round(time.time() - t0, 1)
        print("linear", json.dumps(res["linear"]), flush=True)
    for name, overrides in variants:
        t0 = time.time()
        cfg = with_overrides(overrides)
        res["itfn"][name] = {"overrides": overrides, "modalities": itfn_scores(ds, cfg, a.seed),
                             "seconds": round(time.time() - t0, 1)}
        print(name, json.dumps(res["itfn"][name]), flush=True)
        out_path.write_text(json.dumps(res, indent=2) + "\n")
    out_path.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
