"""The conditional variant's sampler (the paper variant's readings are in ``readings.py``).

- ``conditional``: the denoiser sees the available rows clean plus the mask and generates only
  the missing rows, with a DDPM or DDIM chain of ``sample_steps`` steps, or in one step from
  the prior mean (``mean``); ``num_samples`` stochastic completions can be averaged.  With a
  linear prior (``admc.models.linear_prior``) the chain runs on the residual ``y = x - mu``
  around the prior mean ``mu`` (CARD): the denoiser is shown ``mu + y_t`` and predicts in y-space,
  so ``y_T`` ~ N(0, I) and the ``mean`` sampler starts from ``mu`` itself.  ``prior``: the prior
  mean alone (the ridge estimate), no denoiser call.
"""

from __future__ import annotations

import torch

from admc.config import ADNConfig
from admc.diffusion import schedule


def _randn(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def prior_estimate(z: torch.Tensor, avail: torch.Tensor, prior_mean: torch.Tensor | None) -> torch.Tensor:
    """``z`` with its missing rows at the prior's estimate (``adn.sampler=prior``), exactly what
    :class:`admc.completion.RidgeFill` gives with the same prior."""
    if prior_mean is None:
        raise ValueError("adn.sampler=prior needs the linear prior (adn.prior=linear)")
    keep = avail[..., None]
    return torch.where(keep, z, prior_mean)


@torch.no_grad()
def sample_conditional(denoiser, z: torch.Tensor, avail: torch.Tensor, cfg: ADNConfig,
                       clip_range: float | None, generator: torch.Generator | None = None,
                       prior_mean: torch.Tensor | None = None) -> torch.Tensor:
    keep = avail[..., None].to(z.dtype)
    given = keep * z
    mu = (1 - keep) * prior_mean if prior_mean is not None else torch.zeros_like(z)
    B = z.shape[0]
    if cfg.sampler == "prior":
        return prior_estimate(z, avail, prior_mean)
    if cfg.sampler == "mean":
        t_int = cfg.num_train_timesteps - 1
        sch = schedule.ddpm(cfg, clip_range)
        y_t = torch.zeros_like(z)  # the mean of q(y_T | y_0) is ~0 for every y_0
        tb = torch.full((B,), t_int, dtype=torch.long, device=z.device)
        out = denoiser(given + (1 - keep) * (mu + y_t), tb, avail)
        x0 = mu + schedule.predicted_x0(sch, out, y_t, t_int, cfg.prediction_or_default())
        if clip_range is not None:
            x0 = x0.clamp(-clip_range, clip_range)
        return given + (1 - keep) * x0
    if cfg.sampler == "ddim":
        sch = schedule.ddim(cfg, clip_range)
        step_kw = {"eta": 0.0}
    elif cfg.sampler == "ddpm":
        sch = schedule.ddpm(cfg, clip_range)
        step_kw = {}
    else:
        raise ValueError(f"ADN sampler must be ddpm, ddim, mean or prior, got {cfg.sampler!r}")
    sch.set_timesteps(min(cfg.sample_steps, cfg.num_train_timesteps))
    y = _randn(z.shape, generator, z.device)
    for t in sch.timesteps:
        t_int = int(t)
        tb = torch.full((B,), t_int, dtype=torch.long, device=z.device)
        out = denoiser(given + (1 - keep) * (mu + y), tb, avail)
        if cfg.sampler == "ddpm":
            y = sch.step(out, t_int, y, generator=generator).prev_sample
        else:
            y = sch.step(out, t_int, y, generator=generator, **step_kw).prev_sample
    return given + (1 - keep) * (mu + y)
