#!/usr/bin/env python
"""Completion MSE per seed (mean over the missing conditions) of the runs of an ``admc bench``.

``results.json`` keeps the mean over seeds; a difference between two methods is only worth a
sentence when it holds seed by seed, which this prints (validation and test, full samples).

    python benchmarks/completion_per_seed.py --data benchmarks/_work/mfeat3 \
        --bench benchmarks/_work/regime_mfeat3_miss50 [--methods admc,ridge_fill] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from admc.data import load_dataset
from admc.diagnostics import completion_errors
from admc.run import load_run
from admc.runtime import set_quiet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--bench", type=Path, required=True, help="an admc bench output directory (its runs/)")
    ap.add_argument("--methods", default="admc,ridge_fill")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    set_quiet(True)
    torch.set_num_threads(1)
    ds = load_dataset(a.data)
    out: dict = {"bench": str(a.bench), "dataset": ds.name, "mse": {}}
    for method in a.methods.split(","):
        for run_dir in sorted((a.bench / "runs").glob(f"{method}-seed*")):
            model, meta = load_run(run_dir)
            for split in ("val", "test"):
                z, present = model.embed(ds[split])
                errs = completion_errors(model, z, present, meta["config"]["seed"])
                out["mse"].setdefault(method, {}).setdefault(split, {})[str(meta["config"]["seed"])] = \
                    float(np.mean([e["mse"] for e in errs.values()]))
    text = json.dumps(out, indent=2) + "\n"
    if a.out:
        a.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
