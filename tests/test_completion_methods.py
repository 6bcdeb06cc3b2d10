"""The completer surface and the bench methods built on it (ridge_fill, admc_paper), cross-fitting."""

import json

import numpy as np
import pytest
import torch

from admc.completion import RidgeFill, ZeroFill
from admc.config import ADNConfig, FusionConfig, ITFNConfig, TrainConfig
from admc.data import load_dataset
from admc.models.linear_prior import LinearPrior
from admc.run import load_run
from tests.synthetic import make_dataset

pytestmark = pytest.mark.slow


def _small(**adn) -> TrainConfig:
    return TrainConfig(
        itfn=ITFNConfig(epochs=8),
        adn=ADNConfig(epochs=6, d_model=64, ff=128, layers=2, heads=4, start_grid=[5, 20], **adn),
        fusion=FusionConfig(epochs=10, lr=1e-3, d_model=32, ff=64),
    )


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_dataset(tmp_path_factory.mktemp("data") / "ds"))


def _correlated(n, M=3, E=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, 1, E, generator=g)
    return shared + 0.3 * torch.randn(n, M, E, generator=g)


def test_completers_share_one_surface():
    tr, va, te = _correlated(400), _correlated(100, seed=1), _correlated(50, seed=2)
    avail = torch.tensor([[True, False, False]] * 50)
    ridge = RidgeFill(LinearPrior(3, 4), ADNConfig())
    info = ridge.fit(tr, va, seed=0)
    assert info["prior_shrinkage"] > 0
    for c in (ZeroFill(), ridge):
        out = c.complete(te, avail)
        assert torch.equal(out[avail], te[avail])
    zero_err = float((ZeroFill().complete(te, avail)[~avail] - te[~avail]).pow(2).mean())
    ridge_err = float((ridge.complete(te, avail)[~avail] - te[~avail]).pow(2).mean())
    assert ridge_err < 0.5 * zero_err  # rows are strongly correlated: ridge recovers most of them


def test_bench_compares_admc_paper_ridge_and_zero_fill_side_by_side(ds, tmp_path, capsys):
    from admc.bench import run_bench

    res = run_bench(ds, tmp_path / "b", ["admc", "admc_paper", "ridge_fill", "zero_fill"], _small(), [0])
    assert list(res["methods"]) == ["admc", "admc_paper", "ridge_fill", "zero_fill"]
    for m in ("admc", "admc_paper", "ridge_fill"):
        assert set(res["methods"][m]["completion"]["A+B"]) == {"mse", "cos", "mse_zero", "mse_ridge", "ua_generated"}
    assert "completion" not in res["methods"]["zero_fill"]
    md = (tmp_path / "b" / "results.md").read_text()
    for m in ("admc", "admc_paper", "ridge_fill", "zero_fill"):
        assert f"| {m} |" in md
    # ridge_fill is the linear prior alone: its completions equal admc's prior mean, no denoiser saved
    model, meta = load_run(tmp_path / "b" / "runs" / "ridge_fill-seed0")
    assert model.denoiser is None and model.prior is not None and model.mmer
    assert meta["train"]["completion"]["prior_shrinkage"] > 0
    # admc_paper: the paper variant, an epsilon model, n chosen on validation by MSE and by UA
    paper, meta = load_run(tmp_path / "b" / "runs" / "admc_paper-seed0")
    adn = meta["config"]["adn"]
    assert adn["variant"] == "paper" and paper.completer.prediction == "epsilon"
    tr = meta["train"]["adn"]
    assert tr["start_step_by_mse"] in (5, 20) and tr["start_step_by_ua"] in (5, 20)
    assert meta["start_step"] == tr["start_step_by_mse"] and set(tr["val_generated_ua_by_start_step"]) == {"5", "20"}
    # admc info says what each run completes with
    from admc.cli import main

    capsys.readouterr()
    assert main(["info", str(tmp_path / "b" / "runs" / "admc_paper-seed0")]) == 0
    out = capsys.readouterr().out
    assert "ADN       paper (epsilon), reading" in out and "start step n by val MSE / by val UA" in out
    assert main(["info", str(tmp_path / "b" / "runs" / "ridge_fill-seed0")]) == 0
    out = capsys.readouterr().out
    assert "completion ridge estimate" in out and "ridge val completion MSE" in out


