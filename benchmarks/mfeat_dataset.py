"""Convert UCI Multiple Features ("Handwritten", ../shared/data/mfeat) to admc-features/1.

Protocol of the incomplete multi-view literature (CPM-Nets): stratified 80/20 train/test split;
10% of the training part, stratified, is held out as validation for model selection.
Each view is z-scored with training statistics.

    python benchmarks/mfeat_dataset.py --views fac,fou,zer --out benchmarks/_work/mfeat3
    python benchmarks/mfeat_dataset.py --views all --out benchmarks/_work/mfeat6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from admc.data import Modality, Schema, split_from_samples, write_dataset
from admc.outdir import check_out

ALL_VIEWS = ["fou", "fac", "kar", "pix", "zer", "mor"]
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mfeat"


def load_views(root: Path, views: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    feats, labels = {}, None
    for v in views:
        arr = np.loadtxt(root / f"mfeat-{v}.csv", delimiter=",", skiprows=1)
        x, y = arr[:, :-1].astype(np.float32), arr[:, -1].astype(np.int64)
        if labels is not None and not np.array_equal(labels, y):
            raise ValueError(f"mfeat-{v}.csv: labels differ from the other views")
        feats[v], labels = x, y
    return feats, labels


def convert(root: Path, views: list[str], out: Path, seed: int = 0) -> Path:
    feats, y = load_views(root, views)
    idx = np.arange(len(y))
    trval, test = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    train, val = train_test_split(trval, test_size=0.1, stratify=y[trval], random_state=seed)
    mean = {v: feats[v][train].mean(0) for v in views}
    std = {v: feats[v][train].std(0) + 1e-6 for v in views}
    splits = {}
    for name, part in (("train", train), ("val", val), ("test", test)):
        samples = {v: list(((feats[v][part] - mean[v]) / std[v])[:, None, :]) for v in views}
        splits[name] = split_from_samples(name, y[part], [f"mfeat{i:04d}" for i in part], samples)
    schema = Schema(tuple(Modality(v, feats[v].shape[1], "vector", "mlp") for v in views),
                    tuple(str(d) for d in range(10)))
    return write_dataset(out, f"mfeat-{'-'.join(views)}", schema, splits,
                         {"source": {"kind": "uci-mfeat", "views": views, "split_seed": seed,
                                     "protocol": "stratified 80/20, 10% of train as val, z-scored with train stats"}})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--views", default="fac,fou,zer", help="comma list of fou,fac,kar,pix,zer,mor or 'all'")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the dataset already at --out")
    a = p.parse_args()
    views = ALL_VIEWS if a.views == "all" else a.views.split(",")
    unknown = set(views) - set(ALL_VIEWS)
    if unknown:
        p.error(f"unknown views {sorted(unknown)}")
    missing = [f"mfeat-{v}.csv" for v in views if not (a.root / f"mfeat-{v}.csv").is_file()]
    if missing:
        p.error(f"--root {a.root}: no {', '.join(missing)} there (the UCI mfeat CSVs; see shared/data/README.md)")
    try:
        check_out(a.out, "dataset", overwrite=a.overwrite, inputs={"--root": a.root})
        print(convert(a.root, views, a.out, a.seed))
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
