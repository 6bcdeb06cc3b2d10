"""The noise schedule, delegated to diffusers' schedulers (pure maths with a config).

All tensors are ``[B, M, D]``: B samples, M modality rows of D standardized embedding dims.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from admc.config import ADNConfig


def _common(cfg: ADNConfig, clip_range: float | None) -> dict:
    return dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.schedule,
        prediction_type=cfg.prediction_or_default(),
        # diffusers' default clip range of 1.0 suits images in [-1, 1], not standardized embeddings
        clip_sample=clip_range is not None,
        clip_sample_range=float(clip_range) if clip_range is not None else 1.0,
        timestep_spacing="trailing",  # few-step chains start at the last training step
    )


def ddpm(cfg: ADNConfig, clip_range: float | None = None) -> DDPMScheduler:
    return DDPMScheduler(**_common(cfg, clip_range), variance_type="fixed_small")


def ddim(cfg: ADNConfig, clip_range: float | None = None) -> DDIMScheduler:
    return DDIMScheduler(**_common(cfg, clip_range), set_alpha_to_one=True)


def alphas_cumprod(scheduler) -> torch.Tensor:
    return scheduler.alphas_cumprod


def forward_noise(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0) (paper Eq. 1): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per-sample t."""
    return scheduler.add_noise(x0, noise, t)


def training_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction: str) -> torch.Tensor:
    if prediction == "epsilon":
        return noise
    if prediction == "sample":
        return x0
    if prediction == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    raise ValueError(f"ADN prediction must be epsilon, sample or v_prediction, got {prediction!r}")


def predicted_x0(scheduler, output: torch.Tensor, x_t: torch.Tensor, t: int, prediction: str) -> torch.Tensor:
    """The clean sample implied by a model output at step t (the formula diffusers' step uses)."""
    ab = scheduler.alphas_cumprod[t].to(x_t.dtype)
    if prediction == "epsilon":
        return (x_t - (1 - ab).sqrt() * output) / ab.sqrt()
    if prediction == "sample":
        return output
    if prediction == "v_prediction":
        return ab.sqrt() * x_t - (1 - ab).sqrt() * output
    raise ValueError(f"unknown prediction type {prediction!r}")


def renoise(scheduler, x: torch.Tensor, noise: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
    """q(x_to | x_from) for t_to > t_from: the forward chain run on from step t_from (t_from = -1: clean)
    to t_to, sqrt(abar_to / abar_from) x + sqrt(1 - abar_to / abar_from) noise (RePaint's jump back)."""
    ab = scheduler.alphas_cumprod
    a_to = ab[t_to].to(x.dtype)
    a_from = ab[t_from].to(x.dtype) if t_from >= 0 else torch.ones((), dtype=x.dtype)
    ratio = a_to / a_from
    return ratio.sqrt() * x + (1 - ratio).sqrt() * noise


def noise_std(scheduler, t: int) -> float:
    """Standard deviation of the noise in q(x_t | x_0); 0 for t = -1 (the clean sample)."""
    return 0.0 if t < 0 else float((1 - scheduler.alphas_cumprod[t]).sqrt())