def test_bench_refuses_a_contradicting_setting_before_training(ds, tmp_path):
    from admc.bench import run_bench

    with pytest.raises(ValueError, match="adn.reading applies to the paper variant"):
        run_bench(ds, tmp_path / "b", ["admc_paper", "admc"], _small(reading="sdedit_mean"), [0])
    assert not (tmp_path / "b" / "runs").exists()


def test_fusion_trains_on_out_of_fold_completions(ds):
    from admc.train import train

    cfg = _small()
    cfg.method = "ridge_fill"
    cfg.fusion.cross_fit = 3
    model, info = train(ds, cfg, torch.device("cpu"))
    assert info["fusion"]["cross_fit_folds"] == 3
    # the in-sample and out-of-fold completions of a training row differ (the fold's prior never saw it)
    from admc.train import CrossFit

    z, p = model.embed(ds["train"])
    z_va, p_va = model.embed(ds["val"])
    xfit = CrossFit(model, z, p, z_va, p_va, 3, seed=0)
    rows = torch.arange(len(z))
    avail = torch.tensor([True, False, False]).expand(len(z), -1)
    oof = xfit.fusion_inputs(z, rows, avail, None)
    ins = model.fusion_inputs(z, avail)
    assert torch.equal(oof[:, 0], ins[:, 0])                # available rows untouched
    assert not torch.allclose(oof[:, 1:], ins[:, 1:])
    # out-of-fold completions are worse on the training rows, like completions of unseen samples
    full = p.all(dim=1)
    err = lambda x: float((x[full][:, 1:] - z[full][:, 1:]).pow(2).mean())  # noqa: E731
    assert err(oof) > err(ins)
    # each fold's completer is a fresh one, never the trained model's own
    assert all(fm.prior is not model.prior and fm.completer.prior is fm.prior for fm in xfit.models)
    assert not torch.equal(xfit.models[0].prior.second_moment, model.prior.second_moment)
    assert json.dumps(info)  # the run info stays JSON
    assert np.isfinite(info["fusion"]["full"]["val_ua"])


def test_every_completing_method_of_one_seed_starts_its_fusion_from_the_same_weights():
    """Paired comparisons: the completer's construction (a denoiser, an autoencoder, nothing) does not
    move the fusion networks' initial weights, nor the random stream that training goes on with."""
    import torch

    from admc.config import TrainConfig
    from admc.data import Modality, Schema
    from admc.pipeline import ADMCModel

    schema = Schema((Modality("A", 6, "vector", "mlp"), Modality("B", 5, "vector", "mlp"),
                     Modality("C", 4, "sequence", "lstm")), ("x", "y", "z"))
    built, after = {}, {}
    for method in ("admc", "regress_fill", "ridge_fill", "zero_fill", "ae", "cra", "mmin", "admc_paper"):
        torch.manual_seed(3)
        cfg = TrainConfig(method=method)
        cfg.seed = 3
        cfg.itfn.emb_dim, cfg.fusion.mmer = 16, False      # MMER off: every method's full-input net is E wide
        built[method] = ADMCModel(schema, cfg)
        after[method] = torch.rand(4)
    ref = built["zero_fill"]
    for method, m in built.items():
        fusion = {k: v for k, v in m.state_dict().items() if k.startswith("fusion.")}
        assert fusion.keys() == {k for k in ref.state_dict() if k.startswith("fusion.")}, method
        assert all(torch.equal(v, ref.state_dict()[k]) for k, v in fusion.items()), method
        assert torch.equal(after[method], after["zero_fill"]), method
