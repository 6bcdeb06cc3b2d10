#!/usr/bin/env python
"""How often the live face front end counts a new person, rightly and wrongly.

    .venv/bin/python benchmarks/person_change.py [--people 12] [--seconds 6] [--seed 0]

A live window pools one person's face (``FaceFrontEnd.follow_person``, ``window_person``): a new
person is counted when a face's aligned crop and its expression feature are both unlike the last
face's.  This plays faces the face network never trained on (its FER2013 validation holdout, as the
starter's validation faces) one after another, each for ``--seconds`` at 10 frames/s in a 640x480
frame, through the real front end of the starter's feature set, in three kinds of stream:

* ``steady``: the face moving a few pixels, sensor noise, light within 10 % (the live evaluation's clip);
* ``moving``: a random walk of head roll (up to 15 degrees), size (0.8-1.2), position (up to 60 px),
  light (0.6-1.4) and blur now and then;
* ``moving, hand``: the same with a hand over the lower 40 % of the face for 0.6 s in each face's
  second second.

Per kind: the changes of person counted where the face changed (of the cuts), those counted within one person's frames (per minute of face frames),
and how many of the latter fell at a hand (a hand gets its own number while it covers the face, and
the person theirs back after it).

``--clip val`` also plays the live evaluation's **validation** clip (``benchmarks/live_eval.py
--split val`` builds it: the face network's holdout faces, 14 takes of 18 s) at 10 frames/s through
the front end, where the thresholds were chosen: per pair of consecutive face frames, the crop
correlation and feature cosine within one person (one take) and across a cut (two takes), and the
changes the front end counts at the cuts and within takes.  Writes ``benchmarks/results/live/person_change.{json,md}`` (``--out`` the
folder, ``--name`` the stem; a file there this script did not write is replaced only with
``--overwrite``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KINDS = ("steady", "moving", "moving, hand")
FPS = 10.0
HAND = (10, 16)      # frames of each face's second second under a hand (moving, hand)


def holdout_faces(n: int, seed: int) -> list[str]:
    """``n`` FER2013 faces of the face network's validation holdout (never trained on)."""
    from scripts.starter.faces import face_net_holdout
    from scripts.starter.recipe import DATA as SHARED_DATA

    rows = list(csv.DictReader(open(SHARED_DATA / "fer2013" / "manifest.csv")))
    held = sorted(face_net_holdout(rows))
    rng = np.random.default_rng(seed)
    return [held[i] for i in rng.choice(len(held), n, replace=False)]


