"""The paper variant's reverse process (paper Eq. 3-4), in each reading of what the missing rows are.

The paper trains an unconditional noise predictor on full samples and completes a sample by running
the reverse chain from a start step n, replacing the available rows after every step by their values
forward-noised to that step (Eq. 4, "re-injection").  It leaves open what the missing rows are at
step n.  Each reading is one function with the same signature; ``READERS`` maps the names that
``adn.reading`` accepts to them (the choice is made once, when a :class:`~admc.diffusion.process.Diffusion`
is built).

Conventions: all tensors are ``[B, M, D]``; ``keep [B, M, 1]`` is 1 on available rows; "step n" is
the noise level of timestep index ``n - 1``, so a chain from step n makes n reverse steps
``n-1, ..., 0``.  ``trace(event, t, noise_std)``, when given, is told every ``"denoise"`` call (the
timestep the denoiser sees) and every ``"reinject"`` (the timestep the available rows are noised to
and the standard deviation of that noise); tests hold both against the schedule.

``stride`` s > 1 respaces a chain (Nichol & Dhariwal, 2021): it visits every s-th timestep
(``n-1, n-1-s, ..., 0``), each reverse step being the exact DDPM posterior between two visited steps;
s = 1 is the paper's chain, step by step.  It is a cost knob, measured in docs/completion.md.
"""

from __future__ import annotations

from typing import Callable

import torch

from admc.diffusion import schedule

Trace = Callable[[str, int, float | None], None]


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def chain_grid(n: int, stride: int = 1) -> list[int]:
    """Ascending timesteps a chain from step n visits: ``n-1`` at the top, every ``stride``-th below, and 0."""
    return sorted(set(range(n - 1, -1, -max(1, stride))) | {0})


def _ddpm_on(sch_factory, grid: list[int]):
    """A DDPM scheduler whose ``step`` goes from each visited timestep to the next lower one."""
    sch = sch_factory()
    sch.set_timesteps(timesteps=grid[::-1])
    return sch


def repaint_times(n: int, jump: int = 10, resample: int = 1) -> list[int]:
    """Timesteps visited by a chain from step n down to -1 (the clean sample).

    Without resampling: ``n-1, n-2, ..., 0, -1``.  With RePaint resampling (Lugmayr et al., CVPR 2022,
    their jump schedule) the chain goes back up ``jump`` steps after reaching every multiple of
    ``jump``, ``resample - 1`` times, and comes down again: a step up is a forward re-noising, a step
    down a reverse step with re-injection.
    """
    jumps = {j: resample - 1 for j in range(0, n - jump, jump)} if resample > 1 else {}
    t, times = n, []
    while t >= 1:
        t -= 1
        times.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump):
                t += 1
                times.append(t)
    times.append(-1)
    return times


def _denoise_step(denoiser, sch, x: torch.Tensor, t: int, generator, trace: Trace | None) -> torch.Tensor:
    """One reverse step from timestep t to the scheduler's next lower one (DDPM posterior, Eq. 3)."""
    if trace is not None:
        trace("denoise", t, None)
    tb = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    return sch.step(denoiser(x, tb), t, x, generator=generator).prev_sample


def _known_at(sch, z: torch.Tensor, t: int, generator, trace: Trace | None) -> torch.Tensor:
    """The available rows forward-noised to timestep t (Eq. 4); t = -1 gives them clean."""
    if trace is not None:
        trace("reinject", t, schedule.noise_std(sch, t))
    if t < 0:
        return z
    return schedule.forward_noise(sch, z, _randn(z, generator), torch.full((z.shape[0],), t, device=z.device))


def _run(denoiser, sch, x, grid, generator, trace):
    """Reverse steps down the whole ``grid`` (descending), no re-injection."""
    for t in grid[::-1]:
        x = _denoise_step(denoiser, sch, x, t, generator, trace)
    return x


