"""Out-of-distribution scores per modality (admc/ood.py) and the policy of predict_window: an
out-of-distribution modality is treated as missing; nothing trusted left, or too unsure: uncertain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from admc.ood import MahalanobisOOD, fit_modality, fit_ood
from tests.synthetic import cached_run

E, C = 12, 3


def gaussian_classes(n, seed, scales, rot, means):
    """Class-conditional Gaussians sharing one covariance: ``rot @ diag(scales)^2 @ rot.T``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    x = means[y] + (rng.normal(size=(n, E)) * scales) @ rot.T
    return torch.from_numpy(x).float(), y


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    rot, _ = np.linalg.qr(rng.normal(size=(E, E)))
    scales = np.geomspace(5.0, 0.2, E)            # a strongly anisotropic covariance
    means = rng.normal(0, 4.0, (C, E))
    return rot, scales, means


def fitted(world, n_train=3000, n_val=3000, quantile=0.99):
    rot, scales, means = world
    ood = MahalanobisOOD(1, C, E)
    xtr, ytr = gaussian_classes(n_train, 1, scales, rot, means)
    xva, _ = gaussian_classes(n_val, 2, scales, rot, means)
    fit = fit_modality(ood, 0, xtr, ytr, xva, quantile)
    return ood, fit


def test_mahalanobis_passes_about_99_percent_of_held_out_and_flags_far_samples(world):
    rot, scales, means = world
    ood, fit = fitted(world)
    assert fit.val_out == pytest.approx(0.01, abs=0.002) and fit.train_samples == 3000
    xte, _ = gaussian_classes(5000, 3, scales, rot, means)
    flagged = ood.out_of_distribution(ood.scores(xte[:, None]), torch.ones(5000, 1, dtype=torch.bool))[:, 0]
    assert 0.005 < flagged.float().mean() < 0.02
    # far from every class: twice the spread, shifted off the class means
    rng = np.random.default_rng(4)
    far = torch.from_numpy(means[rng.integers(0, C, 500)] + 3.0 * (rng.normal(size=(500, E)) * scales) @ rot.T
                           + 10.0).float()
    assert ood.out_of_distribution(ood.scores(far[:, None]), torch.ones(500, 1, dtype=torch.bool)).float().mean() > 0.95


def test_the_tied_covariance_matters_not_just_the_euclidean_distance(world):
    """The same Euclidean step from a class mean is ordinary along the widest direction of the
    covariance and far out along the narrowest one."""
    rot, scales, means = world
    ood, fit = fitted(world)
    step = 3.0
    wide = torch.from_numpy(means[0] + step * rot[:, 0]).float()     # 0.6 sd along the widest axis
    narrow = torch.from_numpy(means[0] + step * rot[:, -1]).float()  # 15 sd along the narrowest
    s = ood.scores(torch.stack([wide, narrow])[:, None])[:, 0]
    assert float(s[0]) < fit.threshold < float(s[1])
    assert float(s[0]) == pytest.approx(step / scales[0], rel=0.15)
    # the distance is to the nearest class mean: each mean itself scores about 0
    assert ood.scores(torch.from_numpy(means).float()[:, None]).max() < 0.5


def test_absent_rows_unfitted_modalities_and_switching_off():
    ood = MahalanobisOOD(2, C, E)
    z = torch.randn(40, 2, E)
    scores = ood.scores(z)
    assert torch.isnan(scores).all()                                  # nothing fitted: no score
    assert not ood.out_of_distribution(scores, torch.ones(40, 2, dtype=torch.bool)).any()
    present = torch.ones(40, 2, dtype=torch.bool)
    present[:, 1] = False                                             # modality 1 never there
    y = np.arange(40) % C
    rep = fit_ood(ood, ["a", "b"], z, present, y, z, present, 0.99)
    assert rep.modalities["b"] is None and rep.modalities["a"] is not None
    assert ood.fitted.tolist() == [True, False]
    z2 = z.clone()
    z2[:, 0] += 100.0
    out = ood.out_of_distribution(ood.scores(z2), present)
    assert out[:, 0].all() and not out[:, 1].any()
    assert not ood.out_of_distribution(ood.scores(z2), ~present)[:, 0].any()   # an absent row is never flagged
    rep = fit_ood(ood, ["a", "b"], z, present, y, z, present, None)
    assert rep.to_json() == {"quantile": None, "modalities": {"a": None, "b": None}} and not ood.fitted.any()


