"""The ridge prior as the ADN's sampler (``adn.sampler=prior``) and ``admc calibrate --sampler``: the
shipped completer is chosen on validation (issue 25), and a run says what it runs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from admc.completion import RidgeFill
from admc.config import ConfigError, TrainConfig
from admc.diffusion.training import val_completion_mse
from admc.run import load_run
from admc.sampler_choice import choose_sampler, keep_trained, use_sampler, validation_ua
from tests.synthetic import FAST, cached_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


def _val_split(ds_dir):
    from admc.data import load_dataset

    return load_dataset(ds_dir, splits=("val",))["val"]


def _validation(model, ds_dir):
    val = _val_split(ds_dir)
    z, present = model.embed(val)
    full = present.all(dim=1)
    return z[full], val.labels[full.numpy()]


class Refuses(nn.Module):
    def forward(self, *args):
        raise AssertionError("the prior sampler called the denoiser")


class Oracle(nn.Module):
    """A denoiser that knows ``truth``: the one-step ``mean`` sampler then completes it exactly (its
    input's missing rows are the prior mean, its output the residual to the truth); with a zero truth
    the step lands on 0, the train mean."""

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def forward(self, x, t, avail):
        return (self.truth - x) * (~avail.bool())[..., None]


def test_prior_sampler_is_the_ridge_estimate_and_never_calls_the_denoiser(run):
    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    full, _ = _validation(model, ds_dir)
    adn = model.completer
    ridge = RidgeFill(adn.prior, adn.cfg)
    prior_only = adn.with_sampler("prior")
    prior_only.denoiser = Refuses()
    for mask in ([True, False, False], [False, True, True], [True, True, False]):
        avail = torch.tensor(mask).expand(len(full), -1)
        got = prior_only.complete(full, avail, torch.Generator().manual_seed(0))
        assert torch.equal(got, ridge.complete(full, avail))
        assert torch.equal(got[avail], full[avail])
    assert prior_only.label == "the ridge estimate"
    # and the ADN's own one-step sampler is something else
    avail = torch.tensor([True, False, False]).expand(len(full), -1)
    assert not torch.allclose(adn.complete(full, avail, torch.Generator().manual_seed(0)), ridge.complete(full, avail))


def test_the_rule_keeps_the_trained_sampler_only_when_it_classifies_validation_better():
    assert keep_trained({"mean": 80.1, "prior": 80.0}, "mean")
    assert not keep_trained({"mean": 80.0, "prior": 80.0}, "mean")        # a tie: the cheaper prior
    assert not keep_trained({"mean": 79.0, "prior": 80.0}, "mean")
    assert not keep_trained({"prior": 80.0}, "prior")


def test_auto_measures_both_samplers_on_validation_and_leaves_the_model_as_it_was(run):
    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    full, y = _validation(model, ds_dir)
    val = _val_split(ds_dir)
    adn = model.completer
    choice = choose_sampler(model, val)
    assert model.completer is adn and model.cfg.adn.sampler == "mean"
    assert choice.trained == "mean" and choice.rule == "auto" and set(choice.val_ua) == {"mean", "prior"}
    for s in ("mean", "prior"):
        other, _ = load_run(run_dir)
        use_sampler(other, s)
        assert choice.val_ua[s] == pytest.approx(validation_ua(other, val, other.embed(val)))
        assert choice.val_mse[s] == pytest.approx(val_completion_mse(other.completer, full, other.cfg.seed))
    assert choice.sampler == ("mean" if choice.val_ua["mean"] > choice.val_ua["prior"] else "prior")
    # the two samplers are measured apart: a denoiser whose step lands on 0 (the train mean) completes
    # worse than the prior, and the prior's numbers do not move
    model.completer.denoiser = Oracle(torch.zeros(()))
    broken = choose_sampler(model, val)
    assert broken.val_mse["mean"] > broken.val_mse["prior"] == pytest.approx(choice.val_mse["prior"])
    assert broken.val_ua["prior"] == pytest.approx(choice.val_ua["prior"])
    # a denoiser that completes validation (up to the clip range) has a lower error than the prior
    model.completer.denoiser = Oracle(full)
    assert val_completion_mse(model.completer, full, model.cfg.seed) < 0.1 * choice.val_mse["prior"]
    use_sampler(model, "prior")
    assert model.cfg.adn.sampler == "prior" and model.completer.label == "the ridge estimate"


def test_calibrate_sampler_writes_a_run_that_completes_with_what_it_says(run, tmp_path):
    from admc.cli import main

    ds_dir, run_dir = run
    out = tmp_path / "prior"
    assert main(["calibrate", "--run", str(run_dir), "--data", str(ds_dir), "--out", str(out), "--sampler", "prior",
                 "--quiet"]) == 0
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["adn"]["sampler"] == "prior"
    assert meta["train"]["recalibrated"]["sampler"] == {"sampler": "prior", "trained": "mean", "rule": "given",
                                                        "val_ua": {}, "val_completion_mse": {}}
    model, _ = load_run(out)
    trained, _ = load_run(run_dir)
    full, _ = _validation(model, ds_dir)
    avail = torch.tensor([False, True, False]).expand(len(full), -1)
    assert torch.equal(model.fill(full, avail), RidgeFill(trained.prior, trained.cfg.adn).complete(full, avail))
    assert model.completer.label == "the ridge estimate"
    # the temperatures were fitted again for the completer it now has
    before = json.loads((run_dir / "run.json").read_text())["train"]["calibration"]["conditions"]
    after = meta["train"]["calibration"]["conditions"]
    assert after["full"] != before["full"] or after["A"] != before["A"]


def test_sampler_is_refused_for_a_run_without_an_adn(tmp_path_factory, tmp_path, capsys):
    from admc.cli import main

    ds_dir, _ = cached_run(tmp_path_factory.getbasetemp())
    ridge = tmp_path / "ridge"
    assert main(["train", "--data", str(ds_dir), "--out", str(ridge), "--method", "ridge_fill", "--quiet", *FAST]) == 0
    capsys.readouterr()
    assert main(["calibrate", "--run", str(ridge), "--data", str(ds_dir), "--out", str(tmp_path / "x"),
                 "--sampler", "auto", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sampler" in err and "ridge_fill" in err
    assert not (tmp_path / "x").exists()


def test_prior_sampler_needs_the_linear_prior():
    with pytest.raises(ConfigError, match="adn.sampler=prior .* adn.prior=linear"):
        TrainConfig.from_json({"adn": {"sampler": "prior", "prior": "none"}})
