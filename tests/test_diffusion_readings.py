"""The paper variant's reverse process against an analytic Gaussian data model whose exact noise
predictor is known in closed form (so a failure is the sampler's, not a training artefact).

Data: x = vec(z) ~ N(0, S) over M = 3 rows of D = 4 dims, rows strongly correlated.  Forward
noising gives x_t ~ N(0, ab_t S + (1 - ab_t) I), so the exact (MMSE) noise prediction is
eps*(x_t, t) = sqrt(1 - ab_t) (ab_t S + (1 - ab_t) I)^-1 x_t, and the best completion of missing rows
m from available ones a is the conditional mean S_ma S_aa^-1 x_a.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from admc.config import READINGS, ADNConfig
from admc.diffusion import readings, schedule
from admc.diffusion.process import Diffusion

M, D = 3, 4
N = 200


def _cov(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(D, 2 * D, generator=g)
    rows = [shared + 0.35 * torch.randn(D, 2 * D, generator=g) for _ in range(M)]
    L = torch.cat(rows)                       # [M*D, 2D]: every row a noisy copy of one shared factor
    S = L @ L.T / (2 * D) + 0.05 * torch.eye(M * D)
    d = S.diagonal().sqrt()
    return (S / d[:, None] / d[None]).double()  # unit variances, like standardized embeddings


class GaussianOracle(torch.nn.Module):
    """The exact epsilon of the Gaussian data model at every step (an unconditional denoiser)."""

    def __init__(self, S: torch.Tensor, sch):
        super().__init__()
        self.S, self.ab = S, sch.alphas_cumprod.double()
        self.calls: list[int] = []
        self.inputs: dict[int, torch.Tensor] = {}

    def forward(self, x, t, avail=None):
        ti = int(t[0])
        self.calls.append(ti)
        self.inputs.setdefault(ti, x.clone())
        ab = self.ab[ti]
        St = ab * self.S + (1 - ab) * torch.eye(len(self.S), dtype=torch.float64)
        flat = x.reshape(len(x), -1).double()
        eps = (1 - ab).sqrt() * torch.linalg.solve(St, flat.T).T
        return eps.reshape(x.shape).to(x.dtype)


def _cfg(**kw) -> ADNConfig:
    base = dict(variant="paper", num_train_timesteps=N, beta_start=1e-3, beta_end=0.1, clip_quantile=None,
                start_step=N)
    base.update(kw)
    return ADNConfig(**base)


def _data(S, n=300, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, M * D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S).T
    return x.reshape(n, M, D).float()


def _conditional_mean(S, z, mask):
    a = torch.tensor(mask).repeat_interleave(D)
    xa = z.reshape(len(z), -1)[:, a].double()
    W = torch.linalg.solve(S[a][:, a], S[a][:, ~a])
    out = z.clone()
    out[:, ~torch.tensor(mask)] = (xa @ W).reshape(len(z), -1, D).float()
    return out


def _mse(a, b, mask):
    m = ~torch.tensor(mask)
    return float(((a[:, m] - b[:, m]) ** 2).mean())


MASK = (True, False, False)  # one row given, two generated: the hardest condition


def _complete(reading="noise", K=1, n=N, seed=0, **kw):
    S = _cov()
    cfg = _cfg(reading=reading, num_samples=K, **kw)
    oracle = GaussianOracle(S, schedule.ddpm(cfg))
    diff = Diffusion(oracle, cfg)
    diff.set_start_step(n)
    z = _data(S)
    avail = torch.tensor(MASK).expand(len(z), -1)
    out = diff.complete(z, avail, torch.Generator().manual_seed(seed))
    return S, z, out, oracle


def test_paper_sampler_with_exact_epsilon_beats_zero_fill_and_approaches_the_conditional_mean():
    S, z, one, _ = _complete(K=1)
    _, _, avg, _ = _complete(K=16)
    cm = _conditional_mean(S, z, MASK)
    zero = _mse(torch.zeros_like(z), z, MASK)           # ~1: unit variances
    best = _mse(cm, z, MASK)                             # the conditional mean's error
    assert zero > 0.9 and best < 0.35 * zero             # the data model leaves a lot to complete
    assert _mse(one, z, MASK) < 0.75 * zero              # one sample: clearly better than zero fill
    assert _mse(avg, z, MASK) < 0.6 * zero               # the average of 16: better still ...
    assert _mse(avg, cm, MASK) < 0.35 * _mse(torch.zeros_like(z), cm, MASK)  # ... and near the conditional mean
    assert _mse(avg, z, MASK) < _mse(one, z, MASK)


def test_the_same_sampler_without_reinjection_fails_that_test(monkeypatch):
    """A copy of the chain that never re-injects the available rows (the mutation the old test let
    through) samples the unconditional model: worse than zero fill."""

    def chain_without_reinjection(denoiser, sch_factory, x, z, keep, n, generator, trace, **chain):
        grid = readings.chain_grid(n)
        return readings._run(denoiser, readings._ddpm_on(sch_factory, grid), x, grid, generator, trace)

    monkeypatch.setattr(readings, "reinjection_chain", chain_without_reinjection)
    S, z, avg, _ = _complete(K=16)
    zero = _mse(torch.zeros_like(z), z, MASK)
    assert not _mse(avg, z, MASK) < 0.6 * zero
    assert _mse(avg, _conditional_mean(S, z, MASK), MASK) > 0.5 * _mse(torch.zeros_like(z), _conditional_mean(S, z, MASK), MASK)


def test_denoiser_timesteps_and_reinjection_noise_follow_the_schedule():
    n = 60
    cfg = _cfg(reading="noise", start_step=n)
    sch = schedule.ddpm(cfg)
    S = _cov()
    oracle = GaussianOracle(S, sch)
    events = []
    z = _data(S, n=2000)
    avail = torch.tensor(MASK).expand(len(z), -1)
    Diffusion(oracle, cfg).complete(z, avail, torch.Generator().manual_seed(3),
                                    trace=lambda ev, t, std: events.append((ev, t, std)))
    # the denoiser sees t = n-1, ..., 0, once each
    assert oracle.calls == list(range(n - 1, -1, -1))
    # available rows are noised to n-1 at the start, then to t-1 after the step at t; clean at the end
    reinject = [(t, std) for ev, t, std in events if ev == "reinject"]
    assert [t for t, _ in reinject] == [n - 1] + list(range(n - 2, -2, -1))
    ab = sch.alphas_cumprod.double()
    for t, std in reinject:
        assert std == pytest.approx(0.0 if t < 0 else float((1 - ab[t]).sqrt()), abs=1e-6)
    # and the rows the denoiser is actually given carry exactly that noise around sqrt(ab_t) z
    a = torch.tensor(MASK)
    for t in (n - 1, 30, 5, 0):
        x = oracle.inputs[t][:, a].double()
        eps = (x - ab[t].sqrt() * z[:, a].double()) / (1 - ab[t]).sqrt()
        assert abs(float(eps.std()) - 1.0) < 0.05 and abs(float(eps.mean())) < 0.05, t


def test_repaint_schedule_goes_back_jump_steps_resample_minus_one_times():
    assert readings.repaint_times(5) == [4, 3, 2, 1, 0, -1]
    times = readings.repaint_times(12, jump=3, resample=2)
    ups = sum(1 for a, b in zip(times, times[1:]) if b > a)
    downs = sum(1 for a, b in zip(times, times[1:]) if b < a)
    assert times[0] == 11 and times[-1] == -1
    assert downs - ups == 12 and ups == 3 * 3  # jumps at t = 0, 3, 6 (not within `jump` of the start)
    assert all(abs(a - b) == 1 for a, b in zip(times, times[1:]))


def test_a_respaced_chain_visits_every_stride_th_step_and_still_completes():
    S, z, full, oracle_full = _complete(K=16)
    _, _, fast, oracle = _complete(K=16, stride=10)
    assert oracle.calls == [199, 189, 179, 169, 159, 149, 139, 129, 119, 109, 99, 89, 79, 69, 59, 49, 39, 29, 19, 9, 0]
    zero = _mse(torch.zeros_like(z), z, MASK)
    assert _mse(fast, z, MASK) < 0.6 * zero
    assert abs(_mse(fast, z, MASK) - _mse(full, z, MASK)) < 0.1


def test_repaint_resampling_harmonizes_better_than_plain_reinjection():
    S, z, plain, _ = _complete(reading="noise", K=1)
    _, _, rp, oracle = _complete(reading="noise", K=1, resample=4, jump=10)
    assert _mse(rp, z, MASK) < _mse(plain, z, MASK)
    assert len(oracle.calls) > N  # it did resample


@pytest.mark.parametrize("reading", READINGS)
def test_every_reading_keeps_available_rows_and_generates_the_others(reading):
    S = _cov()
    cfg = _cfg(reading=reading, num_samples=2)
    oracle = GaussianOracle(S, schedule.ddpm(cfg))
    prior = None
    if reading == "sdedit_ridge":
        from admc.models.linear_prior import LinearPrior

        prior = LinearPrior(M, D).fit(_data(S, n=2000, seed=9), shrinkage=0.01)
    z = _data(S, n=50)
    avail = torch.tensor([MASK, (False, True, True)] * 25)
    diff = Diffusion(oracle, cfg, prior)
    diff.set_start_step(40)
    out = diff.complete(z, avail, torch.Generator().manual_seed(0))
    assert torch.equal(out[avail], z[avail])
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[~avail], torch.zeros_like(out[~avail]))


def test_sdedit_from_the_ridge_estimate_at_a_small_start_step_stays_near_it():
    """n = 1 changes the ridge start only by one denoising step; the MSE is the ridge estimate's."""
    S = _cov()
    from admc.models.linear_prior import LinearPrior

    prior = LinearPrior(M, D).fit(_data(S, n=5000, seed=9), shrinkage=1e-3)
    cfg = _cfg(reading="sdedit_ridge")
    z = _data(S)
    avail = torch.tensor(MASK).expand(len(z), -1)
    diff = Diffusion(GaussianOracle(S, schedule.ddpm(cfg)), cfg, prior)
    diff.set_start_step(1)
    out = diff.complete(z, avail, torch.Generator().manual_seed(0))
    ridge = torch.where(avail[..., None], z, prior(z * avail[..., None], avail))
    assert _mse(out, ridge, MASK) < 0.02
    assert _mse(out, z, MASK) == pytest.approx(_mse(_conditional_mean(S, z, MASK), z, MASK), rel=0.1)


