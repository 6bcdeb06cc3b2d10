"""Temperature scaling per availability condition, ECE, the abstain threshold, and how a run stores
them (admc/calibration.py; docs/calibration.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from admc.calibration import (TemperatureScaling, choose_abstain_threshold, expected_calibration_error,
                              fit_temperature, pattern_index, reliability_diagram)
from admc.config import CalibrationConfig, ConfigError, TrainConfig
from admc.overrides import OverrideError, with_overrides
from tests.synthetic import cached_run, unbind


def overconfident(n=4000, classes=5, scale=3.0, seed=0):
    """Labels drawn from softmax(true logits) (so those are calibrated) and the logits of a
    classifier ``scale`` times too sure of itself."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1.5, (n, classes))
    p = np.exp(true - true.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return scale * true, labels


def softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from admc.data import load_dataset
    from admc.run import load_run

    ds_dir, run_dir = cached_run(tmp_path_factory.getbasetemp())
    model, meta = load_run(run_dir)
    return model, meta, load_dataset(ds_dir), run_dir


# ------------------------------------------------------------------------------------------ on arrays
def test_an_overconfident_classifier_gets_its_temperature_back_and_a_lower_ece():
    logits, y = overconfident(scale=3.0)
    t = fit_temperature(logits, y)
    assert 2.6 < t < 3.4                                  # the factor it was made overconfident by
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits / t), y)
    assert before > 0.12 and after < 0.03, (before, after)
    # an underconfident one is sharpened (T < 1), and a calibrated one keeps T near 1
    assert 0.4 < fit_temperature(logits / 6.0, y) < 0.6
    assert 0.9 < fit_temperature(logits / 3.0, y) < 1.1


def test_fit_temperature_stays_in_bounds_and_keeps_one_without_data():
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 20)
    y = np.array([0, 1] * 20)                             # always right: NLL wants T -> 0
    assert 0.1 <= fit_temperature(logits, y) < 0.2          # at the bound (the NLL is flat, ~1e-20, there)
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0
    assert fit_temperature(np.zeros((10, 3)), np.arange(10) % 3) == 1.0  # uniform: every T the same


def test_reliability_diagram_and_ece_on_known_values():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55], [0.7, 0.3]])
    y = np.array([0, 1, 0, 0, 0])
    d = reliability_diagram(probs, y, bins=10)
    assert len(d) == 10 and sum(b.count for b in d) == 5
    assert d[0].lower == 0.0 and d[-1].upper == 1.0
    top = d[9]                                            # [0.9, 1]: two at 0.95, one right
    assert top.count == 2 and top.confidence == pytest.approx(0.95) and top.accuracy == pytest.approx(0.5)
    mid = d[5]                                            # [0.5, 0.6): 0.55 right, 0.55 wrong
    assert mid.count == 2 and mid.accuracy == pytest.approx(0.5)
    assert d[7].count == 1 and d[7].accuracy == 1.0 and d[1].count == 0 and d[1].accuracy is None
    # ECE = sum n_b/n |acc_b - conf_b| = 2/5*0.45 + 2/5*0.05 + 1/5*0.3
    assert expected_calibration_error(probs, y, bins=10) == pytest.approx(0.4 * 0.45 + 0.4 * 0.05 + 0.2 * 0.3)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0   # confidence 1 is in the last bin


def test_temperatures_change_confidence_never_the_argmax():
    rng = np.random.default_rng(1)
    scaler = TemperatureScaling(3)
    scaler.temperature.copy_(torch.tensor([0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 0.7]))
    avail = torch.from_numpy(rng.random((500, 3)) < 0.6)
    avail[~avail.any(1), 0] = True
    logits = torch.from_numpy(rng.normal(0, 3, (500, 6))).float()
    scaled = scaler(logits, avail)
    assert torch.equal(scaled.argmax(1), logits.argmax(1))
    assert not torch.allclose(torch.softmax(scaled, 1), torch.softmax(logits, 1))
    # each row is divided by its own pattern's temperature: mask bits - 1
    idx = pattern_index(avail)
    assert torch.allclose(scaled, logits / scaler.temperature[idx][:, None])
    masks = torch.tensor([[True, False, False], [False, True, True], [True, True, True]])
    assert pattern_index(masks).tolist() == [0, 5, 6]
    scaler.set_temperature((False, True, True), 3.0)
    assert scaler.temperature_of((False, True, True)) == 3.0 and scaler.temperature[5] == 3.0


