#!/usr/bin/env python
"""Latency, throughput and memory of the running app (the live pipeline as the UI runs it).

    python benchmarks/app_latency.py [--checkpoint RUN] [--seconds 40] [--camera-fps 30] [--device cpu]

A threaded :class:`app.session.LiveSession` with the real extractors (MTCNN + mini-Xception,
openSMILE, silero VAD, Whisper tiny.en on its worker, MiniLM) is fed the generated test clip
(640x480 astronaut / black frames / astronaut, espeak speech then silence; looped) in real time:
camera frames at ``--camera-fps``, audio in 100 ms chunks -- exactly what the UI's stream handlers
do for every webcam frame (resolution cap, hand-over to the face worker, face box and landmarks
drawn on the preview frame) and microphone chunk.

Measured:

* preview fps      -- annotated preview frames produced per second (capped by the camera rate);
* face-tracking fps -- frames through the face extractor per second;
* predictions/s    -- analysis windows per second (target 5: one per 200 ms hop);
* window latency   -- from the moment a window is due to its result, ASR excluded (it runs on
  its own worker): p50 / p95;
* memory           -- RSS of this process (models + session) at the end and its peak (VmHWM).

Without ``--checkpoint`` it uses ``weights/starter/`` if present, else a tiny random live-schema
run (same architecture and cost as a real one).  Writes ``benchmarks/results/speed/app_latency.json``
and prints a markdown table.  The machine is shared: the load average is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

TARGETS = {"preview_fps": (">=", 15.0), "face_fps": (">=", 15.0), "predictions_per_s": (">=", 5.0),
           "latency_p95_ms": ("<", 300.0), "rss_peak_mb": ("<", 2560.0)}


def _proc_status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0   # kB -> MB
    return float("nan")


from benchmarks.machine_info import cpu_name as _cpu_name  # noqa: E402
from benchmarks.browser_path import shown_path  # noqa: E402 - results name no machine paths


def _pct(a, p):
    return float(np.percentile(np.asarray(a, dtype=np.float64), p)) if len(a) else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seconds", type=float, default=40.0, help="how long to stream (the clip loops)")
    ap.add_argument("--camera-fps", type=float, default=30.0)
    ap.add_argument("--face-fps", type=float, default=15.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "_work"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed" / "app_latency.json"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from app.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from benchmarks.fixtures import cached_test_clip, cached_tiny_checkpoint
    from app.render import annotate
    from app.replay import iter_media
    from app.session import Components, LiveSession, SessionConfig

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    if args.checkpoint:
        ck_path, ck_kind = Path(args.checkpoint), "given"
    elif (DEFAULT_CHECKPOINT / "run.json").is_file():
        ck_path, ck_kind = DEFAULT_CHECKPOINT, "starter"
    else:
        ck_path, ck_kind = cached_tiny_checkpoint(work), "tiny random live-schema run (starter not built yet)"
    clip = cached_test_clip(work)
    t_load = time.perf_counter()
    ck = load_checkpoint(ck_path, args.device)
    comp = Components.load(args.device, feature_set=ck.feature_set)
    load_s = time.perf_counter() - t_load
    rss_loaded = _proc_status("VmRSS")

    # decode the clip once; stream it (looped) at the camera rate
    frames, chunks = [], []
    for kind, t, data, sr in iter_media(clip["mp4"]):
        (frames if kind == "V" else chunks).append((t, data, sr))
    audio = np.concatenate([c[1] for c in chunks])
    a_sr = chunks[0][2]
    dur = float(clip["duration"])
    src_fps = len(frames) / dur

    session = LiveSession(ck.model, comp, SessionConfig(face_fps=args.face_fps), heads=None, threaded=True)
    preview_times: list[float] = []
    handler_ms: list[float] = []
    stop = threading.Event()

    def camera():
        period = 1.0 / args.camera_fps
        start = time.perf_counter()
        i = 0
        while not stop.is_set():
            t = i * period
            fr = frames[int(((t % dur) * src_fps)) % len(frames)][1]
            a = time.perf_counter()
            f = session.cap_frame(fr)                    # what the UI's on_frame does
            session.push_video(f)
            label = session.results[-1].label if session.results else None
            annotate(f, session.preview_face(), label)
            preview_times.append(time.perf_counter())
            handler_ms.append((preview_times[-1] - a) * 1000)
            i += 1
            delay = start + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    def microphone():
        block = int(0.1 * a_sr)
        start = time.perf_counter()
        i = 0
        while not stop.is_set():
            s = (i * block) % (len(audio) - block)
            session.push_audio(audio[s:s + block], a_sr)
            i += 1
            delay = start + i * 0.1 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    threads = [threading.Thread(target=camera, daemon=True), threading.Thread(target=microphone, daemon=True)]
    for th in threads:
        th.start()
    time.sleep(3.0)                                     # warm-up, not measured
    t_start = time.perf_counter()
    c0 = dict(session.counts)
    prev0 = len(preview_times)
    results_seen: list = []                             # app.window.WindowResult
    session.on_result = results_seen.append
    rss_max = 0.0
    rss_trace = []                                      # (s, MB) every 5 s: flat = no leak
    while time.perf_counter() - t_start < args.seconds:
        time.sleep(0.5)
        rss = _proc_status("VmRSS")
        rss_max = max(rss_max, rss)
        el = time.perf_counter() - t_start
        if not rss_trace or el - rss_trace[-1][0] >= 5.0:
            rss_trace.append((round(el, 1), round(rss)))
    elapsed = time.perf_counter() - t_start
    stop.set()
    for th in threads:
        th.join(timeout=2)
    session.on_result = None
    c1 = dict(session.counts)
    lat = [r.latency_ms for r in results_seen]
    asr = dict(session.transcriber.stats) if session.transcriber is not None else {}
    session.close()
    load1 = os.getloadavg()
    res = {
        "preview_fps": round((len(preview_times) - prev0) / elapsed, 1),
        "face_fps": round((c1["faces"] - c0["faces"]) / elapsed, 1),
        "predictions_per_s": round(len(results_seen) / elapsed, 2),
        "latency_p50_ms": round(_pct(lat, 50), 1) if lat else None,
        "latency_p95_ms": round(_pct(lat, 95), 1) if lat else None,
        "latency_max_ms": round(max(lat), 1) if lat else None,
        "preview_handler_p95_ms": round(_pct(handler_ms, 95), 2),
        "face_ms_p50": round(_pct(list(session.face_ms), 50), 1) if session.face_ms else None,
        "rss_loaded_mb": round(rss_loaded, 0),
        "rss_end_mb": round(_proc_status("VmRSS"), 0),
        "rss_peak_mb": round(max(rss_max, _proc_status("VmHWM")), 0),
        "rss_trace_mb": rss_trace,
        "windows": len(results_seen),
        "windows_with_prediction": sum(1 for r in results_seen if r.predicted),
        "asr": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asr.items()},
    }
    checks = {}
    for k, (op, v) in TARGETS.items():
        x = res.get(k)
        checks[k] = None if x is None else (x >= v if op == ">=" else x < v)
    out = {
        "benchmark": "app live pipeline (threaded LiveSession, real extractors, real-time clip)",
        "checkpoint": {"path": shown_path(ck_path), "kind": ck_kind, "classes": ck.classes,
                       "adn": f"{ck.model.cfg.adn.variant}/{ck.model.cfg.adn.sampler}{ck.model.cfg.adn.sample_steps}",
                       "mmer": bool(getattr(ck.model, "mmer", False))},
        "stream": {"seconds": round(elapsed, 1), "camera_fps": args.camera_fps, "face_fps_cap": args.face_fps,
                   "frame": f"{frames[0][1].shape[1]}x{frames[0][1].shape[0]}", "audio_chunk_s": 0.1},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "device": args.device,
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in load1],
                    "note": "cores shared with other processes; loadavg above the core count means contention"},
        "load_seconds": round(load_s, 1),
        "results": res,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "meets_target": checks,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    rows = [("preview fps", "preview_fps", ">= 15"), ("face-tracking fps", "face_fps", ">= 15"),
            ("predictions / s", "predictions_per_s", ">= 5"), ("window latency p50 (ms)", "latency_p50_ms", ""),
            ("window latency p95 (ms)", "latency_p95_ms", "< 300"), ("RSS peak (MB)", "rss_peak_mb", "< 2560"),
            ("RSS at end (MB)", "rss_end_mb", "")]
    print(f"app latency on {out['machine']['cpu']} ({out['machine']['cores']} cores, loadavg "
          f"{load0[0]:.1f} -> {load1[0]:.1f}), checkpoint: {ck_kind}\n")
    print("| metric | value | target | ok |\n|---|---|---|---|")
    for name, k, tgt in rows:
        ok = checks.get(k)
        print(f"| {name} | {res[k]} | {tgt} | {'' if ok is None else ('yes' if ok else 'NO')} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