def test_a_class_without_training_rows_does_not_pull_the_distance_to_zero(world):
    rot, scales, means = world
    ood = MahalanobisOOD(1, C, E)
    xtr, ytr = gaussian_classes(2000, 1, scales, rot, means)
    keep = ytr != 2
    fit_modality(ood, 0, xtr[keep], ytr[keep], xtr[keep][:200], 0.99)
    # the origin (where an empty class's mean would sit if left at zero) is as far as it is from the seen classes
    origin = torch.zeros(1, 1, E)
    seen = MahalanobisOOD(1, 2, E)
    fit_modality(seen, 0, xtr[keep], ytr[keep], xtr[keep][:200], 0.99)
    assert float(ood.scores(origin)) == pytest.approx(float(seen.scores(origin)), rel=1e-4)
    assert float(ood.scores(origin)) > float(ood.threshold[0])
    # and the unseen class's own samples are out of distribution
    assert float(ood.scores(torch.from_numpy(means[2:3]).float()[:, None])[0, 0]) > float(ood.threshold[0])


# ------------------------------------------------------------------------------------------ predict_window
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from admc.data import load_dataset
    from admc.run import load_run

    ds_dir, run_dir = cached_run(tmp_path_factory.getbasetemp())
    model, meta = load_run(run_dir)
    test = load_dataset(ds_dir, splits=("test",))["test"]
    samples = [{m: test.rows[m][test.offsets[m][i]:test.offsets[m][i + 1]] for m in ("A", "B", "C")}
               for i in range(len(test))]
    return model, meta, samples


def _in_distribution(model, samples):
    from admc.pipeline import predict_window

    for feats in samples:
        out = predict_window(model, feats, generator=torch.Generator().manual_seed(0))
        if not any(o.out for o in out.ood.values()):
            return feats, out
    raise AssertionError("no test sample in distribution")


def test_predict_window_reports_ood_per_modality(trained):
    from admc.pipeline import ModalityOOD, WindowPrediction, predict_window

    model, meta, samples = trained
    feats, out = _in_distribution(model, samples)
    assert isinstance(out, WindowPrediction) and out.imputed == []
    assert set(out.ood) == {"A", "B", "C"} and all(isinstance(o, ModalityOOD) for o in out.ood.values())
    assert all(0 < o.score < meta["train"]["ood"]["modalities"][m]["threshold"] for m, o in out.ood.items())
    part = predict_window(model, {**feats, "B": None})
    assert part.ood["B"] is None and part.imputed == ["B"]
    # in-distribution test windows: about 1% per modality above the validation quantile
    flags = np.array([[o.out for o in predict_window(model, f).ood.values()] for f in samples])
    assert flags.mean() < 0.1
    assert out["probs"] == out.probs and out["uncertain"] is out.uncertain   # dict-style access for old callers


def test_an_out_of_distribution_modality_is_completed_like_a_missing_one(trained):
    from admc.pipeline import predict_window

    model, _, samples = trained
    feats, _ = _in_distribution(model, samples)
    strange = {**feats, "A": feats["A"] * 40.0 + 25.0}               # a stream unlike anything in training
    out = predict_window(model, strange, generator=torch.Generator().manual_seed(0))
    assert out.ood["A"].out and not out.ood["B"].out and not out.ood["C"].out
    assert out.imputed == ["A"]
    dropped = predict_window(model, {**feats, "A": None}, generator=torch.Generator().manual_seed(0))
    assert out.probs == dropped.probs and out.label == dropped.label   # exactly as if A were missing
    assert out.ood["A"].score > 10 * out.ood["B"].score


