"""``admc train`` / ``admc bench`` data-parallel: two CPU processes with gloo on 127.0.0.1, started
as torchrun starts them (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
on a tiny generated dataset."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from admc import distributed as dp
from admc.cli import main
from admc.data import load_dataset
from admc.evaluate import evaluate
from admc.run import load_run
from tests.synthetic import FAST, cached_run

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _rank(rank: int, world: int, port: int, argv: list[str], record: str) -> None:
    """One process of the job: the real command line.  Written to ``record``.rank: the digest of each
    stage's network as training left it, before :func:`admc.distributed.sync` copies rank 0's (so
    equal digests mean the processes stayed in step), and of every trained model."""
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import admc.train

    def note(what: str, module) -> None:
        with open(f"{record}.{rank}", "a") as f:
            f.write(f"{what} {_digest(module)}\n")

    real_train, real_sync = admc.train.train, dp.sync

    def train(*a, **kw):
        model, info = real_train(*a, **kw)
        note("model", model)
        return model, info

    def sync(net):
        note("stage", net)
        real_sync(net)

    admc.train.train, dp.sync = train, sync
    assert main(argv) == 0


def _spawn(argv: list[str], record: Path, world: int = 2) -> None:
    torch.multiprocessing.spawn(_rank, args=(world, _free_port(), argv, str(record)), nprocs=world, join=True)


@pytest.mark.slow
def test_two_gloo_processes_train_a_run_like_one(tmp_path_factory, tmp_path):
    ds_dir, single = cached_run(tmp_path_factory.getbasetemp())
    out = tmp_path / "run"
    _spawn(["train", "--data", str(ds_dir), "--out", str(out), "--seed", "1", "--quiet", *FAST], tmp_path / "w")
    # the processes stay in step (gradients averaged every step, rank 0's selection) and end equal
    digests = [(tmp_path / f"w.{r}").read_text().splitlines() for r in range(2)]
    assert digests[0] == digests[1]
    assert [d.split()[0] for d in digests[0]].count("stage") >= 3 + 1 + 1   # ITFN x 3, ADN, fusion
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "run.json"]   # rank 0 alone wrote
    a, b = (json.loads((p / "run.json").read_text()) for p in (single, out))
    assert b["train"].pop("data_parallel") == {"processes": 2, "backend": "gloo"}
    assert set(a) == set(b) and set(a["train"]) == set(b["train"]) and a["schema"] == b["schema"]
    ds = load_dataset(ds_dir, splits=("val",))
    m1, _ = load_run(single)
    m2, _ = load_run(out)
    r1, r2 = (evaluate(m, ds["val"], seed=0) for m in (m1, m2))
    assert set(r1) == set(r2)
    for cond in ("average", "full"):
        assert abs(r1[cond]["ua"] - r2[cond]["ua"]) <= 10, (cond, r1[cond], r2[cond])
        assert r2[cond]["ua"] > 70                      # three learnable classes: chance is 33
    # not the single run's weights: the two processes each trained on their half of every epoch
    assert not all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())


@pytest.mark.slow
def test_bench_under_two_processes_writes_one_output(tmp_path_factory, tmp_path):
    ds_dir, _ = cached_run(tmp_path_factory.getbasetemp())
    out = tmp_path / "bench"
    _spawn(["bench", "--data", str(ds_dir), "--out", str(out), "--methods", "zero_fill", "--split", "val",
            "--quiet", *FAST], tmp_path / "w")
    assert (tmp_path / "w.0").read_text() == (tmp_path / "w.1").read_text()
    res = json.loads((out / "results.json").read_text())
    assert "zero_fill" in json.dumps(res)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("admc-rank1-*"))   # rank 1's copy is gone


def test_batches_split_every_epoch_between_the_processes(monkeypatch):
    idx = np.arange(5, 26)                                # 21 samples
    single = list(dp.batches(len(idx), 4, np.random.default_rng(3), idx=idx))
    from admc.batching import batches

    ref = list(batches(len(idx), 4, np.random.default_rng(3), idx=idx))
    assert all(np.array_equal(x, y) for x, y in zip(single, ref)) and len(single) == len(ref)
    per_rank = []
    for rank in (0, 1):
        monkeypatch.setattr(dp, "_CTX", dp.Context(2, rank, rank, "gloo"))
        per_rank.append(np.concatenate(list(dp.batches(len(idx), 4, np.random.default_rng(3), idx=idx))))
    assert len(per_rank[0]) == len(per_rank[1]) == 11         # padded to equal shares: the same number of steps
    both = np.concatenate(per_rank)
    assert set(both) == set(idx) and len(set(per_rank[0]) & set(per_rank[1])) <= 1   # one sample reused as padding


def test_environment_is_read_as_torchrun_sets_it():
    assert dp.from_env({}) == dp.Context()
    assert dp.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == dp.Context(4, 3, 1)
    with pytest.raises(ValueError, match=r"WORLD_SIZE=2 RANK=2"):
        dp.from_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ValueError, match=r"environment variable RANK='x'"):
        dp.from_env({"WORLD_SIZE": "2", "RANK": "x"})


def test_python_dash_m_admc_runs_the_core_commands():
    r = subprocess.run([sys.executable, "-m", "admc", "--version"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip().startswith("admc ")
