#!/usr/bin/env python
"""Where the live face path spends its time, per frame: the face front end the app runs
(:class:`extractors.live.face_frontend.FaceFrontEnd` with the tracker and the default feature set's
face network) over a video's frames.

    .venv/bin/python benchmarks/face_path_profile.py [--video FILE] [--frames 600] [--every 2] [--threads 1]

Default video: the camera file the browser benchmark plays (``benchmarks/browser_path.py`` writes it
to ``benchmarks/_work/browser_path/``), every other frame of its 30 fps (what the page sends).  Two
passes over the same frames, each with a fresh front end after 20 warm-up frames: one timed (the
per-frame latency, p50 / p95 / mean, and the tracker's counts) and one under cProfile (the functions
with the most time of their own, in ms per frame; the profiler adds its own overhead).  Writes
``benchmarks/results/speed/face_path_profile.{json,md}`` (``--out`` the folder, ``--name`` the stem;
a file there this script did not write is replaced only with ``--overwrite``).  Run it with nothing
else on the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO / "benchmarks" / "_work" / "browser_path" / "browser_0_75.mjpeg"
WARMUP = 20
MEASURED_MIN = 10


def _fail(msg: str) -> int:
    print(f"face_path_profile: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from admc.outdir import add_result_pair_arguments, check_result_pair

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=600, help="frames read from the video")
    ap.add_argument("--every", type=int, default=2, help="keep every n-th frame (2: 15 of 30 fps)")
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    ap.add_argument("--top", type=int, default=12)
    add_result_pair_arguments(ap, REPO / "benchmarks" / "results" / "speed", "face_path_profile")
    args = ap.parse_args(argv)

    # before the measuring: a file of someone else's is kept
    out = check_result_pair(ap, args.out, args.name, "face-path-profile", overwrite=args.overwrite)
    if not args.video.is_file():
        return _fail(f"--video {args.video}: no such file (run benchmarks/browser_path.py once, or name a video)")
    if args.every < 1 or args.threads < 1 or args.top < 1:
        return _fail("--every, --threads and --top must be at least 1")
    need = args.every * (WARMUP + MEASURED_MIN)
    if args.frames < need:
        return _fail(f"--frames {args.frames}: at least {need} with --every {args.every} "
                     f"({WARMUP} warm-up frames and {MEASURED_MIN} measured)")

    import torch

    torch.set_num_threads(args.threads)
    from app.session import SessionConfig
    from benchmarks.machine_info import machine
    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig
    from extractors.live_schema import feature_set
    from extractors.media import iter_video

    try:
        frames = [(t, f) for t, f in iter_video(args.video, max_frames=args.frames)][::args.every]
    except Exception as e:  # noqa: BLE001 - PyAV's errors for a file that is not a video
        return _fail(f"--video {args.video}: cannot decode ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    if len(frames) < WARMUP + MEASURED_MIN:
        return _fail(f"--video {args.video}: {len(frames)} frames after --every {args.every}, "
                     f"need {WARMUP + MEASURED_MIN} (no video stream, or too short)")
    fx = feature_set().build("cpu", audio=False, text=False, threads=args.threads).face

    def fresh() -> FaceFrontEnd:
        front = FaceFrontEnd(fx, SessionConfig(face_fps=None), HealthConfig())
        for t, f in frames[:WARMUP]:
            front.process(front.normalise(f), t)
        front.fn.stats = {k: 0 for k in front.fn.stats}
        return front

    front, ms = fresh(), []
    for t, f in frames[WARMUP:]:
        t0 = time.perf_counter()
        front.process(front.normalise(f), t)
        ms.append(1000 * (time.perf_counter() - t0))
    tracker = dict(front.fn.stats)
    front, profile = fresh(), cProfile.Profile()
    profile.enable()
    for t, f in frames[WARMUP:]:
        front.process(front.normalise(f), t)
    profile.disable()
    n = len(ms)
    own = sorted(((tt, nc, f"{Path(fn).name}:{line}({name})" if fn != "~" else name)
                  for (fn, line, name), (_, nc, tt, _, _) in pstats.Stats(profile).stats.items()),
                 reverse=True)[:args.top]
    result = {"video": str(args.video.relative_to(REPO) if args.video.is_relative_to(REPO) else args.video),
              "frames": n, "every": args.every, "threads": args.threads, "machine": machine(),
              "per_frame_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                               "p95": round(float(np.percentile(ms, 95)), 2), "mean": round(float(np.mean(ms)), 2)},
              "tracker": tracker,
              "profiled_own_time_ms_per_frame": [{"function": name, "calls_per_frame": round(nc / n, 2),
                                                  "ms": round(1000 * tt / n, 3)} for tt, nc, name in own]}
    pf = result["per_frame_ms"]
    md = [f"# Face path profile: {args.video.name}, {n} frames (every {args.every}), {args.threads} thread(s)", "",
          f"Command: `python benchmarks/face_path_profile.py --video {result['video']} --frames {args.frames} "
          f"--every {args.every} --threads {args.threads}`  ", f"Machine: {result['machine']}", "",
          f"Per frame, timed without the profiler: p50 {pf['p50']} ms, p95 {pf['p95']} ms, mean {pf['mean']} ms; "
          f"tracker: {tracker['full']} full searches, {tracker['tracked']} tracked frames, {tracker['lost']} lost.", "",
          "Under cProfile (its overhead included), the functions with the most time of their own:", "",
          "| function | calls per frame | ms per frame |", "|---|---|---|"]
    md += [f"| `{r['function']}` | {r['calls_per_frame']} | {r['ms']:.2f} |" for r in result["profiled_own_time_ms_per_frame"]]
    args.out.mkdir(parents=True, exist_ok=True)
    out[0].write_text(json.dumps(result, indent=1) + "\n")
    out[1].write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
