import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from admc.config import ADNConfig
from admc.diffusion import schedule
from admc.diffusion.process import Diffusion
from admc.evaluate import random_missing_mask
from admc.metrics import scores
from admc.models.denoiser import Denoiser
from admc.models.encoders import LSTMEncoder, TextCNN


def test_linear_schedule_and_forward_noising_match_closed_form():
    cfg = ADNConfig()
    sch = schedule.ddpm(cfg)
    betas = np.linspace(3e-4, 0.06, 1000)
    abar = np.cumprod(1 - betas)
    assert np.allclose(sch.betas.numpy(), betas, atol=1e-7)
    assert np.allclose(sch.alphas_cumprod.numpy(), abar, rtol=1e-4)
    x0 = torch.randn(4, 3, 8)
    eps = torch.randn(4, 3, 8)
    t = torch.tensor([0, 30, 500, 999])
    xt = schedule.forward_noise(sch, x0, eps, t)
    a = torch.tensor(abar, dtype=torch.float32)[t][:, None, None]
    assert torch.allclose(xt, a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-5)
    # the authors' code schedule is a config change, not code
    sch2 = schedule.ddpm(ADNConfig(beta_start=2e-4, beta_end=4e-2))
    assert np.allclose(sch2.betas.numpy(), np.linspace(2e-4, 4e-2, 1000), atol=1e-7)


def test_training_targets_and_x0_from_outputs_are_consistent():
    cfg = ADNConfig()
    sch = schedule.ddpm(cfg)
    x0, eps = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    t = torch.tensor([100, 100])
    xt = schedule.forward_noise(sch, x0, eps, t)
    for pred in ("epsilon", "sample", "v_prediction"):
        target = schedule.training_target(sch, x0, eps, t, pred)
        assert torch.allclose(schedule.predicted_x0(sch, target, xt, 100, pred), x0, atol=1e-4)


def _mask():
    return torch.tensor([[True, False, True], [False, True, False], [True, True, True], [False, False, True]])


def test_completion_keeps_available_rows_exact_for_every_variant():
    torch.manual_seed(0)
    z = torch.randn(4, 3, 16)
    avail = _mask()
    for variant, sampler, k in [("paper", "ddpm", 1), ("conditional", "ddim", 1), ("conditional", "ddpm", 3),
                                ("conditional", "mean", 1)]:
        cfg = ADNConfig(variant=variant, sampler=sampler, num_samples=k, num_train_timesteps=50, sample_steps=5,
                        start_step=20, prior="none", reading="noise" if variant == "paper" else None)
        den = Denoiser(3, 16, 32, 1, 2, 32, conditional=variant == "conditional").eval()
        diff = Diffusion(den, cfg)
        diff.clip_range = 3.0
        out = diff.complete(z, avail, generator=torch.Generator().manual_seed(1))
        assert torch.equal(out[avail], z[avail]), variant
        assert torch.isfinite(out).all()
        assert not torch.allclose(out[~avail], z[~avail])  # missing rows were generated, not copied
        assert out[~avail].abs().max() <= 3.0 + 1e-5 or variant == "paper"


