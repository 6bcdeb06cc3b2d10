"""Live evaluation through the real app path: labelled clips from held-out material, scored per window.

    .venv/bin/python benchmarks/live_eval.py --checkpoint weights/starter --name starter
    .venv/bin/python benchmarks/live_eval.py --checkpoint OLD_RUN --name starter_before

Clips (built once, cached under ``--work``; held-out material only, seeded):

* faces: FER2013 **PrivateTest** faces, upscaled 3x onto a grey 320x240 frame, moving a few pixels
  (a slow sway) with sensor noise, 10 fps; only faces the live detector finds at that size are used
  (the choice looks at detection, never at labels or predictions);
* speech: **RAVDESS test actors 19-24** (the starter's test speakers), clips of the same emotion
  (calm counts as neutral) one after another;
* each (emotion, take) is three 6 s segments: ``full`` (face + speech), ``face_hidden`` (speech, no
  face in the frame) and ``silent`` (face, no speech: a -65 dBFS noise floor).

All segments are joined into one clip (H.264 + AAC) and run through ``python -m app --source CLIP
--no-ui --out JSONL --checkpoint CK``: the app's own extractors, stream health, ASR, completion and
calibration.  Every window whose 3 s lie inside one segment is scored: WA (accuracy) and UA (mean
recall over emotions) overall and per segment state, with the share of windows shown as
"uncertain" and the accuracy of the rest.  A window without a prediction counts as wrong.
Writes ``benchmarks/results/live/live_eval_<name>.{json,md}``.

``--split val`` builds the same kind of clip from validation material (the face network's holdout
faces, RAVDESS validation actors 15-18) under ``--work/val`` and names its results ``NAME_val``: a live
setting is chosen there, never on the test clip.

``--browser`` plays the same clip through headless Chromium's fake camera (640x480, 30 fps) and
microphone (48 kHz) into ``python -m app`` (the UI, as a user meets it; ``benchmarks/browser_path.py``
does the driving) and scores the windows of the page's JSON export exactly like replay.  A window's
end is placed on the clip by the page's own clock (when each fake device started, the server's
stream time 0 from ``--trace``): a window is scored when its 3 s lie inside one segment on both the
camera's and the microphone's clock (the two start a moment apart).  Writes
``live_eval_<name>_browser.{json,md}``.

Both modes record, per modality, the share of windows in each stream state, the share of live
windows rejected as out of distribution, the uncertain share and the machine's load.

``--vs OTHER`` compares with an earlier run on the same clip (``--work/OTHER.jsonl``): the difference in
window accuracy with a 95 % interval from a bootstrap over the segments (windows of one segment are
not independent), stored under ``vs`` in the JSON.  ``--reuse`` scores the run's JSONL again without
running the app.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from scripts.starter import recipe as bs  # noqa: E402 - the starter's sources and label maps
from scripts.starter.speech import noise_floor  # noqa: E402
from benchmarks.machine_info import cpu_name  # noqa: E402
from admc.cli import number_type  # noqa: E402 - the app's own argument check (light: no torch)
from benchmarks.browser_path import shown_path  # noqa: E402 - light: no torch

SEG_S = 6.0
STATES = ("full", "face_hidden", "silent")
FPS = 10.0
SR = 16000
FRAME = (320, 240)
SCALE = 3


SPLITS = ("test", "val")


def _face_candidates(label: str, rng: np.random.Generator, split: str = "test") -> list[Path]:
    """FER2013 PrivateTest faces (``test``), or (``val``) the train faces the face network never
    trained on, its validation holdout (the starter's validation faces come from it too)."""
    import csv

    rows = list(csv.DictReader(open(bs.DATA / "fer2013" / "manifest.csv")))
    if split == "val":
        from scripts.starter.faces import face_net_holdout

        held = face_net_holdout(rows)
        rows = [r for r in rows if r["path"] in held and bs.FER_MAP[r["label"]] == label]
    else:
        rows = [r for r in rows if r["split"] == "test" and "PrivateTest" in r["path"] and bs.FER_MAP[r["label"]] == label]
    order = rng.permutation(len(rows))
    return [bs.DATA / "fer2013" / rows[i]["path"] for i in order]


def _frame(face: np.ndarray, t: float, rng: np.random.Generator) -> np.ndarray:
    w, h = FRAME
    img = np.full((h, w, 3), 110, np.int16)
    fh, fw = face.shape[:2]
    dx = int(round(6 * np.sin(2 * np.pi * t / 2.0)))
    dy = int(round(3 * np.sin(2 * np.pi * t / 3.0)))
    y0, x0 = (h - fh) // 2 + dy, (w - fw) // 2 + dx
    img[y0:y0 + fh, x0:x0 + fw] = face[..., None]
    return np.clip(img + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


def build_clip(work: Path, takes: int, seed: int = 0, split: str = "test") -> dict:
    """The clip and its segment table (cached): of test material, or (``split="val"``) of
    validation material (the face network's holdout faces, RAVDESS validation actors 15-18), for
    choosing a live setting without looking at the test clip."""
    info_file = work / "clip.json"
    if info_file.is_file():
        return json.loads(info_file.read_text())
    import csv

    from PIL import Image

    from benchmarks.fixtures import write_mp4
    from extractors.models.audio import load_audio
    from extractors.models.face import FaceExtractor

    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fx = FaceExtractor(device="cpu")
    speech_rows = [r for r in csv.DictReader(open(bs.DATA / "ravdess_speech" / "manifest.csv"))
                   if int(r["speaker_or_subject"]) in (bs.RAVDESS_VAL if split == "val" else bs.RAVDESS_TEST)]
    segments, frames, audio = [], [], []
    t = 0.0
    for label in bs.CLASSES:
        faces = iter(_face_candidates(label, rng, split))
        clips = [bs.DATA / "ravdess_speech" / r["path"] for r in speech_rows if bs.RAVDESS_MAP[r["label"]] == label]
        clips = [clips[i] for i in rng.permutation(len(clips))]
        for take in range(takes):
            while True:                              # a face the live detector finds at this size
                p = next(faces)
                g = np.asarray(Image.open(p).convert("L").resize((48 * SCALE, 48 * SCALE), Image.Resampling.BICUBIC))
                if fx(_frame(g, 0.0, rng), 0.0).detected:
                    break
            speech = []
            while sum(len(x) for x in speech) < SEG_S * SR:
                speech.append(load_audio(clips.pop(0), SR) if clips else np.zeros(SR, np.float32))
            speech = np.concatenate(speech)[: int(SEG_S * SR)]
            for state in STATES:
                n = int(SEG_S * FPS)
                for i in range(n):
                    tt = t + i / FPS
                    frames.append(_frame(g, tt, rng) if state != "face_hidden"
                                  else _frame(np.full_like(g, 110), tt, rng))
                a = speech if state != "silent" else np.zeros(int(SEG_S * SR), np.float32)
                audio.append(np.clip(a + noise_floor(len(a), bs.EVAL_NOISE_DBFS, rng), -1, 1))
                segments.append({"start": round(t, 3), "end": round(t + SEG_S, 3), "label": label, "state": state,
                                 "face": str(p.relative_to(bs.DATA)), "take": take})
                t += SEG_S
    audio = np.concatenate(audio).astype(np.float32)
    path = write_mp4(work / "live_eval.mp4", iter(frames), audio, FPS, SR)
    info = {"clip": str(path), "duration": t, "segments": segments, "fps": FPS, "seed": seed, "takes": takes,
            "split": split}
    info_file.write_text(json.dumps(info, indent=1) + "\n")
    return info


def segment_of(t: float, segments: list[dict]) -> int | None:
    """The index of the segment that holds the whole 3 s window ending at clip time ``t``, or None
    (the window straddles segments or lies off the clip)."""
    for i, s in enumerate(segments):
        if s["start"] - 1e-6 <= t - 3.0 and t <= s["end"] + 1e-6:
            return i
    return None


def predicted(r: dict) -> str | None:
    """The window's most probable class: its ``label``, or for an uncertain window (``label`` null
    since the app stopped naming those) the argmax of its probabilities, so accuracy is comparable
    with runs made before; None without probabilities."""
    if r.get("label"):
        return r["label"]
    probs = r.get("probs") or {}
    return max(probs, key=probs.get) if probs else None


def score(rows: list[dict], segments: list[dict], classes: list[str]) -> dict:
    def one(sel: list[tuple[dict, dict]]) -> dict:
        if not sel:
            return {"windows": 0}
        y = np.array([classes.index(s["label"]) for _, s in sel])
        pred = np.array([classes.index(predicted(r)) if predicted(r) in classes else -1 for r, _ in sel])
        unc = np.array([bool(r.get("uncertain")) for r, _ in sel])
        rec = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
        conf = ~unc
        return {"windows": int(len(sel)), "wa": round(100 * float((pred == y).mean()), 1),
                "ua": round(100 * float(np.mean(rec)), 1), "uncertain_share": round(100 * float(unc.mean()), 1),
                "wa_confident": round(100 * float((pred[conf] == y[conf]).mean()), 1) if conf.any() else None,
                "no_prediction": int((pred < 0).sum())}

    scored = [(r, segments[i]) for r in rows if (i := segment_of(float(r["t"]), segments)) is not None]
    out = {"overall": one(scored)}
    for st in STATES:
        out[st] = one([(r, s) for r, s in scored if s["state"] == st])
    return out


def stream_summary(rows: list[dict], mods=("A", "V", "T")) -> dict:
    """Per modality: the share of windows live, out of distribution among the live ones, and the
    reasons for the rest (each %, of the windows given)."""
    out = {}
    n = max(1, len(rows))
    for m in mods:
        live = [r for r in rows if r["streams"].get(m) == "live"]
        ood = [r for r in live if ((r.get("ood") or {}).get(m) or {}).get("out")]
        reasons: dict[str, int] = {}
        for r in rows:
            if r["streams"].get(m) != "live":
                why = str(r["reasons"].get(m, "")).split(":")[0]
                reasons[why] = reasons.get(why, 0) + 1
        out[m] = {"live_share": round(100.0 * len(live) / n, 1),
                  "ood_share_of_live": round(100.0 * len(ood) / len(live), 1) if live else None,
                  "missing_reasons": {k: round(100.0 * v / n, 1) for k, v in sorted(reasons.items(), key=lambda x: -x[1])}}
    out["uncertain_share"] = round(100.0 * sum(bool(r.get("uncertain")) for r in rows) / n, 1)
    return out


SPANS = ("one segment", "two states of one take", "two takes")


def window_span(t: float, segments: list[dict]) -> str | None:
    """Where a window ending at clip time ``t`` lies: inside ``one segment``, across ``two states of
    one take`` (the same face or speech appearing or going), or across ``two takes`` (a cut to another
    person's face and another speaker: a window a webcam user does not make); None off the clip."""
    over = [s for s in segments if s["end"] > t - 3.0 + 1e-6 and s["start"] < t - 1e-6]
    if not over:
        return None
    if len(over) == 1 or segment_of(t, segments) is not None:
        return SPANS[0]
    return SPANS[2] if len({(s["label"], s["take"]) for s in over}) > 1 else SPANS[1]


def ood_by_span(rows: list[dict], segments: list[dict], clip_time=None, mods=("A", "V", "T")) -> dict:
    """Per modality and :func:`window_span`: the live windows and the share of them flagged out of
    distribution.  ``clip_time(row, modality)`` places a window on the clip (default: its ``t``)."""
    clip_time = clip_time or (lambda r, m: float(r["t"]))
    out = {}
    for m in mods:
        counts = {k: [0, 0] for k in SPANS}
        for r in rows:
            if r["streams"].get(m) != "live":
                continue
            span = window_span(clip_time(r, m), segments)
            if span is None:
                continue
            counts[span][0] += 1
            counts[span][1] += bool(((r.get("ood") or {}).get(m) or {}).get("out"))
        out[m] = {k: {"live": n, "ood_share_of_live": round(100.0 * o / n, 1) if n else None}
                  for k, (n, o) in counts.items()}
    return out


def _span_lines(by_span: dict) -> list[str]:
    lines = ["", "Out of distribution, % of the live windows by where the window lies on the clip (live windows "
             "in brackets); a window across two takes holds two people's faces or voices:", "",
             "| modality | " + " | ".join(SPANS) + " |", "|---|" + "---|" * len(SPANS)]
    for m, v in by_span.items():
        lines.append(f"| {m} | " + " | ".join(f"{v[k]['ood_share_of_live']} ({v[k]['live']})" for k in SPANS) + " |")
    return lines


def place_browser_windows(rows: list[dict], t0_wall: float, video_start: float, audio_start: float,
                          segments: list[dict], audio_clip_t: dict | None = None) -> list[dict]:
    """The page's windows placed on the clip: a window ending at session time ``t`` ends at wall
    time ``t0_wall + t``, i.e. at clip time ``wall - video_start`` on the camera's clock and ``wall -
    audio_start`` on the microphone's -- or, where ``audio_clip_t`` has the window (session time ->
    the clip time of the audio the window used, from the trace), at that: a fake microphone under
    load plays the file a few percent slower than real time, and the app uses its audio on the
    audio's own clock.  Kept (with ``t`` the camera's clip time) when both clocks put its 3 s inside
    the same segment."""
    out = []
    for r in rows:
        cv, ca = clip_times(float(r["t"]), t0_wall, video_start, audio_start, audio_clip_t)
        i = segment_of(cv, segments)
        if i is not None and segment_of(ca, segments) == i:
            out.append({**r, "t": round(cv, 3), "session_t": r["t"]})
    return out


def clip_times(t: float, t0_wall: float, video_start: float, audio_start: float,
               audio_clip_t: dict | None = None) -> tuple[float, float]:
    """A page window ending at session time ``t`` on the clip: (the camera's clip time, the
    microphone's: the audio the window used where ``audio_clip_t`` has it, else the wall clock's)."""
    wall = t0_wall + t
    ca = (audio_clip_t or {}).get(round(t, 3), wall - audio_start)
    return wall - video_start, ca


def run_browser_mode(checkpoint: Path, info: dict, work: Path, app_args: tuple[str, ...] = ()
                     ) -> tuple[list[dict], list[dict], dict]:
    """Play the whole clip through Chromium into the app; (placed windows, all windows, run facts)."""
    from app.trace import read_trace
    from benchmarks import browser_path as bp

    seconds = float(info["duration"])
    mjpeg, wav = bp.render_media(info, work / "browser", 0.0, seconds)
    trace, log = work / "browser" / "trace.jsonl", work / "browser" / "server.log"
    proc, url = bp.start_app(checkpoint, log, trace=trace, app_args=app_args)
    try:
        load0 = os.getloadavg()[0]
        page = bp.run_browser(url, mjpeg, wav, seconds - 0.5, proc.pid)
    finally:
        bp.stop(proc)
    events = read_trace(trace)
    t0 = [e for e in events if e["ev"] == "session"][0]["t0_wall"]     # the page's session, first opened
    starts = {}
    for kind, wall in page["probe"]["streams"]:
        starts[kind] = wall / 1000.0               # the last open of each device: the file plays from there
    rows = page["windows"]
    # the audio a window used, on the clip's clock: its audio time from the start of the microphone's
    # stream (the first chunk's stream time is the clip's 0)
    first_audio = min((e["t"] for e in events if e["ev"] == "audio_in"), default=None)
    audio_clip_t = ({round(e["t"], 3): e["t_audio"] - first_audio for e in events
                     if e["ev"] == "window" and e.get("t_audio") is not None} if first_audio is not None else None)
    (work / "browser" / "probe.json").write_text(json.dumps(page["probe"]))
    placed = place_browser_windows(rows, t0, starts["video"], starts["audio"], info["segments"], audio_clip_t)
    by_wall = place_browser_windows(rows, t0, starts["video"], starts["audio"], info["segments"])

    def clip_time(r: dict, m: str) -> float:            # V on the camera's clock, A and T on the audio's
        cv, ca = clip_times(float(r["t"]), t0, starts["video"], starts["audio"], audio_clip_t)
        return cv if m == "V" else ca
    drift = [e["t"] - e["t_audio"] for e in events if e["ev"] == "window" and e.get("t_audio") is not None]
    facts = {"scores_by_wall_clock": score(by_wall, info["segments"], list(bs.CLASSES)),
             "ood_by_window_span": ood_by_span(rows, info["segments"], clip_time),
             "audio_behind_wall_clock_s": {"median": round(float(np.median(drift)), 2) if drift else None,
                                           "max": round(float(np.max(drift)), 2) if drift else None},
             "streamed_s": page["streamed_s"], "server": page["server"], "browser": page["browser"],
             "stages": bp.stages(events, page["probe"]), "load_1min_before": round(load0, 2),
             "camera_minus_microphone_start_s": round(starts["video"] - starts["audio"], 3)}
    return placed, rows, facts


def _segment_hits(rows: list[dict], segments: list[dict]) -> dict[int, list[bool]]:
    """Per segment index: whether each scored window's label is the segment's label."""
    out: dict[int, list[bool]] = {}
    for r in rows:
        i = segment_of(float(r["t"]), segments)
        if i is not None:
            out.setdefault(i, []).append(predicted(r) == segments[i]["label"])
    return out


def compare(rows: list[dict], other: list[dict], segments: list[dict], draws: int = 5000, seed: int = 0) -> dict:
    """Window accuracy of ``rows`` minus ``other`` (same clip), with a 95 % segment-bootstrap interval."""
    a, b = _segment_hits(rows, segments), _segment_hits(other, segments)
    idx = sorted(set(a) & set(b))
    if not idx:
        return {"segments": 0}
    hits_a = np.array([sum(a[i]) for i in idx], float)
    hits_b = np.array([sum(b[i]) for i in idx], float)
    n_a = np.array([len(a[i]) for i in idx], float)
    n_b = np.array([len(b[i]) for i in idx], float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(idx), (draws, len(idx)))
    diffs = 100 * (hits_a[picks].sum(1) / n_a[picks].sum(1) - hits_b[picks].sum(1) / n_b[picks].sum(1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    wa = 100 * float(hits_a.sum() / n_a.sum() - hits_b.sum() / n_b.sum())
    return {"segments": len(idx), "wa_difference": round(wa, 1),
            "ci95": [round(float(lo), 1), round(float(hi), 1)], "bootstrap_draws": draws}


def _result_stem(args) -> Path:
    """Where this run's results go: ``OUT/live_eval_NAME`` (replay) or ``..._browser``, + .json / .md."""
    return args.out / f"live_eval_{args.name}{'_browser' if args.browser else ''}"


def _result_file(stem: Path, suffix: str) -> Path:
    """``stem`` + ``suffix`` (not ``with_suffix``: a name like ``hold1.5`` keeps its dot)."""
    return stem.with_name(stem.name + suffix)


def _app_args(args) -> tuple[str, ...]:
    return ("--voice-hold", str(args.voice_hold)) if args.voice_hold is not None else ()


def _voice_hold(args) -> float:
    """The voice hold the app ran with: ``--voice-hold``, or the app's default."""
    from extractors.live.audio_frontend import AudioSettings

    return float(args.voice_hold) if args.voice_hold is not None else AudioSettings().a_hold_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "weights" / "starter")
    ap.add_argument("--name", default="starter")
    ap.add_argument("--label", default=None, help="what the checkpoint is, for the table header (default: its path)")
    ap.add_argument("--takes", type=int, default=2, help="clips per emotion (each 3 segments of 6 s)")
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "_work" / "live_eval")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "live")
    ap.add_argument("--vs", default=None, help="an earlier run's name on the same clip to compare with")
    ap.add_argument("--reuse", action="store_true", help="score this run's existing JSONL (do not run the app)")
    ap.add_argument("--split", choices=SPLITS, default="test",
                    help="the clip's material: test (the reported numbers) or val (validation faces and actors, "
                         "to choose live settings on; results named NAME_val)")
    ap.add_argument("--voice-hold", type=number_type(float, 0.1, 10.0, what="seconds"), default=None, metavar="SECONDS",
                    help="the app's --voice-hold (default: the app's own)")
    ap.add_argument("--browser", action="store_true",
                    help="play the clip through headless Chromium into the app's UI instead of replaying it")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace result files in --out this script did not write")
    args = ap.parse_args()
    if args.split == "val":          # its own clip, runs and result names: never mixed with the test clip's
        args.work, args.name = args.work / "val", f"{args.name}_val"
        args.vs = f"{args.vs}_val" if args.vs else None
    from admc.outdir import check_result_pair

    stem = _result_stem(args)
    # before minutes of running: a file of someone else's is kept (stem.name keeps a dot like hold1.5's)
    check_result_pair(ap, stem.parent, stem.name, "live-eval", overwrite=args.overwrite)
    info = build_clip(args.work / f"takes{args.takes}", args.takes, split=args.split)
    if args.browser:
        return browser_main(args, info)
    jsonl = args.work / f"{args.name}.jsonl"
    stem = _result_stem(args)
    seconds, machine, hold = None, None, _voice_hold(args)
    if args.reuse:
        if not jsonl.is_file():
            raise SystemExit(f"live_eval: --reuse: no earlier run {jsonl}")
        if _result_file(stem, ".json").is_file():
            before = json.loads(_result_file(stem, ".json").read_text())
            seconds, machine = before.get("app_seconds"), before.get("machine")
            hold = before.get("voice_hold_s", 0.3)      # runs from before the option held the voice 0.3 s
    else:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "app", "--source", info["clip"], "--no-ui", "--out", str(jsonl),
                            "--checkpoint", str(args.checkpoint), "--quiet", *_app_args(args)], cwd=REPO,
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"live_eval: the app failed (rc {r.returncode}): {r.stderr[-1500:]}")
        seconds = round(time.perf_counter() - t0, 1)
    rows = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    other = None
    if args.vs:
        other_file = args.work / f"{args.vs}.jsonl"
        if not other_file.is_file():
            raise SystemExit(f"live_eval: --vs {args.vs}: no run {other_file} on this clip")
        other = [json.loads(x) for x in other_file.read_text().splitlines() if x.strip()]
    res = {"checkpoint": shown_path(args.checkpoint), "name": args.name, "clip_seconds": info["duration"],
           "segments": len(info["segments"]), "takes_per_emotion": args.takes, "classes": bs.CLASSES,
           "material": args.split, "voice_hold_s": hold,
           "scores": score(rows, info["segments"], list(bs.CLASSES)),
           "streams": stream_summary(rows),
           "ood_by_window_span": ood_by_span(rows, info["segments"]),
           "app_seconds": seconds,
           "machine": machine or {"cpu": cpu_name(), "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}}
    if other is not None:
        res["vs"] = {"name": args.vs, **compare(rows, other, info["segments"])}
    args.out.mkdir(parents=True, exist_ok=True)
    _result_file(stem, ".json").write_text(json.dumps(res, indent=2) + "\n")
    res["label"] = args.label or res["checkpoint"]
    lines = [f"# Live evaluation: {res['label']}", "",
             f"{len(info['segments'])} segments of {SEG_S:.0f} s ({args.takes} takes x 7 emotions x 3 states), "
             + ("FER2013 PrivateTest faces + RAVDESS test-actor speech" if args.split == "test" else
                "validation material (the face network's holdout faces, RAVDESS actors 15-18)")
             + ", through `python -m app --no-ui`. "
             "Windows whose 3 s lie inside one segment.", "",
             "| state | windows | WA | UA | uncertain % | WA of the rest |", "|---|---|---|---|---|---|"]
    for k, v in res["scores"].items():
        if v.get("windows"):
            lines.append(f"| {k} | {v['windows']} | {v['wa']} | {v['ua']} | {v['uncertain_share']} | {v['wa_confident']} |")
    lines += ["", "| modality | live % of windows | out of distribution, % of live | missing: reasons (% of windows) |",
              "|---|---|---|---|"]
    for m in ("A", "V", "T"):
        v = res["streams"][m]
        lines.append(f"| {m} | {v['live_share']} | {v['ood_share_of_live']} | "
                     + ", ".join(f"{k} {x}" for k, x in v["missing_reasons"].items()) + " |")
    lines += _span_lines(res["ood_by_window_span"])
    if res.get("vs", {}).get("segments"):
        v = res["vs"]
        lines += ["", f"Against `{v['name']}` on the same clip: window accuracy {v['wa_difference']:+.1f} points, 95 % interval "
                  f"[{v['ci95'][0]:+.1f}, {v['ci95'][1]:+.1f}] (bootstrap over {v['segments']} segments)."]
    _result_file(stem, ".md").write_text("\n".join(lines) + "\n")
    print(json.dumps(res["scores"]["overall"]))
    return 0


def browser_main(args, info: dict) -> int:
    placed, rows, facts = run_browser_mode(args.checkpoint, info, args.work / f"takes{args.takes}", _app_args(args))
    (args.work / f"{args.name}_browser.json").write_text(json.dumps(rows) + "\n")
    res = {"checkpoint": shown_path(args.checkpoint), "name": args.name, "mode": "browser", "voice_hold_s": _voice_hold(args),
           "clip_seconds": info["duration"], "segments": len(info["segments"]), "classes": bs.CLASSES,
           "scores": score(placed, info["segments"], list(bs.CLASSES)),
           "streams": stream_summary(rows), "windows_exported": len(rows), "windows_placed": len(placed),
           **facts, "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                                "load_1min_after": round(os.getloadavg()[0], 2)}}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = _result_stem(args)
    _result_file(stem, ".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# Live evaluation in the browser: {args.label or res['checkpoint']}", "",
             f"The live evaluation's clip ({len(info['segments'])} segments of {SEG_S:.0f} s) played by headless "
             "Chromium's fake camera (640x480, 30 fps) and microphone (48 kHz) into `python -m app`; windows from "
             f"the page's JSON export, {len(placed)} of {len(rows)} placed inside one segment on both devices' clocks.",
             "", "| state | windows | WA | UA | uncertain % | WA of the rest |", "|---|---|---|---|---|---|"]
    for k, v in res["scores"].items():
        if v.get("windows"):
            lines.append(f"| {k} | {v['windows']} | {v['wa']} | {v['ua']} | {v['uncertain_share']} | {v['wa_confident']} |")
    wc = res["scores_by_wall_clock"]
    lines += ["", f"The fake microphone under load delivers its file a little slower than real time (the audio ran "
              f"up to {res['audio_behind_wall_clock_s']['max']} s behind the wall clock), so the table places each "
              "window by the audio it actually used; placed by the wall clock instead (audio and labels drift "
              f"apart late in the clip): {wc['overall'].get('windows', 0)} windows, WA {wc['overall'].get('wa')} "
              f"(full {wc['full'].get('wa')}, face hidden {wc['face_hidden'].get('wa')}, silent {wc['silent'].get('wa')})."]
    lines += ["", "| modality | live % | out of distribution, % of live | missing: reasons (% of windows) |",
              "|---|---|---|---|"]
    for m in ("A", "V", "T"):
        v = res["streams"][m]
        why = ", ".join(f"{k} {x}" for k, x in v["missing_reasons"].items())
        lines.append(f"| {m} | {v['live_share']} | {v['ood_share_of_live']} | {why} |")
    lines += _span_lines(res["ood_by_window_span"])
    _result_file(stem, ".md").write_text("\n".join(lines) + "\n")
    print(json.dumps({"overall": res["scores"]["overall"], "streams": res["streams"]}))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
