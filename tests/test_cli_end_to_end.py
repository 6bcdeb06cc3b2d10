"""train -> info -> eval -> bench on a tiny generated dataset, through the real CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from admc.cli import main
from admc.run import RunError, load_run
from tests.synthetic import FAST, make_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ds_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


@pytest.fixture(scope="module")
def run_dir(ds_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(ds_dir), "--out", str(out), "--seed", "1", "--quiet", *FAST]) == 0
    return out


def _check_scores(d, keys=("wa", "ua", "f1")):
    assert set(d) == set(keys)
    assert all(0.0 <= v <= 100.0 for v in d.values())


def test_train_writes_a_run_that_loads_without_pickle(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.safetensors", "run.json"]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["method"] == "admc" and meta["fusion_mode"] == "per-condition"
    assert meta["schema"]["classes"] == ["class0", "class1", "class2"]
    assert list(meta["schema"]["modalities"]) == ["A", "B", "C"]
    assert meta["command"][:2] == ["admc", "train"] and str(meta["dataset"]["path"]) in meta["command"]
    assert set(meta["train"]["itfn"]) == {"A", "B", "C"}
    assert set(meta["train"]["fusion"]) == {"A", "B", "C", "A+B", "A+C", "B+C", "full"}
    assert meta["train"]["adn"]["val_loss_per_noise_bin"]
    model, _ = load_run(run_dir)
    assert model.mmer and model.uses_adn


def test_info_prints_schema_and_choices(run_dir, capsys):
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "classes   class0, class1, class2" in out and "modality  C: sequence dim 6 encoder lstm" in out
    assert "ADN       conditional" in out


def test_eval_json_structure_and_learning(run_dir, ds_dir, tmp_path):
    f = tmp_path / "eval.json"
    assert main(["eval", "--run", str(run_dir), "--data", str(ds_dir), "--json", str(f), "--quiet",
                 "--missing-rates", "0,0.3", "--runs", "2"]) == 0
    res = json.loads(f.read_text())
    assert res["split"] == "test" and res["dataset"] == "synthetic"
    r = res["methods"]["admc"]
    assert set(r["conditions"]) == {"A", "B", "C", "A+B", "A+C", "B+C"}
    for s in r["conditions"].values():
        _check_scores(s)
    _check_scores(r["full"])
    assert np.isclose(r["average"]["ua"], np.mean([s["ua"] for s in r["conditions"].values()]))
    assert set(r["missing_rate"]) == {"0", "0.3"}
    _check_scores(r["missing_rate"]["0.3"], ("acc", "f1"))
    # the classes are separable: full input is far above chance (33%)
    assert r["full"]["ua"] > 60


def test_eval_refuses_a_dataset_with_another_schema(run_dir, tmp_path, capsys):
    other = make_dataset(tmp_path / "other", dims=(12, 9, 6))
    assert main(["eval", "--run", str(run_dir), "--data", str(other), "--json", str(tmp_path / "x.json")]) != 0
    assert "modality B" in capsys.readouterr().err


def test_corrupt_run_is_refused(run_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text((run_dir / "run.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(RunError, match="model.safetensors"):
        load_run(bad)


def test_bench_end_to_end_and_reuse(ds_dir, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "--data", str(ds_dir), "--out", str(out), "--methods", "admc,zero_fill,late_fusion",
            "--missing-rates", "0,0.2", "--runs", "2", "--quiet", *FAST]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["methods"]) == {"admc", "zero_fill", "late_fusion"}
    for m in res["methods"].values():
        assert set(m["conditions"]) == {"A", "B", "C", "A+B", "A+C", "B+C"}
        _check_scores(m["average"])
        _check_scores(m["full"])
        assert set(m["missing_rate"]) == {"0", "0.2"}
    assert "completion" not in res["methods"]["late_fusion"]
    # averaging the ITFN heads also learns the separable synthetic classes
    assert res["methods"]["late_fusion"]["full"]["ua"] > 50
    comp = res["methods"]["admc"]["completion"]
    assert set(comp["A+B"]) == {"mse", "cos", "mse_zero", "mse_ridge", "ua_generated"}
    md = (out / "results.md").read_text()
    assert "| Method | {A} | {B} | {C} | {A+B} | {A+C} | {B+C} | Average | Pooled (MMIN) | Full |" in md
    # the paper's ablation: both methods share the same frozen ITFN
    from safetensors.torch import load_file
    a = load_file(out / "runs/admc-seed0/model.safetensors")
    z = load_file(out / "runs/zero_fill-seed0/model.safetensors")
    enc = [k for k in a if k.startswith("encoders.")]
    assert enc and all(np.array_equal(a[k].numpy(), z[k].numpy()) for k in enc)
    # a second bench reuses the trained runs
    mtime = (out / "runs/admc-seed0/model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "runs/admc-seed0/model.safetensors").stat().st_mtime_ns == mtime
    assert json.loads((out / "results.json").read_text())["methods"]["admc"]["average"] == res["methods"]["admc"]["average"]


def test_console_script_reports_bad_data_clearly(tmp_path):
    p = subprocess.run([sys.executable, "-m", "admc.cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "meta.json: missing" in p.stderr and "Traceback" not in p.stderr


def test_more_than_three_modalities_default_to_one_shared_mask_aware_fusion(tmp_path):
    ds = make_dataset(tmp_path / "ds4", kinds=("vector",) * 4, dims=(5, 6, 7, 8))
    run = tmp_path / "run4"
    assert main(["train", "--data", str(ds), "--out", str(run), "--quiet", *FAST]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["fusion_mode"] == "shared" and list(meta["train"]["fusion"]) == ["shared"]
    assert len(meta["train"]["fusion"]["shared"]["patterns"]) == 2**4 - 1
    f = tmp_path / "e.json"
    assert main(["eval", "--run", str(run), "--data", str(ds), "--json", str(f), "--quiet"]) == 0
    res = json.loads(f.read_text())["methods"]["admc"]
    assert len(res["conditions"]) == 2**4 - 2
    assert res["full"]["ua"] > 50


def test_predict_window_completes_missing_modalities_and_rejects_bad_input(run_dir, ds_dir):
    from admc.data import load_dataset
    from admc.pipeline import predict_window

    model, _ = load_run(run_dir)
    test = load_dataset(ds_dir, splits=("test",))["test"]
    feats = {m: test.rows[m][test.offsets[m][0]:test.offsets[m][1]] for m in ("A", "B", "C")}
    full = predict_window(model, feats)
    assert full["imputed"] == [] and abs(sum(full["probs"].values()) - 1) < 1e-5
    part = predict_window(model, {"A": feats["A"], "B": None, "C": feats["C"]})
    assert part["imputed"] == ["B"] and part["label"] in model.schema.classes
    with pytest.raises(ValueError, match="modality B: expected"):
        predict_window(model, {"A": feats["A"], "B": np.zeros((1, 3)), "C": None})
    with pytest.raises(ValueError, match="NaN"):
        predict_window(model, {"A": np.full_like(feats["A"], np.nan)})
    with pytest.raises(ValueError, match="no modality"):
        predict_window(model, {"A": None})


def test_run_and_dataset_directories_get_normal_permissions(run_dir, ds_dir):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for p, mode in ((run_dir, 0o777), (run_dir / "model.safetensors", 0o666), (ds_dir, 0o777)):
        assert stat.S_IMODE(p.stat().st_mode) == mode & ~umask, p


def test_threads_sets_torch_threads_and_refuses_zero(tmp_path):
    """``--threads N`` (train, eval, calibrate, bench) sets torch's CPU threads for the command."""
    from tests.synthetic import cached_run

    ds, run = cached_run(tmp_path)
    code = ("import torch; from app.commands import main; "
            f"rc = main(['eval', '--run', {str(run)!r}, '--data', {str(ds)!r}, '--json', {str(tmp_path / 'e.json')!r}, "
            "'--quiet', '--threads', '1']); print(rc, torch.get_num_threads())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.split() == ["0", "1"], (p.stdout, p.stderr)
    p = subprocess.run([sys.executable, "-m", "admc.cli", "eval", "--run", str(run), "--data", str(ds), "--json",
                        str(tmp_path / "e.json"), "--threads", "0"], capture_output=True, text=True)
    assert p.returncode == 2 and "argument --threads" in p.stderr
