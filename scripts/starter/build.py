"""Build the starter checkpoint ``weights/starter/`` from real recordings, in one command::

    .venv/bin/python scripts/build_starter.py            # ~1 h on 2 CPU cores from scratch
    .venv/bin/python -m scripts.starter                  # the same

No public dataset pairs face, voice and words, so the starter is trained on *class-conditional
pairs* of real unimodal samples sharing a label (see ``weights/starter/MODEL_CARD.md``):

The features are the live extractors of the default feature set (``extractors.live_schema``):

* V: FER2013 faces (``<shared>/data/fer2013``) through ``FaceExtractor.classify_crops`` (the live
  FER2013 ResNet, ``weights/face_resnet_fer2013.*``); each still face becomes a 3 s / 30-row sequence
  from 4 jittered crops (small shift/scale/rotation, lighting, mirror) whose features are linearly
  interpolated over the window.  Validation faces come from the network's own held-out 10 %.
* A: EmoDB (German) and RAVDESS (English) speech on 3 s windows placed on the voiced part found by the
  live VAD (short clips padded with a microphone-like noise floor; digital silence dithered), 30 rows
  each: openSMILE ComParE LLDs next to the Whisper tiny.en encoder states of the window.
* T: GoEmotions (Ekman labels, single-label comments) written "as Whisper would transcribe it" and
  encoded by MiniLM (word-piece features) followed by nade's emoji credences.

Stages (each cached under ``--work``, default ``benchmarks/_work/starter``, git-ignored):
``faces``, ``speech``, ``text`` (features), ``pairs`` (the paired dataset), ``train`` (``admc bench``
with methods admc, zero_fill and late_fusion), ``sampler`` (its admc run becomes the checkpoint, completing
with the ADN's own sampler, its ridge prior alone, the mean of the nearest training samples or the
classifier averaged over them, whichever classifies validation best, a tie going to the cheaper:
``admc calibrate --sampler auto``, which refits the temperatures for it), ``evaluate`` (per-source
unimodal test accuracy, late fusion), ``card`` (``MODEL_CARD.md``).  ``--fresh`` deletes the work
folder first; ``--from-stage train`` reruns training and everything after it (e.g. after the ADMC
defaults changed) while reusing the features.

Training and validation windows are made through the live front ends (``--live-render``, the
default since the starter of issue 29: ``extractors/dataset/training_render.py``: voice in
conversation-like 48 kHz streams, faces in webcam frames; ``--stream-windows N`` of the 4 training
windows per clip from the stream, the rest placed on the clip alone), and a share of the training and
validation pairs carry neutral words (``recipe.NEUTRAL_WORDS_P``); ``--no-live-render`` makes the
isolated, centred windows of the earlier starters.  ``--feature-set`` builds on another set of live
extractors (``extractors/live_schema.py``; the checkpoint records it and the app builds those).
``docs/starter.md`` compares the recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from admc.cli import number_type          # light: no torch
from extractors.live_schema import FEATURE_SETS
from scripts.starter import recipe
from scripts.starter.card import stage_card
from scripts.starter.evaluation import stage_evaluate
from scripts.starter.faces import stage_faces
from scripts.starter.pairs import Sources, stage_pairs
from scripts.starter.recipe import REPO, TRAIN_SET, TRAIN_WINDOWS
from scripts.starter.speech import stage_speech
from scripts.starter.text import stage_text
from scripts.starter.training import stage_sampler, stage_train
from scripts.starter.workers import init_worker

STAGES = ("faces", "speech", "text", "pairs", "train", "sampler", "evaluate", "card")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(REPO / "benchmarks" / "_work" / "starter"))
    ap.add_argument("--out", default=str(REPO / "weights" / "starter"))
    ap.add_argument("--workers", type=int, default=2, help="feature extraction processes (1 thread each)")
    ap.add_argument("--fresh", action="store_true", help="delete the work folder first")
    ap.add_argument("--from-stage", choices=STAGES, default=None, help="redo this stage and all after it")
    ap.add_argument("--only", choices=STAGES, action="append", help="run only these stages")
    ap.add_argument("--set", action="append", default=None, help="admc train setting (default: TRAIN_SET)")
    ap.add_argument("--feature-set", choices=tuple(FEATURE_SETS), default=recipe.FEATURES.name,
                    help="the live extractors the starter reads (extractors/live_schema.py; default the "
                         "shipped starter's); start from a fresh --work when changing it")
    ap.add_argument("--live-render", action=argparse.BooleanOptionalAction, default=recipe.LIVE_RENDER,
                    help="render training and validation windows through the live front ends (voice in "
                         "conversation-like 48 kHz streams, faces in webcam frames; docs/live-skew.md); the "
                         "default, as the shipped starter was built; --no-live-render: isolated, centred windows")
    ap.add_argument("--stream-windows", type=int, default=recipe.STREAM_WINDOWS, choices=range(0, TRAIN_WINDOWS + 1),
                    metavar=f"0..{TRAIN_WINDOWS}", help="with --live-render: training windows per clip from the stream")
    ap.add_argument("--stream-tail", type=number_type(float, 0.0, 10.0, what="seconds"), default=recipe.STREAM_TAIL_S,
                    metavar="SECONDS",
                    help="with --live-render: stream windows end up to this long after an utterance's voiced end "
                         f"(default {recipe.STREAM_TAIL_S:g}, the shipped starter's; the app's voice hold is 3)")
    args = ap.parse_args(argv)
    recipe.LIVE_RENDER, recipe.STREAM_WINDOWS = bool(args.live_render), int(args.stream_windows)
    recipe.STREAM_TAIL_S = float(args.stream_tail)
    recipe.use_feature_set(args.feature_set)
    work, out = Path(args.work), Path(args.out)
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    settings = args.set if args.set is not None else TRAIN_SET
    done_files = {"faces": work / "faces.npz", "speech": work / "speech.npz", "text": work / "text.npz",
                  "pairs": work / "paired" / "meta.json", "train": work / "bench" / "results.json",
                  "sampler": work / "sampler.log",
                  "evaluate": work / "eval.json", "card": None}
    redo = set(STAGES[STAGES.index(args.from_stage):]) if args.from_stage else set()
    tfile = work / "timings.json"
    timings = json.loads(tfile.read_text()) if tfile.is_file() and not args.fresh else {}
    lfile = work / "load.json"
    load = json.loads(lfile.read_text()) if lfile.is_file() and not args.fresh else {}
    t_all = time.time()
    pool = None
    import torch

    torch.set_num_threads(1)
    try:
        src = None
        for stage in STAGES:
            if args.only and stage not in args.only:
                continue
            f = done_files[stage]
            if f is not None and f.exists() and stage not in redo and not args.only:
                print(f"[{stage}] cached ({f})", flush=True)
                continue
            print(f"[{stage}] ...", flush=True)
            t0 = time.time()
            if stage in ("faces", "speech", "text"):
                if pool is None and args.workers > 1:
                    import multiprocessing as mp

                    pool = mp.get_context("spawn").Pool(min(args.workers, 2), initializer=init_worker,
                                                           initargs=(args.feature_set,))
                {"faces": stage_faces, "speech": stage_speech, "text": stage_text}[stage](work, pool)
            else:
                if pool is not None:
                    pool.close()
                    pool.join()
                    pool = None
                if stage not in ("train", "sampler") and src is None:
                    src = Sources(work)
                if stage == "pairs":
                    stage_pairs(work, src)
                elif stage == "train":
                    stage_train(work, out, settings)
                elif stage == "sampler":
                    stage_sampler(work, out)
                elif stage == "evaluate":
                    stage_evaluate(work, out, src)
                elif stage == "card":
                    timings["total"] = sum(v for k, v in timings.items() if k != "total")
                    tfile.write_text(json.dumps(timings, indent=1) + "\n")
                    stage_card(work, out, src, settings)
            timings[stage] = round(time.time() - t0, 1)
            tfile.write_text(json.dumps(timings, indent=1) + "\n")
            load[stage] = round(os.getloadavg()[0], 2)
            lfile.write_text(json.dumps(load, indent=1) + "\n")
            print(f"[{stage}] done in {timings[stage]:.0f} s", flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    print(f"build_starter: {time.time() - t_all:.0f} s this run; checkpoint in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
