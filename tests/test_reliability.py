"""The bad-input and fault matrix of docs/reliability.md (core and CLI): nothing lost, nothing
silently wrong, every error one line naming the file, key or argument."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from admc.cli import main
from admc.data import Modality, Schema
from tests.synthetic import FAST, make_dataset, unbind

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
    assert re.match(r"admc( [a-z-]+)*: error: ", err), err
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


# --- small hostile files: .npz ---------------------------------------------------------------------

def _copy_dataset(ds: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(ds, dst)
    return dst


def _declare_size(zip_path: Path, member: str, size: int) -> None:
    """Patch the uncompressed size a zip declares for ``member`` (local header and central directory)."""
    import struct
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        info = z.getinfo(member)
    data = bytearray(zip_path.read_bytes())
    struct.pack_into("<I", data, info.header_offset + 22, size)
    name = member.encode()
    cd = -1
    while True:
        cd = data.find(b"PK\x01\x02", cd + 1)
        assert cd >= 0
        n = struct.unpack_from("<H", data, cd + 28)[0]
        if bytes(data[cd + 46: cd + 46 + n]) == name:
            struct.pack_into("<I", data, cd + 24, size)
            break
    zip_path.write_bytes(bytes(data))


def _rewrite_split(path: Path, extra: dict | None = None, compressed: bool = False, **replace) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(replace)
    arrays.update(extra or {})
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def test_text_file_named_npz_says_it_is_not_a_zip(ds, tmp_path):
    from admc.data import DatasetError, load_dataset

    d = _copy_dataset(ds, tmp_path / "d")
    (d / "train.npz").write_text("labels,ids\n1,a\n")
    with pytest.raises(DatasetError) as e:
        load_dataset(d)
    assert "train.npz" in str(e.value) and "not a zip archive" in str(e.value) and "pickl" not in str(e.value)


def test_npy_header_declaring_4_gb_says_so_before_allocating(ds, tmp_path):
    import zipfile

    from admc.data import DatasetError, load_dataset

    d = _copy_dataset(ds, tmp_path / "d")
    import io

    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<i4", "fortran_order": False, "shape": (1_000_000_000,)})
    f.write(np.arange(24, dtype="<i4").tobytes())
    buf = f.getvalue()
    with zipfile.ZipFile(d / "train.npz") as z:
        members = {i.filename: z.read(i) for i in z.infolist() if i.filename != "labels.npy"}
    with zipfile.ZipFile(d / "train.npz", "w") as z:      # 'labels' replaced by the lying member
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("labels.npy", buf)
    with pytest.raises(DatasetError) as e:
        load_dataset(d)
    msg = str(e.value)
    assert "train.npz: key 'labels'" in msg and "(1000000000,)" in msg and "3.7 GiB" in msg and "pickl" not in msg


def test_unused_member_declaring_3_gib_is_never_read(ds, tmp_path):
    from admc.data import load_dataset

    import io
    import zipfile

    d = _copy_dataset(ds, tmp_path / "d")
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (3 * 2**28,)})
    f.write(bytes(4000))
    with zipfile.ZipFile(d / "train.npz", "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("junk.npy", f.getvalue())
    _declare_size(d / "train.npz", "junk.npy", 3 * 2**30)
    load_dataset(d)  # reads only the keys the format names


def test_named_member_declaring_more_than_deflate_can_produce_is_refused(ds, tmp_path):
    from admc.data import DatasetError, load_dataset

    d = _copy_dataset(ds, tmp_path / "d")
    _rewrite_split(d / "train.npz", compressed=True)
    _declare_size(d / "train.npz", "A.npy", 3 * 2**30)
    with pytest.raises(DatasetError, match=r"train\.npz: key 'A': zip header declares 3\.0 GiB uncompressed"):
        load_dataset(d)


def test_highly_compressed_member_over_the_read_limit_is_refused(ds, tmp_path, monkeypatch):
    from admc.data import DatasetError, load_dataset

    monkeypatch.setattr("admc.data.MIN_READ_BUDGET", 2**20, raising=False)
    d = _copy_dataset(ds, tmp_path / "d")
    _rewrite_split(d / "val.npz", compressed=True, B=np.zeros((400_000, 3), np.float32))  # 4.6 MiB of zeros
    assert (d / "val.npz").stat().st_size < 20_000
    with pytest.raises(DatasetError, match=r"val\.npz: key 'B': declares 4\.6 MiB, over the read limit"):
        load_dataset(d)


def test_pickled_object_array_says_pickled(ds, tmp_path):
    from admc.data import DatasetError, load_dataset

    d = _copy_dataset(ds, tmp_path / "d")
    ids = np.empty(9, dtype=object)
    ids[:] = [f"x{i}" for i in range(9)]
    _rewrite_split(d / "test.npz", ids=ids)
    with pytest.raises(DatasetError, match=r"test\.npz: key 'ids': contains pickled data"):
        load_dataset(d)


# --- small hostile files: the MIntRec importer's pickles -------------------------------------------

def test_one_array_repeated_two_million_times_is_refused_not_multiplied(tmp_path):
    """The issue's case: a 4 MB pickle whose memo repeats one 3.5 KB array two million times
    (7 GB once every reference becomes an array of its own)."""
    import pickle

    from admc.data import DatasetError
    from admc.importers._safe_pickle import load_feature_pickle

    arr = np.zeros(875, np.float32)
    f = tmp_path / "video_feats.pkl"
    with open(f, "wb") as fh:
        pickle.dump({"S04_E01_1": [arr] * 2_000_000}, fh, protocol=4)
    assert f.stat().st_size < 8 * 2**20
    with pytest.raises(DatasetError, match=r"video_feats\.pkl: holds more than 64 MiB counting repeated references"):
        load_feature_pickle(f)


def test_import_refuses_repeated_references_before_converting_them(mintrec, tmp_path, monkeypatch, capsys):
    import pickle
    import shutil

    monkeypatch.setattr("admc.importers._safe_pickle.MIN_PRODUCED_BYTES", 2**20, raising=False)
    root = tmp_path / "MIntRec"
    shutil.copytree(mintrec.root, root)
    key = next(iter(mintrec.video))
    video = {k: [r[None] for r in v] for k, v in mintrec.video.items()}
    video[key] = [np.ones((1, 256), np.float32)] * 5000  # 5 MB once converted, a 20 KB file
    with open(root / "video_data" / "video_feats.pkl", "wb") as fh:
        pickle.dump(video, fh)
    assert main(["import", "mintrec", "--root", str(root), "--text-features", str(mintrec.text_features),
                 "--out", str(tmp_path / "o"), "--quiet"]) == 2
    one_line_error(capsys, "video_feats.pkl", "repeated references")
    assert not (tmp_path / "o").exists()


class _TensorLargerThanStorage:
    """Unpickles as a tensor of 10^6 elements over a storage of 4."""

    def __init__(self, v3: bool):
        self.v3 = v3

    def __reduce__(self):
        import collections

        import torch

        storage = torch.storage.TypedStorage(4, dtype=torch.float32)
        if self.v3:
            return (torch._utils._rebuild_tensor_v3,
                    (storage, 0, (10**6,), (1,), False, collections.OrderedDict(), torch.float32))
        return (torch._utils._rebuild_tensor_v2, (storage, 0, (10**6,), (1,), False, collections.OrderedDict()))


@pytest.mark.parametrize("v3", [False, True])
def test_tensor_declaring_more_elements_than_its_storage_is_refused(tmp_path, v3):
    import pickle

    from admc.data import DatasetError
    from admc.importers._safe_pickle import load_feature_pickle

    f = tmp_path / "audio_feats.pkl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated
        with open(f, "wb") as fh:
            pickle.dump({"S04_E01_1": _TensorLargerThanStorage(v3)}, fh)
    with pytest.raises(DatasetError, match=r"audio_feats\.pkl: refused to unpickle: tensor of size \(1000000,\).*"
                                           r"more elements than its storage holds \(4\)"):
        load_feature_pickle(f)


def test_reference_cycle_in_a_pickle_is_refused(tmp_path):
    import pickle

    from admc.data import DatasetError
    from admc.importers._safe_pickle import load_feature_pickle

    loop: list = []
    loop.append(loop)
    f = tmp_path / "video_feats.pkl"
    with open(f, "wb") as fh:
        pickle.dump({"k": loop}, fh)
    with pytest.raises(DatasetError, match=r"video_feats\.pkl: holds a reference cycle"):
        load_feature_pickle(f)


def test_npy_target_header_larger_than_the_file_is_refused(tmp_path):
    from admc.data import DatasetError
    from admc.importers._safe_pickle import load_npy_restricted

    f = tmp_path / "trn_label.npy"
    with open(f, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False, "shape": (10**9, 4)})
        fh.write(bytes(64))
    with pytest.raises(DatasetError, match=r"trn_label\.npy: \.npy header declares shape \(1000000000, 4\)"):
        load_npy_restricted(f)


# --- run.json: validated on load -------------------------------------------------------------------

@pytest.fixture
def run(tmp_path):
    from admc.run import save_run

    return save_run(tiny_model(), tmp_path / "run", {"itfn": {"A": {"ua": 50.0}}}, ["admc", "train"])


def _edit(run: Path, fn) -> None:
    meta = json.loads((run / "run.json").read_text())
    fn(meta)
    (run / "run.json").write_text(json.dumps(meta))


def _edit_weights(run: Path, key: str, fn) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(run / "model.safetensors")
    state[key] = fn(state[key])
    save_file(state, run / "model.safetensors")


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(clip_range=-1), r"key 'clip_range' must be null or a finite number > 0, got -1"),
    (lambda m: m.update(clip_range="3"), r"key 'clip_range'"),
    (lambda m: m.update(method="zero_fill"), r"key 'method' is 'zero_fill' but 'config.method' is 'admc'"),
    (lambda m: m.update(method="bogus"), r"key 'method' must be one of admc, .*got 'bogus'"),
    (lambda m: m.pop("config"), r"key 'config' is missing"),
    (lambda m: m.pop("schema"), r"key 'schema' is missing"),
    (lambda m: m.pop("method"), r"key 'method' is missing"),
    (lambda m: m.update(schema="A,B"), r"key 'schema' must be an object, got str"),
    (lambda m: m.update(config=[1]), r"key 'config' must be an object, got list"),
    (lambda m: m["config"]["adn"].update(lr="fast"), r"key 'config\.adn\.lr': expected float, got 'fast'"),
    (lambda m: m["config"]["itfn"].update(emb_dim=-3), r"key 'config\.itfn\.emb_dim': must be in 1\.\.65536"),
    (lambda m: m["config"]["adn"].update(layers=10**6), r"key 'config\.adn\.layers': must be in 1\.\.256"),
    (lambda m: m["config"].update(itfn=[]), r"key 'config\.itfn' must be an object"),
    (lambda m: m["config"]["fusion"].update(colour="red"), r"key 'config\.fusion\.colour': unknown setting"),
    (lambda m: m.update(start_step=0), r"key 'start_step' must be null or an integer >= 1"),
    (lambda m: m.update(fusion_mode="shared"), r"key 'fusion_mode' is 'shared' but the config gives 'per-condition'"),
    (lambda m: m["schema"]["modalities"]["A"].update(dim=10**9), r"key 'schema\.modalities\.A\.dim' is 1000000000"),
    (lambda m: m["schema"]["modalities"]["A"].update(dim=1000),
     r"model\.safetensors: weights do not match run\.json: key 'encoders\.A\.\S+' has shape \[\d+(, \d+)?\], "
     r"run\.json declares \[1000"),
    (lambda m: m["schema"].update(classes=["x", "y", "z"]), r"weights do not match run\.json"),
])
def test_run_json_is_validated_on_load(run, edit, match):
    from admc.run import RunError, load_run

    _edit(run, edit)
    with pytest.raises(RunError, match=match) as e:
        load_run(run)
    assert "\n" not in str(e.value) and "run.json" in str(e.value) or "model.safetensors" in str(e.value)


def test_declared_dims_are_checked_against_the_weights_before_building_the_model(run, monkeypatch):
    """A dim of 10^9 under the MAX_DIM cap's radar must not build 10^9-wide layers."""
    from admc.run import RunError, load_run

    monkeypatch.setattr("admc.run_schema.MAX_DIM", 10**10, raising=False)
    _edit(run, lambda m: m["schema"]["modalities"]["A"].update(dim=10**9))
    with pytest.raises(RunError, match=r"weights do not match run\.json: key 'encoders\.A\.\S+' has shape"):
        load_run(run)


