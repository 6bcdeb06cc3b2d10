"""Where a recording's live rows leave the training distribution, stage by stage.

    .venv/bin/python -m app.skew --source my_recording.mp4 [--checkpoint DIR] [--json OUT]

The recording's voice and face go through the live path in steps, each adding one thing the live
app does to them, and at each step the checkpoint's own out-of-distribution rule (the one the app
uses, calibrated on validation) judges every window where the stream is live:

* voice: ``file`` (the recording's audio at 16 kHz through the live audio front end: VAD, speech
  gate, the feature set's A rows, the window assembler), ``codec`` (the same after an AAC round
  trip at 32 kbit/s, as a recorded video carries it), ``browser capture`` (resampled to the 48 kHz
  a browser captures and sent in the page's 200 ms chunks, as the microphone uplink does);
* face: ``file`` (the frames at 10 fps through the live face front end: detection, tracking,
  alignment, the expression network, V rows assembled like live windows), ``browser capture``
  (each frame scaled to the 640x480 the page asks for and JPEG-compressed as the page sends it).

A share that jumps at one step names the step that makes live input unlike the training data.
Prints a table; ``--json`` writes the numbers (``admc-skew/1``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

FORMAT = "admc-skew/1"
HOP = 0.2


def _ood(model, mod: str, rows) -> tuple[bool, float] | None:
    from admc.pipeline import predict_window

    feats = {m: (rows if m == mod else None) for m in model.schema.names}
    try:
        out = predict_window(model, feats)
    except Exception:  # noqa: BLE001 - rows the core refuses count as out of distribution
        return True, float("inf")
    o = out.ood.get(mod)
    return None if o is None else (bool(o.out), float(o.score))


def _summary(judged: list[tuple[bool, float]]) -> dict:
    if not judged:
        return {"windows": 0}
    out = [o for o, _ in judged]
    scores = [s for _, s in judged if np.isfinite(s)]
    return {"windows": len(judged), "ood_share": round(100.0 * sum(out) / len(out), 1),
            "median_score": round(float(np.median(scores)), 2) if scores else None}


def voice_stages(model, audio16k: np.ndarray, audio_extractor, vad_factory, max_windows: int = 400) -> dict:
    from scipy.signal import resample_poly

    from extractors.media import codec_roundtrip
    from extractors.dataset.training_render import CAPTURE_SR, LiveAudioWindows, RenderedStream

    seconds = audio16k.size / 16000
    ends = [round(e, 6) for e in np.arange(3.0, seconds + 1e-6, HOP)]
    if len(ends) > max_windows:
        ends = [ends[i] for i in np.linspace(0, len(ends) - 1, max_windows).astype(int)]
    waves = {
        "file": RenderedStream(audio16k, 16000, [], 0.0, 0.0),
        "codec": RenderedStream(codec_roundtrip(audio16k, 16000, 32000), 16000, [], 0.0, 0.0),
        "browser capture": RenderedStream(np.clip(resample_poly(audio16k, CAPTURE_SR // 16000, 1), -1, 1)
                                          .astype(np.float32), CAPTURE_SR, [], 0.0, 0.0),
    }
    out = {}
    for name, stream in waves.items():
        got = LiveAudioWindows(audio_extractor, vad_factory()).windows(stream, ends)
        judged = [_ood(model, "A", rows) for live, rows in got.values() if live and rows is not None]
        out[name] = _summary([j for j in judged if j is not None])
    return out


def face_stages(model, path: str, face_extractor, max_seconds: float | None = None) -> dict:
    from types import SimpleNamespace

    from PIL import Image

    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig
    from extractors.media import iter_video, jpeg_roundtrip
    from extractors.live.window import FaceRow, WindowAssembler

    def as_browser(frame):
        img = Image.fromarray(frame)
        if img.size != (640, 480):
            img = img.resize((640, 480), Image.Resampling.BILINEAR)
        return jpeg_roundtrip(np.asarray(img), 92)       # a canvas's toDataURL('image/jpeg') default

    asm = WindowAssembler(list(model.schema.names), 3.0, 10.0)
    out = {}
    for name, fn in (("file", lambda f: f), ("browser capture", as_browser)):
        fe = FaceFrontEnd(face_extractor, SimpleNamespace(face_fps=None, face_tracking=True, max_frame_width=640),
                          HealthConfig())
        faces, judged, next_end = [], [], 3.0
        for t, frame in iter_video(path, fps=10.0, end=max_seconds):
            ff = fe.process(fe.normalise(fn(frame)), t)
            faces.append(FaceRow(t, ff.feature, ff.person))
            while t + 1e-6 >= next_end:
                rows = asm.v_rows([r for r in faces if r.t > next_end - 3.2], next_end)
                if rows is not None and len(rows) >= 24:         # a face in most of the window (V live)
                    j = _ood(model, "V", rows)
                    if j is not None:
                        judged.append(j)
                next_end = round(next_end + HOP, 6)
        out[name] = _summary(judged)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.skew", description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--source", required=True, help="a recording (video with sound, or audio only)")
    ap.add_argument("--checkpoint", default=None, help="run directory (default: the shipped starter)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--seconds", type=float, default=None, help="only the first this many seconds")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file this did not write")
    args = ap.parse_args(argv)
    if not os.path.isfile(args.source):
        print(f"app.skew: --source {args.source}: no such file", file=sys.stderr)
        return 2
    if args.json is not None:
        from admc.outdir import OutputError, check_out_file

        try:
            check_out_file(args.json, "skew", overwrite=args.overwrite, flag="--json",
                           inputs=[("--source", args.source), ("--checkpoint", args.checkpoint)])
        except OutputError as e:
            print(f"app.skew: {e}", file=sys.stderr)
            return 2
    import torch

    torch.set_num_threads(1)
    from app.checkpoint import CheckpointError, load_checkpoint
    from extractors.models.audio import VoiceActivityDetector
    from extractors.media import decode_audio, iter_video

    try:
        ck = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        print(f"app.skew: {e}", file=sys.stderr)
        return 2
    fs = ck.feature_set
    report = {"format": FORMAT, "source": os.path.abspath(args.source), "checkpoint": str(ck.path), "stages": {}}
    try:
        audio = decode_audio(args.source)
        has_video = next(iter(iter_video(args.source, max_frames=1)), None) is not None
    except Exception as e:  # noqa: BLE001 - an unreadable file is the user's to know about, in one line
        print(f"app.skew: cannot read {args.source}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if audio is not None:
        if args.seconds:
            audio = audio[: int(args.seconds * 16000)]
        report["stages"]["voice"] = voice_stages(ck.model, np.asarray(audio, np.float32), fs.build("cpu", face=False, text=False).audio,
                                                 lambda: VoiceActivityDetector(num_threads=1))
    if has_video:
        report["stages"]["face"] = face_stages(ck.model, args.source, fs.build("cpu", audio=False, text=False).face, args.seconds)
    print(f"Out-of-distribution share of live windows, {args.source} ({ck.path}):")
    print(f"{'stream':8s} {'stage':18s} {'windows':>8s} {'OOD %':>7s} {'median score':>13s}")
    for mod, stages in report["stages"].items():
        for name, v in stages.items():
            print(f"{mod:8s} {name:18s} {v.get('windows', 0):8d} {str(v.get('ood_share', '-')):>7s} "
                  f"{str(v.get('median_score', '-')):>13s}")
    if args.json:
        from admc.outdir import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
