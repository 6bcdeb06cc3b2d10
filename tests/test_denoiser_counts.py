"""Tests that see the denoiser (issue 25): the shipped completer (conditional ADN, mean sampler) is the
ridge estimate plus the denoiser's correction, queried at the last timestep, trained on the residual
around the ridge estimate; where the ridge estimate is provably biased a trained ADN beats it.
Each fails under the mutation it guards against (checked): the sampler returning the ridge estimate,
the mean sampler querying t = 0, the training target ignoring the prior."""

from __future__ import annotations

import pytest
import torch

from admc.completion import build_completer
from admc.config import ADNConfig, TrainConfig
from admc.diffusion.process import Diffusion
from admc.methods import config_for_method


class SpyDenoiser(torch.nn.Module):
    """Returns a constant residual and records the timesteps it is asked about."""

    def __init__(self, value: float = 0.25):
        super().__init__()
        self.value, self.seen = value, []

    def forward(self, x, t, avail=None):
        self.seen.append(t.clone())
        return torch.full_like(x, self.value)


class ConstantPrior:
    def __init__(self, value: float):
        self.value = value

    def __call__(self, z, avail):
        return torch.full_like(z, self.value)


def test_the_mean_sampler_is_the_prior_plus_the_denoisers_correction_at_the_last_timestep():
    cfg = ADNConfig(variant="conditional", prediction="sample", sampler="mean", clip_quantile=None)
    diff = Diffusion(SpyDenoiser(0.25), cfg, prior=ConstantPrior(1.5))
    z = torch.randn(6, 2, 3)
    avail = torch.tensor([[True, False]] * 6)
    out = diff.complete(z * avail[..., None], avail)
    assert torch.equal(out[:, 0], z[:, 0])
    # x0 = prior mean + the denoiser's residual prediction: not the prior's estimate alone
    assert torch.allclose(out[:, 1], torch.full_like(out[:, 1], 1.5 + 0.25))
    seen = torch.cat(diff.denoiser.seen)
    assert len(seen) > 0 and bool((seen == cfg.num_train_timesteps - 1).all()), seen.unique()


def test_the_training_target_is_the_residual_around_the_prior():
    cfg = ADNConfig(variant="conditional", prediction="sample", clip_quantile=None)
    diff = Diffusion(SpyDenoiser(), cfg, prior=ConstantPrior(0.75))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, 3, generator=gen)
    t = torch.full((64,), 500)
    noise = torch.randn(x0.shape, generator=gen)
    out, target, weight = diff.variant.loss(diff, x0, noise, t, None, gen)
    generated = weight[..., 0] > 0                      # the rows the sample generates
    assert generated.any() and (~generated).any()
    assert torch.allclose(target[generated], (x0 - 0.75)[generated])


@pytest.mark.slow
def test_a_trained_adn_beats_the_ridge_estimate_where_it_is_biased():
    """B = A^2 - 1 (per unit) + small noise: B is uncorrelated with A, so the best linear estimate of B
    from A is its mean, 0 (MSE about 2), while E[B | A] is exact; the ADN must get below half of it."""
    torch.manual_seed(0)
    E, n = 4, 3000
    gen = torch.Generator().manual_seed(1)

    def draw(k):
        a = torch.randn(k, E, generator=gen)
        b = a ** 2 - 1 + 0.1 * torch.randn(k, E, generator=gen)
        return torch.stack([a, b], dim=1)

    tr, va, te = draw(n), draw(400), draw(400)
    cfg = TrainConfig(method="admc")
    a = cfg.adn
    a.d_model, a.layers, a.heads, a.ff, a.epochs, a.patience, a.batch_size, a.lr = 64, 2, 4, 128, 60, 60, 128, 2e-3
    diff = build_completer("diffusion", cfg, 2, E)
    diff.fit(tr, va, seed=0)
    avail = torch.tensor([[True, False]] * len(te))
    adn = diff.complete(te * avail[..., None], avail)
    ridge = diff.prior(te * avail[..., None], avail)
    mse_adn = float(((adn[:, 1] - te[:, 1]) ** 2).mean())
    mse_ridge = float(((ridge[:, 1] - te[:, 1]) ** 2).mean())
    assert mse_ridge > 1.5, mse_ridge
    assert mse_adn < 0.5 * mse_ridge, (mse_adn, mse_ridge)


@pytest.mark.slow
def test_the_regressor_control_is_the_same_network_without_noise_and_learns_the_same_conditional_mean():
    """``regress_fill`` (adn.variant=regress): the ADN's network and prior trained as a plain regressor
    (no noise, the one timestep the mean sampler queries). On the same biased-ridge data it must also
    beat the ridge estimate: the control a diffusion completer has to beat."""
    from admc.diffusion.variants import RegressorVariant

    E, n = 4, 3000
    gen = torch.Generator().manual_seed(1)

    def draw(k):
        a = torch.randn(k, E, generator=gen)
        return torch.stack([a, a ** 2 - 1 + 0.1 * torch.randn(k, E, generator=gen)], dim=1)

    tr, va, te = draw(n), draw(400), draw(400)
    cfg = config_for_method(TrainConfig(method="regress_fill"))
    a = cfg.adn
    a.d_model, a.layers, a.heads, a.ff, a.epochs, a.patience, a.batch_size, a.lr = 64, 2, 4, 128, 60, 60, 128, 2e-3
    torch.manual_seed(0)
    reg = build_completer("diffusion", cfg, 2, E)
    assert isinstance(reg.variant, RegressorVariant)
    seen = []
    real = reg.denoiser.forward

    def recording(x, t, avail=None):
        seen.append(t.clone())
        return real(x, t, avail)
    reg.denoiser.forward = recording
    reg.fit(tr, va, seed=0)
    assert bool((torch.cat(seen) == a.num_train_timesteps - 1).all())      # one timestep, training and val
    avail = torch.tensor([[True, False]] * len(te))
    out = reg.complete(te * avail[..., None], avail)
    ridge = reg.prior(te * avail[..., None], avail)
    mse = float(((out[:, 1] - te[:, 1]) ** 2).mean())
    mse_ridge = float(((ridge[:, 1] - te[:, 1]) ** 2).mean())
    assert mse < 0.5 * mse_ridge, (mse, mse_ridge)


def test_the_completer_says_what_it_computes():
    """The app's badges name the completion: the shipped default is the ridge estimate plus one ADN
    step, not a diffusion chain; a chain names its sampler and steps."""
    from admc.completion import RidgeFill, ZeroFill

    def label(method="admc", **adn):
        cfg = config_for_method(TrainConfig(method=method))
        for k, v in adn.items():
            setattr(cfg.adn, k, v)
        return build_completer("diffusion", cfg, 2, 4).label

    assert label() == "the ridge estimate + one ADN step"
    assert label(sampler="ddim", sample_steps=50) == "ADN (50 DDIM steps)"
    assert label(sampler="ddpm", sample_steps=10, num_samples=4) == "ADN (10 DDPM steps, mean of 4)"
    assert label("regress_fill") == "the ridge estimate + a regressor"
    assert label("admc_paper").startswith("ADN (the paper's reverse process")
    assert (ZeroFill.label, RidgeFill.label) == ("the training mean", "the ridge estimate")