@pytest.mark.parametrize("key, value, match", [
    ("emb_std", lambda t: t * 0, r"key 'emb_std': must be > 0"),
    ("emb_mean", lambda t: t * float("nan"), r"key 'emb_mean': NaN or inf"),
    ("encoders.A.head.weight", lambda t: t * float("inf"), r"key 'encoders\.A\.\S+': NaN or inf"),
])
def test_non_finite_or_zero_std_weights_are_refused(run, key, value, match):
    from safetensors import safe_open

    from admc.run import RunError, load_run

    with safe_open(run / "model.safetensors", "pt") as f:
        key = key if key in f.keys() else next(k for k in f.keys() if k.startswith("encoders.A.") and "weight" in k)
    unbind(run)         # an edited bound run is refused by its SHA-256 first (tests/test_run_binding.py)
    _edit_weights(run, key, value)
    with pytest.raises(RunError, match=rf"model\.safetensors: {match}"):
        load_run(run)


def test_non_utf8_run_json_names_the_file(run, capsys):
    (run / "run.json").write_bytes(b'{"format": "admc-run/1", "x": "\xff\xfe"}')
    assert main(["info", str(run)]) == 2
    one_line_error(capsys, "run.json", "UTF-8")


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m.pop("config"), "key 'config' is missing"),
    (lambda m: m.update(schema="A,B"), "key 'schema' must be an object"),
    (lambda m: m.update(train={"itfn": {"A": "??"}}), None),
])
def test_info_on_a_bad_run_json_is_one_line(run, capsys, edit, needle):
    _edit(run, edit)
    if needle is None:  # the informational part only: printed without it
        assert main(["info", str(run)]) == 0
        assert "ITFN val" not in capsys.readouterr().out
    else:
        assert main(["info", str(run)]) == 2
        one_line_error(capsys, "run.json", needle)


