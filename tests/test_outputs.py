"""One rule for every file the project writes (admc/outdir.py): an output is never an input nor
inside one, a path that exists and was not written by that command is refused unless
``--overwrite``, and writes are atomic.  The table below walks every output option of every
command; a test fails when a command gains an output option the table does not cover."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest

from admc.outdir import AtomicFile, check_out_file, describe
from app.cli import build_parser as app_parser
from app.cli import main as app_main
from app.checkpoint import DEFAULT_CHECKPOINT
from app.commands import build_parser as admc_parser
from app.commands import main as admc
from tests.synthetic import cached_run, make_dataset

# every output option: (command words, option) -> what it writes
OUTPUTS = {
    (("train",), "--out"): "run directory",
    (("calibrate",), "--out"): "run directory",
    (("eval",), "--json"): "results file",
    (("bench",), "--out"): "bench directory",
    (("import", "mmin-iemocap"), "--out"): "dataset directory",
    (("import", "mintrec"), "--out"): "dataset directory",
    (("extract",), "--out"): "dataset directory",
    (("manifest", "iemocap"), "--out"): "manifest file",
    (("manifest", "mintrec"), "--out"): "manifest file",
    (("manifest", "ravdess"), "--out"): "manifest file",
}
APP_OUTPUTS = {"--out": "JSONL results file", "--trace": "stage trace (JSON lines)"}


def _output_options(parser: argparse.ArgumentParser, words=()):
    """(command words, option) for every option that names something written (--out, --json)."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _output_options(sub, (*words, name))
        elif action.dest in ("out", "json", "trace") and action.option_strings and action.nargs != 0:  # not a flag
            found.add((tuple(words), action.option_strings[0]))
    return found


def test_every_output_option_is_covered_by_this_table():
    assert _output_options(admc_parser()) == set(OUTPUTS)
    assert {o for (_, o) in _output_options(app_parser())} == set(APP_OUTPUTS)
    # and every one of them can be told to replace what is there (or is a directory rule of its own)
    for words, opt in OUTPUTS:
        p = admc_parser()
        for w in words:
            p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[w]
        dests = {a.dest for a in p._actions}
        assert "overwrite" in dests or words == ("bench",), words


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


def one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def snapshot(path: Path) -> dict:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- the eight data-loss cases of the reliability matrix (all were exit 0) -------------------------

def test_eval_json_over_the_datasets_meta_or_the_runs_run_json_is_refused(trained, capsys):
    ds, run = trained
    for victim, opt in ((ds / "meta.json", "--data"), (run / "run.json", "--run")):
        before = victim.read_bytes()
        for extra in ([], ["--overwrite"]):
            assert admc(["eval", "--run", str(run), "--data", str(ds), "--json", str(victim), "--quiet", *extra]) == 2
            one_line(capsys, "--json", opt)
            assert victim.read_bytes() == before


def test_eval_json_inside_another_run_or_over_a_users_file(trained, tmp_path, capsys):
    ds, run = trained
    other = tmp_path / "other-run"
    shutil.copytree(run, other)
    before = snapshot(other)
    assert admc(["eval", "--run", str(run), "--data", str(ds), "--json", str(other / "run.json"), "--overwrite"]) == 2
    one_line(capsys, "lies inside the admc run directory")
    assert snapshot(other) == before
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert admc(["eval", "--run", str(run), "--data", str(ds), "--json", str(mine), "--quiet"]) == 2
    one_line(capsys, f"--json {mine}", "--overwrite")
    assert mine.read_text() == '{"my": "notes"}'
    # its own results file is replaced on a rerun; a user's file only with --overwrite
    res = tmp_path / "res.json"
    assert admc(["eval", "--run", str(run), "--data", str(ds), "--json", str(res), "--quiet"]) == 0
    assert json.loads(res.read_text())["format"] == "admc-eval/1"
    assert admc(["eval", "--run", str(run), "--data", str(ds), "--json", str(res), "--quiet"]) == 0
    assert admc(["eval", "--run", str(run), "--data", str(ds), "--json", str(mine), "--quiet", "--overwrite"]) == 0
    assert "methods" in json.loads(mine.read_text())
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_manifest_out_over_meta_json_or_a_users_file_is_refused(trained, tmp_path, capsys):
    ds, _ = trained
    root = tmp_path / "release"
    root.mkdir()
    before = (ds / "meta.json").read_bytes()
    for extra in ([], ["--overwrite"]):
        assert admc(["manifest", "ravdess", "--root", str(root), "--out", str(ds / "meta.json"), *extra]) == 2
        one_line(capsys, "--out", "feature dataset")
    assert (ds / "meta.json").read_bytes() == before
    mine = tmp_path / "mine.csv"
    mine.write_text("path,label,split\nmy.wav,happy,train\n")
    assert admc(["manifest", "ravdess", "--root", str(root), "--out", str(mine)]) == 2
    one_line(capsys, f"--out {mine}", "--overwrite")
    assert mine.read_text().startswith("path,label,split\nmy.wav")
    assert admc(["manifest", "ravdess", "--root", str(root), "--out", str(root / "m.csv")]) == 2
    one_line(capsys, "--root")


