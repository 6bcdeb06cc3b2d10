"""Throughput of the distributed engines on this machine (docs/scaling.md).

* extraction: ``admc extract --engine ray`` on a two-node loopback Ray cluster (one CPU per node),
  ``--workers 1`` then ``--workers 2``, on the same manifest of generated clips (a fresh output each
  time, so nothing is cached), and the local engine for reference; recordings per minute over the
  whole command (connection, worker start and model loading included) and over the extraction
  proper (first to last result, from the progress of the cache);
* training: ``admc train`` in one process and under ``torchrun --nproc-per-node 2`` (gloo) on a
  generated dataset with fixed epoch counts (patience = epochs), sample-epochs per second of the
  whole command: training samples x epochs summed over the gradient stages / seconds.

    python -m benchmarks.scaling --out benchmarks/results/speed/scaling.json   # from the repo root (it builds
                                                                        # its dataset with tests/synthetic.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.machine_info import cpu_name  # noqa: E402

EPOCHS = {"itfn": 6, "adn": 6, "fusion": 6}
DIMS = (128, 64, 32)          # features of the generated dataset (two vector modalities, one sequence)
TRAIN_SET = ["--set", "adn.d_model=64", "--set", "adn.ff=128", "--set", "adn.layers=2", "--set", "adn.heads=4",
             "--set", "fusion.d_model=32", "--set", "fusion.ff=64", "--set", "adn.start_grid=[5,20]",
             "--set", "fusion.cross_fit=0"]
for _stage, _n in EPOCHS.items():
    TRAIN_SET += ["--set", f"{_stage}.epochs={_n}", "--set", f"{_stage}.patience={_n}"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cache_times(cache: Path, stop: threading.Event, seen: dict) -> None:
    while not stop.is_set():
        for p in cache.glob("*.npz") if cache.is_dir() else ():
            if not p.name.startswith("."):          # not a file still being written
                seen.setdefault(p.name, time.monotonic())
        time.sleep(0.05)


def extract_once(manifest: Path, out: Path, extra: list[str], env: dict) -> dict:
    seen: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_cache_times, args=(out / ".cache", stop, seen), daemon=True)
    watcher.start()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "app.commands", "extract", "--manifest", str(manifest),
                        "--out", str(out), "--quiet", *extra], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    stop.set()
    watcher.join()
    if r.returncode != 0:
        raise SystemExit(f"extract {' '.join(extra)} failed: {r.stderr.strip()[-2000:]}")
    n = len(seen)
    times = sorted(seen.values())
    span = times[-1] - times[0] if n > 1 else float("nan")
    return {"args": extra, "recordings": n, "wall_s": round(wall, 1),
            "recordings_per_min": round(60 * n / wall, 1),
            "first_result_s": round(times[0] - t0, 1),
            "steady_recordings_per_min": round(60 * (n - 1) / span, 1) if n > 1 else None,
            "load_after": load()}


def bench_extract(n_clips: int, work: Path) -> dict:
    from benchmarks.fixtures import make_clip_manifest
    from extractors.dataset.ray_local import LoopbackCluster

    manifest = make_clip_manifest(work / "clips", n_clips, seconds=3.0, broken=False)
    runs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs.append({"engine": "local", **extract_once(manifest, work / "local", [], env)})
    with LoopbackCluster(nodes=2, cpus_per_node=1) as c:
        for w in (1, 2):
            res = extract_once(manifest, work / f"ray{w}", ["--engine", "ray", "--address", c.address,
                                                            "--workers", str(w)], {**c.env, "OMP_NUM_THREADS": "1"})
            runs.append({"engine": "ray", "workers": w, **res})
    return {"clips": n_clips, "clip_seconds": 3.0, "cluster": "2 Ray nodes x 1 CPU on 127.0.0.1", "runs": runs}


def train_once(ds: Path, out: Path, procs: int) -> dict:
    base = ["-m", "admc", "train", "--data", str(ds), "--out", str(out), "--seed", "0", "--quiet", *TRAIN_SET]
    if procs == 1:
        cmd = [sys.executable, *base]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-addr",
               "127.0.0.1", "--master-port", "29533", *base]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"train ({procs} processes) failed: {r.stderr.strip()[-2000:]}")
    meta = json.loads((out / "run.json").read_text())
    tr = meta["train"]
    return {"processes": procs, "wall_s": round(wall, 1), "train_seconds": tr["train_seconds"],
            "itfn_val_ua": {k: round(v["ua"], 1) for k, v in tr["itfn"].items()},
            "fusion_val_ua": {k: round(v["val_ua"], 1) for k, v in tr["fusion"].items() if isinstance(v, dict)},
            "load_after": load()}


def bench_train(n_train: int, work: Path) -> dict:
    from tests.synthetic import make_dataset

    ds = make_dataset(work / "ds", n_per_split=(n_train, 300, 300), dims=DIMS)
    runs = [train_once(ds, work / f"run{p}", p) for p in (1, 2)]
    modalities = 3
    conditions = 2 ** modalities - 1
    # gradient passes over the training set: one per modality (ITFN), one (ADN), one per condition (fusion)
    passes = EPOCHS["itfn"] * modalities + EPOCHS["adn"] + EPOCHS["fusion"] * conditions
    for r in runs:
        r["sample_epochs_per_s"] = round(n_train * passes / r["train_seconds"], 1)
    return {"train_samples": n_train, "dims": DIMS, "epochs": EPOCHS, "gradient_passes": passes, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/speed/scaling.json"))
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--train-samples", type=int, default=3000)
    ap.add_argument("--only", choices=["extract", "train"], help="one half; the other is kept from --out")
    args = ap.parse_args()
    old = json.loads(Path(args.out).read_text()) if args.only and Path(args.out).is_file() else {}
    res = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count()}, "load_before": load()}
    with tempfile.TemporaryDirectory(prefix="admc-scaling-") as tmp:
        for part, run in (("extract", lambda: bench_extract(args.clips, Path(tmp))),
                          ("train", lambda: bench_train(args.train_samples, Path(tmp)))):
            res[part] = run() if args.only in (None, part) else old.get(part)
    res["load_after"] = load()
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
