"""What belongs together stays together: run.json and its weights, a bench cell and its dataset.

Each case of the reliability matrix that loaded and gave wrong numbers (exit 0) is refused here in
one line naming the file and what differs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from admc.bench import fingerprint
from admc.data import load_dataset, write_dataset
from admc.run import RunError, load_run
from app.checkpoint import CheckpointError, load_checkpoint
from tests.synthetic import cached_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return cached_run(tmp_path_factory.getbasetemp())


@pytest.fixture
def run(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[1], out)
    return out


def edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta, indent=2))


def edit_weights(path: Path, fn) -> None:
    """Change tensors but keep the file's recorded run identity (as a careless copy would)."""
    with safe_open(path, framework="pt") as sf:
        meta = sf.metadata()
    state = load_file(path)
    fn(state)
    save_file(state, path, metadata=meta)


def test_a_fresh_run_is_bound_and_loads(run):
    meta = json.loads((run / "run.json").read_text())
    with safe_open(run / "model.safetensors", framework="pt") as sf:
        assert sf.metadata()["run_id"] == meta["run_id"]
    assert len(meta["weights_sha256"]) == 64
    load_run(run)


@pytest.mark.parametrize("case", ["clip_range", "classes_rotated", "emb_std_x1000", "heads_swapped"])
def test_edited_run_json_or_weights_are_refused_in_one_line(run, case):
    if case == "clip_range":
        edit_json(run / "run.json", lambda m: m.__setitem__("clip_range", 1e-9))
        needle = "key 'clip_range' differs"
    elif case == "classes_rotated":
        def rotate(m):
            c = m["schema"]["classes"]
            m["schema"]["classes"] = c[1:] + c[:1]
        edit_json(run / "run.json", rotate)
        needle = "key 'schema.classes.0' differs"
    elif case == "emb_std_x1000":
        edit_weights(run / "model.safetensors", lambda s: s.__setitem__("emb_std", s["emb_std"] * 1000))
        needle = "SHA-256"
    else:
        def swap(state):
            by_shape: dict = {}
            for k, v in state.items():
                if k.startswith("fusion") and v.ndim == 2 and v.numel() > 1:
                    by_shape.setdefault(tuple(v.shape), []).append(k)
            a, b = next(ks for ks in by_shape.values() if len(ks) >= 2)[:2]
            assert not torch.equal(state[a], state[b])
            state[a], state[b] = state[b].clone(), state[a].clone()
        edit_weights(run / "model.safetensors", swap)
        needle = "SHA-256"
    with pytest.raises(RunError) as e:
        load_run(run)
    assert needle in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="SHA-256|differs"):   # the app refuses it too (one line)
        load_checkpoint(run)


def test_another_seeds_weights_are_refused(run, tmp_path_factory):
    _, other = cached_run(tmp_path_factory.getbasetemp(), seed=2)
    shutil.copy(other / "model.safetensors", run / "model.safetensors")
    with pytest.raises(RunError, match="SHA-256"):
        load_run(run)
    # and the other seed's run.json with this run's weights: the weights name another run
    shutil.copy(other / "run.json", run / "run.json")
    edit_json(run / "run.json", lambda m: m.__setitem__(
        "weights_sha256", json.loads((other / "run.json").read_text())["weights_sha256"]))
    shutil.copy(other / "model.safetensors", run / "model.safetensors")
    load_run(run)                                           # a whole pair moved together is fine


def test_a_run_saved_before_the_binding_still_loads(run):
    """Neither side bound (runs written before this check): loaded as before; one side bound: refused."""
    edit_json(run / "run.json", lambda m: (m.pop("weights_sha256"), m.pop("run_id")))
    with pytest.raises(RunError, match="weights_sha256' is missing"):
        load_run(run)
    state = load_file(run / "model.safetensors")
    save_file(state, run / "model.safetensors", metadata={"format": "admc-run/1"})
    load_run(run)


def test_the_shipped_starter_is_bound():
    from app.checkpoint import DEFAULT_CHECKPOINT

    meta = json.loads((DEFAULT_CHECKPOINT / "run.json").read_text())
    with safe_open(DEFAULT_CHECKPOINT / "model.safetensors", framework="pt") as sf:
        assert sf.metadata().get("run_id") == meta["run_id"]


def test_dataset_fingerprint_sees_permuted_labels_and_changed_values(trained, tmp_path):
    ds = load_dataset(trained[0])
    fp = fingerprint(ds)
    tr = ds["train"]
    labels = tr.labels.copy()
    perm = np.random.default_rng(0).permutation(len(labels))
    while np.array_equal(labels[perm], labels):
        perm = np.random.default_rng(perm[0]).permutation(len(labels))
    variants = {}
    for name, change in (("labels permuted", lambda s: setattr(s, "labels", labels[perm])),
                         ("one value", lambda s: s.rows[ds.names[0]].__setitem__((0, 0), s.rows[ds.names[0]][0, 0] + 1))):
        copy = load_dataset(trained[0])
        change(copy["train"])
        out = write_dataset(tmp_path / name.replace(" ", "_"), copy.name, copy.schema, copy.splits)
        variants[name] = fingerprint(load_dataset(out))
    assert np.sort(labels[perm]).tolist() == np.sort(labels).tolist()    # same sizes and sums as before
    assert fp not in variants.values() and len(set(variants.values())) == 2
    assert fingerprint(load_dataset(trained[0])) == fp
