"""The two variants of the attention-based diffusion network (``adn.variant``), each a class chosen
once (:func:`variant_of`) that owns what the variant does: what its denoiser sees, its training loss,
how it completes missing rows, how its training is selected, and its line in ``admc info``.  The
settings each variant defaults to and refuses are the configuration's (``admc.config.VARIANT_RULES``).

* :class:`ConditionalVariant` (``conditional``, the default): a denoiser conditioned on the
  available rows, trained on random availability patterns around the linear prior's estimate
  (CARD-style), sampled by ``adn.sampler``; selected on validation completion MSE.
* :class:`PaperVariant` (``paper``, method ``admc_paper``): the paper's unconditional noise
  predictor (Eq. 2) and its reverse process from a start step n (Eq. 3-4) in one reading
  (``adn.reading``, :mod:`admc.diffusion.readings`); selected on the validation denoising loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from admc.diffusion import readings, sampling, schedule


def neighbours_label(cfg) -> str:
    """What ``adn.sampler=neighbours`` completes with, in a few words (the app's badges)."""
    if cfg.marginal:
        return f"the {cfg.neighbours} nearest training samples, their predictions averaged"
    return f"the mean of the {cfg.neighbours} nearest training samples"


class ADNVariant:
    name: ClassVar[str]
    conditional_denoiser: ClassVar[bool]        # the denoiser reads the availability mask
    min_present: ClassVar[int]                  # present rows a training sample needs
    selects_on_completion: ClassVar[bool]       # early stopping on validation completion MSE (else: loss)

    def needs_prior(self, cfg) -> bool:
        """Whether the linear prior is fitted (``cfg``: the ADNConfig)."""
        return False

    def cannot_run_without_prior(self, cfg) -> bool:
        """Whether completion is impossible without the prior (the conditional variant then diffuses
        around zero, as runs saved before the prior did)."""
        return False

    def uses_start_step(self, cfg) -> bool:
        return False

    def loss(self, diffusion, x0, noise, t, present, gen):
        """(denoiser output, target, weight) of one training batch ``x0 [B, M, D]``."""
        raise NotImplementedError

    def sample(self, diffusion, z, avail, n, generator, trace, prior_mean):
        """Completions of ``z`` where ``avail`` is False (one per row of the batch)."""
        raise NotImplementedError

    def describe(self, cfg, meta: dict) -> list[str]:
        """The ``ADN`` lines of ``admc info`` (``meta``: run.json)."""
        raise NotImplementedError

    def label(self, cfg) -> str:
        """What the completion computes, in a few words (the app's badges)."""
        raise NotImplementedError


class ConditionalVariant(ADNVariant):
    name = "conditional"
    conditional_denoiser = True
    min_present = 2
    selects_on_completion = True

    def needs_prior(self, cfg) -> bool:
        return cfg.prior == "linear"

    @staticmethod
    def pattern_and_prior(diffusion, x0, present, gen):
        """A training batch's random availability (among the rows that are there), as a mask
        ``avail [B, M]`` and ``keep [B, M, 1]``, and the prior's estimate ``mu`` of the other rows."""
        B, M, _ = x0.shape
        avail = diffusion.training_masks(B, M, gen, x0.device, present)
        keep = avail[..., None].float()
        prior = diffusion.prior
        mu = (1 - keep) * prior(keep * x0, avail) if prior is not None else torch.zeros_like(x0)
        return avail, keep, mu

    def loss(self, diffusion, x0, noise, t, present, gen):
        sch = diffusion.loss_schedule
        avail, keep, mu = self.pattern_and_prior(diffusion, x0, present, gen)
        y0 = x0 - mu
        if present is not None:
            y0 = y0 * present[..., None]  # an absent row: no target, its input is prior + noise
        target = schedule.training_target(sch, y0, noise, t, diffusion.prediction)
        out = diffusion.denoiser(keep * x0 + (1 - keep) * (mu + schedule.forward_noise(sch, y0, noise, t)), t, avail)
        return out, target, (1 - keep).expand_as(x0)

    def sample(self, diffusion, z, avail, n, generator, trace, prior_mean):
        return sampling.sample_conditional(diffusion.denoiser, z, avail, diffusion.cfg, diffusion.clip_range,
                                           generator, prior_mean=prior_mean)

    def label(self, cfg) -> str:
        if cfg.sampler == "neighbours":
            return neighbours_label(cfg)
        if cfg.sampler == "prior":
            return "the ridge estimate"
        if cfg.sampler == "mean":
            return "the ridge estimate + one ADN step" if cfg.prior == "linear" else "one ADN step"
        mean = f", mean of {cfg.num_samples}" if cfg.num_samples > 1 else ""
        return f"ADN ({cfg.sample_steps} {cfg.sampler.upper()} steps{mean})"

    def describe(self, cfg, meta: dict) -> list[str]:
        adn = (meta.get("train") or {}).get("adn")
        shrink = adn.get("prior_shrinkage") if isinstance(adn, dict) else None
        shrink = f" (shrinkage {shrink:g})" if isinstance(shrink, (int, float)) else ""
        marginal = ", the marginal over them" if cfg.marginal else ""
        sampler = (f"sampler neighbours (k={cfg.neighbours} of {cfg.neighbour_bank} training samples{marginal})"
                   if cfg.sampler == "neighbours"
                   else f"sampler {cfg.sampler} steps {cfg.sample_steps} K={cfg.num_samples}")
        return [f"ADN       conditional ({cfg.prediction_or_default()}), {sampler}, clip {meta.get('clip_range')}",
                f"ADN prior {cfg.prior}{shrink}"]


class PaperVariant(ADNVariant):
    name = "paper"
    conditional_denoiser = False
    min_present = 1
    selects_on_completion = False

    def needs_prior(self, cfg) -> bool:
        return cfg.reading_or_default() == "sdedit_ridge"

    def cannot_run_without_prior(self, cfg) -> bool:
        return self.needs_prior(cfg)

    def uses_start_step(self, cfg) -> bool:
        return readings.USES_START_STEP[cfg.reading_or_default()]

    def loss(self, diffusion, x0, noise, t, present, gen):
        sch = diffusion.loss_schedule
        target = schedule.training_target(sch, x0, noise, t, diffusion.prediction)
        out = diffusion.denoiser(schedule.forward_noise(sch, x0, noise, t), t)
        return out, target, torch.ones_like(x0)

    def sample(self, diffusion, z, avail, n, generator, trace, prior_mean):
        cfg = diffusion.cfg
        N = cfg.num_train_timesteps
        n = N if n is None else int(min(max(n, 1), N))
        keep = avail[..., None].to(z.dtype)
        read = readings.READERS[cfg.reading_or_default()]
        return read(diffusion.denoiser, lambda: schedule.ddpm(cfg, diffusion.clip_range), z, keep, n, generator,
                    trace, prior_mean=prior_mean, jump=cfg.jump, resample=cfg.resample, stride=cfg.stride or 1)

    def label(self, cfg) -> str:
        return f"ADN (the paper's reverse process, {cfg.reading_or_default()})"

    def describe(self, cfg, meta: dict) -> list[str]:
        return [f"ADN       paper ({cfg.prediction_or_default()}), reading {cfg.reading_or_default()}, stride "
                f"{cfg.stride or 1}, RePaint U={cfg.resample} r={cfg.jump}, K={cfg.num_samples}, start step "
                f"n = {meta.get('start_step')} (chosen by val {cfg.start_select}), clip {meta.get('clip_range')}"]


class RegressorVariant(ConditionalVariant):
    """The control for the diffusion (``regress``, method ``regress_fill``): the conditional ADN's own
    network and prior, trained as a plain regressor of the residual around the prior's estimate: no
    noise, one fixed timestep (the one the mean sampler queries), the input the mean sampler gives it.
    What a diffusion completer adds over it is what the noise and the timesteps add."""

    name = "regress"

    def loss(self, diffusion, x0, noise, t, present, gen):
        avail, keep, mu = self.pattern_and_prior(diffusion, x0, present, gen)
        target = x0 - mu
        if present is not None:
            target = target * present[..., None]
        t_fixed = torch.full_like(t, diffusion.cfg.num_train_timesteps - 1)
        out = diffusion.denoiser(keep * x0 + (1 - keep) * mu, t_fixed, avail)
        return out, target, (1 - keep).expand_as(x0)

    def sample(self, diffusion, z, avail, n, generator, trace, prior_mean):
        if diffusion.cfg.sampler == "prior":
            return sampling.prior_estimate(z, avail, prior_mean)
        keep = avail[..., None].to(z.dtype)
        given = keep * z
        mu = (1 - keep) * prior_mean if prior_mean is not None else torch.zeros_like(z)
        t = torch.full((z.shape[0],), diffusion.cfg.num_train_timesteps - 1, dtype=torch.long, device=z.device)
        x0 = mu + diffusion.denoiser(given + (1 - keep) * mu, t, avail)
        if diffusion.clip_range is not None:
            x0 = x0.clamp(-diffusion.clip_range, diffusion.clip_range)
        return given + (1 - keep) * x0

    def label(self, cfg) -> str:
        if cfg.sampler == "neighbours":
            return neighbours_label(cfg)
        return "the ridge estimate" if cfg.sampler == "prior" else "the ridge estimate + a regressor"

    def describe(self, cfg, meta: dict) -> list[str]:
        lines = super().describe(cfg, meta)
        return [f"ADN       the conditional network as a plain regressor of the residual (no noise, one "
                f"timestep), clip {meta.get('clip_range')}", lines[1]]


VARIANTS: dict[str, ADNVariant] = {v.name: v for v in (ConditionalVariant(), PaperVariant(), RegressorVariant())}


def variant_of(cfg) -> ADNVariant:
    """The variant ``cfg.variant`` names (an ADNConfig; the name was checked when it was built)."""
    return VARIANTS[cfg.variant]
