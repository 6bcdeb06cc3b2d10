"""admc bench's protocols and outputs on tiny generated datasets: cross-validation folds, MMIN's pooled
average, Table 4 (generated features by start step), Table 5 (full input), Figure 3, the best value of
each column in bold, and --resume after the process is killed."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from admc.bench_report import Cell, Num, table
from admc.cells import read_cell, write_cell
from admc.cli import main
from tests.synthetic import FAST, make_dataset

REPO = Path(__file__).resolve().parents[1]


# ---- fast units -------------------------------------------------------------------------------------

def test_a_cell_is_reused_only_whole_and_for_its_own_key(tmp_path):
    f = tmp_path / "cells" / "admc-seed0.json"
    key = {"method": "admc", "seed": 0, "config": {"grid": (5, 20)}}
    stored = write_cell(f, key, {"eval": {"ua": 71.25}, "steps": (5, 20)})
    assert stored == {"eval": {"ua": 71.25}, "steps": [5, 20]}  # as it reads back
    assert read_cell(f, key) == stored
    assert read_cell(f, {**key, "seed": 1}) is None                  # computed for other settings
    assert [p.name for p in f.parent.iterdir()] == ["admc-seed0.json"]  # no temporary file left
    text = f.read_text()
    f.write_text(text.replace("71.25", "99.25"))                    # valid JSON, edited content
    assert read_cell(f, key) is None
    f.write_text(text[: len(text) // 2])                             # cut while being written
    assert read_cell(f, key) is None
    f.write_text(text)
    assert read_cell(f, key) == stored


def test_best_value_per_column_is_bold():
    rows = [[Cell("{0}/{1}", (Num(50.0), Num(60.0))), Cell("{0}", (Num(0.5, "min", 3),))],
            [Cell("{0}/{1}", (Num(55.0), Num(58.0))), Cell("{0}", (Num(0.4, "min", 3),))],
            [Cell("{0}/{1}", (Num(55.04), Num(40.0))), None],
            [Cell("{0}/{1}", (Num(99.0), Num(99.0))), Cell("{0}", (Num(0.1, "min", 3),))]]
    md = table(["Method", "WA/UA", "MSE"], ["a", "b", "c", "reference"], rows, ranked=[True, True, True, False])
    assert md[2:] == ["| a | 50.0/**60.0** | 0.500 |",
                      "| b | **55.0**/58.0 | **0.400** |",
                      "| c | **55.0**/40.0 | - |",        # a tie as shown: both bold
                      "| reference | 99.0/99.0 | 0.100 |"]  # not ranked


def test_progress_bars_are_quiet_off_a_terminal_and_with_quiet():
    from admc.runtime import progress, set_quiet

    assert progress(range(3)).disable  # pytest's stderr is not a terminal
    set_quiet(True)
    try:
        assert progress(range(3)).disable
    finally:
        set_quiet(False)


def test_bench_output_with_cells_and_figures_is_ours_and_a_stray_file_is_not(tmp_path):
    from admc.outdir import describe

    (tmp_path / "cells").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "cells" / "admc-seed0.json").write_text("{}")
    (tmp_path / "cells" / ".admc-seed1.json.tmp-x1y2").write_text("{")  # left by a killed write
    (tmp_path / "figures" / "figure3_admc.png").write_bytes(b"\x89PNG")
    assert describe(tmp_path) == "bench"
    (tmp_path / "cells" / "notes.txt").write_text("mine")
    assert describe(tmp_path) == "foreign"


def test_folds_of_another_schema_are_refused_naming_the_directory(tmp_path, capsys):
    a = make_dataset(tmp_path / "fold1")
    b = make_dataset(tmp_path / "fold2", dims=(12, 9, 6), seed=1)
    out = tmp_path / "b"
    assert main(["bench", "--folds", f"{a},{b}", "--out", str(out), "--quiet", *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--folds {b}" in err[0] and "modality B" in err[0]
    assert not (out / "runs").exists()
    assert main(["bench", "--folds", f"{a},{a}", "--out", str(out), "--quiet", *FAST]) == 2
    assert "listed twice" in capsys.readouterr().err


# ---- one cross-validated bench: every table and the figure --------------------------------------------

@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    base = tmp_path_factory.mktemp("cv")
    folds = [make_dataset(base / f"fold{k}", seed=k) for k in (1, 2)]
    out = base / "bench"
    assert main(["bench", "--folds", ",".join(map(str, folds)), "--out", str(out), "--methods", "admc_paper,zero_fill",
                 "--missing-rates", "0,0.3", "--figures", "--quiet", *FAST]) == 0
    return folds, out, json.loads((out / "results.json").read_text())


def _cell(out, stem):
    return json.loads((out / "cells" / f"{stem}.json").read_text())["result"]


@pytest.mark.slow
def test_folds_give_mean_and_std_over_folds_in_every_table(cv):
    folds, out, res = cv
    assert [f["path"] for f in res["folds"]] == [str(f) for f in folds]
    assert res["cells"] == {"total": 4, "reused": 0}
    for m in ("admc_paper", "zero_fill"):
        r = res["methods"][m]
        per = [_cell(out, f"fold{k}-{m}-seed0") for k in (1, 2)]
        for part in ("average", "pooled", "full"):
            vals = [c["eval"][part]["ua"] for c in per]
            assert r[part]["ua"] == pytest.approx(np.mean(vals)) and r["std"][part]["ua"] == pytest.approx(np.std(vals))
            assert [p[part]["ua"] for p in r["per_fold"]] == pytest.approx(vals)
        assert r["std"]["missing_rate"]["0.3"]["acc"] == pytest.approx(np.std([c["eval"]["missing_rate"]["0.3"]["acc"]
                                                                               for c in per]))
        f = res["full_modality"]["methods"][m]
        assert (f["ua"], f["std"]["ua"]) == (r["full"]["ua"], r["std"]["full"]["ua"])
    g = res["generated"]["admc_paper"]
    per = [_cell(out, f"fold{k}-admc_paper-seed0")["generated"] for k in (1, 2)]
    assert g["by_start_step"]["20"]["A+B"]["C"]["mse"] == pytest.approx(np.mean(
        [p["by_start_step"]["20"]["A+B"]["C"]["mse"] for p in per]))
    assert g["std"]["own"]["A"]["B"]["ua"] == pytest.approx(np.std([p["own"]["A"]["B"]["ua"] for p in per]))
    md = (out / "results.md").read_text()
    assert "2 fold(s) × 1 seed(s)" in md and "## Per fold" in md and "| Method | synthetic | synthetic |" in md


@pytest.mark.slow
def test_pooled_average_is_mmins_every_condition_pooled(cv):
    """Pooled = WA/UA once over the test samples of all six conditions (MMIN's "total"), computed here
    from the model's own predictions, apart from admc.evaluate."""
    from sklearn.metrics import accuracy_score, recall_score

    from admc.data import load_dataset, missing_conditions
    from admc.run import load_run

    folds, out, _ = cv
    model, _ = load_run(out / "runs" / "fold1-zero_fill-seed0")
    test = load_dataset(folds[0], splits=("test",))["test"]
    z, present = model.embed(test)
    ys, preds = [], []
    for _, mask in missing_conditions(model.schema.names):
        avail = present & torch.tensor(mask)
        preds.append(model.predict_proba(z, avail, torch.Generator().manual_seed(0)).argmax(-1).numpy())
        ys.append(test.labels)
    y, p = np.concatenate(ys), np.concatenate(preds)
    pooled = _cell(out, "fold1-zero_fill-seed0")["eval"]["pooled"]
    assert pooled["wa"] == pytest.approx(100 * accuracy_score(y, p))
    assert pooled["ua"] == pytest.approx(100 * recall_score(y, p, average="macro"))


@pytest.mark.slow
def test_generated_features_by_start_step_table4(cv):
    folds, out, res = cv
    g = res["generated"]["admc_paper"]
    assert set(g["by_start_step"]) == {"5", "20"} and "zero_fill" not in res["generated"]
    for n, by_cond in g["by_start_step"].items():
        assert set(by_cond) == {"A", "B", "C", "A+B", "A+C", "B+C"}
        assert set(by_cond["A"]) == {"B", "C"} and set(by_cond["A+B"]) == {"C"}
        for d in (d for c in by_cond.values() for d in c.values()):
            assert set(d) == {"wa", "ua", "mse", "cos"} and 0 <= d["ua"] <= 100 and d["mse"] >= 0 and -1 <= d["cos"] <= 1
    # the start step matters, and the model's own n is one of the grid's
    cell = _cell(out, "fold1-admc_paper-seed0")["generated"]
    assert cell["by_start_step"]["5"]["A"]["B"]["mse"] != cell["by_start_step"]["20"]["A"]["B"]["mse"]
    n = json.loads((out / "runs" / "fold1-admc_paper-seed0" / "run.json").read_text())["start_step"]
    assert cell["own"] == cell["by_start_step"][str(n)]
    assert set(g["real"]) == {"A", "B", "C"}
    md = (out / "results.md").read_text()
    assert "## Generated features of admc_paper by start step n" in md
    assert "| Generation | n=5 WA/UA | n=5 MSE | n=5 cos | n=20 WA/UA | n=20 MSE | n=20 cos | real WA/UA |" in md
    assert "| A+B → C |" in md


@pytest.mark.slow
def test_full_input_study_table5(cv):
    _, out, res = cv
    fm = res["full_modality"]
    assert fm["methods"]["admc_paper"]["role"] == "mmer" and fm["methods"]["zero_fill"]["role"] == "itfn"
    assert any(n.startswith("Jointly_training") for n in fm["notes"])
    md = (out / "results.md").read_text()
    assert "## Full input (paper Table 5)" in md and "zero_fill: Use_ITFN" in md and "admc_paper: MMER" in md


@pytest.mark.slow
def test_figure3_is_a_png_per_completing_method(cv):
    from PIL import Image

    _, out, res = cv
    assert res["figures"] == {"admc_paper": "figures/figure3_admc_paper.png"}
    png = out / res["figures"]["admc_paper"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        w, h = im.size
        assert w > 1.5 * h > 300  # two panels (n = 5, 20) side by side
        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 20  # something is drawn
    assert "![Figure 3, admc_paper](figures/figure3_admc_paper.png)" in (out / "results.md").read_text()


def _table(md: str, heading: str) -> list[list[str]]:
    block = md.split(heading, 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| Method")]


@pytest.mark.slow
def test_results_md_marks_the_best_value_of_each_column(cv):
    _, out, res = cv
    md = (out / "results.md").read_text()
    rows = _table(md, "## Missing-modality conditions")
    methods = [r[0] for r in rows]
    assert methods == ["admc_paper", "zero_fill"]
    conds = ["A", "B", "C", "A+B", "A+C", "B+C"]
    for j, col in enumerate([*conds, "average", "pooled", "full"], start=1):
        for k, metric in enumerate(("wa", "ua")):
            vals = [res["methods"][m][col][metric] if col in ("average", "pooled", "full")
                    else res["methods"][m]["conditions"][col][metric] for m in methods]
            shown = [round(v, 1) for v in vals]
            for r, v in zip(rows, shown):
                part = re.match(r"(\S+)/(\S+) ", r[j]).group(k + 1)
                assert (part == f"**{v:.1f}**") == (v == max(shown)), (col, metric, r)


# ---- --resume after a kill ------------------------------------------------------------------------------

def _bench_cmd(ds, out, *extra):
    return [sys.executable, "-m", "admc.cli", "bench", "--data", str(ds), "--out", str(out),
            "--methods", "zero_fill,admc", "--missing-rates", "0,0.3", *FAST, *extra]


def _same_numbers(a: dict, b: dict) -> None:
    for k in ("seconds", "cells"):
        a.pop(k), b.pop(k)
    assert a == b


@pytest.mark.slow
def test_resume_after_sigkill_reuses_the_finished_cell_and_gives_the_uninterrupted_results(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = tmp_path / "killed"
    first = out / "cells" / "zero_fill-seed0.json"
    proc = subprocess.Popen(_bench_cmd(ds, out, "--quiet"), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert first.exists() and not (out / "cells" / "admc-seed0.json").exists()  # killed during admc
    assert not (out / "results.json").exists()
    before = (first.stat().st_mtime_ns, first.read_bytes())

    resumed = subprocess.run(_bench_cmd(ds, out, "--resume"), cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"reused cell {first}" in resumed.stdout and "training admc-seed0" in resumed.stdout
    assert "training zero_fill" not in resumed.stdout
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    res = json.loads((out / "results.json").read_text())
    assert res["cells"] == {"total": 2, "reused": 1}

    # the uninterrupted run in the same environment (one thread: a float sum over two threads may
    # round differently, and the pytest process's thread count depends on the tests before it)
    whole = tmp_path / "whole"
    done = subprocess.run(_bench_cmd(ds, whole, "--quiet"), cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    _same_numbers(res, json.loads((whole / "results.json").read_text()))

    # a cell whose content no longer matches its hash is measured again (from its reused run), not reused
    cell = out / "cells" / "admc-seed0.json"
    doc = json.loads(cell.read_text())
    doc["result"]["eval"]["average"]["ua"] = 0.0
    cell.write_text(json.dumps(doc))
    capsys.readouterr()
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    try:  # in this process with one thread (torch's and numpy's BLAS), as the runs above: a sum over two
        torch.set_num_threads(1)  # threads rounds differently on some CPUs (one without AVX2 did)
        with threadpool_limits(limits=1):
            assert main(_bench_cmd(ds, out, "--resume")[3:]) == 0
    finally:
        torch.set_num_threads(threads)
    again = capsys.readouterr().out
    assert f"reusing run {out / 'runs' / 'admc-seed0'}" in again and f"reused cell {first}" in again
    assert f"reused cell {cell}" not in again
    _same_numbers(json.loads((out / "results.json").read_text()), json.loads((whole / "results.json").read_text()))