def test_extract_out_over_another_dataset_or_a_users_folder_is_refused(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", n_per_split=(6, 3, 3))
    man = tmp_path / "m.csv"
    man.write_text("path,label,split\na.wav,x,train\nb.wav,x,val\nc.wav,x,test\n")
    before = snapshot(ds)
    assert admc(["extract", "--manifest", str(man), "--out", str(ds), "--quiet"]) == 2
    one_line(capsys, f"--out {ds}", "--overwrite")
    assert snapshot(ds) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.npz").write_bytes(b"my own archive")
    (mine / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        assert admc(["extract", "--manifest", str(man), "--out", str(mine), "--quiet", *extra]) == 2
        one_line(capsys, f"--out {mine}", "not an admc")
    assert (mine / "train.npz").read_bytes() == b"my own archive"
    assert admc(["extract", "--manifest", str(man), "--out", str(tmp_path), "--quiet"]) == 2
    one_line(capsys, "--manifest")


def test_bench_out_over_a_folder_with_the_users_results_md_is_refused(trained, tmp_path, capsys):
    ds, _ = trained
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.md").write_text("# my results")
    assert describe(out) == "foreign"
    assert admc(["bench", "--data", str(ds), "--out", str(out), "--quiet"]) == 2
    one_line(capsys, f"--out {out}", "not an admc")
    assert (out / "results.md").read_text() == "# my results"
    (out / "results.json").write_text('{"cells": 1}')   # not the shape admc bench writes either
    assert describe(out) == "foreign"


def test_app_out_onto_its_own_source_or_the_checkpoint_is_refused(tmp_path, capsys):
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42 my recording")
    before = clip.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert app_main(["--source", str(clip), "--no-ui", "--out", str(clip), *extra]) == 2
        one_line(capsys, "--out", "--source")
        assert clip.read_bytes() == before
    run_json = DEFAULT_CHECKPOINT / "run.json"
    before = run_json.read_bytes()
    assert app_main(["--source", str(clip), "--no-ui", "--out", str(run_json), "--overwrite"]) == 2
    one_line(capsys, "--out", "--checkpoint")
    assert run_json.read_bytes() == before
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my notes\n")
    assert app_main(["--source", str(clip), "--no-ui", "--out", str(mine)]) == 2
    one_line(capsys, f"--out {mine}", "--overwrite")
    assert mine.read_text() == "my notes\n"


def test_app_trace_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    port = ["--port", "1"]                       # never reached: the trace is checked first
    assert app_main(["--trace", str(notes), *port]) == 2
    one_line(capsys, f"--trace {notes}", "--overwrite")
    assert notes.read_text() == "my notes\n"
    run_json = DEFAULT_CHECKPOINT / "run.json"
    before = run_json.read_bytes()
    assert app_main(["--trace", str(run_json), "--overwrite", *port]) == 2
    one_line(capsys, "--trace", "--checkpoint")
    assert run_json.read_bytes() == before
    own = tmp_path / "trace.jsonl"              # a trace the app wrote is replaced without asking
    own.write_text(json.dumps({"ev": "session", "wall": 1.0, "session": "x"}) + "\n")
    assert check_out_file(own, "trace", overwrite=False) == own


# --- the helper itself --------------------------------------------------------------------------------

def test_check_out_file_recognizes_only_its_own_kind(tmp_path):
    res = tmp_path / "r.jsonl"
    res.write_text(json.dumps({k: None for k in ("t", "streams", "reasons", "imputed", "probs", "label",
                                                 "transcript", "latency_ms", "uncertain", "ood")}) + "\n")
    assert check_out_file(res, "jsonl", overwrite=False) == res
    with pytest.raises(ValueError, match="--overwrite"):
        check_out_file(res, "eval", overwrite=False)     # a JSONL of the app is not an eval results file
    with pytest.raises(ValueError, match="--overwrite"):
        check_out_file(res, "manifest", overwrite=False)  # a manifest cannot be told apart: always asked
    assert check_out_file(res, "manifest", overwrite=True) == res
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'x'} is not a directory")):
        (tmp_path / "x").write_text("")
        check_out_file(tmp_path / "x" / "r.json", "eval", overwrite=True)


def test_atomic_file_keeps_the_old_content_on_failure_and_the_finished_lines_on_interrupt(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(OSError):
        with AtomicFile(path, install_partial=True) as f:
            f.write("new line\n")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "old\n"
    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(path, install_partial=True) as f:
            f.write("finished window\n")
            raise KeyboardInterrupt
    assert path.read_text() == "finished window\n"
    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(path) as f:
            f.write("half")
            raise KeyboardInterrupt
    assert path.read_text() == "finished window\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
