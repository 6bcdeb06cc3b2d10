#!/usr/bin/env python
"""Per-frame latency of the face extractor (MTCNN detection + alignment + mini-Xception features).

    python benchmarks/extractors_face.py [--frames 60] [--threads 1] [--device cpu]

Frames: skimage's astronaut photo (one face, ~110 px high at 640x480) with fresh sensor-like
noise per frame, plus an empty scene (noise only, detector finds nothing).  Configurations:

* ``640x480 full``: MTCNN on the full frame, min_face_size 80 px (the same smallest face as below)
* ``640x480 full, mfs 20``: facenet-pytorch's default min_face_size (worst case, for reference)
* ``640x480 -> 320 capped``: the default FaceExtractor (``max_width=320, min_face_size=40``)

Writes ``benchmarks/results/speed/face_latency.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from extractors.models.face import FaceExtractor  # noqa: E402


from benchmarks.machine_info import cpu_name as _cpu_name  # noqa: E402


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "mean_ms": float(a.mean()), "n": int(a.size), "fps_at_p50": float(1000.0 / np.percentile(a, 50))}


def _time(fn, frames, warmup: int = 3) -> list[float]:
    for f in frames[:warmup]:
        fn(f)
    out = []
    for f in frames:
        t0 = time.perf_counter()
        fn(f)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed" / "face_latency.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(0)
    base = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((640, 480)), dtype=np.int16)
    noisy = lambda img: np.clip(img + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)  # noqa: E731
    faces = [noisy(base) for _ in range(args.frames)]
    empty = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(max(10, args.frames // 3))]

    configs = {
        "640x480 full (mfs 80)": dict(max_width=None, min_face_size=80),
        "640x480 full (mfs 20, facenet default)": dict(max_width=None, min_face_size=20),
        "640x480 -> 320 capped (mfs 40, default)": dict(max_width=320, min_face_size=40),
    }
    rows = []
    for name, kw in configs.items():
        fx = FaceExtractor(args.device, **kw)
        sync = (lambda: torch.cuda.synchronize()) if fx.device.type == "cuda" else (lambda: None)  # noqa: E731
        det = _time(lambda f: (fx.detect(f), sync()), faces)
        full = _time(lambda f: (fx(f, 0.0), sync()), faces)
        none = _time(lambda f: (fx(f, 0.0), sync()), empty)
        assert fx(faces[0], 0.0).detected, name
        rows.append({"config": name, **kw, "detect": _stats(det), "detect+features": _stats(full),
                     "no-face frame": _stats(none)})
    fx = FaceExtractor(args.device)
    crop = fx.aligned_crop(faces[0])
    net = _time(lambda f: fx.classify_crops([crop]), faces)

    # live streams (the app): FaceTracker on a face moving up to ~15 px per frame, against full
    # detection + features on the same frames
    from benchmarks.fixtures import shifted_frame

    moving = [shifted_frame(f, int(60 * np.sin(i / 6)), int(20 * np.cos(i / 8))) for i, f in enumerate(faces)]
    sync = (lambda: torch.cuda.synchronize()) if fx.device.type == "cuda" else (lambda: None)  # noqa: E731
    tracker = fx.tracker()
    tracked = _time(lambda f: (tracker(f, 0.0), sync()), moving)
    untracked = _time(lambda f: (fx(f, 0.0), sync()), moving)
    tracking = {"tracked (O-Net on the previous box, full search every 15 frames)": _stats(tracked),
                "full detection + features, same frames": _stats(untracked), "tracker_counts": dict(tracker.stats)}

    result = {
        "benchmark": "face extractor per-frame latency",
        "frame": "640x480 RGB (skimage astronaut + noise); no-face: uniform noise",
        "device": str(fx.device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "results": rows,
        "features_only (aligned 48x48 crop -> mini-Xception)": _stats(net),
        "tracking (moving face, 640x480 -> 320)": tracking,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"Face extractor latency, {result['device']} ({result['cpu']}, {result['torch_threads']} torch thread(s))\n")
    print("| config | detect p50 / p95 (ms) | detect + features p50 / p95 (ms) | fps @ p50 | no-face frame p50 (ms) |")
    print("|---|---|---|---|---|")
    for r in rows:
        d, f, n = r["detect"], r["detect+features"], r["no-face frame"]
        print(f"| {r['config']} | {d['p50_ms']:.1f} / {d['p95_ms']:.1f} | {f['p50_ms']:.1f} / {f['p95_ms']:.1f} "
              f"| {f['fps_at_p50']:.1f} | {n['p50_ms']:.1f} |")
    s = result["features_only (aligned 48x48 crop -> mini-Xception)"]
    print(f"\nmini-Xception alone (one aligned crop): p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms")
    for k, v in tracking.items():
        if k != "tracker_counts":
            print(f"{k}: p50 {v['p50_ms']:.1f} ms, p95 {v['p95_ms']:.1f} ms ({v['fps_at_p50']:.0f} fps at p50)")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
