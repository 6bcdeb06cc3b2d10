"""One shared fusion classifier, with and without ADN completion (issue 5).

Reuses the frozen ITFN and ADN of an `admc bench` run and trains only the fusion network, once per
(method, training patterns): `admc` vs `zero_fill` inputs, trained on every availability pattern
(`all`) or on full input only (`full`). Every condition is then evaluated on the test split.

    python benchmarks/shared_fusion.py --run benchmarks/_work/bench_mfeat3/runs/admc-seed0 \
        --data benchmarks/_work/mfeat3 --out benchmarks/results/completion/shared_fusion_mfeat3
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from admc.data import load_dataset
from admc.evaluate import evaluate
from admc.pipeline import ADMCModel
from admc.run import load_run
from admc.runtime import set_quiet
from admc.train import train_fusion


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="an admc run (its ITFN and ADN are reused)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output path without suffix")
    p.add_argument("--patterns", default="full,all")
    a = p.parse_args()
    set_quiet(True)
    torch.set_num_threads(1)
    ds = load_dataset(a.data)
    src, _ = load_run(a.run)
    emb = {s: src.embed(ds[s]) for s in ("train", "val", "test")}
    res = {"run": str(a.run), "dataset": ds.name, "results": {}}
    for patterns in a.patterns.split(","):
        for method in ("zero_fill", "admc"):
            cfg = copy.deepcopy(src.cfg)
            cfg.method, cfg.fusion.mode, cfg.fusion.shared_patterns = method, "shared", patterns
            m = ADMCModel(ds.schema, cfg)
            state = {k: v for k, v in src.state_dict().items() if not k.startswith("fusion.")}
            if method != "admc":
                state = {k: v for k, v in state.items() if not k.startswith("denoiser.")}
            m.load_state_dict(state, strict=False)
            m.clip_range = src.clip_range
            if m.uses_start_step:
                m.start_step = src.start_step
            train_fusion(m, *emb["train"], ds["train"].labels, *emb["val"], ds["val"].labels, cfg.seed)
            r = evaluate(m, ds["test"], cfg.seed, embedded=emb["test"])
            res["results"][f"{method} (shared MF trained on {patterns})"] = r
            print(method, patterns, "avg UA", round(r["average"]["ua"], 1), "full UA", round(r["full"]["ua"], 1),
                  {c: round(v["ua"], 1) for c, v in r["conditions"].items()}, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    conds = list(next(iter(res["results"].values()))["conditions"])
    lines = [f"# One shared fusion classifier on {ds.name} (test UA %, run {a.run.name})", "",
             "| Method | " + " | ".join(conds) + " | Average | Full |", "|---" * (len(conds) + 3) + "|"]
    for name, r in res["results"].items():
        lines.append(f"| {name} | " + " | ".join(f"{r['conditions'][c]['ua']:.1f}" for c in conds)
                     + f" | {r['average']['ua']:.1f} | {r['full']['ua']:.1f} |")
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
