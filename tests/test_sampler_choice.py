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
from admc.sampler_choice import choose_sampler, use_sampler
from tests.synthetic import FAST, cached_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


def _validation(model, ds_dir):
    from admc.data import load_dataset

    z, present = model.embed(load_dataset(ds_dir, splits=("val",))["val"])
    return z[present.all(dim=1)]


class Refuses(nn.Module):
    def forward(self, *args):
        raise AssertionError("the prior sampler called the denoiser")


class Oracle(nn.Module):
    """A denoiser that knows the validation truth: the one-step ``mean`` sampler then completes it
    exactly (its input's missing rows are the prior mean, its output the residual to the truth)."""

    def __init__(self, truth):
        super().__init__()
        self.truth = truth

    def forward(self, x, t, avail):
        return (self.truth - x) * (~avail.bool())[..., None]


def test_prior_sampler_is_the_ridge_estimate_and_never_calls_the_denoiser(run):
    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    full = _validation(model, ds_dir)
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


def test_auto_keeps_the_sampler_that_completes_validation_better(run):
    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    full = _validation(model, ds_dir)
    choice = choose_sampler(model, full)
    trained = model.cfg.adn.sampler
    assert choice.trained == trained == "mean" and choice.rule == "auto"
    want = {s: val_completion_mse(model.completer.with_sampler(s), full, model.cfg.seed) for s in ("mean", "prior")}
    assert choice.val_mse == pytest.approx(want)
    assert choice.sampler == ("prior" if want["prior"] <= want["mean"] else "mean")
    # a denoiser that completes validation (up to the clip range) wins; one whose step lands on 0 loses;
    # one whose step adds nothing (no clipping) ties, and the tie goes to the prior (no denoiser call)
    model.completer.denoiser = Oracle(full)
    oracle = choose_sampler(model, full)
    assert oracle.val_mse["mean"] < 0.1 * oracle.val_mse["prior"] and oracle.sampler == "mean"
    model.completer.denoiser = Oracle(torch.zeros(()))     # output -x: the step lands on 0, far worse
    assert choose_sampler(model, full).sampler == "prior"
    model.completer.denoiser = Oracle(torch.zeros(()))
    model.completer.denoiser.forward = lambda x, t, avail: torch.zeros_like(x)
    model.completer.clip_range = None
    tie = choose_sampler(model, full)
    assert tie.val_mse["mean"] == tie.val_mse["prior"] and tie.sampler == "prior"
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
                                                        "val_completion_mse": {}}
    model, _ = load_run(out)
    trained, _ = load_run(run_dir)
    full = _validation(model, ds_dir)
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
