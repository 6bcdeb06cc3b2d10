"""Every way of filling missing modality rows, behind one surface (the way scikit-learn estimators
share ``fit``/``predict``):

- ``fit(train, full_val, seed, present=None) -> info``: learn from the standardized embeddings
  ``[n, M, E]`` of the training samples (every modality present, or ``present [n, M]`` says which rows
  are there: a training set with missing modalities); the full validation samples serve model
  selection only;
- ``complete(z, avail, generator=None, start_step=None) -> z'``: the rows where ``avail [B, M]`` is
  False filled in, the available rows returned exactly as given.

``ZeroFill`` (the train mean in standardized space: the paper's "w/o ADN" and ``mean_fill`` alike),
``RidgeFill`` (the linear prior alone: the ridge conditional mean of the missing rows given the
available ones) and :class:`~admc.diffusion.process.Diffusion` (the ADN) are the completers;
:func:`build_completer` is the one place a method's completer is chosen.
"""

from __future__ import annotations

import torch

from admc.config import TrainConfig
from admc.diffusion.process import Diffusion
from admc.models.denoiser import Denoiser
from admc.models.linear_prior import LinearPrior


class ZeroFill:
    name = "zero"
    completes = False  # nothing is estimated: the fusion sees the train mean
    clip_range = None
    start_step = None
    uses_start_step = False

    def fit(self, full_tr: torch.Tensor, full_va: torch.Tensor, seed: int, present=None) -> dict:
        return {}

    @torch.no_grad()
    def complete(self, z, avail, generator=None, start_step=None) -> torch.Tensor:
        return z * avail.bool()[..., None]


class RidgeFill:
    name = "ridge"
    completes = True
    clip_range = None
    start_step = None
    uses_start_step = False

    def __init__(self, prior: LinearPrior, cfg):
        self.prior, self.cfg = prior, cfg

    def fit(self, full_tr: torch.Tensor, full_va: torch.Tensor, seed: int, present=None) -> dict:
        return self.prior.fit_select(full_tr, full_va, self.cfg.prior_shrinkage, self.cfg.prior_grid, present)

    @torch.no_grad()
    def complete(self, z, avail, generator=None, start_step=None) -> torch.Tensor:
        avail = avail.bool()
        keep = avail[..., None]
        return torch.where(keep, z, self.prior(z * keep, avail))


def build_completer(kind: str, cfg: TrainConfig, M: int, E: int):
    """The completer of kind ``zero`` | ``ridge`` | ``diffusion`` | ``none`` (no completion: late
    fusion), with its modules (the caller registers them under ``denoiser`` and ``prior``)."""
    a = cfg.adn
    if kind in ("none", "zero"):
        return ZeroFill()
    if kind == "ridge":
        return RidgeFill(LinearPrior(M, E), a)
    if kind == "diffusion":
        if a.prior not in ("linear", "none"):
            raise ValueError(f"adn.prior must be linear or none, got {a.prior!r}")
        needs_prior = (a.variant == "conditional" and a.prior == "linear") or a.reading_or_default() == "sdedit_ridge"
        den = Denoiser(M, E, a.d_model, a.layers, a.heads, a.ff, a.dropout, conditional=a.variant == "conditional")
        return Diffusion(den, a, LinearPrior(M, E) if needs_prior else None)
    raise ValueError(f"unknown completer {kind!r}")
