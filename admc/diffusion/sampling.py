"""Completion of missing modality rows with a trained denoiser (MMCR, paper 3.2-3.3).

``complete(denoiser, z, avail, cfg, clip_range)`` returns ``z`` with the rows where
``avail`` is False generated and the available rows returned exactly as given.

Two variants:
- ``paper``: an unconditional denoiser trained on full samples; the reverse chain starts at step n
  with the missing rows as Gaussian noise and the available rows forward-noised to step n; after
  every reverse step (Eq. 3) the available rows are replaced by their forward-noised values at that
  step (Eq. 4).
- ``conditional``: the denoiser sees the available rows clean plus the mask and generates only
  the missing rows, with a DDPM or DDIM chain of ``sample_steps`` steps, or in one step from
  the prior mean (``mean``); ``num_samples`` stochastic completions can be averaged.  With a
  linear prior (``admc.models.linear_prior``) the chain runs on the residual ``y = x - mu``
  around the prior mean ``mu`` (CARD): the denoiser is shown ``mu + y_t`` and predicts in y-space,
  so ``y_T`` ~ N(0, I) and the ``mean`` sampler starts from ``mu`` itself.
"""

from __future__ import annotations

import torch

from admc.config import ADNConfig
from admc.diffusion import schedule


def _randn(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


@torch.no_grad()
def inpaint_paper(denoiser, z: torch.Tensor, avail: torch.Tensor, cfg: ADNConfig, start_step: int,
                  clip_range: float | None, generator: torch.Generator | None = None) -> torch.Tensor:
    sch = schedule.ddpm(cfg, clip_range)
    n = int(min(max(start_step, 1), cfg.num_train_timesteps))
    sch.set_timesteps(timesteps=list(range(n - 1, -1, -1)))
    keep = avail[..., None].to(z.dtype)
    t0 = torch.full((z.shape[0],), n - 1, dtype=torch.long, device=z.device)
    x = _randn(z.shape, generator, z.device)
    x = keep * schedule.forward_noise(sch, z, _randn(z.shape, generator, z.device), t0) + (1 - keep) * x
    for t in sch.timesteps:
        t_int = int(t)
        tb = torch.full((z.shape[0],), t_int, dtype=torch.long, device=z.device)
        out = denoiser(x, tb)
        x = sch.step(out, t_int, x, generator=generator).prev_sample
        prev = int(sch.previous_timestep(t_int))
        if prev >= 0:
            zt = schedule.forward_noise(sch, z, _randn(z.shape, generator, z.device), torch.full_like(tb, prev))
        else:
            zt = z
        x = keep * zt + (1 - keep) * x
    return keep * z + (1 - keep) * x


@torch.no_grad()
def sample_conditional(denoiser, z: torch.Tensor, avail: torch.Tensor, cfg: ADNConfig,
                       clip_range: float | None, generator: torch.Generator | None = None,
                       prior_mean: torch.Tensor | None = None) -> torch.Tensor:
    keep = avail[..., None].to(z.dtype)
    given = keep * z
    mu = (1 - keep) * prior_mean if prior_mean is not None else torch.zeros_like(z)
    B = z.shape[0]
    if cfg.sampler == "mean":
        t_int = cfg.num_train_timesteps - 1
        sch = schedule.ddpm(cfg, clip_range)
        y_t = torch.zeros_like(z)  # the mean of q(y_T | y_0) is ~0 for every y_0
        tb = torch.full((B,), t_int, dtype=torch.long, device=z.device)
        out = denoiser(given + (1 - keep) * (mu + y_t), tb, avail)
        x0 = mu + schedule.predicted_x0(sch, out, y_t, t_int, cfg.prediction)
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
        raise ValueError(f"ADN sampler must be ddpm, ddim or mean, got {cfg.sampler!r}")
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


def complete(denoiser, z: torch.Tensor, avail: torch.Tensor, cfg: ADNConfig, clip_range: float | None,
             start_step: int | None = None, generator: torch.Generator | None = None,
             batch_size: int = 4096, prior=None) -> torch.Tensor:
    """Fill the rows of ``z [B, M, D]`` where ``avail [B, M]`` is False; available rows stay exact.
    ``prior``: the conditional variant's linear prior (a callable ``(z, avail) -> mean``), or None."""
    avail = avail.bool()
    out = z.clone()
    todo = torch.nonzero(~avail.all(dim=1)).flatten()
    K = max(1, int(cfg.num_samples))
    for s in range(0, len(todo), batch_size):
        idx = todo[s : s + batch_size]
        zi = z[idx].repeat(K, 1, 1)
        ai = avail[idx].repeat(K, 1)
        if cfg.variant == "paper":
            n = start_step if start_step is not None else cfg.start_step
            if n is None:
                raise ValueError("paper variant needs a start step n (chosen on validation at train time)")
            gen = inpaint_paper(denoiser, zi, ai, cfg, n, clip_range, generator)
        elif cfg.variant == "conditional":
            mu = prior(zi * ai[..., None], ai) if prior is not None else None
            gen = sample_conditional(denoiser, zi, ai, cfg, clip_range, generator, prior_mean=mu)
        else:
            raise ValueError(f"ADN variant must be paper or conditional, got {cfg.variant!r}")
        gen = gen.view(K, len(idx), *z.shape[1:]).mean(dim=0)
        keep = avail[idx][..., None]
        out[idx] = torch.where(keep, z[idx], gen)
    return out