def test_config_refuses_combinations_that_contradict_the_variant():
    assert ADNConfig(variant="paper").prediction_or_default() == "epsilon"
    assert ADNConfig().prediction_or_default() == "sample"
    with pytest.raises(ValueError, match="adn.prediction"):
        ADNConfig(variant="paper", prediction="sample")
    with pytest.raises(ValueError, match="adn.reading"):
        ADNConfig(variant="conditional", reading="sdedit_mean").check_variant("admc")
    with pytest.raises(ValueError, match="adn.reading"):
        ADNConfig(variant="paper", reading="bogus")
    with pytest.raises(ValueError, match="adn.resample"):
        ADNConfig(variant="paper", reading="official", resample=3)
    assert set(READINGS) == set(readings.READERS)
    np.testing.assert_equal(ADNConfig(variant="paper").reading_or_default() in READINGS, True)


def test_admc_paper_method_fixes_the_paper_variant_and_refuses_contradictions():
    from admc.config import TrainConfig
    from admc.methods import config_for_method

    cfg = config_for_method(TrainConfig(method="admc_paper", adn=ADNConfig(reading="sdedit_ridge")))
    assert cfg.adn.variant == "paper" and cfg.adn.prediction_or_default() == "epsilon"
    assert cfg.adn.reading == "sdedit_ridge" and cfg.adn.stride == 10  # the method's own stride ...
    assert config_for_method(TrainConfig(method="admc_paper", adn=ADNConfig(stride=1))).adn.stride == 1  # ... or yours
    with pytest.raises(ValueError, match="adn.prediction"):
        config_for_method(TrainConfig(method="admc_paper", adn=ADNConfig(prediction="sample")))
    with pytest.raises(ValueError, match="adn.reading applies to the paper variant"):
        config_for_method(TrainConfig(method="admc", adn=ADNConfig(reading="noise")))
