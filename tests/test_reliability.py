"""The bad-input and fault matrix of docs/reliability.md (core and CLI): nothing lost, nothing
silently wrong, every error one line naming the file, key or argument."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from admc.cli import main
from admc.data import Modality, Schema
from tests.synthetic import FAST, make_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = [*FAST, "--set", "itfn.epochs=2", "--set", "adn.epochs=2", "--set", "fusion.epochs=2",
        "--set", "itfn.emb_dim=16"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds", n_per_split=(24, 9, 9), dims=(4, 3, 2))


def tree(path: Path) -> dict:
    """Every file under ``path`` with its bytes (to compare before and after)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def tiny_model(schema: Schema | None = None, method: str = "admc"):
    from admc.config import TrainConfig
    from admc.pipeline import ADMCModel

    schema = schema or Schema((Modality("A", 4, "vector", "mlp"), Modality("B", 3, "vector", "mlp")), ("x", "y"))
    cfg = TrainConfig(method=method)
    cfg.itfn.emb_dim = 8
    cfg.adn.d_model, cfg.adn.ff, cfg.adn.layers, cfg.adn.heads = 16, 16, 1, 2
    cfg.fusion.d_model, cfg.fusion.ff, cfg.fusion.layers, cfg.fusion.heads, cfg.fusion.hidden = 8, 8, 1, 2, 8
    return ADMCModel(schema, cfg)


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("admc: error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


# --- nothing lost: --out ---------------------------------------------------------------------------

def test_train_refuses_out_equal_to_data_and_keeps_the_dataset(ds, capsys):
    before = tree(ds)
    assert main(["train", "--data", str(ds), "--out", str(ds), "--quiet", *TINY]) == 2
    one_line_error(capsys, "--out", "--data")
    assert tree(ds) == before


@pytest.mark.parametrize("where", ["parent", "inside"])
def test_train_refuses_out_containing_or_inside_data(ds, capsys, where):
    out = ds.parent if where == "parent" else ds / "run"
    before = tree(ds)
    assert main(["train", "--data", str(ds), "--out", str(out), "--quiet", *TINY]) == 2
    one_line_error(capsys, "--out", "--data")
    assert tree(ds) == before and not (ds / "run").exists()


def test_train_refuses_a_directory_that_is_not_a_run(ds, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["train", "--data", str(ds), "--out", str(out), "--quiet", *TINY]) == 2
    one_line_error(capsys, f"--out {out}", "not empty")
    assert (out / "thesis.tex").read_text() == "years of work"
    # a run directory with a file of the user's in it is not ours either
    from admc.run import save_run

    run = save_run(tiny_model(), tmp_path / "run", {})
    (run / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(ds), "--out", str(run), "--overwrite", "--quiet", *TINY]) == 2
    assert (run / "notes.txt").read_text() == "mine"


