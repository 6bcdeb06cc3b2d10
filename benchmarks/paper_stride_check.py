"""Respaced vs step-by-step chains of a trained paper-variant run (``adn.stride``), same samples.

    python benchmarks/paper_stride_check.py --run RUN --data benchmarks/_work/mfeat3 --split val \
        --out benchmarks/results/completion/paper_stride_check_mfeat3_seed0_val.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from admc.data import load_dataset
from admc.diagnostics import completion_errors
from admc.diffusion.process import Diffusion
from admc.run import load_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="an admc_paper (paper variant) run directory")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--strides", default="10,1")
    p.add_argument("--steps", default="10,80", help="start steps n")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    model, _ = load_run(a.run)
    if model.cfg.adn.variant != "paper":
        raise SystemExit(f"paper_stride_check: --run {a.run}: not a paper-variant run")
    z, present = model.embed(load_dataset(a.data, splits=(a.split,))[a.split])
    base, out = model.completer, {}
    for stride in (int(s) for s in a.strides.split(",")):
        for n in (int(s) for s in a.steps.split(",")):
            d = Diffusion(base.denoiser, replace(model.cfg.adn, stride=stride), base.prior)
            d.clip_range = base.clip_range
            d.set_start_step(n)
            model.completer = d
            e = completion_errors(model, z, present, 0)
            row = {k: round(v["mse"], 4) for k, v in e.items()}
            row["mean"] = round(float(np.mean([v["mse"] for v in e.values()])), 4)
            out[f"stride{stride}_n{n}"] = row
            print(f"stride {stride}, n {n}: mean MSE {row['mean']}", flush=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
