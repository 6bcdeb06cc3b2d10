#!/usr/bin/env python
"""One table over several ``admc bench`` results: where does completion pay? (issue 11, section 4)

    python benchmarks/regimes_table.py "label=benchmarks/results/regimes/regime_mfeat3_miss50.json" ... \
        [--rate 0.5]

Per results file and method: test UA averaged over the missing-modality conditions (mean ± std
over seeds), UA with full input, accuracy at the random test missing rate ``--rate`` (when the bench
ran ``--missing-rates``) and the mean completion MSE of the missing rows.  The train split's
reduction (``train_data`` in results.json) is printed with each file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def rows(label: str, res: dict, rate: str | None) -> list[str]:
    td = res.get("train_data", {})
    regime = ", ".join(f"{k}={v:g}" for k, v in td.items()) or "full train split"
    out = []
    for method, r in res["methods"].items():
        mr = r.get("missing_rate", {}).get(rate) if rate else None
        mr_std = r["std"].get("missing_rate", {}).get(rate) if rate else None
        comp = r.get("completion")
        mse = sum(c["mse"] for c in comp.values()) / len(comp) if comp else None
        out.append(" | ".join([
            f"| {label}", regime, method, str(len(res["seeds"])),
            _cell(r["average"]["ua"], r["std"]["average"]["ua"]),
            _cell(r["full"]["ua"], r["std"]["full"]["ua"]),
            "-" if mr is None else _cell(mr["acc"], mr_std["acc"] if mr_std else None),
            "-" if mse is None else f"{mse:.3f}",
        ]) + " |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="LABEL=path/to/results.json")
    ap.add_argument("--rate", default=None, help="random test missing rate column, e.g. 0.5")
    a = ap.parse_args(argv)
    print(f"| Setting | train split | method | seeds | UA avg missing conditions | UA full | "
          f"acc at test missing rate {a.rate or '-'} | completion MSE |")
    print("|---|---|---|---|---|---|---|---|")
    for item in a.results:
        label, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"expected LABEL=path, got {item!r}")
        res = json.loads(Path(path).read_text())
        print("\n".join(rows(label, res, a.rate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
