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
from admc.sampler_choice import chosen, choose_sampler, use_sampler, validation_ua
from tests.synthetic import FAST, cached_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


def load_dataset_split(ds_dir, split):
    from admc.data import load_dataset

    return load_dataset(ds_dir, splits=(split,))[split]


def _val_split(ds_dir):
    return load_dataset_split(ds_dir, "val")


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


def test_the_rule_takes_a_costlier_sampler_only_when_it_classifies_validation_better():
    assert chosen({"mean": 80.1, "prior": 80.0}) == "mean"
    assert chosen({"mean": 80.0, "prior": 80.0}) == "prior"        # a tie: the cheaper prior
    assert chosen({"mean": 79.0, "prior": 80.0}) == "prior"
    assert chosen({"prior": 80.0}) == "prior"
    # the neighbours come last: they must beat the best of the cheaper two
    assert chosen({"mean": 80.1, "prior": 80.0, "neighbours": 80.1}) == "mean"
    assert chosen({"mean": 80.1, "prior": 80.0, "neighbours": 80.2}) == "neighbours"
    assert chosen({"mean": 79.0, "prior": 80.0, "neighbours": 79.5}) == "prior"
    assert chosen({"mean": 79.0, "prior": 80.0, "neighbours": 80.5}) == "neighbours"
    four = {"mean": 79.0, "prior": 80.0, "neighbours": 80.5, "neighbours_marginal": 80.5}
    assert chosen(four) == "neighbours"                              # a tie: no extra fusion passes
    assert chosen({**four, "neighbours_marginal": 80.6}) == "neighbours_marginal"
    # the order is the cost's, whichever sampler the run has now
    assert chosen({"prior": 1.0, "neighbours": 2.0, "neighbours_marginal": 2.0}) == "neighbours"


def test_auto_measures_both_samplers_on_validation_and_leaves_the_model_as_it_was(run):
    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    full, y = _validation(model, ds_dir)
    val = _val_split(ds_dir)
    adn = model.completer
    choice = choose_sampler(model, val)
    assert model.completer is adn and model.cfg.adn.sampler == "mean"
    assert choice.trained == "mean" and choice.rule == "auto" and set(choice.val_ua) == {"mean", "prior"}
    train = load_dataset_split(ds_dir, "train")
    with_neighbours = choose_sampler(model, val, train=train)
    assert model.completer is adn and model.cfg.adn.sampler == "mean" and model.neighbour_bank is None
    assert set(with_neighbours.val_ua) == {"mean", "prior", "neighbours", "neighbours_marginal"}
    assert with_neighbours.sampler == chosen(with_neighbours.val_ua)
    assert with_neighbours.val_ua["mean"] == pytest.approx(choice.val_ua["mean"])
    other, _ = load_run(run_dir)
    use_sampler(other, "neighbours", train)
    assert with_neighbours.val_ua["neighbours"] == pytest.approx(validation_ua(other, val, other.embed(val)))
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


def test_neighbour_bank_is_a_nearest_neighbour_search():
    """The bank's draws are the rows of the k nearest training samples in the available rows, as
    scikit-learn's exact search finds them, and the sampler's completion is their mean (the k-NN
    regression), per availability pattern within one batch; available rows pass exactly."""
    from sklearn.neighbors import KNeighborsRegressor

    from admc.models.neighbour_bank import NeighbourBank

    g = torch.Generator().manual_seed(0)
    bank_rows = torch.randn(300, 3, 4, generator=g).half().float()      # the bank stores half precision
    bank = NeighbourBank.of(bank_rows)
    z = torch.randn(50, 3, 4, generator=g)
    avail = torch.tensor([[True, False, False], [False, True, True], [True, True, True], [True, False, True]])
    avail = avail[torch.arange(50) % 4]
    draws = bank.draws(z, avail, 5)
    assert draws.shape == (5, 50, 3, 4)
    for pattern in torch.unique(avail, dim=0):
        rows = (avail == pattern).all(dim=1)
        if bool(pattern.all()):
            assert torch.equal(draws[:, rows], z[rows][None].expand(5, -1, -1, -1))
            continue
        knn = KNeighborsRegressor(n_neighbors=5).fit(bank_rows[:, pattern].flatten(1).numpy(),
                                                     bank_rows[:, ~pattern].flatten(1).numpy())
        want = torch.from_numpy(knn.predict(z[rows][:, pattern].flatten(1).numpy())).float()
        got = draws[:, rows].mean(dim=0)
        assert torch.allclose(got[:, ~pattern].flatten(1), want, atol=1e-5)
        assert torch.equal(draws[:, rows][:, :, pattern], z[rows][:, pattern][None].expand(5, -1, -1, -1))
        # nearest first
        d = [(draws[j, rows][:, pattern] - z[rows][:, pattern]).flatten(1).norm(dim=1) for j in range(5)]
        assert all(bool((d[j] <= d[j + 1] + 1e-5).all()) for j in range(4))


