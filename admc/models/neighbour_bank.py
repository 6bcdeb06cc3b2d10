"""Hot-deck completion: the missing rows of the training samples nearest in the available rows.

A non-parametric estimate of p(missing | available): the ``k`` training samples whose available rows
are nearest (Euclidean, on the standardized embeddings the completers work in) lend their missing
rows.  Their mean is a k-nearest-neighbour regression (what ``adn.sampler=neighbours`` completes
with); the ``k`` rows themselves are ``k`` draws from the empirical conditional
(:meth:`NeighbourBank.draws`).  In the paired studies of issue 25 (docs/completion.md) it was the
best fill for one classifier trained on full input (mfeat, the starter's paired data), not for the
starter's per-condition classifiers, which learnt from the ADN's completions.

The bank is the standardized embeddings of the training samples with every modality (stored in
half precision: it is saved with the run, 1.5 KB per sample for 3 modalities of 256; the search is
done in the query's precision, on the query's device).  Its size is part of the run's config
(``adn.neighbour_bank``), so the weights' shapes are known before they load.
"""

from __future__ import annotations

import torch
from torch import nn

STORE_DTYPE = torch.float16


class NeighbourBank(nn.Module):
    def __init__(self, size: int, n_modalities: int, dim: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"a neighbour bank needs at least one sample, got {size}")
        self.register_buffer("rows", torch.zeros(size, n_modalities, dim, dtype=STORE_DTYPE))
        self._cast: tuple[tuple, torch.Tensor] | None = None     # the rows in the last query's dtype and device

    @classmethod
    def of(cls, full_train: torch.Tensor) -> "NeighbourBank":
        """A bank of the training samples ``[n, M, E]`` (standardized, every modality present)."""
        if full_train.ndim != 3 or len(full_train) == 0:
            raise ValueError(f"a neighbour bank needs training samples [n, M, E], got shape {list(full_train.shape)}")
        bank = cls(*full_train.shape).to(full_train.device)
        bank.rows.copy_(full_train.to(STORE_DTYPE))
        return bank

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def _rows_as(self, z: torch.Tensor) -> torch.Tensor:
        """The rows in ``z``'s dtype and on its device, converted once per loaded bank (not per window)."""
        key = (self.rows.data_ptr(), self.rows._version, z.dtype, z.device)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, self.rows.to(device=z.device, dtype=z.dtype))
        return self._cast[1]

    @torch.no_grad()
    def draws(self, z: torch.Tensor, avail: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
        """``[k, B, M, E]``: ``z [B, M, E]`` with the rows where ``avail [B, M]`` is False replaced by
        those of its ``k`` nearest bank samples in the available rows (nearest first); the available
        rows exactly as given.  A sample with no available row gets the ``k`` first bank samples
        (there is nothing to be near); samples of different availability patterns are searched apart."""
        avail = avail.bool()
        k = min(int(k), self.size)
        bank = self._rows_as(z)
        out = z[None].repeat(k, 1, 1, 1)
        for pattern in torch.unique(avail, dim=0):
            if bool(pattern.all()):
                continue
            idx = torch.nonzero((avail == pattern).all(dim=1)).flatten()
            if not bool(pattern.any()):
                nearest = torch.arange(k, device=z.device).expand(len(idx), -1)
            else:
                keys = bank[:, pattern].flatten(1)
                nearest = torch.cat([torch.cdist(z[idx[s:s + chunk]][:, pattern].flatten(1), keys)
                                     .topk(k, dim=1, largest=False).indices
                                     for s in range(0, len(idx), chunk)])          # [b, k]
            lent = bank[nearest.T]                                                  # [k, b, M, E]
            out[:, idx] = torch.where(pattern[None, None, :, None], z[idx][None], lent)
        return out