def test_draw_gives_the_samples_that_complete_averages():
    """``Diffusion.draw`` returns K separate completions (what the marginal classifies); ``complete``
    with ``num_samples=K`` is their mean, on the same random numbers; available rows stay exact."""
    torch.manual_seed(0)
    z = torch.randn(4, 3, 16)
    avail = _mask()
    cfg = ADNConfig(variant="conditional", sampler="ddpm", num_samples=3, num_train_timesteps=50, sample_steps=5,
                    prior="none")
    diff = Diffusion(Denoiser(3, 16, 32, 1, 2, 32, conditional=True).eval(), cfg)
    draws = diff.draw(z, avail, 3, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (3, *z.shape)
    for k in range(3):
        assert torch.equal(draws[k][avail], z[avail])
    assert not torch.allclose(draws[0][~avail], draws[1][~avail])   # separate samples, not one repeated
    mean = diff.complete(z, avail, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(mean[~avail], draws.mean(dim=0)[~avail], atol=1e-6)


def test_masked_pooling_ignores_padding():
    torch.manual_seed(0)
    for enc in (LSTMEncoder(5, 8), TextCNN(5, 8, filters=4)):
        enc.eval()
        x = torch.randn(2, 6, 5)
        lengths = torch.tensor([6, 2])
        a = enc(x, lengths)
        x2 = x.clone()
        x2[1, 2:] = 1e3  # garbage in the padding of sample 1
        b = enc(torch.cat([x2, torch.full((2, 4, 5), -7.0)], dim=1), lengths)  # and more padding
        assert torch.allclose(a, b, atol=1e-5), type(enc).__name__
        # a one-row sequence works (shorter than every TextCNN kernel)
        assert torch.isfinite(enc(x[:, :1], torch.tensor([1, 1]))).all()


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    s = scores(y, p)
    assert np.isclose(s["wa"], 100 * accuracy_score(y, p))
    assert np.isclose(s["ua"], 100 * balanced_accuracy_score(y, p))
    assert np.isclose(s["f1"], 100 * f1_score(y, p, average="macro"))
    # hand-computed: class 0 recall 1/2, class 1 recall 1/1 -> UA 75, WA 2/3
    s = scores([0, 0, 1], [0, 1, 1])
    assert np.isclose(s["ua"], 75.0) and np.isclose(s["wa"], 100 * 2 / 3)


def test_random_missing_mask_hits_rate_and_keeps_one_modality():
    rng = np.random.default_rng(0)
    present = np.ones((500, 3), bool)
    for rate in (0.0, 0.1, 0.3, 0.5, 0.6):
        m = random_missing_mask(present, rate, rng)
        assert m.any(axis=1).all()
        assert abs((~m).mean() - rate) < 1e-3
    # at most (M-1)/M can be missing
    m = random_missing_mask(present, 0.9, rng)
    assert m.sum(axis=1).min() == 1


def test_mmer_cross_generation_is_each_modality_completed_from_the_others():
    from admc.config import TrainConfig
    from admc.data import Modality, Schema
    from admc.pipeline import ADMCModel

    cfg = TrainConfig()
    cfg.adn.d_model, cfg.adn.ff, cfg.adn.heads, cfg.adn.layers = 32, 64, 4, 1
    schema = Schema(tuple(Modality(n, d, "vector", "mlp") for n, d in (("A", 4), ("B", 5), ("C", 6))), ("x", "y"))
    model = ADMCModel(schema, cfg).eval()
    z = torch.randn(7, 3, 256)
    out = model.cross_generate(z)
    for i in range(3):
        avail = torch.ones(7, 3, dtype=torch.bool)
        avail[:, i] = False
        assert torch.allclose(out[:, i], model.fill(z, avail)[:, i], atol=1e-5)
        # F'_i must not see F_i: changing row i leaves F'_i unchanged
        z2 = z.clone()
        z2[:, i] += 5
        assert torch.allclose(model.cross_generate(z2)[:, i], out[:, i], atol=1e-5)


# ---- the linear prior (CARD-style centre of the conditional ADN) ------------------------------------
def _correlated(n, M, E, seed=0):
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=g)
    mix = torch.randn(4, M * E, generator=g)
    return (latent @ mix + 0.3 * torch.randn(n, M * E, generator=g)).reshape(n, M, E)


def test_linear_prior_is_ridge_regression_from_the_available_rows():
    from sklearn.linear_model import Ridge

    from admc.models.linear_prior import LinearPrior

    M, E, n, lam = 3, 5, 400, 0.3
    train, test = _correlated(n, M, E), _correlated(50, M, E, seed=1)
    prior = LinearPrior(M, E).fit(train, lam)
    avail = torch.tensor([[True, False, True], [False, True, False], [True, True, False]]).repeat(17, 1)[:50]
    mu = prior(test * avail[..., None], avail)
    for mask in {tuple(a.tolist()) for a in avail}:
        a = torch.tensor(mask)
        rows = (avail == a).all(dim=1)
        # C = X^T X / n, so lambda on C is alpha = n * lambda for scikit-learn's unnormalized ridge
        ridge = Ridge(alpha=n * lam, fit_intercept=False).fit(train[:, a].reshape(n, -1).numpy(),
                                                              train[:, ~a].reshape(n, -1).numpy())
        want = ridge.predict(test[rows][:, a].reshape(int(rows.sum()), -1).numpy())
        got = mu[rows][:, ~a].reshape(int(rows.sum()), -1).numpy()
        assert np.allclose(got, want, atol=1e-4)
        assert torch.count_nonzero(mu[rows][:, a]) == 0          # nothing on the available rows
    # a bounded cache gives the same answer
    small = LinearPrior(M, E, cache_bytes=1).fit(train, lam)
    assert torch.allclose(small(test * avail[..., None], avail), mu, atol=1e-5) and len(small._maps) == 1
    # state dict round trip (what a run stores): C and lambda, nothing cached
    again = LinearPrior(M, E)
    again.load_state_dict(prior.state_dict())
    assert torch.allclose(again(test * avail[..., None], avail), mu, atol=1e-5)


class _ZeroResidual(torch.nn.Module):
    """A denoiser whose clean-sample prediction (in residual space) is always 0."""

    def forward(self, x, t, avail=None):
        return torch.zeros_like(x)


def test_sampling_runs_on_the_residual_around_the_prior_mean():
    from admc.models.linear_prior import LinearPrior

    M, E = 3, 4
    train = _correlated(300, M, E)
    prior = LinearPrior(M, E).fit(train, 0.1)
    z = _correlated(8, M, E, seed=2)
    avail = torch.tensor([[True, False, False], [False, True, True]]).repeat(4, 1)
    mu = prior(z * avail[..., None], avail)
    for sampler in ("mean", "ddim"):
        cfg = ADNConfig(variant="conditional", prediction="sample", sampler=sampler, sample_steps=5)
        out = Diffusion(_ZeroResidual(), cfg, prior).complete(z * avail[..., None], avail,
                                                              generator=torch.Generator().manual_seed(0))
        # a zero residual is the prior mean itself; available rows stay exact
        assert torch.allclose(out[~avail], mu[~avail], atol=1e-5)
        assert torch.equal(out[avail], z[avail])
        without = Diffusion(_ZeroResidual(), cfg).complete(z * avail[..., None], avail,
                                                           generator=torch.Generator().manual_seed(0))
        assert torch.count_nonzero(without[~avail]) == 0


def test_runs_saved_before_the_prior_keep_diffusing_around_zero(tmp_path):
    import json

    from admc.config import TrainConfig
    from admc.data import load_dataset
    from admc.pipeline import ADMCModel
    from admc.run import load_run, save_run
    from tests.synthetic import make_dataset, unbind

    schema = load_dataset(make_dataset(tmp_path / "ds")).schema
    old = ADMCModel(schema, TrainConfig(adn=ADNConfig(prior="none")))
    run = unbind(save_run(old, tmp_path / "run", {}))
    meta = json.loads((run / "run.json").read_text())
    del meta["config"]["adn"]["prior"]                    # what a session-1 run.json looks like
    (run / "run.json").write_text(json.dumps(meta))
    model, _ = load_run(run)
    assert model.cfg.adn.prior == "none" and model.prior is None
    # a new run keeps its prior, and a config without the key gets today's default
    new = save_run(ADMCModel(schema, TrainConfig()), tmp_path / "new", {})
    model, _ = load_run(new)
    assert model.cfg.adn.prior == "linear" and model.prior is not None
    assert TrainConfig.from_json({"adn": {"epochs": 5}}).adn.prior == "linear"


def test_a_unit_silent_in_training_does_not_blow_up_standardized_embeddings():
    from admc.train import embedding_scale
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(500, 8, generator=g)
    rows[:, 3] = 1e-5 * torch.randn(500, generator=g)   # a unit that (almost) never fires on train
    rows[:, 5] = 0.0                                    # one that never does
    mean, scale = rows.mean(0), embedding_scale(rows)
    fired = torch.zeros(8)
    fired[3] = fired[5] = 0.8                          # a test sample on which both fire
    z = (fired - mean) / scale
    assert z.abs().max() < 1.0
    # the live units keep their own std
    live = [0, 1, 2, 4, 6, 7]
    assert torch.allclose(scale[live], rows[:, live].std(0))


def _paper_model(own_n: int):
    from admc.config import TrainConfig
    from admc.data import Modality, Schema
    from admc.pipeline import ADMCModel

    cfg = TrainConfig(method="admc_paper")
    cfg.adn.d_model, cfg.adn.ff, cfg.adn.heads, cfg.adn.layers = 32, 64, 4, 1
    cfg.adn.prior = "none"
    schema = Schema(tuple(Modality(n, d, "vector", "mlp") for n, d in (("A", 4), ("B", 5), ("C", 6))), ("x", "y"))
    model = ADMCModel(schema, cfg).eval()
    assert model.uses_start_step and model.mmer
    model.clip_range = 3.0
    model.start_step = own_n
    return model


def _first_timesteps(model, run) -> list[int]:
    """The timestep of the denoiser's first call in each reverse chain ``run()`` starts."""
    seen = []
    hook = model.denoiser.register_forward_pre_hook(lambda _m, args: seen.append(int(args[1].flatten()[0])))
    try:
        run()
    finally:
        hook.remove()
    return seen


def test_the_start_step_is_set_once_and_every_completion_mmer_included_starts_there():
    """n is a completer option set before completing (no argument threaded through the calls): inside
    ``using_start_step(n)`` the missing-modality fill and MMER's cross-generation of a full-input sample
    both start their reverse chains at n; the model's own n is back after the block, an error included."""
    model = _paper_model(own_n=20)
    z = torch.randn(5, 3, 256)
    full = torch.ones(5, 3, dtype=torch.bool)
    one_missing = full.clone()
    one_missing[:, 1] = False
    gen = torch.Generator().manual_seed(0)
    own = _first_timesteps(model, lambda: model.predict_logits(z, full, gen))
    assert own and own[0] == 19                    # MMER on full input: t = n - 1 first
    with model.using_start_step(7):
        assert model.start_step == 7
        at7 = _first_timesteps(model, lambda: model.predict_logits(z, full, gen))
        fill7 = _first_timesteps(model, lambda: model.predict_logits(z, one_missing, gen))
    assert at7[0] == 6 and fill7[0] == 6           # the cross-generation follows n too
    assert max(at7) == 6 and max(fill7) == 6
    assert model.start_step == 20
    try:
        with model.using_start_step(3):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert model.start_step == 20


def test_start_step_is_checked_and_only_completers_that_have_one_carry_it():
    import pytest

    from admc.completion import RidgeFill, ZeroFill
    from admc.config import TrainConfig
    from admc.data import Modality, Schema
    from admc.pipeline import ADMCModel

    model = _paper_model(own_n=20)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="start step"):
            model.completer.set_start_step(bad)
    assert model.start_step == 20
    # past the schedule: starts at its last step, as a start grid longer than a short schedule does
    T = model.cfg.adn.num_train_timesteps
    z, one_missing = torch.randn(2, 3, 256), torch.tensor([[True, False, True]] * 2)
    with model.using_start_step(T + 50):
        assert _first_timesteps(model, lambda: model.predict_logits(z, one_missing))[0] == T - 1
    assert not hasattr(ZeroFill(), "start_step") and not hasattr(RidgeFill, "start_step")
    schema = Schema(tuple(Modality(n, d, "vector", "mlp") for n, d in (("A", 4), ("B", 5))), ("x", "y"))
    zero = ADMCModel(schema, TrainConfig(method="zero_fill"))
    assert zero.start_step is None and not zero.uses_start_step
    with zero.using_start_step(5):                  # a completer without n: unchanged
        assert zero.start_step is None
    with pytest.raises(ValueError, match="has none"):
        zero.start_step = 5
