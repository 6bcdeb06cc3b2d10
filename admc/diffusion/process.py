"""The ADN as one object: denoiser + prior + noise schedule, owning its training loss and ``complete()``.

Like a diffusers pipeline it composes parts that know nothing of each other: the denoiser
(``admc.models.denoiser``) maps rows and a timestep to a prediction, the schedule
(``admc.diffusion.schedule``) is diffusers' maths, the prior (``admc.models.linear_prior``) is a ridge
estimate.  The variant and, for the paper variant, the reading of Eq. 3-4 are fixed when the object is
built; nothing else in the code switches on them.

- ``conditional``: the denoiser sees the available rows clean plus the mask and generates the
  missing rows around the linear prior (``admc.diffusion.sampling``).
- ``paper``: an unconditional noise predictor trained on full samples; completion runs one of the
  readings in ``admc.diffusion.readings`` from a start step n.

It has the completer surface of ``admc.completion``: ``fit(full_train, full_val, seed)`` and
``complete(z, avail, generator)``.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from admc.config import ADNConfig
from admc.diffusion import readings, schedule
from admc.diffusion.variants import variant_of
from admc.diffusion.training import NOISE_BINS, train_denoiser
from admc.masks import proper_masks
from admc.models.denoiser import Denoiser
from admc.models.linear_prior import LinearPrior
from admc.models.neighbour_bank import NeighbourBank

def random_proper_masks(n: int, M: int, gen: torch.Generator, device) -> torch.Tensor:
    """[n, M] availability masks drawn uniformly from the non-empty proper subsets."""
    codes = torch.randint(1, 2**M - 1, (n,), generator=gen).to(device)
    return (codes[:, None] >> torch.arange(M, device=device)[None]) & 1 == 1


def _masks_within(present: torch.Tensor, gen: torch.Generator, tries: int = 16) -> torch.Tensor:
    """[B, M] availability masks: a random non-empty proper subset of each sample's present rows
    (a sample needs two present rows).  Uniform draws over all proper masks, intersected with
    ``present`` and redrawn while empty or equal to it; what is left keeps its first present row."""
    B, M = present.shape
    avail = random_proper_masks(B, M, gen, present.device) & present
    for _ in range(tries):
        bad = ~avail.any(dim=1) | (avail == present).all(dim=1)
        if not bool(bad.any()):
            return avail
        avail[bad] = random_proper_masks(int(bad.sum()), M, gen, present.device) & present[bad]
    bad = ~avail.any(dim=1) | (avail == present).all(dim=1)
    first = torch.zeros_like(present)
    first[torch.arange(B, device=present.device), present.float().argmax(dim=1)] = True
    avail[bad] = first[bad]
    return avail


def training_masks(B: int, M: int, gen: torch.Generator, device, present: torch.Tensor | None = None) -> torch.Tensor:
    """[B, M] availability masks for one training batch: a random non-empty proper subset of all
    rows (full samples) or of each sample's ``present`` rows."""
    return random_proper_masks(B, M, gen, device) if present is None else _masks_within(present, gen)


def clip_range(cfg: ADNConfig, full_train: torch.Tensor, present: torch.Tensor | None = None) -> float | None:
    """Predicted clean rows are clipped to this quantile of |standardized train embeddings| (the
    rows that are there, when ``present`` says)."""
    q = cfg.clip_quantile
    rows = full_train if present is None else full_train[present.bool()]
    return None if q is None else float(torch.quantile(rows.abs().flatten()[:1_000_000], q))


