"""Every way of filling missing modality rows, behind one surface (the way scikit-learn estimators
share ``fit``/``predict``):

- ``fit(train, full_val, seed, present=None, labels=None) -> info``: learn from the standardized
  embeddings ``[n, M, E]`` of the training samples (every modality present, or ``present [n, M]`` says
  which rows are there: a training set with missing modalities; ``labels [n]``, -1 where unlabelled,
  for a completer with a classification loss); the full validation samples serve model selection only;
- ``complete(z, avail, generator=None) -> z'``: the rows where ``avail [B, M]`` is False filled in,
  the available rows returned exactly as given.

A completer with options of its own has them set before completing, never passed with each call:
the ADN's start step n (:meth:`Diffusion.set_start_step`, the paper variant's; set once, the way a
diffusers scheduler takes ``set_timesteps``) and its sampler (:meth:`Diffusion.with_sampler`, a copy
of the ADN with another sampler).  Completers without such an option do not carry it.

``ZeroFill`` (the train mean in standardized space: the paper's "w/o ADN"; mean fill is this),
``RidgeFill`` (the linear prior alone: the ridge conditional mean of the missing rows given the
available ones), :class:`~admc.diffusion.process.Diffusion` (the ADN) and the autoencoders of
:mod:`admc.baselines.imputers` (``ae``, ``cra``, ``mmin``) are the completers; :data:`COMPLETERS`
maps the kind a method names (``admc.methods.METHODS``) to its constructor.
"""

from __future__ import annotations

import torch

from admc.baselines.imputers import AEFill, CRAFill, MMINFill
from admc.config import TrainConfig
from admc.diffusion.process import Diffusion
from admc.diffusion.variants import variant_of
from admc.models.denoiser import Denoiser
from admc.models.linear_prior import LinearPrior
from admc.models.neighbour_bank import NeighbourBank


class ZeroFill:
    name = "zero"
    label = "the training mean"   # what the app's badges say a missing modality is completed with
    completes = False  # nothing is estimated: the fusion sees the train mean
    clip_range = None

    def fit(self, full_tr: torch.Tensor, full_va: torch.Tensor, seed: int, present=None, labels=None) -> dict:
        return {}

    @torch.no_grad()
    def complete(self, z, avail, generator=None) -> torch.Tensor:
        return z * avail.bool()[..., None]


class RidgeFill:
    name = "ridge"
    label = "the ridge estimate"
    completes = True
    clip_range = None

    def __init__(self, prior: LinearPrior, cfg):
        self.prior, self.cfg = prior, cfg

    def fit(self, full_tr: torch.Tensor, full_va: torch.Tensor, seed: int, present=None, labels=None) -> dict:
        return self.prior.fit_select(full_tr, full_va, self.cfg.prior_shrinkage, self.cfg.prior_grid, present)

    @torch.no_grad()
    def complete(self, z, avail, generator=None) -> torch.Tensor:
        avail = avail.bool()
        keep = avail[..., None]
        return torch.where(keep, z, self.prior(z * keep, avail))


def _diffusion(cfg: TrainConfig, M: int, E: int) -> Diffusion:
    a = cfg.adn
    if a.prior not in ("linear", "none"):
        raise ValueError(f"adn.prior must be linear or none, got {a.prior!r}")
    variant = variant_of(a)
    needs_prior = variant.needs_prior(a)
    den = Denoiser(M, E, a.d_model, a.layers, a.heads, a.ff, a.dropout, conditional=variant.conditional_denoiser)
    bank = NeighbourBank(a.neighbour_bank, M, E) if a.neighbour_bank > 0 else None
    return Diffusion(den, a, LinearPrior(M, E) if needs_prior else None, bank)


COMPLETERS = {
    "none": lambda cfg, M, E, C: ZeroFill(),  # no completion: late fusion
    "zero": lambda cfg, M, E, C: ZeroFill(),
    "ridge": lambda cfg, M, E, C: RidgeFill(LinearPrior(M, E), cfg.adn),
    "diffusion": lambda cfg, M, E, C: _diffusion(cfg, M, E),
    "ae": lambda cfg, M, E, C: AEFill(cfg.imputer, M, E, C),
    "cra": lambda cfg, M, E, C: CRAFill(cfg.imputer, M, E, C),
    "mmin": lambda cfg, M, E, C: MMINFill(cfg.imputer, M, E, C),
}
"""Completer kind -> ``(cfg, M, E, n_classes) -> completer``."""


def build_completer(kind: str, cfg: TrainConfig, M: int, E: int, n_classes: int = 2):
    """The completer of ``kind`` (a key of :data:`COMPLETERS`) with its modules (the caller registers
    them: ``admc.pipeline.ADMCModel.set_completer``)."""
    if kind not in COMPLETERS:
        raise ValueError(f"unknown completer {kind!r} (one of {', '.join(COMPLETERS)})")
    return COMPLETERS[kind](cfg, M, E, n_classes)