def frames_of(face, kind: str, n: int, rng: np.random.Generator):
    """``n`` 640x480 RGB frames of one face (PIL grey image) in the stream ``kind``."""
    from PIL import Image, ImageFilter

    ang, sc, dx, dy, gain = 0.0, 1.0, 0.0, 0.0, 1.0
    for i in range(n):
        if kind == "steady":
            dx, dy, gain = rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(0.9, 1.1)
        else:
            ang = float(np.clip(ang + rng.normal(0, 2.5), -15, 15))
            sc = float(np.clip(sc + rng.normal(0, 0.03), 0.8, 1.2))
            dx = float(np.clip(dx + rng.normal(0, 6), -60, 60))
            dy = float(np.clip(dy + rng.normal(0, 4), -40, 40))
            gain = float(np.clip(gain + rng.normal(0, 0.05), 0.6, 1.4))
        size = int(192 * sc)
        f = face.rotate(ang, resample=Image.Resampling.BILINEAR, fillcolor=120).resize((size, size))
        if kind != "steady" and rng.random() < 0.2:
            f = f.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
        frame = np.full((480, 640), 120.0, np.float32)
        y0, x0 = int(240 - size / 2 + dy), int(320 - size / 2 + dx)
        frame[y0:y0 + size, x0:x0 + size] = np.asarray(f, np.float32) * gain
        if kind == "moving, hand" and HAND[0] <= i < HAND[1]:
            frame[y0 + int(0.6 * size):y0 + size, x0:x0 + size] = 170.0
        frame += rng.normal(0, 3, frame.shape)
        yield np.repeat(np.clip(frame, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def run_kind(face_fn, faces: list[str], kind: str, seconds: float, seed: int) -> dict:
    from PIL import Image

    from app.session import SessionConfig
    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig
    from scripts.starter.recipe import DATA as SHARED_DATA

    rng = np.random.default_rng(seed)
    fe = FaceFrontEnd(face_fn, SessionConfig(face_fps=None), HealthConfig())
    n = int(round(seconds * FPS))
    caught, within, at_hand, face_frames, last = 0, 0, 0, 0, 0
    for k, path in enumerate(faces):
        nth = 0                               # face frames of this face so far
        for i, rgb in enumerate(frames_of(Image.open(SHARED_DATA / "fer2013" / path).convert("L"), kind, n, rng)):
            ff = fe.process(fe.normalise(rgb), (k * n + i) / FPS)
            if ff.feature is None:
                continue
            face_frames += 1
            if ff.person != last:
                if nth == 0 and k > 0:                  # at a new face's first frame
                    caught += 1
                else:
                    within += 1
                    at_hand += kind == "moving, hand" and i in (HAND[0], HAND[0] + 1, HAND[1], HAND[1] + 1)
            nth, last = nth + 1, ff.person
    minutes = face_frames / FPS / 60
    return {"kind": kind, "faces": len(faces), "cuts": len(faces) - 1, "caught": caught, "face_frames": face_frames,
            "within_person": within, "within_per_minute": round(within / minutes, 2) if minutes else None,
            "within_at_hand_edges": at_hand}


def clip_pairs(face_fn, clip_json: Path) -> dict:
    """Consecutive face frames of the live evaluation's clip through the front end: likeness within a
    take and across a cut, and the person changes counted."""
    from app.session import SessionConfig
    from extractors.live.face_frontend import (PERSON_CROP_CORR, PERSON_FEATURE_COS, FaceFrontEnd, standardized_face,
                                               face_likeness)
    from extractors.live.health import HealthConfig
    from extractors.media import iter_video

    info = json.loads(clip_json.read_text())
    segs = info["segments"]

    def take_at(t):
        return next((s["take"] for s in segs if s["start"] <= t < s["end"]), None)

    fe = FaceFrontEnd(face_fn, SessionConfig(face_fps=None), HealthConfig())
    within, across, prev, changes_at_cuts, changes_within = [], [], None, 0, 0
    for t, frame in iter_video(info["clip"], fps=FPS):
        ff = fe.process(fe.normalise(frame), t)
        if ff.crop is None or ff.feature is None:
            continue
        face, take = standardized_face(ff.crop, ff.feature), take_at(t)
        if prev is not None:
            (within if take == prev[1] else across).append(face_likeness(face, prev[0]))
            if ff.person != prev[2]:
                if take != prev[1]:                     # at the cut
                    changes_at_cuts += 1
                else:
                    changes_within += 1
        prev = (face, take, ff.person)
    w, a = np.array(within), np.array(across)

    def both_below(x):
        return int(np.sum((x[:, 0] < PERSON_CROP_CORR) & (x[:, 1] < PERSON_FEATURE_COS)))

    return {"clip": str(clip_json.relative_to(REPO)) if clip_json.is_relative_to(REPO) else clip_json.name,
            "pairs_within": len(w), "cuts": len(a),
            "within_crop_corr_min_p01_p1": [round(float(v), 3) for v in (w[:, 0].min(), *np.percentile(w[:, 0], [0.1, 1]))],
            "within_feature_cos_min_p01_p1": [round(float(v), 3) for v in (w[:, 1].min(), *np.percentile(w[:, 1], [0.1, 1]))],
            "cut_crop_corr_max": round(float(a[:, 0].max()), 3), "cut_feature_cos_max": round(float(a[:, 1].max()), 3),
            "within_both_below": both_below(w), "cuts_both_below": both_below(a),
            "changes_at_cuts": changes_at_cuts, "changes_within_takes": changes_within}


def markdown(res: dict) -> str:
    lines = ["# Person changes: the live face front end", "",
             f"{res['people']} faces of the face network's FER2013 validation holdout, {res['seconds']:g} s each at "
             f"{FPS:g} frames/s, through `FaceFrontEnd.follow_person` (crop correlation < {res['crop_corr']}, feature "
             f"cosine < {res['feature_cos']}). Command: `python benchmarks/person_change.py`.", "",
             "| stream | cuts counted | changes within one person | per minute of face frames | of them within a frame of a hand's start or end |",
             "|---|---|---|---|---|"]
    for r in res["kinds"]:
        lines.append(f"| {r['kind']} | {r['caught']} of {r['cuts']} | {r['within_person']} | {r['within_per_minute']} "
                     f"| {r['within_at_hand_edges'] if r['kind'] == 'moving, hand' else '-'} |")
    c = res.get("clip")
    if c:
        lines += ["", f"The live evaluation's validation clip (`{c['clip']}`), consecutive face frames at {FPS:g} frames/s:", "",
                  "| | within one person (one take) | across a cut (two takes) |", "|---|---|---|",
                  f"| pairs | {c['pairs_within']} | {c['cuts']} |",
                  f"| crop correlation: min, 0.1 %, 1 % / max | {', '.join(map(str, c['within_crop_corr_min_p01_p1']))} | "
                  f"max {c['cut_crop_corr_max']} |",
                  f"| feature cosine: min, 0.1 %, 1 % / max | {', '.join(map(str, c['within_feature_cos_min_p01_p1']))} | "
                  f"max {c['cut_feature_cos_max']} |",
                  f"| both below the thresholds | {c['within_both_below']} | {c['cuts_both_below']} |",
                  f"| person changes the front end counted | {c['changes_within_takes']} | {c['changes_at_cuts']} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from admc.cli import OneLineParser
    from admc.outdir import add_result_pair_arguments, check_result_pair

    ap = OneLineParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds of each face")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clip", choices=["val", "none"], default="val",
                    help="also the live evaluation's validation clip (built by benchmarks/live_eval.py --split val)")
    add_result_pair_arguments(ap, REPO / "benchmarks" / "results" / "live", "person_change")
    args = ap.parse_args(argv)
    if args.people < 2 or args.seconds < 2.0:
        ap.error(f"--people {args.people} / --seconds {args.seconds:g}: at least 2 faces of 2 s")
    check_result_pair(ap, args.out, args.name, "person-change", overwrite=args.overwrite)
    clip_json = REPO / "benchmarks" / "_work" / "live_eval" / "val" / "takes2" / "clip.json"
    if args.clip == "val" and not clip_json.is_file():
        ap.error(f"--clip val: {clip_json} is missing; run benchmarks/live_eval.py --split val once (or --clip none)")
    import torch

    from app.checkpoint import load_checkpoint
    from app.session import Components
    from extractors.live import face_frontend

    torch.set_num_threads(1)
    ck = load_checkpoint(None, "cpu")
    comp = Components.load("cpu", feature_set=ck.feature_set, asr=False)
    faces = holdout_faces(args.people, args.seed)
    res = {"people": args.people, "seconds": args.seconds, "seed": args.seed,
           "crop_corr": face_frontend.PERSON_CROP_CORR, "feature_cos": face_frontend.PERSON_FEATURE_COS,
           "kinds": [run_kind(comp.face, faces, kind, args.seconds, args.seed + j) for j, kind in enumerate(KINDS)],
           "clip": clip_pairs(comp.face, clip_json) if args.clip == "val" else None}
    from benchmarks.browser_path import write_results

    write_results(args.out, args.name, res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
