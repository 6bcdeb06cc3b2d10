"""The reliability matrix, round two (docs/reliability.md): datasets that load but cannot be trained
on honestly, settings that crashed or hung, and argument errors that came late or without a name.
Every refusal is one line naming the file, key or option, exit 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from admc.data import DatasetError, load_dataset, write_dataset
from app.commands import main as admc
from tests.synthetic import FAST, make_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = [*FAST, "--set", "itfn.epochs=2", "--set", "adn.epochs=2", "--set", "fusion.epochs=2", "--set", "itfn.emb_dim=16"]


def one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if "WARNING" not in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, err)
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("r2") / "ds", n_per_split=(30, 12, 12), dims=(4, 3, 2))


def variant(base: Path, out: Path, change) -> Path:
    """A copy of the dataset ``base`` with ``change(ds)`` applied to its loaded splits."""
    ds = load_dataset(base)
    change(ds)
    return write_dataset(out, ds.name, ds.schema, ds.splits)


# --- dataset sanity at load ----------------------------------------------------------------------------

def test_ids_shared_across_splits_are_refused(base, tmp_path, capsys):
    def leak(ds):
        ds["test"].ids[:3] = ds["train"].ids[:3]
    bad = variant(base, tmp_path / "leak", leak)
    with pytest.raises(DatasetError, match=r"sample id '.*' is in both the train and the test split"):
        load_dataset(bad)
    assert admc(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet", *TINY]) == 2
    one_line(capsys, "is in both the train and the")


def test_a_validation_split_of_one_class_is_refused(base, tmp_path, capsys):
    def one_class(ds):
        ds["val"].labels[:] = 0
    bad = variant(base, tmp_path / "val1", one_class)
    assert admc(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet", *TINY]) == 2
    one_line(capsys, "the val split", "one class ('class0')")
    assert not (tmp_path / "r").exists()


def test_an_npz_with_two_members_of_one_name_is_refused(base, tmp_path):
    import shutil

    bad = tmp_path / "dup"
    shutil.copytree(base, bad)
    with zipfile.ZipFile(bad / "train.npz") as z:
        labels = z.read("labels.npy")
    with warnings.catch_warnings(), zipfile.ZipFile(bad / "train.npz", "a") as z:
        warnings.simplefilter("ignore")              # "Duplicate name": what the hostile file does
        z.writestr("labels.npy", labels)
    with pytest.raises(DatasetError, match=r"train.npz: key 'labels': the archive holds two members named labels.npy"):
        load_dataset(bad)


def test_a_modality_present_nowhere_is_left_out_and_training_goes_on(base, tmp_path, capsys):
    def drop_c(ds):
        for sp in ds.splits.values():
            sp.present["C"][:] = False
    bad = variant(base, tmp_path / "noC", drop_c)
    run = tmp_path / "run"
    assert admc(["train", "--data", str(bad), "--out", str(run), "--quiet", *TINY]) == 0
    err = capsys.readouterr().err
    assert "modality C is present in no sample" in err and "training on A+B alone" in err
    assert [m["name"] if isinstance(m, dict) and "name" in m else m
            for m in json.loads((run / "run.json").read_text())["schema"]["modalities"]] == ["A", "B"]
    # the same dataset evaluates with the run (its C left out the same way)
    assert admc(["eval", "--run", str(run), "--data", str(bad), "--json", str(tmp_path / "e.json"), "--quiet"]) == 0


def test_two_modalities_one_present_nowhere_or_one_only_in_val_is_one_line(tmp_path, capsys):
    two = make_dataset(tmp_path / "two", n_per_split=(20, 9, 9), kinds=("vector", "vector"), dims=(4, 3))

    def drop_b(ds):
        for sp in ds.splits.values():
            sp.present["B"][:] = False
            sp.present["A"][:] = True
    bad = variant(two, tmp_path / "noB", drop_b)
    assert admc(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet", *TINY]) == 2
    one_line(capsys, "modality B is present in no sample", "admc fuses two or more modalities")

    def only_val(ds):
        ds["train"].present["B"][:] = False
        ds["train"].present["A"][:] = True
    bad = variant(two, tmp_path / "valB", only_val)
    assert admc(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet", *TINY]) == 2
    one_line(capsys, "modality B is present in no sample of the train split")


def test_a_deeply_nested_meta_json_is_one_line(base, tmp_path, capsys):
    import shutil

    bad = tmp_path / "deep"
    shutil.copytree(base, bad)
    (bad / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="meta.json"):
        load_dataset(bad)
    assert admc(["train", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    one_line(capsys, "meta.json")


def test_a_two_million_row_sequence_is_bounded_by_the_default_max_len(tmp_path):
    """The padded batch of a dataset with one 2,000,000-row sequence: about 1 GB of rows padded
    per sample without a bound (22.5 GB measured), a few MB with the default itfn.max_len; and
    max_len null on it is refused before allocating, naming the setting."""
    from admc.config import TrainConfig
    from admc.memory import batch_bytes, training_memory_problem

    ds = load_dataset(make_dataset(tmp_path / "seq", n_per_split=(8, 4, 4), dims=(4, 3, 2)))
    sp = ds["train"]
    rows = np.zeros((2_000_000, 2), np.float32)
    sp.rows["C"] = np.concatenate([rows, sp.rows["C"][sp.offsets["C"][1]:]])
    sp.offsets["C"] = sp.offsets["C"] - sp.offsets["C"][1] + 2_000_000
    sp.offsets["C"][0] = 0
    cfg = TrainConfig()
    assert cfg.itfn.max_len == 4096
    bounded, mod = batch_bytes(ds, cfg)
    assert mod == "C" and bounded < 2**30
    cfg.itfn.max_len = None
    unbounded, _ = batch_bytes(ds, cfg)
    assert unbounded > 10 * 2**30
    why = training_memory_problem(ds, cfg, available=24 * 2**30)
    assert why is not None and "itfn.max_len" in why and "modality C" in why


def test_settings_that_crashed_are_one_line_before_training(base, tmp_path, capsys):
    for sets, needle in ((["--set", "adn.heads=3"], "adn.heads=3 must divide adn.d_model=256"),
                         (["--set", "fusion.heads=5"], "fusion.heads=5 must divide fusion.d_model=256"),
                         (["--set", "itfn.emb_dim=65536"], "lower itfn.emb_dim")):
        assert admc(["train", "--data", str(base), "--out", str(tmp_path / "r"), "--quiet", *sets]) == 2
        one_line(capsys, needle)
    assert not (tmp_path / "r").exists()


def test_disk_full_while_saving_a_run_is_one_line_and_keeps_the_old_run(base, tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    from admc import run as run_module

    run = tmp_path / "run"
    assert admc(["train", "--data", str(base), "--out", str(run), "--quiet", *TINY]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    def full(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(run_module, "save_file", full)
    assert admc(["train", "--data", str(base), "--out", str(run), "--overwrite", "--quiet", *TINY]) == 2
    one_line(capsys, f"{run}: cannot write model.safetensors", "No space left on device")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("argv, needle", [
    (["train", "--data", "D", "--out", "O", "--seed", "-1"], "argument --seed: expected an integer in 0..4294967295"),
    (["bench", "--data", "D", "--out", "O", "--seeds", "0,-1"], "argument --seeds"),
    (["train", "--dat", "D", "--out", "O"], "--dat"),
    (["train", "--data", "/no/such/dataset", "--out", "O"], "--data /no/such/dataset: no such directory"),
    (["eval", "--run", "/no/such/run", "--data", "D", "--json", "j.json"], "--run /no/such/run: no such directory"),
])
def test_argument_errors_name_the_option(base, argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # the outputs O and j.json, were anything written
    argv = [str(base) if a == "D" else a for a in argv]
    try:
        rc = admc(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    one_line(capsys, needle)


def test_argument_and_path_errors_come_before_torch_loads(base, tmp_path):
    """Checked before any model code is imported, so they come within a second, not after 6-12 s."""
    code = ("import sys; from app.commands import main; "
            f"rc = main(['train', '--data', '/no/such', '--out', {str(tmp_path / 'r')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.split() == ["2", "False"], (p.stdout, p.stderr)
    code = code.replace("'/no/such'", repr(str(base))).replace(repr(str(tmp_path / "r")), repr(str(base)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.split() == ["2", "False"] and "is the --data path" in p.stderr, (p.stdout, p.stderr)
    (tmp_path / "m.csv").write_text("path,label,split\na.wav,x,train\n")
    code = ("import sys; from app.commands import main; "
            f"rc = main(['extract', '--manifest', {str(tmp_path / 'm.csv')!r}, '--out', {str(base)!r}]); "
            "print(rc, 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.split() == ["2", "False"] and "--overwrite" in p.stderr, (p.stdout, p.stderr)


@pytest.mark.parametrize("argv, needle", [
    (["--face-fps", "-5"], "argument --face-fps: expected frames per second in 0.1..120.0, got '-5'"),
    (["--port", "70000"], "argument --port: expected a port in 1..65535"),
    (["--por", "7860"], "unrecognized arguments: --por"),
    (["--start-step", "0"], "argument --start-step"),
    (["--camera-transport", "udp"], "argument --camera-transport: invalid choice: 'udp'"),
])
def test_app_argument_errors_are_one_line(argv, needle, capsys):
    from app.cli import main as app_main

    with pytest.raises(SystemExit) as e:
        app_main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err, err


def test_app_port_in_use_is_one_line_before_loading_anything(capsys):
    from app.cli import main as app_main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert app_main(["--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"app: --port {port}: already in use on 127.0.0.1 (stop what serves there, or choose another --port)"


@pytest.mark.slow
def test_app_start_step_the_checkpoint_cannot_use_is_one_line(tmp_path, capsys):
    """The starter's completer has no start step: --start-step 999999 was silently ignored."""
    import wave

    from app.cli import main as app_main

    clip = tmp_path / "silence.wav"
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)
    assert app_main(["--source", str(clip), "--no-ui", "--start-step", "999999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("app: --start-step 999999:"), err


def test_manifest_with_an_empty_split_warns(tmp_path, capsys):
    root = tmp_path / "ravdess"
    for actor in (1, 2, 20):
        f = root / f"Actor_{actor:02d}" / f"03-01-05-01-01-01-{actor:02d}.wav"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"")
    assert admc(["manifest", "ravdess", "--root", str(root), "--out", str(tmp_path / "m.csv"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the manifest has no val sample (check --val-actors)" in err


def test_mfeat_converter_without_the_data_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "benchmarks/mfeat_dataset.py", "--root", str(tmp_path / "none"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith("(the UCI mfeat CSVs; see shared/data/README.md)"), p.stderr
