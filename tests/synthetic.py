"""Tiny, seeded, learnable feature datasets for tests (admc-features/1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from admc.data import Modality, Schema, split_from_samples, write_dataset


def make_dataset(path: Path, n_per_split=(90, 30, 30), n_classes: int = 3, kinds=("vector", "vector", "sequence"),
                 dims=(12, 8, 6), seed: int = 0, noise: float = 1.0) -> Path:
    """Modalities share a latent class signal (so one predicts another) plus independent noise.

    Sequence modalities get 2-7 rows per sample: the class signal plus frame noise.
    """
    rng = np.random.default_rng(seed)
    names = [chr(ord("A") + i) for i in range(len(kinds))]
    centers = {m: rng.normal(0, 2.0, (n_classes, d)) for m, d in zip(names, dims)}
    mix = {m: rng.normal(0, 1.0, (4, d)) for m, d in zip(names, dims)}
    splits = {}
    offset = 0
    for split, n in zip(("train", "val", "test"), n_per_split):
        y = np.arange(n) % n_classes
        rng.shuffle(y)
        latent = rng.normal(0, 1, (n, 4))
        samples = {}
        for m, kind, d in zip(names, kinds, dims):
            base = centers[m][y] + latent @ mix[m]
            if kind == "vector":
                samples[m] = [row[None] + noise * rng.normal(0, 1, (1, d)) for row in base]
            else:
                samples[m] = [row[None] + noise * rng.normal(0, 1, (int(rng.integers(2, 8)), d)) for row in base]
        ids = [f"s{offset + i:05d}" for i in range(n)]
        offset += n
        splits[split] = split_from_samples(split, y, ids, samples)
    schema = Schema(
        tuple(Modality(m, d, k, "mlp" if k == "vector" else "lstm") for m, k, d in zip(names, kinds, dims)),
        tuple(f"class{c}" for c in range(n_classes)),
    )
    return write_dataset(path, "synthetic", schema, splits)


FAST = [
    "--set", "itfn.epochs=8", "--set", "adn.epochs=6", "--set", "adn.d_model=64", "--set", "adn.ff=128",
    "--set", "adn.layers=2", "--set", "adn.heads=4", "--set", "fusion.epochs=10", "--set", "fusion.lr=0.001", "--set", "fusion.d_model=32",
    "--set", "fusion.ff=64", "--set", "adn.start_grid=[5,20]",
]


def cached_run(base: Path, seed: int = 1) -> tuple[Path, Path]:
    """The dataset of :func:`make_dataset` and a run trained on it with :data:`FAST` settings (seconds),
    made once per ``base`` (e.g. a pytest session's base temp): ``(dataset dir, run dir)``."""
    from admc.cli import main

    ds, run = Path(base) / "synthetic-ds", Path(base) / f"synthetic-run-seed{seed}"
    if not (ds / "meta.json").is_file():
        make_dataset(ds)
    if not (run / "run.json").is_file():
        assert main(["train", "--data", str(ds), "--out", str(run), "--seed", str(seed), "--quiet", *FAST]) == 0
    return ds, run


def unbind(run: Path) -> Path:
    """``run`` as written before run.json and its weights were bound to each other (no ``run_id``,
    no ``weights_sha256``): for tests that edit one side to check what ``load_run`` checks next."""
    import json

    from safetensors.torch import load_file, save_file

    meta = json.loads((Path(run) / "run.json").read_text())
    meta.pop("run_id", None), meta.pop("weights_sha256", None)
    (Path(run) / "run.json").write_text(json.dumps(meta, indent=2))
    save_file(load_file(Path(run) / "model.safetensors"), Path(run) / "model.safetensors",
              metadata={"format": "admc-run/1"})
    return Path(run)