def test_train_replaces_a_run_only_with_overwrite(ds, tmp_path, capsys):
    from admc.run import save_run

    run = save_run(tiny_model(), tmp_path / "run", {}, ["old"])
    before = tree(run)
    assert main(["train", "--data", str(ds), "--out", str(run), "--quiet", *TINY]) == 2
    one_line_error(capsys, "--overwrite", str(run))
    assert tree(run) == before
    assert main(["train", "--data", str(ds), "--out", str(run), "--overwrite", "--quiet", *TINY]) == 0
    assert json.loads((run / "run.json").read_text())["command"][:2] == ["admc", "train"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or parked leftovers


def test_train_refuses_a_file_or_a_dataset_as_out(ds, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", "--data", str(ds), "--out", str(f), "--quiet"]) == 2
    one_line_error(capsys, "not a directory")
    other = make_dataset(tmp_path / "other", n_per_split=(6, 3, 3))
    before = tree(other)
    assert main(["train", "--data", str(ds), "--out", str(other), "--overwrite", "--quiet"]) == 2
    one_line_error(capsys, "feature dataset")
    assert tree(other) == before


def test_save_run_refuses_foreign_content_even_when_called_directly(tmp_path):
    """bench writes OUT/runs/<method>-seed<k> with save_run: a foreign directory there survives."""
    from admc.outdir import OutputError
    from admc.run import save_run

    d = tmp_path / "runs" / "admc-seed0"
    d.mkdir(parents=True)
    (d / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        save_run(tiny_model(), d, {})
    assert (d / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in d.parent.iterdir()) == ["admc-seed0"]


def test_bench_refuses_foreign_out_and_out_inside_data(ds, tmp_path, capsys):
    out = tmp_path / "b"
    (out / "runs" / "admc-seed0").mkdir(parents=True)
    (out / "runs" / "admc-seed0" / "keep.txt").write_text("mine")
    assert main(["bench", "--data", str(ds), "--out", str(out), "--quiet", *TINY]) == 2
    one_line_error(capsys, f"--out {out}")
    assert (out / "runs" / "admc-seed0" / "keep.txt").read_text() == "mine"
    assert main(["bench", "--data", str(ds), "--out", str(ds), "--quiet", *TINY]) == 2
    one_line_error(capsys, "--data")


def test_interrupted_save_keeps_the_old_run(tmp_path, monkeypatch):
    """Ctrl-C while the new run is being installed: the old run stays whole under its name."""
    import admc.outdir
    from admc.run import save_run

    run = save_run(tiny_model(), tmp_path / "run", {}, ["old"])
    before = tree(run)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("admc.run.save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_run(tiny_model(), run, {}, ["new"])
    assert tree(run) == before
    monkeypatch.undo()
    monkeypatch.setattr(admc.outdir, "_exchange", lambda a, b: False)  # the two-rename fallback
    real_rename = Path.rename

    def rename(self, target):
        if ".tmp-" in self.name:
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        save_run(tiny_model(), run, {}, ["new"])
    monkeypatch.undo()
    assert tree(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


KILLED = textwrap.dedent("""
    import os, shutil, sys
    sys.path.insert(0, {root!r})
    from tests.test_reliability import tiny_model
    from admc.run import save_run
    from admc.data import load_dataset, write_dataset
    real = shutil.rmtree

    def killed(path, *a, **k):  # the process dies while deleting the old directory
        files = sorted(p for p in __import__("pathlib").Path(path).iterdir())
        os.remove(files[0])
        os._exit(9)

    shutil.rmtree = killed
    if sys.argv[1] == "run":
        save_run(tiny_model(), sys.argv[2], {{}}, ["new"])
    else:
        ds = load_dataset(sys.argv[2])
        write_dataset(sys.argv[2], "new", ds.schema, ds.splits)
""")


@pytest.mark.parametrize("kind", ["run", "dataset"])
def test_killed_while_replacing_leaves_a_complete_directory(tmp_path, kind):
    """A process killed at the worst moment (deleting the old directory) leaves the old or the new
    content complete under the final name, never a half-deleted one."""
    from admc.data import load_dataset
    from admc.run import load_run, save_run

    if kind == "run":
        target = save_run(tiny_model(), tmp_path / "run", {}, ["old"])
    else:
        target = make_dataset(tmp_path / "ds", n_per_split=(6, 3, 3))
    p = subprocess.run([sys.executable, "-c", KILLED.format(root=str(ROOT)), kind, str(target)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 9, p.stderr
    if kind == "run":
        load_run(target)
    else:
        load_dataset(target)


# --- nothing lost: admc import ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def mintrec(tmp_path_factory):
    from tests.fixtures_importers import make_mintrec_release

    return make_mintrec_release(tmp_path_factory.mktemp("mintrec") / "MIntRec", per_split=(3, 2, 2), text_dim=8)


def test_import_refuses_out_equal_to_root_and_foreign_out(mintrec, tmp_path, capsys):
    before = tree(mintrec.root)
    args = ["import", "mintrec", "--root", str(mintrec.root), "--text-features", str(mintrec.text_features), "--quiet"]
    assert main([*args, "--out", str(mintrec.root)]) == 2
    one_line_error(capsys, "--out", "--root")
    assert main([*args, "--out", str(mintrec.root.parent)]) == 2
    one_line_error(capsys, "--out", "contains")
    assert tree(mintrec.root) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("mine")
    assert main([*args, "--out", str(mine)]) == 2
    one_line_error(capsys, f"--out {mine}")
    assert (mine / "a.txt").read_text() == "mine"


def test_import_replaces_a_dataset_only_with_overwrite(mintrec, tmp_path, capsys):
    from admc.data import load_dataset

    args = ["import", "mintrec", "--root", str(mintrec.root), "--text-features", str(mintrec.text_features),
            "--out", str(tmp_path / "o"), "--quiet"]
    assert main(args) == 0
    before = tree(tmp_path / "o")
    assert main(args) == 2
    one_line_error(capsys, "--overwrite")
    assert tree(tmp_path / "o") == before
    assert main([*args, "--overwrite"]) == 0
    load_dataset(tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_mmin_import_refuses_out_inside_root(tmp_path, capsys):
    from tests.fixtures_importers import make_mmin_release

    rel = make_mmin_release(tmp_path / "mmin", per_speaker=1, n_folds=1)
    before = tree(rel.root)
    assert main(["import", "mmin-iemocap", "--root", str(rel.root), "--fold", "1", "--out", str(rel.root / "A"),
                 "--quiet"]) == 2
    one_line_error(capsys, "--out", "--root")
    assert tree(rel.root) == before
