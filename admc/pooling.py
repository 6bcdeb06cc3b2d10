"""A sample's raw input pooled to one vector: a vector modality's row as it is, a sequence's rows as
their mean and standard deviation (float64).  What the input out-of-distribution model
(:mod:`admc.ood`) and the ``linear`` baseline (:mod:`admc.baselines.linear`) read."""

from __future__ import annotations

import numpy as np

from admc.data import Split


def pooled_dim(kind: str, dim: int) -> int:
    """Width of a modality's pooled input: mean and std of a sequence's rows, a vector as it is."""
    return dim if kind == "vector" else 2 * dim


def pool_rows(x: np.ndarray, kind: str) -> np.ndarray:
    """``[pooled_dim]`` of one sample's rows ``x [rows, dim]`` (a vector: its last row, as the encoder reads it)."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "vector":
        return x[-1]
    return np.concatenate([x.mean(axis=0), x.std(axis=0)])


def pooled_inputs(split: Split, modality: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``[n_present, pooled_dim]`` pooled inputs of the samples where ``modality`` is present, and their indices."""
    rows, off = split.rows[modality], split.offsets[modality]
    idx = np.flatnonzero(split.present[modality])
    return np.stack([pool_rows(rows[off[i]:off[i + 1]], kind) for i in idx]) if len(idx) else \
        np.zeros((0, pooled_dim(kind, rows.shape[1]))), idx


def pooled_split(split: Split, modality: str, kind: str) -> np.ndarray:
    """``[n, pooled_dim]``: every sample's pooled input, zeros where the modality is absent."""
    x, idx = pooled_inputs(split, modality, kind)
    out = np.zeros((len(split), x.shape[1]))
    out[idx] = x
    return out
