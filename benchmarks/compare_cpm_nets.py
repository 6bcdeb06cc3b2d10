#!/usr/bin/env python
"""Accuracy under random missing views next to the CPM-Nets paper's Handwritten curves.

    python benchmarks/compare_cpm_nets.py --results benchmarks/_work/bench_mfeat6/results.json \
        [--anchors ../shared/anchors/cpm_nets_handwritten.csv] [--methods CPM-Nets,FeatConcat,MDcR]

Prints a markdown table: one row per ``admc bench`` method (its ``missing_rate`` accuracies) and one
per published method (Zhang et al., NeurIPS 2019, Fig. 2(f); values read from the figure's vector
lines, mean of 10 runs).  The missing rate eta is the same quantity in both: the fraction of
(sample, view) entries missing, every sample keeping at least one view.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_anchors(path: Path) -> dict[str, dict[str, float]]:
    rows = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    out = {}
    for rec in csv.DictReader(rows):
        method = rec.pop("method")
        out[method] = {k.removeprefix("eta"): float(v) for k, v in rec.items()}
    return out


def table(results: dict, anchors: dict[str, dict[str, float]], published: list[str]) -> str:
    rates = sorted({r for m in results["methods"].values() for r in m.get("missing_rate", {})}, key=float)
    head = "| Method | " + " | ".join(f"eta {float(r):.1f}" for r in rates) + " |"
    lines = [head, "|---" * (len(rates) + 1) + "|"]
    for name, m in results["methods"].items():
        acc = [m["missing_rate"][r]["acc"] for r in rates]
        lines.append(f"| {name} (this repo) | " + " | ".join(f"{a:.1f}" for a in acc) + " |")
    for name in published:
        if name not in anchors:
            raise SystemExit(f"{name!r} is not in the anchors file (has: {', '.join(anchors)})")
        vals = [anchors[name].get(f"{float(r):.1f}") for r in rates]
        lines.append(f"| {name} (CPM-Nets paper) | " + " | ".join("-" if v is None else f"{v:.1f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="results.json of admc bench with --missing-rates")
    ap.add_argument("--anchors", type=Path, default=ROOT.parent / "shared" / "anchors" / "cpm_nets_handwritten.csv")
    ap.add_argument("--methods", default="CPM-Nets,FeatConcat,MDcR,LMNN")
    a = ap.parse_args(argv)
    results = json.loads(a.results.read_text())
    if not any(m.get("missing_rate") for m in results["methods"].values()):
        raise SystemExit(f"{a.results}: no missing_rate results (run admc bench with --missing-rates)")
    print(table(results, read_anchors(a.anchors), [m.strip() for m in a.methods.split(",") if m.strip()]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