def test_calibrate_neighbours_stores_the_bank_and_completes_with_it(run, tmp_path):
    from sklearn.neighbors import KNeighborsRegressor

    from admc.cli import main
    from safetensors import safe_open

    ds_dir, run_dir = run
    out = tmp_path / "neighbours"
    assert main(["calibrate", "--run", str(run_dir), "--data", str(ds_dir), "--out", str(out),
                 "--sampler", "neighbours", "--quiet"]) == 0
    meta = json.loads((out / "run.json").read_text())
    trained, _ = load_run(run_dir)
    z_tr, p_tr = trained.embed(load_dataset_split(ds_dir, "train"))
    full_tr = z_tr[p_tr.all(dim=1)]
    assert meta["config"]["adn"]["sampler"] == "neighbours"
    assert meta["config"]["adn"]["neighbour_bank"] == len(full_tr)
    with safe_open(out / "model.safetensors", framework="pt") as f:
        assert f.get_slice("neighbour_bank.rows").get_shape() == [len(full_tr), trained.M, trained.E]
    model, _ = load_run(out)
    assert model.completer.label == "the mean of the 8 nearest training samples"
    full, _ = _validation(model, ds_dir)
    mask = torch.tensor([False, True, False])
    knn = KNeighborsRegressor(n_neighbors=8).fit(full_tr.half().float()[:, mask].flatten(1).numpy(),
                                                 full_tr.half().float()[:, ~mask].flatten(1).numpy())
    got = model.fill(full, mask.expand(len(full), -1))
    want = torch.from_numpy(knn.predict(full[:, mask].flatten(1).numpy())).float()
    assert torch.allclose(got[:, ~mask].flatten(1), want, atol=1e-4)
    # calibrated back to the ADN's own sampler, the run carries no bank
    back = tmp_path / "back"
    assert main(["calibrate", "--run", str(out), "--data", str(ds_dir), "--out", str(back),
                 "--sampler", "mean", "--quiet"]) == 0
    assert json.loads((back / "run.json").read_text())["config"]["adn"]["neighbour_bank"] == 0
    with safe_open(back / "model.safetensors", framework="pt") as f:
        assert not [k for k in f.keys() if k.startswith("neighbour_bank")]
    again, _ = load_run(back)
    assert torch.equal(again.fill(full, mask.expand(len(full), -1)),
                       trained.fill(full, mask.expand(len(full), -1), torch.Generator().manual_seed(0)))


