"""``admc extract --engine ray`` on a real Ray cluster of two node processes on this machine (every
server on 127.0.0.1, token authentication), with a worker killed mid-run: the dataset equals the
local engine's for the same manifest of generated clips.  The cluster is ended by process id
whatever happens (:class:`extractors.dataset.ray_local.LoopbackCluster`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from admc.data import load_dataset
from extractors.dataset import builder as db
from app.commands import main as admc_main

ROOT = Path(__file__).resolve().parents[1]
CLIPS = 8
CLASSES = ["happy", "sad"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from benchmarks.fixtures import make_clip_manifest

    try:
        return make_clip_manifest(tmp_path_factory.mktemp("clips"), CLIPS, seconds=3.0)
    except RuntimeError as e:          # espeak-ng missing
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def local(manifest, tmp_path_factory):
    import torch
    from threadpoolctl import threadpool_limits

    # one thread for torch and numpy's BLAS, as the Ray workers (OMP_NUM_THREADS=1): on a CPU without AVX2
    # numpy's BLAS over two threads moved the Whisper int8 encoder states by up to 0.18 (a one-thread local run: 0)
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        return db.extract_manifest(manifest, tmp_path_factory.mktemp("local") / "ds", classes=CLASSES, progress=False)


def _extract(manifest: Path, out: Path, cluster, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "app.commands", "extract", "--manifest", str(manifest), "--out", str(out),
           "--classes", ",".join(CLASSES), "--engine", "ray", "--address", cluster.address, "--quiet", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env={**cluster.env, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


def _same_dataset(a: Path, b: Path) -> None:
    da, dbb = load_dataset(a), load_dataset(b)
    assert da.schema == dbb.schema
    for s in ("train", "val", "test"):
        x, y = da[s], dbb[s]
        assert x.ids.tolist() == y.ids.tolist() and x.labels.tolist() == y.labels.tolist()
        for m in "AVT":
            np.testing.assert_array_equal(x.offsets[m], y.offsets[m])
            np.testing.assert_array_equal(x.present[m], y.present[m])
            np.testing.assert_allclose(x.rows[m], y.rows[m], rtol=1e-5, atol=1e-5)
    ma, mb = (json.loads((p / "meta.json").read_text()) for p in (a, b))
    for m in (ma, mb):
        m["extract"].pop("seconds"), m["extract"].pop("engine", None)
    assert ma == mb
    assert (a / "transcripts.jsonl").read_text() == (b / "transcripts.jsonl").read_text()


@pytest.mark.slow
def test_ray_engine_survives_a_killed_worker_and_resumes(manifest, local, tmp_path):
    from extractors.dataset.ray_local import LoopbackCluster

    pytest.importorskip("ray")
    out = tmp_path / "ds"              # the same name as the local one
    rows = db.read_manifest(manifest)
    with LoopbackCluster(nodes=2, cpus_per_node=1) as cluster:
        proc = _extract(manifest, out, cluster)
        try:
            # a worker is killed once the first sample is in: its queued rows are not done yet
            deadline = time.monotonic() + 150
            while not list((out / ".cache").glob("*.npz")):
                assert proc.poll() is None and time.monotonic() < deadline, "no sample extracted in time"
                time.sleep(0.05)
            victims = cluster.worker_pids("ExtractWorker")
            assert len(victims) == 2, victims                  # one actor per node's CPU
            os.kill(victims[0], signal.SIGKILL)
            done_at_kill = len(list((out / ".cache").glob("*.npz")))
            assert done_at_kill < CLIPS
            _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        meta = json.loads((out / "meta.json").read_text())
        eng = meta["extract"]["engine"]
        assert (eng["name"], eng["workers"], eng["nodes"], eng["extracted"]) == ("ray", 2, 2, len(rows))
        # the bad file: retried, then reported and skipped in the local engine's words
        assert [s["id"] for s in meta["extract"]["skipped"]] == ["broken"]
        _same_dataset(out, local)
        assert len(list((out / ".cache").glob("*.npz"))) == CLIPS     # one cache file per sample, none twice

        # interrupted run: two samples' cache files gone -> only they are extracted again
        for r in rows[:2]:
            (out / ".cache" / f"{db.cache_key(r, db.ExtractSettings())}.npz").unlink()
        _finish(_extract(manifest, out, cluster, "--workers", "1"))
        eng = json.loads((out / "meta.json").read_text())["extract"]["engine"]
        assert (eng["extracted"], eng["workers"]) == (3, 1)         # the two, and the broken file again
        _same_dataset(out, local)
    assert cluster.pids() == []


def test_ray_flags_need_the_ray_engine(manifest, tmp_path, capsys):
    assert admc_main(["extract", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                      "--num-cpus-per-task", "2"]) == 2
    assert capsys.readouterr().err.strip() == "admc: error: --num-cpus-per-task: only with --engine ray"


def test_ray_is_imported_only_when_asked_and_missing_ray_is_one_line(manifest, tmp_path):
    code = ("import sys, app.commands, extractors.dataset.builder, extractors.dataset.ray_engine; "
            "app.commands.build_parser(); assert 'ray' not in sys.modules, 'ray imported'; "
            "sys.modules['ray'] = None; from app.commands import main; "
            f"sys.exit(main(['extract', '--manifest', {str(manifest)!r}, '--out', {str(tmp_path / 'o')!r}, "
            "'--engine', 'ray']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Ray is not installed" in lines[0] and "pip install 'admc[ray]'" in lines[0]
    assert not (tmp_path / "o").exists()


def test_pool_size_follows_the_cluster_resources():
    from extractors.dataset.ray_engine import EngineError, RayEngine

    res = {"CPU": 4.0, "GPU": 1.0}
    assert RayEngine().pool_size(res, rows=100) == 4
    assert RayEngine().pool_size(res, rows=3) == 3
    assert RayEngine(num_cpus_per_task=2).pool_size(res, rows=100) == 2
    assert RayEngine(num_gpus_per_task=0.5).pool_size(res, rows=100) == 2
    assert RayEngine(workers=1).pool_size(res, rows=100) == 1
    with pytest.raises(EngineError, match=r"--workers 5: the cluster has 4 CPUs and 1 GPUs, room for 4"):
        RayEngine(workers=5).pool_size(res, rows=100)
    with pytest.raises(EngineError, match=r"--num-gpus-per-task 2: the cluster has 4 CPUs and 1 GPUs"):
        RayEngine(num_gpus_per_task=2).pool_size(res, rows=100)
    with pytest.raises(EngineError, match=r"--num-cpus-per-task 0: must be a number > 0"):
        RayEngine(num_cpus_per_task=0)
