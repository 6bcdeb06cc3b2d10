"""Padded tensors from a :class:`~admc.data.Split` for one modality."""

from __future__ import annotations

import numpy as np
import torch

from admc.data import Split


def modality_batch(split: Split, modality: str, idx: np.ndarray, max_len: int | None = None,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, T, D]`` zero-padded and ``lengths [B]`` for samples ``idx`` of one modality.

    Sequences longer than ``max_len`` keep their first ``max_len`` rows.
    """
    rows, off = split.rows[modality], split.offsets[modality]
    starts, ends = off[idx], off[idx + 1]
    lens = ends - starts
    if max_len is not None:
        lens = np.minimum(lens, max_len)
    T = int(lens.max())
    x = np.zeros((len(idx), T, rows.shape[1]), dtype=np.float32)
    for b, (s, n) in enumerate(zip(starts, lens)):
        x[b, :n] = rows[s : s + n]
    return torch.from_numpy(x).to(device), torch.from_numpy(lens.astype(np.int64)).to(device)


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None, idx: np.ndarray | None = None):
    """Index batches over ``idx`` (default ``arange(n)``), shuffled when ``rng`` is given."""
    idx = np.arange(n) if idx is None else np.asarray(idx)
    if rng is not None:
        idx = rng.permutation(idx)
    for s in range(0, len(idx), batch_size):
        yield idx[s : s + batch_size]