def test_calibrate_auto_embeds_the_training_split_once(run, tmp_path, monkeypatch):
    """The rule's bank, the sampler it keeps and the refitted OOD models share one pass of the encoders
    over the training split."""
    from admc.cli import main
    from admc.pipeline import ADMCModel

    ds_dir, run_dir = run
    n_train, n_val = len(load_dataset_split(ds_dir, "train")), len(load_dataset_split(ds_dir, "val"))
    assert n_train != n_val
    embedded = []
    embed = ADMCModel.embed

    def counted(self, split, *args, **kwargs):
        embedded.append(len(split))
        return embed(self, split, *args, **kwargs)

    monkeypatch.setattr(ADMCModel, "embed", counted)
    out = tmp_path / "auto"
    assert main(["calibrate", "--run", str(run_dir), "--data", str(ds_dir), "--out", str(out),
                 "--sampler", "auto", "--quiet"]) == 0
    measured = json.loads((out / "run.json").read_text())["train"]["recalibrated"]["sampler"]["val_ua"]
    assert set(measured) >= {"neighbours", "neighbours_marginal"}
    assert embedded.count(n_train) == 1, embedded


def test_a_neighbours_sampler_is_never_trained_with(tmp_path_factory, tmp_path, capsys):
    """The bank is a trained run's training samples: training with it (an empty bank) is refused in one
    line before the data is read, by the CLI and by the core."""
    from admc.cli import main
    from admc.config import trainable

    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "adn.sampler=neighbours", "--set", "adn.neighbour_bank=50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "admc calibrate --sampler neighbours" in err, err
    assert main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "adn.neighbour_bank=50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "adn.neighbour_bank=50" in err, err
    with pytest.raises(ConfigError, match="admc calibrate --sampler neighbours"):
        trainable(TrainConfig.from_json({"adn": {"sampler": "neighbours", "neighbour_bank": 50}}))


def test_auto_skips_the_neighbours_when_no_training_sample_is_full(run):
    """A training split without a sample that has every modality has nothing to lend: auto measures the
    other two, and the model is left as it was."""
    from dataclasses import replace

    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    train, val = load_dataset_split(ds_dir, "train"), _val_split(ds_dir)
    names = model.schema.names
    gaps = replace(train, present={m: (torch.arange(len(train)) % 3 != i).numpy() for i, m in enumerate(names)})
    choice = choose_sampler(model, val, train=gaps)
    assert set(choice.val_ua) == {"mean", "prior"}
    assert model.neighbour_bank is None and model.cfg.adn.sampler == "mean"


def test_neighbours_sampler_needs_a_bank():
    with pytest.raises(ConfigError, match="adn.sampler=neighbours .* `admc calibrate --sampler neighbours`"):
        TrainConfig.from_json({"adn": {"sampler": "neighbours"}})
    with pytest.raises(ConfigError, match="adn.neighbours must be an integer >= 1"):
        TrainConfig.from_json({"adn": {"neighbours": 0}})


def test_the_marginal_averages_the_classifier_over_the_neighbours(run):
    """``neighbours_marginal``: a window with a missing modality is classified once per neighbour's
    completion and the probabilities averaged (admc.marginal computes the same apart); full input is
    classified as before."""
    from admc.marginal import MarginalPrediction, completion_logits

    ds_dir, run_dir = run
    model, _ = load_run(run_dir)
    train = load_dataset_split(ds_dir, "train")
    full, _ = _validation(model, ds_dir)
    use_sampler(model, "neighbours_marginal", train)
    assert model.cfg.adn.marginal and model.completer.marginal
    assert model.completer.label == "the 8 nearest training samples, their predictions averaged"
    plug_in, _ = load_run(run_dir)
    use_sampler(plug_in, "neighbours", train)
    for mask in ([True, False, False], [False, True, True]):
        avail = torch.tensor(mask).expand(len(full), -1)
        draws = model.completer.draw(full * avail[..., None], avail, 8)
        want = MarginalPrediction.from_logits(completion_logits(model, draws, avail)).probs
        got = torch.softmax(model.predict_logits(full, avail), dim=-1).numpy()
        assert got == pytest.approx(want, abs=1e-5)
        # not the plug-in: the classifier of the neighbours' mean says something else
        assert not torch.allclose(model.predict_logits(full, avail), plug_in.predict_logits(full, avail), atol=1e-3)
    avail = torch.ones(len(full), 3, dtype=torch.bool)
    assert torch.equal(model.predict_logits(full, avail), plug_in.predict_logits(full, avail))