class Diffusion:
    name = "diffusion"
    completes = True

    def __init__(self, denoiser: Denoiser, cfg: ADNConfig, prior: LinearPrior | None = None,
                 bank: NeighbourBank | None = None):
        self.denoiser, self.cfg, self.prior = denoiser, cfg, prior
        self.bank = bank        # the training samples of adn.sampler=neighbours (set on a trained run)
        self.variant = variant_of(cfg)          # chosen once: it owns the loss, sampling and selection
        self.prediction = cfg.prediction_or_default()
        self.reading = cfg.reading_or_default()
        if self.variant.cannot_run_without_prior(cfg) and prior is None:
            raise ValueError(f"adn.reading={self.reading} needs the linear prior")
        self.loss_schedule = schedule.ddpm(cfg)  # the training loss's forward process (no clipping)
        self.clip_range: float | None = None  # set by fit, saved with the run
        self.start_step: int | None = None
        self.set_start_step(cfg.start_step)

    def with_sampler(self, sampler: str, steps: int | None = None, num_samples: int = 1) -> "Diffusion":
        """This ADN (the same trained denoiser, prior and clip range) completing with another sampler
        (``ddpm``, ``ddim`` or ``mean``), ``steps`` reverse steps and the average of ``num_samples``
        completions: one stochastic sample per call with ``ddpm`` and ``num_samples=1``.  The
        ``neighbours`` sampler needs a bank of training samples (:meth:`with_bank`)."""
        view = copy.copy(self)
        view.cfg = replace(self.cfg, sampler=sampler, sample_steps=int(steps or self.cfg.sample_steps),
                           num_samples=int(num_samples), marginal=False,
                           neighbour_bank=self.bank.size if sampler == "neighbours" and self.bank is not None else 0)
        if sampler != "neighbours":
            view.bank = None
        return view

    def with_bank(self, full_train: torch.Tensor, k: int | None = None, marginal: bool = False) -> "Diffusion":
        """This ADN completing with ``adn.sampler=neighbours``: the mean of the missing rows of the
        ``k`` (default ``adn.neighbours``, at most all of them) samples of ``full_train [n, M, E]``
        (standardized training embeddings, every modality present) nearest in the available rows; ``marginal``: the model
        classifies each of the ``k`` and averages the probabilities (:attr:`marginal`)."""
        view = copy.copy(self)
        view.bank = NeighbourBank.of(full_train)
        k = min(int(k or self.cfg.neighbours), view.bank.size)
        view.cfg = replace(self.cfg, sampler="neighbours", num_samples=1, neighbours=k,
                           neighbour_bank=view.bank.size, marginal=bool(marginal))
        return view

    @property
    def marginal(self) -> bool:
        """Whether a classifier of this ADN's completions should average its probabilities over the
        draws (:meth:`draw`, ``adn.neighbours`` of them) instead of classifying their mean
        (:meth:`admc.pipeline.ADMCModel.predict_logits`)."""
        return self.cfg.sampler == "neighbours" and self.cfg.marginal

    @property
    def label(self) -> str:
        """What this ADN computes, in a few words (the app's badges)."""
        return self.variant.label(self.cfg)

    @property
    def uses_start_step(self) -> bool:
        """Whether this ADN's reverse chain starts at a step n (the paper variant's readings)."""
        return self.variant.uses_start_step(self.cfg)

    def set_start_step(self, n: int | None) -> None:
        """Where the reverse chain starts (n of ``adn.num_train_timesteps``; the paper variant's
        readings), set once before completing, like a scheduler's ``set_timesteps``; ``None``: not set
        (chosen on validation at train time, :func:`admc.train.choose_start_step`).  Every completion
        after it, MMER's cross-generation included, starts there; an n past the schedule starts at its
        last step (as a start grid longer than a short schedule does).  Variants that start from pure
        noise or from the prior keep it and ignore it."""
        if n is not None:
            if isinstance(n, bool) or int(n) != n or int(n) < 1:
                raise ValueError(f"start step {n!r}: must be an integer >= 1")
            n = int(n)
        self.start_step = n

    @staticmethod
    def training_masks(B: int, M: int, gen: torch.Generator, device, present: torch.Tensor | None = None):
        """The availability patterns of one training batch (:func:`training_masks`)."""
        return training_masks(B, M, gen, device, present)

    # ---- training ------------------------------------------------------------------------------
    def loss(self, x0: torch.Tensor, gen: torch.Generator, per_bin: np.ndarray | None = None,
             present: torch.Tensor | None = None) -> torch.Tensor:
        """One denoising loss on samples ``x0 [B, M, D]``: the variant's (:mod:`admc.diffusion.variants`;
        paper: the scheduler's target, noise in Eq. 2, on every row; conditional: random availability,
        available rows clean, loss on the rows to generate, in the residual space around the prior mean).

        ``present [B, M]`` (a training set with missing modalities): the loss is masked to the rows
        that are there; the conditional variant draws its available rows among them and generates the
        others that are there (every sample needs two present rows; absent rows carry no loss)."""
        cfg = self.cfg
        B, dev = x0.shape[0], x0.device
        t = torch.randint(0, cfg.num_train_timesteps, (B,), generator=gen).to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        if present is not None:
            present = present.bool()
            x0 = x0 * present[..., None]
        out, target, weight = self.variant.loss(self, x0, noise, t, present, gen)
        if present is not None:
            weight = weight * present[..., None]
        denom = weight.sum(dim=(1, 2))
        err = ((out - target) ** 2 * weight).sum(dim=(1, 2)) / denom.clamp_min(1e-12)
        if present is not None:  # a sample with nothing to learn from (one present row) counts for nothing
            t, err = t[denom > 0], err[denom > 0]
        if per_bin is not None:
            bins = (t * NOISE_BINS // cfg.num_train_timesteps).cpu().numpy()
            e = err.detach().cpu().numpy()
            for b in range(NOISE_BINS):
                sel = bins == b
                per_bin[0, b] += e[sel].sum()
                per_bin[1, b] += sel.sum()
        return err.mean()

    def fit(self, full_tr: torch.Tensor, full_va: torch.Tensor, seed: int,
            present: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> dict:
        """Fit the prior (shrinkage on validation), then train the denoiser (``admc.diffusion.training``).
        ``present [n, M]``: which training rows are there (a training set with missing modalities):
        the prior is fitted pairwise and the denoiser's loss is masked (:meth:`loss`).  ``labels``
        are not used: the ADN learns without them."""
        if present is not None and bool(present.all()):
            present = None
        if present is not None:
            enough = present.sum(dim=1) >= self.variant.min_present
            full_tr, present = full_tr[enough], present[enough]
        if len(full_tr) < 2 or len(full_va) < 1:
            raise ValueError("the ADN needs training samples with at least two modalities present and full "
                             "validation samples: too few in train/val")
        self.clip_range = clip_range(self.cfg, full_tr, present)
        info = self.prior.fit_select(full_tr, full_va, self.cfg.prior_shrinkage, self.cfg.prior_grid, present) \
            if self.prior is not None else {}
        info.update(train_denoiser(self, full_tr, full_va, seed, present))
        if present is not None:
            info["train_samples"] = len(full_tr)
        return info

    # ---- completion ----------------------------------------------------------------------------
    @torch.no_grad()
    def complete(self, z: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None,
                 trace: readings.Trace | None = None, batch_size: int = 4096) -> torch.Tensor:
        """``z [B, M, D]`` with the rows where ``avail [B, M]`` is False generated (the average of
        ``adn.num_samples`` completions, from :attr:`start_step` where the variant uses one);
        available rows are returned exactly as given."""
        k = self.cfg.neighbours if self.cfg.sampler == "neighbours" else max(1, int(self.cfg.num_samples))
        mean = self.draw(z, avail, k, generator, trace, batch_size).mean(dim=0)
        return torch.where(avail.bool()[..., None], z, mean)

    @torch.no_grad()
    def draw(self, z: torch.Tensor, avail: torch.Tensor, samples: int, generator: torch.Generator | None = None,
             trace: readings.Trace | None = None, batch_size: int = 4096) -> torch.Tensor:
        """``[samples, B, M, D]``: ``samples`` completions of ``z [B, M, D]`` drawn in one batched
        chain each (what :meth:`complete` averages); available rows exactly as given.  With the
        ``neighbours`` sampler: the missing rows of the ``samples`` nearest training samples, nearest
        first (deterministic: ``generator`` unused)."""
        avail = avail.bool()
        K = max(1, int(samples))
        if self.cfg.sampler == "neighbours":
            if self.bank is None:
                raise ValueError("adn.sampler=neighbours needs the bank of training samples (Diffusion.with_bank)")
            return self.bank.draws(z, avail, K)
        self.denoiser.eval()
        out = z[None].repeat(K, 1, 1, 1)
        todo = torch.nonzero(~avail.all(dim=1)).flatten()
        n = self.start_step
        if self.uses_start_step and n is None:
            raise ValueError("paper variant needs a start step n (chosen on validation at train time)")
        for s in range(0, len(todo), batch_size):
            idx = todo[s : s + batch_size]
            zi = (z[idx] * avail[idx][..., None]).repeat(K, 1, 1)
            ai = avail[idx].repeat(K, 1)
            mu = self.prior(zi, ai) if self.prior is not None else None
            gen = self.variant.sample(self, zi, ai, n, generator, trace, mu)
            gen = gen.view(K, len(idx), *z.shape[1:])
            out[:, idx] = torch.where(avail[idx][None, ..., None], z[idx][None], gen)
        return out