def test_eval_on_a_bad_run_json_is_one_line(run, ds, tmp_path, capsys):
    _edit(run, lambda m: m.pop("method"))
    assert main(["eval", "--run", str(run), "--data", str(ds), "--json", str(tmp_path / "r.json")]) == 2
    one_line_error(capsys, "run.json", "key 'method' is missing")


# --- the CLI: one-line errors, argument errors before any work --------------------------------------

def test_runs_zero_json_dir_and_device_tpu_are_one_line(run, ds, tmp_path, capsys):
    base = ["eval", "--run", str(run), "--data", str(ds)]
    with pytest.raises(SystemExit) as e:
        main([*base, "--json", str(tmp_path / "r.json"), "--runs", "0"])
    assert e.value.code == 2
    one_line_error(capsys, "--runs", "'0'")
    assert main([*base, "--json", str(tmp_path)]) == 2
    one_line_error(capsys, "--json", "is a directory")
    with pytest.raises(SystemExit):
        main([*base, "--json", str(tmp_path / "r.json"), "--device", "tpu"])
    one_line_error(capsys, "--device", "'tpu'")


@pytest.mark.parametrize("args, needles", [
    (["--set", "itfn.epochs=abc"], ["--set itfn.epochs=abc", "expected int"]),
    (["--set", "adn.lr=-1"], ["--set adn.lr=-1", "> 0"]),
    (["--set", "adn.sampler=2"], None),  # a string setting takes the text as it is ...
    (["--set", "nope.x=1"], ["--set nope.x", "unknown setting"]),
    (["--method", "bogus"], ["--methods bogus", "admc"]),
])
def test_bad_settings_fail_before_training(ds, tmp_path, capsys, args, needles):
    out = tmp_path / "run"
    if needles is None:  # ... and fails on the model's own check, still before training
        args = [*args, "--set", "adn.epochs=x"]
        needles = ["adn.epochs"]
    assert main(["train", "--data", str(ds), "--out", str(out), "--quiet", *args]) == 2
    one_line_error(capsys, *needles)
    assert not out.exists()