def test_abstain_threshold_keeps_that_share_of_the_correct_windows():
    rng = np.random.default_rng(2)
    conf = rng.random(1000)
    correct = rng.random(1000) < conf                     # the surer, the more often right
    t = choose_abstain_threshold(conf, correct, keep=0.9)
    kept = (conf[correct] >= t).mean()
    assert 0.9 <= kept < 0.902
    assert (conf[~correct] < t).mean() > (conf[correct] < t).mean()   # it gives up more wrong ones
    assert choose_abstain_threshold(conf, correct, keep=1.0) == conf[correct].min()
    assert choose_abstain_threshold(conf, np.zeros(1000, bool), keep=0.9) == 0.0


def test_calibration_settings_are_checked_naming_the_key():
    with pytest.raises(OverrideError, match=r"^calibration.ood_quantile: must be null or in \(0, 1\], got 1.5$"):
        with_overrides(["calibration.ood_quantile=1.5"])
    with pytest.raises(OverrideError, match=r"^calibration.abstain_keep: must be in \(0, 1\]"):
        with_overrides(["calibration.abstain_keep=0"])
    with pytest.raises(ConfigError, match=r"^calibration.abstain_below must be null or in \[0, 1\], got -0.1$"):
        CalibrationConfig(abstain_below=-0.1)
    with pytest.raises(ConfigError, match="calibration.temperature must be true or false"):
        TrainConfig.from_json({"calibration": {"temperature": "yes"}})
    cfg = with_overrides(["calibration.ood_quantile=null", "calibration.abstain_below=0.5"])
    assert cfg.calibration.ood_quantile is None and cfg.calibration.abstain_below == 0.5
    assert TrainConfig.from_json({}).calibration == CalibrationConfig()   # a run.json from before the section


# ------------------------------------------------------------------------------------------ a trained run
def test_training_fits_one_temperature_per_condition_on_validation(trained):
    from admc.masks import all_masks

    model, meta, ds, _ = trained
    cal = meta["train"]["calibration"]
    assert set(cal["conditions"]) == {"A", "B", "C", "A+B", "A+C", "B+C", "full"}
    z, p = model.embed(ds["val"])
    y = torch.from_numpy(ds["val"].labels)
    for k, mask in enumerate(all_masks(3)):
        row = cal["conditions"][model.condition_name(mask)]
        t = model.calibration.temperature_of(mask)
        assert row["samples"] == len(y) and row["temperature"] == pytest.approx(t, abs=1e-4)
        avail = torch.tensor(mask).expand(len(y), -1)
        gen = torch.Generator().manual_seed(1 * 7919 + 104729 + k)      # the fit's generator (seed 1)
        logits = model.predict_logits(z, avail, gen)
        assert t == pytest.approx(fit_temperature(logits, y), rel=1e-3)
        # run.json's numbers are those of the stored temperature, and fitting never raises the NLL
        ece = 100 * expected_calibration_error(torch.softmax(logits / t, 1), y)
        assert row["ece_after"] == pytest.approx(ece, abs=0.01)
        assert row["nll_after"] <= row["nll_before"]
        # calibrated by default, same argmax as the raw softmax
        gen = torch.Generator().manual_seed(0)
        cal_p = model.predict_proba(z, avail, gen)
        raw_p = model.predict_proba(z, avail, torch.Generator().manual_seed(0), calibrated=False)
        assert torch.equal(cal_p.argmax(1), raw_p.argmax(1))
        assert torch.allclose(cal_p, torch.softmax(torch.log(raw_p) / t, 1), atol=1e-5)
    conds = cal["conditions"].values()
    assert sum(c["ece_after"] for c in conds) < sum(c["ece_before"] for c in conds)
    ab = cal["abstain"]
    assert ab["chosen"] == "validation" and ab["keep"] == 0.9 and ab["windows"] == 7 * len(y)
    assert float(model.calibration.abstain_below) == pytest.approx(ab["threshold"], abs=1e-5)
    assert ab["accuracy_confident"] >= ab["accuracy_all"]


