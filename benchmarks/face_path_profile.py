#!/usr/bin/env python
"""Where the live face path spends its time, per frame: the face front end the app runs
(:class:`extractors.live.face_frontend.FaceFrontEnd` with the tracker and the default feature set's
face network) over a video's frames, under cProfile.

    .venv/bin/python benchmarks/face_path_profile.py [--video FILE] [--frames 600] [--every 2] [--threads 1]

Default video: the camera file the browser benchmark plays (``benchmarks/browser_path.py`` writes it
to ``benchmarks/_work/browser_path/``), every other frame of its 30 fps (what the page sends).  Prints
the per-frame latency (p50 / p95), the tracker's counts (full searches, tracked frames) and the
functions with the most time of their own, in ms per frame, as a markdown table.  Run it with
nothing else on the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO / "benchmarks" / "_work" / "browser_path" / "browser_0_75.mjpeg"
WARMUP = 20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=600, help="frames read from the video")
    ap.add_argument("--every", type=int, default=2, help="keep every n-th frame (2: 15 of 30 fps)")
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    if not args.video.is_file():
        print(f"face_path_profile: --video {args.video}: no such file (run benchmarks/browser_path.py "
              f"once, or name a video)", file=sys.stderr)
        return 2
    if args.frames < WARMUP + 10 * args.every or args.every < 1:
        print(f"face_path_profile: --frames must be at least {WARMUP + 10 * args.every}, --every at least 1",
              file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    from app.session import SessionConfig
    from benchmarks.machine_info import machine
    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig
    from extractors.live_schema import feature_set
    from extractors.media import iter_video

    fx = feature_set().build("cpu", audio=False, text=False, threads=args.threads).face
    front = FaceFrontEnd(fx, SessionConfig(face_fps=None), HealthConfig())
    frames = [(t, f) for t, f in iter_video(args.video, max_frames=args.frames)][::args.every]
    for t, f in frames[:WARMUP]:
        front.process(front.normalise(f), t)
    profile, ms = cProfile.Profile(), []
    profile.enable()
    for t, f in frames[WARMUP:]:
        t0 = time.perf_counter()
        front.process(front.normalise(f), t)
        ms.append(1000 * (time.perf_counter() - t0))
    profile.disable()
    n = len(ms)
    stats = pstats.Stats(profile).stats
    own = sorted(((tt, nc, f"{Path(fn).name}:{line}({name})" if fn != "~" else name)
                  for (fn, line, name), (_, nc, tt, _, _) in stats.items()), reverse=True)[:args.top]
    print(f"# Face path profile: {args.video.name}, {n} frames (every {args.every}), {args.threads} thread(s)\n")
    print(f"Machine: {machine()}. Per frame: p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
          f"mean {np.mean(ms):.1f} ms; tracker: {getattr(front.fn, 'stats', {})}\n")
    print("| function (own time) | calls per frame | ms per frame |\n|---|---|---|")
    for tt, nc, name in own:
        print(f"| `{name}` | {nc / n:.1f} | {1000 * tt / n:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
