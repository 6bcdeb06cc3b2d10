"""Stages ``train`` (``admc bench``) and ``sampler`` (``admc calibrate --sampler auto``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.starter import recipe
from scripts.starter.recipe import CLASSES, REPO, SEED


def model_megabytes(settings: list[str]) -> float:
    from admc.overrides import with_overrides
    from admc.pipeline import ADMCModel

    cfg = with_overrides(settings)
    m = ADMCModel(recipe.FEATURES.schema(CLASSES), cfg)
    return sum(t.numel() * t.element_size() for t in m.state_dict().values()) / 1e6


def stage_train(work: Path, out: Path, settings: list[str]) -> None:
    mb = model_megabytes(settings)
    if mb > 30:
        raise SystemExit(f"build_starter: the model would be {mb:.1f} MB (> 30 MB): adjust TRAIN_SET")
    bench = work / "bench"
    cmd = [sys.executable, "-m", "admc.cli", "bench", "--data", str(work / "paired"), "--out", str(bench),
           "--methods", "admc,zero_fill,late_fusion", "--seed", str(SEED), "--device", "cpu"]
    for s in settings:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print("+", " ".join(cmd), flush=True)
    try:  # which core trained it (the admc defaults evolve)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "admc"], cwd=REPO, capture_output=True,
                               text=True).stdout.split("\n")
        (work / "train_env.json").write_text(json.dumps(
            {"commit": head, "admc_uncommitted": [d[3:] for d in dirty if d.strip()]}, indent=1) + "\n")
    except OSError:
        pass
    with open(work / "train.log", "w") as log:
        r = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"build_starter: admc bench failed (rc {r.returncode}); see {work / 'train.log'}")
    run = bench / "runs" / f"admc-seed{SEED}"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "model.safetensors"):
        shutil.copyfile(run / name, out / name)
        os.chmod(out / name, 0o644)


def stage_sampler(work: Path, out: Path) -> None:
    """The shipped completer, chosen on validation (issue 25): ``admc calibrate --sampler auto`` measures
    the ridge prior alone, the trained ADN's own sampler, the mean of the nearest training samples
    (hot-deck) and the classifier averaged over them, in that order of cost, takes a costlier one only where the model classifies the paired
    validation split better with it, and refits the temperatures and abstain threshold for what it keeps.
    Its run (``WORK/shipped``) is copied to ``out`` beside the model card."""
    run, shipped = work / "bench" / "runs" / f"admc-seed{SEED}", work / "shipped"
    cmd = [sys.executable, "-m", "admc.cli", "calibrate", "--run", str(run), "--data", str(work / "paired"),
           "--out", str(shipped), "--overwrite", "--sampler", "auto", "--device", "cpu", "--threads", "1"]
    print("+", " ".join(cmd), flush=True)
    with open(work / "sampler.log", "w") as log:
        r = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if r.returncode:
        raise SystemExit(f"build_starter: admc calibrate failed (rc {r.returncode}); see {work / 'sampler.log'}")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("run.json", "model.safetensors"):
        shutil.copyfile(shipped / name, out / name)
        os.chmod(out / name, 0o644)