def test_evaluate_reports_ece_before_and_after(trained):
    from admc.evaluate import evaluate

    model, _, ds, _ = trained
    res = evaluate(model, ds["test"], seed=0)
    cal = res["calibration"]
    assert set(cal["conditions"]) == set(res["conditions"]) and set(cal["full"]) == {"ece_before", "ece_after"}
    z, p = model.embed(ds["test"])
    y = ds["test"].labels
    full = model.predict_proba(z, p, torch.Generator().manual_seed(0))
    assert cal["full"]["ece_after"] == pytest.approx(100 * expected_calibration_error(full, y), abs=1e-6)
    raw = model.predict_proba(z, p, torch.Generator().manual_seed(0), calibrated=False)
    assert cal["full"]["ece_before"] == pytest.approx(100 * expected_calibration_error(raw, y), abs=1e-6)
    assert cal["average"]["ece_after"] == pytest.approx(np.mean([c["ece_after"] for c in cal["conditions"].values()]))


def _strip(run_dir, out, prefixes):
    """A copy of the run whose model.safetensors lacks the keys starting with ``prefixes``."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(run_dir, out)
    unbind(out)         # a run saved before calibration was also saved before the binding
    state = load_file(out / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith(prefixes)}, out / "model.safetensors",
              metadata={"format": "admc-run/1"})
    return out


def test_a_run_saved_before_calibration_loads_as_uncalibrated(trained, tmp_path):
    from admc.pipeline import predict_window
    from admc.run import RunError, load_run

    model, _, ds, run_dir = trained
    assert (model.calibration.temperature != 1).any() and bool(model.ood.fitted.all())
    old, _ = load_run(_strip(run_dir, tmp_path / "old", ("calibration.", "ood.")))
    assert torch.equal(old.calibration.temperature, torch.ones(7)) and float(old.calibration.abstain_below) == 0
    assert not bool(old.ood.fitted.any())
    z, p = old.embed(ds["test"])
    raw = model.predict_proba(z, p, torch.Generator().manual_seed(0), calibrated=False)
    assert torch.allclose(old.predict_proba(z, p, torch.Generator().manual_seed(0)), raw, atol=1e-6)
    test = ds["test"]
    feats = {m: test.rows[m][test.offsets[m][0]:test.offsets[m][1]] for m in ("A", "B", "C")}
    out = predict_window(old, feats)
    assert out.uncertain is False and out.imputed == [] and out.ood == {"A": None, "B": None, "C": None}
    # a group is all there or absent: one buffer missing of a group is a broken file
    with pytest.raises(RunError, match="key 'ood.threshold' missing"):
        load_run(_strip(run_dir, tmp_path / "partial", ("ood.threshold",)))


def test_non_positive_temperature_is_refused(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from admc.run import RunError, load_run

    _, _, _, run_dir = trained
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    unbind(bad)         # an edited bound run is refused by its SHA-256 first (tests/test_run_binding.py)
    state = load_file(bad / "model.safetensors")
    state["calibration.temperature"][2] = 0.0
    save_file(state, bad / "model.safetensors", metadata={"format": "admc-run/1"})
    with pytest.raises(RunError, match="key 'calibration.temperature': must be > 0"):
        load_run(bad)


def test_info_prints_the_calibration(trained, capsys):
    from admc.cli import main

    _, meta, _, run_dir = trained
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    full = meta["train"]["calibration"]["conditions"]["full"]
    assert f"full {full['ece_before']:.1f} -> {full['ece_after']:.1f}" in out
    assert "uncertain below max probability" in out and "OOD thresholds (val quantile)" in out
    assert json.loads((run_dir / "run.json").read_text())["config"]["calibration"]["ood_quantile"] == 0.99