def reinjection_chain(denoiser, sch_factory, x: torch.Tensor, z: torch.Tensor, keep: torch.Tensor, n: int,
                      generator, trace: Trace | None, jump: int = 10, resample: int = 1,
                      stride: int = 1) -> torch.Tensor:
    """From ``x`` at step n, reverse steps with Eq. 4 re-injection (and RePaint jumps) to step 0."""
    grid = chain_grid(n, stride)
    sch = _ddpm_on(sch_factory, grid)
    at = lambda i: grid[i] if i >= 0 else -1  # noqa: E731 - index on the grid -> timestep
    times = repaint_times(len(grid), jump, resample)
    for i, i_next in zip(times[:-1], times[1:]):
        t, t_next = at(i), at(i_next)
        if i_next < i:
            x = _denoise_step(denoiser, sch, x, t, generator, trace)
            x = keep * _known_at(sch, z, t_next, generator, trace) + (1 - keep) * x
        else:  # RePaint: back up one visited step on the forward chain
            x = schedule.renoise(sch, x, _randn(x, generator), t, t_next)
    return x


def start_noise(denoiser, sch_factory, z, keep, n, generator, trace, prior_mean=None, **chain):
    """``noise``: missing rows N(0, I) at step n, available rows forward-noised to step n."""
    x = keep * _known_at(sch_factory(), z, n - 1, generator, trace) + (1 - keep) * _randn(z, generator)
    return reinjection_chain(denoiser, sch_factory, x, z, keep, n, generator, trace, **chain)


def start_sdedit_mean(denoiser, sch_factory, z, keep, n, generator, trace, prior_mean=None, **chain):
    """``sdedit_mean``: the input with missing rows at the train mean (0), forward-noised to step n
    (SDEdit, Meng et al. 2022), then the chain with re-injection."""
    x = _known_at(sch_factory(), keep * z, n - 1, generator, trace)
    return reinjection_chain(denoiser, sch_factory, x, z, keep, n, generator, trace, **chain)


def start_sdedit_ridge(denoiser, sch_factory, z, keep, n, generator, trace, prior_mean=None, **chain):
    """``sdedit_ridge``: as ``sdedit_mean`` with the missing rows at the ridge estimate from the
    available ones (``prior_mean``)."""
    if prior_mean is None:
        raise ValueError("reading sdedit_ridge needs the linear prior's estimate")
    x = _known_at(sch_factory(), keep * z + (1 - keep) * prior_mean, n - 1, generator, trace)
    return reinjection_chain(denoiser, sch_factory, x, z, keep, n, generator, trace, **chain)


def start_official(denoiser, sch_factory, z, keep, n, generator, trace, prior_mean=None, stride=1, **_):
    """``official``: what the authors' public code does.  The missing rows are an unconditional sample
    (pure noise denoised over timesteps ``N-n-1 .. 0``), the available rows are forward-noised to step
    n, then n reverse steps run on every row without re-injection; the clean available rows are
    restored at the end."""
    N = sch_factory().config.num_train_timesteps
    u = _randn(z, generator)
    if N - n >= 1:
        g = chain_grid(N - n, stride)
        u = _run(denoiser, _ddpm_on(sch_factory, g), u, g, generator, trace)
    g = chain_grid(n, stride)
    sch = _ddpm_on(sch_factory, g)
    x = keep * _known_at(sch, z, n - 1, generator, trace) + (1 - keep) * u
    return _run(denoiser, sch, x, g, generator, trace)


def start_official_clamp(denoiser, sch_factory, z, keep, n, generator, trace, prior_mean=None, stride=1, **_):
    """``official_clamp``: the authors' other path.  Missing rows start as noise, all N reverse steps
    run, the available rows are clamped to their clean values after every step (``n`` is unused)."""
    N = sch_factory().config.num_train_timesteps
    g = chain_grid(N, stride)
    sch = _ddpm_on(sch_factory, g)
    x = keep * z + (1 - keep) * _randn(z, generator)
    for t in g[::-1]:
        x = _denoise_step(denoiser, sch, x, t, generator, trace)
        x = keep * _known_at(sch, z, -1, generator, trace) + (1 - keep) * x
    return x


READERS = {
    "noise": start_noise,
    "sdedit_mean": start_sdedit_mean,
    "sdedit_ridge": start_sdedit_ridge,
    "official": start_official,
    "official_clamp": start_official_clamp,
}
USES_START_STEP = {"noise": True, "sdedit_mean": True, "sdedit_ridge": True, "official": True,
                   "official_clamp": False}
