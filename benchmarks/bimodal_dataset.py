"""A generated two-modality dataset whose missing modality has a multi-modal conditional distribution
(admc-features/1), where the conditional mean is a poor point to classify.

Three classes. Modality ``b`` says the class almost surely: its first coordinate is -2, 0 or +2 for
class 0, 1, 2 (noise sd 0.5; seven more coordinates of pure noise). Modality ``a`` only gives odds:
its first coordinate says the group (half the samples are in group 1, where the class is 0 or 2,
never 1; in group 0 the class is 1 with probability 0.8, else 0 or 2), its second coordinate ``h``
the odds within group 1 (P(class 2) = sigmoid(2h)); six more coordinates of noise. With ``b``
missing, b given a is two bumps at -2 and +2 in group 1, whose mean sits near class 1's bump, a class
group 1 never has: a completer that returns the mean makes a full-input classifier say "class 1"
there, one that samples both bumps lets the classifier's average say "0 or 2, at these odds".
Bayes accuracy without ``b``: about 77 %; with it: about 98 %.

    python benchmarks/bimodal_dataset.py --out benchmarks/_work/bimodal [--seed 0]
    python benchmarks/bimodal_dataset.py --bayes benchmarks/_work/bimodal   # the ceiling without b
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from admc.data import Modality, Schema, load_dataset, split_from_samples, write_dataset
from admc.metrics import scores
from admc.outdir import check_out

SIZES = {"train": 4000, "val": 1000, "test": 2000}
DIM = 8


def generate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a [n, DIM], b [n, DIM], y [n])`` drawn as the module docstring says."""
    group = rng.random(n) < 0.5
    h = rng.normal(size=n)
    p2 = 1.0 / (1.0 + np.exp(-2.0 * h))
    y = np.where(rng.random(n) < p2, 2, 0)                                   # group 1: 0 or 2
    u = rng.random(n)
    y0 = np.where(u < 0.8, 1, np.where(u < 0.9, 0, 2))                       # group 0: mostly 1
    y = np.where(group, y, y0)
    a = rng.normal(size=(n, DIM))
    a[:, 0] = 3.0 * np.where(group, 1.0, -1.0) + 0.3 * rng.normal(size=n)
    a[:, 1] = np.where(group, h, 0.0) + 0.3 * rng.normal(size=n)
    b = rng.normal(size=(n, DIM))
    b[:, 0] = 2.0 * (y - 1) + 0.5 * rng.normal(size=n)
    return a.astype(np.float32), b.astype(np.float32), y.astype(np.int64)


def bayes_probs_without_b(a: np.ndarray) -> np.ndarray:
    """``[n, 3]`` the exact p(class | a) of :func:`generate` (Gauss-Hermite quadrature over h): the
    best any classifier can do when ``b`` is missing."""
    a0, a1 = a[:, 0].astype(np.float64), a[:, 1].astype(np.float64)

    def normal(x, mean, var):
        return np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)

    w1 = normal(a0, 3.0, 0.09) * normal(a1, 0.0, 1.09)        # group 1: a1 = h + noise
    w0 = normal(a0, -3.0, 0.09) * normal(a1, 0.0, 0.09)       # group 0: a1 = noise
    g1 = w1 / (w1 + w0)
    mean, var = a1 / 1.09, 0.09 / 1.09                         # h | a1 in group 1
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    h = mean[:, None] + np.sqrt(var) * nodes[None]
    q = (weights[None] / (1.0 + np.exp(-2.0 * h))).sum(axis=1) / weights.sum()   # P(class 2 | group 1, a1)
    return g1[:, None] * np.stack([1 - q, 0 * q, q], axis=1) + (1 - g1)[:, None] * np.array([[0.1, 0.8, 0.1]])


def write(out: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng([seed, 20261206])
    splits, start = {}, 0
    for name, n in SIZES.items():
        a, b, y = generate(n, rng)
        ids = [f"bimodal{start + i:05d}" for i in range(n)]
        splits[name] = split_from_samples(name, y, ids, {"a": list(a[:, None, :]), "b": list(b[:, None, :])})
        start += n
    schema = Schema((Modality("a", DIM, "vector", "mlp"), Modality("b", DIM, "vector", "mlp")),
                    ("class0", "class1", "class2"))
    return write_dataset(out, "bimodal-conditional", schema, splits,
                         {"source": {"kind": "generated", "generator": "benchmarks/bimodal_dataset.py",
                                     "seed": seed, "sizes": SIZES}})


def bayes_report(data: Path, split: str = "test") -> dict:
    """The Bayes classifier without ``b`` on a split of a dataset this script wrote: UA, WA, NLL."""
    ds = load_dataset(data, splits=(split,))
    sp = ds[split]
    a = sp.rows["a"][sp.offsets["a"][1:] - 1]          # one row per sample (a vector modality)
    p = bayes_probs_without_b(a)
    y = ds[split].labels
    return {"dataset": str(data), "split": split, "condition": "{a} (b missing)", **scores(y, p.argmax(1)),
            "nll": float(-np.log(p[np.arange(len(y)), y]).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="write the dataset here")
    p.add_argument("--bayes", type=Path, metavar="DATASET",
                   help="instead: print the Bayes classifier's test UA/WA/NLL without b on a dataset written here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the dataset already at --out")
    a = p.parse_args(argv)
    if a.bayes is not None:
        try:
            print(json.dumps(bayes_report(a.bayes)))
        except ValueError as e:
            p.exit(2, f"{p.prog}: error: {e}\n")
        return 0
    if a.out is None:
        p.error("--out is required (or --bayes DATASET)")
    try:
        check_out(a.out, "dataset", overwrite=a.overwrite)
        print(write(a.out, a.seed))
    except ValueError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
