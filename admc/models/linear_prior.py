"""Linear prior of the ADN: the Gaussian conditional mean of missing rows given the available ones.

The conditional ADN diffuses around this prior instead of around zero (CARD, Han et al., NeurIPS
2022: a diffusion model whose prior is centred on a pre-trained conditional-mean estimate).  With the
stacked, standardized embeddings ``x = vec(z) [M*E]`` of the full training samples and their second
moment ``C = E[x x^T]``, the prior for availability mask ``a`` (missing ``m``) is

    mu_m = C_ma (C_aa + lambda I)^{-1} x_a        (ridge regression from the available rows)

with one shrinkage ``lambda`` chosen on validation.  A training set with missing modalities gives
each block ``C_ij`` from the samples that have both modalities (pairwise-complete moments).  Only ``C`` and ``lambda`` are saved with a run;
the per-mask maps are solved on first use and cached (bounded by ``cache_bytes``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class LinearPrior(nn.Module):
    def __init__(self, n_modalities: int, dim: int, cache_bytes: int = 512 * 2**20):
        super().__init__()
        self.M, self.E = n_modalities, dim
        self.register_buffer("second_moment", torch.zeros(n_modalities * dim, n_modalities * dim))
        self.register_buffer("shrinkage", torch.tensor(1.0))
        self.cache_bytes = int(cache_bytes)
        self._maps: OrderedDict[tuple[bool, ...], torch.Tensor] = OrderedDict()

    def fit(self, full: torch.Tensor, shrinkage: float | None = None,
            present: torch.Tensor | None = None) -> "LinearPrior":
        """Second moment of the samples ``[n, M, E]`` (standardized, so centred).  With ``present
        [n, M]`` (rows of absent modalities are ignored) each block ``C_ij`` is averaged over the
        samples that have both modalities i and j (pairwise-complete estimate)."""
        x = full.reshape(len(full), -1).double()
        if present is None or bool(present.all()):
            C = x.T @ x / max(len(x), 1)
        else:
            p = present.double()
            x = x * p.repeat_interleave(self.E, dim=1)
            pairs = p.T @ p
            if bool((pairs == 0).any()):
                i, j = (int(v) for v in torch.nonzero(pairs == 0)[0])
                raise ValueError(f"no training sample has both modality {i} and modality {j}: the linear "
                                 "prior cannot relate them")
            C = (x.T @ x) / pairs.repeat_interleave(self.E, dim=0).repeat_interleave(self.E, dim=1)
        self.second_moment.copy_(C.to(self.second_moment.dtype))
        if shrinkage is not None:
            self.set_shrinkage(shrinkage)
        self._maps.clear()
        return self

    @torch.no_grad()
    def fit_select(self, full_tr: torch.Tensor, full_va: torch.Tensor, shrinkage: float | None,
                   grid: list[float], present: torch.Tensor | None = None) -> dict:
        """Fit on the training samples (``present``: see :meth:`fit`); the shrinkage is ``shrinkage``
        when given, else the one of ``grid`` with the lowest validation completion MSE (mean over the
        missing conditions, on full validation samples)."""
        self.fit(full_tr, present=present)
        lams = [shrinkage] if shrinkage else list(grid)
        scores = {}
        for lam in lams:
            self.set_shrinkage(lam)
            errs = []
            for code in range(1, 2**self.M - 1):
                mask = [bool(code >> i & 1) for i in range(self.M)]
                avail = torch.tensor(mask, device=full_va.device).expand(len(full_va), -1)
                mu = self(full_va * avail[..., None], avail)
                errs.append(float(((mu - full_va)[~avail] ** 2).mean()))
            scores[float(lam)] = sum(errs) / len(errs)
        best = min(scores, key=scores.get)
        self.set_shrinkage(best)
        return {"prior_shrinkage": best, "prior_val_completion_mse": scores[best],
                "prior_grid_val_completion_mse": {f"{k:g}": v for k, v in scores.items()}}

    def set_shrinkage(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"prior shrinkage must be > 0, got {value}")
        self.shrinkage.fill_(float(value))
        self._maps.clear()

    def _load_from_state_dict(self, *args, **kwargs):
        self._maps.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def _map(self, mask: tuple[bool, ...]) -> torch.Tensor:
        """``[|a| * E, |m| * E]``: available rows (flattened) -> missing rows (flattened)."""
        w = self._maps.get(mask)
        if w is not None:
            self._maps.move_to_end(mask)
            return w
        a = torch.tensor(mask, device=self.second_moment.device).repeat_interleave(self.E)
        C = self.second_moment.double()
        Caa = C[a][:, a]
        Cam = C[a][:, ~a]
        eye = torch.eye(Caa.shape[0], dtype=C.dtype, device=C.device)
        w = torch.linalg.solve(Caa + float(self.shrinkage) * eye, Cam).to(self.second_moment.dtype)
        self._maps[mask] = w
        while sum(v.numel() * v.element_size() for v in self._maps.values()) > self.cache_bytes and len(self._maps) > 1:
            self._maps.popitem(last=False)
        return w

    @torch.no_grad()
    def forward(self, z: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """``z [B, M, E]``, ``avail [B, M]`` -> prior mean ``[B, M, E]``: the conditional mean on the
        missing rows, 0 on the available ones (and everywhere for a sample with nothing available)."""
        avail = avail.bool()
        out = torch.zeros_like(z)
        codes = (avail.long() << torch.arange(self.M, device=z.device)).sum(dim=1)
        for code in codes.unique().tolist():
            mask = tuple(bool(code >> i & 1) for i in range(self.M))
            if all(mask) or not any(mask):
                continue
            sel = torch.nonzero(codes == code).flatten()
            a = torch.tensor(mask, device=z.device)
            xa = z[sel][:, a].reshape(len(sel), -1)
            rows = out[sel]
            rows[:, ~a] = (xa @ self._map(mask).to(z.dtype)).reshape(len(sel), int((~a).sum()), self.E)
            out[sel] = rows
        return out