def test_nothing_trusted_left_or_too_unsure_is_uncertain(trained):
    from admc.pipeline import predict_window

    model, _, samples = trained
    feats, _ = _in_distribution(model, samples)
    # every present modality out of distribution: nothing to complete from; predicted as it is, uncertain
    strange = {"A": feats["A"] * 40.0 + 25.0, "B": None, "C": None}
    out = predict_window(model, strange, generator=torch.Generator().manual_seed(0))
    assert out.uncertain and out.ood["A"].out and out.imputed == ["B", "C"]
    # below the abstain threshold (a copy of the model with another threshold)
    import copy

    m2 = copy.deepcopy(model)
    base = predict_window(m2, feats, generator=torch.Generator().manual_seed(0))
    top = max(base.probs.values())
    m2.calibration.abstain_below.fill_(top + 1e-3)
    assert predict_window(m2, feats, generator=torch.Generator().manual_seed(0)).uncertain
    m2.calibration.abstain_below.fill_(top - 1e-3)
    assert not predict_window(m2, feats, generator=torch.Generator().manual_seed(0)).uncertain


# ------------------------------------------------------------------------------------------ input features
D, RANK = 10, 3


def low_rank_split(n: int, seed: int, rows: int = 12, name: str = "train"):
    """A sequence modality whose rows lie near a 3-d subspace of 10 dims (and vary within a sample)."""
    from admc.data import Split

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(D, D)))[0][:, :RANK]
    centres = rng.normal(0, 2.0, (n, 1, RANK))
    x = (centres + rng.normal(0, 1.0, (n, rows, RANK))) @ basis.T + rng.normal(0, 0.05, (n, rows, D))
    off = np.arange(0, n * rows + 1, rows, dtype=np.int64)
    split = Split(name, np.zeros(n, np.int64), np.arange(n).astype(str), {"A": x.reshape(-1, D).astype(np.float32)},
                  {"A": off}, {"A": np.ones(n, bool)})
    return split, basis


def fitted_input_ood(quantile=0.99):
    from admc.data import Modality, Schema
    from admc.ood import InputOOD, fit_input_ood

    schema = Schema((Modality("A", D, "sequence", "transformer"),), ("c",))
    ood = InputOOD(schema, k=2 * RANK)   # mean and std of 3 latent dims: 6 pooled axes
    train, basis = low_rank_split(3000, 1)
    val, _ = low_rank_split(3000, 2, name="val")
    fits = fit_input_ood(ood, train, val, quantile)
    return ood, fits["A"], basis


def test_input_score_passes_about_99_percent_of_held_out_windows():
    ood, fit, _ = fitted_input_ood()
    assert fit.components == 2 * RANK and fit.val_out == pytest.approx(0.01, abs=0.002) and fit.explained > 0.8
    test, _ = low_rank_split(3000, 3, name="test")
    scores = np.array([ood.score("A", test.rows["A"][test.offsets["A"][i]:test.offsets["A"][i + 1]])
                       for i in range(len(test))])
    assert 0.003 < np.mean([ood.out("A", s) for s in scores]) < 0.025


def test_input_score_flags_a_flat_stream_and_a_shift_off_the_subspace_but_not_one_along_it():
    """A flat stream (rows that do not vary: a synthetic voice's pitch) and a step off the subspace
    (3 units: 1.5x the spread of the samples' centres) are flagged; the same step along the subspace
    is an ordinary sample."""
    ood, fit, basis = fitted_input_ood()
    test, _ = low_rank_split(200, 4, name="test")
    rows = [test.rows["A"][test.offsets["A"][i]:test.offsets["A"][i + 1]] for i in range(len(test))]
    ordinary = [r for r in rows if not ood.out("A", ood.score("A", r))]
    off_axis = np.linalg.qr(np.concatenate([basis, np.random.default_rng(5).normal(size=(D, 1))], 1))[0][:, -1]
    flat = [np.repeat(r.mean(0, keepdims=True), len(r), 0) for r in ordinary]
    assert np.mean([ood.out("A", ood.score("A", r)) for r in flat]) > 0.95
    assert np.mean([ood.out("A", ood.score("A", r + 3.0 * off_axis)) for r in ordinary]) > 0.95
    assert np.mean([ood.out("A", ood.score("A", r + 3.0 * basis[:, 0])) for r in ordinary]) < 0.05