@pytest.mark.parametrize("content, needle", [
    ('[{"itfn": {"epochs": 2}}]', "must hold a JSON object"),
    ('{"itfn": {"epochs": "two"}}', "key 'itfn.epochs': expected int"),
    ('{"itfn": 5}', "key 'itfn' must be an object"),
    (b'{"itfn": {"epochs": 2}, "x": "\xff"}', "not UTF-8"),
])
def test_bad_config_files_are_one_line(ds, tmp_path, capsys, content, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["train", "--data", str(ds), "--out", str(tmp_path / "run"), "--config", str(cfg), "--quiet"]) == 2
    one_line_error(capsys, f"--config {cfg}", needle)


def test_bench_argument_errors_come_before_any_training(ds, tmp_path, capsys):
    import time

    out = tmp_path / "b"
    t0 = time.time()
    with pytest.raises(SystemExit):
        main(["bench", "--data", str(ds), "--out", str(out), "--split", "bogus", "--quiet", *TINY])
    one_line_error(capsys, "--split", "bogus")
    assert main(["bench", "--data", str(ds), "--out", str(out), "--methods", "admc,bogus", "--quiet", *TINY]) == 2
    one_line_error(capsys, "--methods admc,bogus", "bogus")
    assert time.time() - t0 < 10 and not out.exists()


