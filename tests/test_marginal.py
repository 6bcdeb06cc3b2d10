"""Marginalizing the classifier over sampled completions (admc.marginal) and the selective-classification
metrics the completion study reads (risk-coverage, AURC, NLL).

The end-to-end case uses the ADN's own sampler with an exact denoiser: the missing row is -2 or +2
with equal odds whatever is available (a two-bump conditional), the denoiser returns E[x0 | x_t] of
that mixture. The shipped one-step mean sampler then gives 0, the conditional mean, which a classifier
of the row's value reads as the middle class that never occurs; the DDPM chain samples both bumps, and
the average of the classifier over the samples gives the two real classes half each. Checked to fail
when the marginal averages the completions instead of the probabilities, and when the DDPM sampler
is replaced by the one-step mean prediction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from admc.calibration import area_under_risk_coverage, negative_log_likelihood, risk_coverage
from admc.config import ADNConfig
from admc.diffusion.process import Diffusion
from admc.marginal import MarginalPrediction, fit_marginal_temperature, sampled_logits


class TwoBumpDenoiser(torch.nn.Module):
    """x0-prediction of the missing row of x0 in {-2, +2} (equal odds): E[x0 | x_t] =
    2 tanh(2 sqrt(abar) x_t / (1 - abar)); the available row is left as it is."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.ab = alphas_cumprod

    def forward(self, x, t, avail):
        ab = self.ab[t].to(x.dtype)[:, None, None]
        x0 = 2.0 * torch.tanh(2.0 * ab.sqrt() * x / (1 - ab))
        return torch.where(avail[..., None], x, x0)


class RowValueClassifier:
    """Logits of three classes from the value of row 1: -2 -> class 0, 0 -> class 1, +2 -> class 2."""

    def fusion_logits(self, tokens, avail):
        v = tokens[:, 1, 0]
        centres = torch.tensor([-2.0, 0.0, 2.0])
        return -4.0 * (v[:, None] - centres[None]) ** 2


def _two_bump_adn(sampler: str) -> Diffusion:
    cfg = ADNConfig(variant="conditional", prediction="sample", sampler=sampler, sample_steps=50, clip_quantile=None,
                    prior="none")
    diff = Diffusion(torch.nn.Identity(), cfg, prior=None)
    diff.denoiser = TwoBumpDenoiser(diff.loss_schedule.alphas_cumprod)
    return diff


def test_the_marginal_over_sampled_completions_recovers_both_bumps_where_the_plug_in_reads_the_mean():
    z = torch.zeros(200, 2, 1)
    z[:, 0] = torch.randn(200, 1)
    avail = torch.tensor([[True, False]] * 200)
    clf = RowValueClassifier()
    mean_adn = _two_bump_adn("mean")
    plug = MarginalPrediction.from_logits(sampled_logits(clf, mean_adn, z, avail, 2))
    assert (plug.probs.argmax(1) == 1).all()          # the conditional mean 0 reads as the middle class
    gen = torch.Generator().manual_seed(0)
    sampler = _two_bump_adn("ddpm")
    samples = torch.stack([sampler.complete(z * avail[..., None], avail, gen)[:, 1, 0] for _ in range(4)])
    assert (samples.abs() > 1.5).float().mean() > 0.95   # every sample near a bump, never at the mean
    assert 0.35 < (samples > 0).float().mean() < 0.65     # both bumps
    marg = MarginalPrediction.from_logits(sampled_logits(clf, sampler, z, avail, 32, gen))
    p = marg.probs
    assert p[:, 1].max() < 0.05                          # the middle class gets (almost) nothing
    assert np.allclose(p[:, 0] + p[:, 2], 1.0, atol=0.05) and 0.3 < p[:, 0].mean() < 0.7
    # the uncertainty is the missing row's: the members disagree and the mutual information is high
    assert marg.agreement.mean() < 0.8 and marg.mutual_information.mean() > 0.4
    assert plug.mutual_information.max() < 1e-6
    y = np.where(np.arange(200) % 2 == 0, 0, 2)          # half of each real class
    assert negative_log_likelihood(p, y) < negative_log_likelihood(plug.probs, y) - 1.0


def test_sampled_logits_refuses_full_input_and_mixed_patterns():
    z = torch.zeros(4, 2, 1)
    with pytest.raises(ValueError, match="one availability pattern"):
        sampled_logits(RowValueClassifier(), _two_bump_adn("mean"), z, torch.ones(4, 2, dtype=torch.bool), 2)
    mixed = torch.tensor([[True, False], [False, True], [True, False], [True, False]])
    with pytest.raises(ValueError, match="one availability pattern"):
        sampled_logits(RowValueClassifier(), _two_bump_adn("mean"), z, mixed, 2)


def test_with_sampler_shares_the_trained_parts_and_leaves_the_original_alone():
    adn = _two_bump_adn("mean")
    view = adn.with_sampler("ddpm", 20, 4)
    assert view.denoiser is adn.denoiser and view.prior is adn.prior
    assert (view.cfg.sampler, view.cfg.sample_steps, view.cfg.num_samples) == ("ddpm", 20, 4)
    assert (adn.cfg.sampler, adn.cfg.sample_steps, adn.cfg.num_samples) == ("mean", 50, 1)


def test_marginal_prediction_readings_on_hand_made_members():
    # two members: sample 0 they agree on class 0, sample 1 they disagree (class 0 vs class 1)
    probs = np.array([[[0.9, 0.1], [0.8, 0.2]],
                      [[0.9, 0.1], [0.2, 0.8]]])
    m = MarginalPrediction(probs)
    assert np.allclose(m.probs, [[0.9, 0.1], [0.5, 0.5]])
    assert np.allclose(m.agreement, [1.0, 0.5])
    assert m.mutual_information[0] < 1e-9 < m.mutual_information[1]
    assert m.agreement_then_confidence[0] > m.agreement_then_confidence[1]


def test_the_marginal_temperature_fixes_overconfident_members():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    base = rng.normal(size=(600, 3))
    base[np.arange(600), y] += 1.0                       # calibrated at T = 1 (softmax of a Gaussian margin)
    logits = base[None] + 0.1 * rng.normal(size=(4, 600, 3))
    hot = 6.0 * logits                                   # over-confident: the fit must cool it
    t = fit_marginal_temperature(hot, y)
    assert 3.0 < t < 10.0
    assert negative_log_likelihood(MarginalPrediction.from_logits(hot, t).probs, y) < \
        negative_log_likelihood(MarginalPrediction.from_logits(hot, 1.0).probs, y)


def test_risk_coverage_and_aurc():
    correct = np.array([True, True, False, True, False, True])
    perfect = correct.astype(float)                      # every error less confident than every hit
    reverse = 1.0 - perfect
    constant = np.ones(6)
    cov, risk = risk_coverage(perfect, correct)
    assert np.allclose(cov, np.arange(1, 7) / 6) and risk[3] == 0 and np.isclose(risk[-1], 2 / 6)
    best = area_under_risk_coverage(perfect, correct)
    assert best < area_under_risk_coverage(reverse, correct)
    # ties are broken against the classifier: a constant confidence earns nothing over the worst order
    assert np.isclose(area_under_risk_coverage(constant, correct), area_under_risk_coverage(reverse, correct))
    assert np.isclose(best, np.mean([0, 0, 0, 0, 1 / 5, 2 / 6]))