def test_input_score_in_predict_window_json_and_policy(trained):
    """The trained run has an input model per modality; its score is in the window's JSON and a
    modality flagged on its input alone is treated as missing."""
    from admc.pipeline import predict_window

    model, meta, samples = trained
    fits = meta["train"]["ood"]["input"]
    assert set(fits) == {"A", "B", "C"} and all(f is not None for f in fits.values())
    feats, out = _in_distribution(model, samples)
    assert all(0 <= o.input_score <= fits[m]["threshold"] for m, o in out.ood.items())
    assert set(out.ood["C"].to_json()) == {"score", "out", "input_score"}
    # B's input threshold lowered below this window's score: B alone is flagged
    space = model.ood_input.spaces["B"]
    old = float(space.threshold)
    try:
        space.threshold.fill_(out.ood["B"].input_score / 2)
        flagged = predict_window(model, feats, generator=torch.Generator().manual_seed(0))
    finally:
        space.threshold.fill_(old)
    assert flagged.ood["B"].out and flagged.ood["B"].score == out.ood["B"].score
    dropped = predict_window(model, {**feats, "B": None}, generator=torch.Generator().manual_seed(0))
    assert flagged.imputed == ["B"] and flagged.probs == dropped.probs


def test_admc_calibrate_refits_trust_into_a_new_run_and_leaves_the_rest(tmp_path_factory, tmp_path, capsys):
    """``admc calibrate``: same encoders and fusion, the OOD models, temperatures and abstain threshold
    fitted again (here on the run's own data: the same values, as the fit is deterministic); an old
    run without an input model gets one; ``--out`` may not be the run it reads."""
    import json

    from safetensors.torch import load_file, save_file

    from admc.cli import main

    ds_dir, run_dir = cached_run(tmp_path_factory.getbasetemp())
    old = tmp_path / "old"   # the run as saved before the input model existed
    old.mkdir()
    state = {k: v for k, v in load_file(run_dir / "model.safetensors").items() if not k.startswith("ood_input.")}
    save_file(state, old / "model.safetensors", metadata={"format": "admc-run/1"})
    meta = json.loads((run_dir / "run.json").read_text())
    meta["train"]["ood"].pop("input")
    meta.pop("run_id"), meta.pop("weights_sha256")      # and before run.json and weights were bound
    (old / "run.json").write_text(json.dumps(meta))
    new = tmp_path / "new"
    assert main(["calibrate", "--run", str(old), "--data", str(ds_dir), "--out", str(new), "--quiet"]) == 0
    fresh = json.loads((new / "run.json").read_text())
    trained = json.loads((run_dir / "run.json").read_text())
    assert fresh["train"]["ood"] == trained["train"]["ood"] and fresh["train"]["calibration"] == trained["train"]["calibration"]
    assert fresh["train"]["recalibrated"]["data"] == str(ds_dir) and fresh["train"]["itfn"] == trained["train"]["itfn"]
    a, b = load_file(run_dir / "model.safetensors"), load_file(new / "model.safetensors")
    assert set(a) == set(b) and all(bool((a[k] == b[k]).all()) for k in a)
    assert main(["calibrate", "--run", str(new), "--data", str(ds_dir), "--out", str(new), "--quiet"]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_window_is_predicted_in_eval_mode_even_with_a_submodule_left_training(trained):
    """predict_window only reads the modules' mode flags (setting them costs a live window ~1 ms each
    time); a submodule left in training mode (dropout on) must still be switched, or the same window
    would give different answers."""
    from admc.pipeline import predict_window

    model, _meta, samples = trained
    feats = samples[0]
    ref = predict_window(model, feats, generator=torch.Generator().manual_seed(0)).probs
    try:
        for sub in model.modules():
            if isinstance(sub, torch.nn.Dropout) and sub.p > 0:
                sub.train()
        assert any(m.training for m in model.modules())
        got = [predict_window(model, feats, generator=torch.Generator().manual_seed(0)).probs for _ in range(3)]
        assert not any(m.training for m in model.modules())
        assert all(g == ref for g in got)
    finally:
        model.eval()