def test_methods_come_from_the_registry(ds, tmp_path, capsys, monkeypatch):
    """Another method added to admc.methods.METHODS is accepted without a CLI change."""
    import admc.methods

    monkeypatch.setattr(admc.methods, "METHODS", (*admc.methods.METHODS, "newmethod"))
    from admc.cli import _methods

    assert _methods("admc,newmethod") == ["admc", "newmethod"]


def test_non_utf8_manifest_names_the_file(tmp_path, capsys):
    from app.commands import main  # admc extract lives above the core (docs/architecture.md)

    m = tmp_path / "manifest.csv"
    m.write_bytes("path,label,split\nvoix_\xe9t\xe9.wav,joy,train\n".encode("latin-1"))
    assert main(["extract", "--manifest", str(m), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    one_line_error(capsys, "manifest.csv", "UTF-8")


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    import admc.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(admc.cli, "cmd_info", interrupted)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "run.json").write_text("{}")     # past the path checks, into the command
    assert main(["info", "x"]) == 130
    assert capsys.readouterr().err == "admc: interrupted\n"


def test_sigint_during_training_keeps_the_old_run(ds, tmp_path):
    """A real SIGINT to `admc train --overwrite` in the middle of training: exit 130, one line,
    the old run untouched, nothing half-written beside it."""
    import signal
    import time

    from admc.run import save_run

    run = save_run(tiny_model(), tmp_path / "runs" / "run", {}, ["old"])
    before = tree(run)
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "admc.cli", "train", "--data", str(ds), "--out", str(run),
                              "--overwrite", "--set", "itfn.epochs=100000", "--set", "itfn.patience=100000",
                              "--set", "itfn.emb_dim=8"], stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                             # a shell's background job inherits SIGINT ignored; a user's Ctrl-C is not
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while time.time() < deadline and "ITFN" not in log.read_text() and "it/s" not in log.read_text() \
                and "s/it" not in log.read_text():
            time.sleep(0.2)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        try:
            rc = p.wait(timeout=180)  # generous: a loaded 2-core machine is slow to unwind torch
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    text = log.read_text()
    assert rc == 130, text
    assert "Traceback" not in text and text.rstrip().splitlines()[-1].endswith("admc: interrupted"), text
    assert tree(run) == before
    assert sorted(q.name for q in run.parent.iterdir()) == ["run"]


# --- a class absent from the train split -----------------------------------------------------------

@pytest.fixture
def ds_missing_class(tmp_path):
    d = make_dataset(tmp_path / "dm", n_per_split=(24, 9, 9), dims=(4, 3, 2))
    with np.load(d / "train.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["labels"] = np.where(arrays["labels"] == 2, 0, arrays["labels"])
    np.savez(d / "train.npz", **arrays)
    return d


def test_class_absent_from_train_is_refused(ds_missing_class, tmp_path, capsys):
    for cmd in ("train", "bench"):
        assert main([cmd, "--data", str(ds_missing_class), "--out", str(tmp_path / cmd), "--quiet", *TINY]) == 2
        one_line_error(capsys, "'class2'", "train split", "--allow-missing-classes")
        assert not (tmp_path / cmd).exists()


def test_class_absent_from_train_is_allowed_loudly(ds_missing_class, tmp_path, capsys):
    assert main(["train", "--data", str(ds_missing_class), "--out", str(tmp_path / "r"), "--quiet",
                 "--allow-missing-classes", *TINY]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "'class2'" in err and "train split" in err
