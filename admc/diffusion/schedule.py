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
        prediction_type=cfg.prediction,
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
