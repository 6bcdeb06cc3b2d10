"""Take the README screenshot (docs/screenshots/app.png) from the running app with a real checkpoint.

    .venv/bin/python benchmarks/readme_screenshot.py [--checkpoint weights/starter] [--emotion happiness]

It starts ``python -m app --checkpoint CK`` on a free local port and opens it in Debian's Chromium
(Playwright) whose fake camera (at 30 frames a second) and microphone play held-out material: one take of
``benchmarks/live_eval.py``'s clip (a FER2013 PrivateTest face moving slightly, RAVDESS test-actor
speech of the same emotion, then the face hidden, then silence), looping.  After ``--wait`` seconds
of streaming it saves the full page.  Needs the live-evaluation clip (built by running
benchmarks/live_eval.py once) and chromium (requirements/apt.txt).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def take_media(clip_info: Path, emotion: str, work: Path) -> tuple[Path, Path]:
    """The y4m + wav of the first take of ``emotion`` in the live-evaluation clip."""
    import soundfile as sf

    from benchmarks.fixtures import write_y4m
    from extractors.media import decode_audio, iter_video

    info = json.loads(clip_info.read_text())
    segs = [s for s in info["segments"] if s["label"] == emotion and s["take"] == 0]
    if not segs:
        raise SystemExit(f"readme_screenshot: no segment of {emotion!r} in {clip_info}")
    t0, t1 = segs[0]["start"], segs[-1]["end"]
    from benchmarks.browser_path import FPS

    frames = [f for _t, f in iter_video(info["clip"], fps=info["fps"], start=t0, end=t1)]
    # a camera's rate (the clip has 10 frames a second): each clip frame held for its time
    frames = [frames[min(len(frames) - 1, int(k * info["fps"] / FPS))] for k in range(int(len(frames) * FPS / info["fps"]))]
    work.mkdir(parents=True, exist_ok=True)
    y4m = write_y4m(work / "screen.y4m", frames, FPS)
    wav = work / "screen.wav"
    sf.write(str(wav), np.asarray(decode_audio(info["clip"], t0, t1), np.float32), 16000, subtype="PCM_16")
    return y4m, wav


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO / "weights" / "starter"))
    ap.add_argument("--emotion", default="happiness")
    ap.add_argument("--wait", type=float, default=14.0, help="seconds of streaming before the screenshot")
    ap.add_argument("--clip", type=Path, default=REPO / "benchmarks" / "_work" / "live_eval" / "takes2" / "clip.json")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots" / "app.png")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from benchmarks.browser_path import CHROMIUM, FLAGS, start_app, start_camera, stop

    work = REPO / "benchmarks" / "_work" / "screenshot"
    y4m, wav = take_media(args.clip, args.emotion, work)
    proc, url = start_app(Path(args.checkpoint), work / "server.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS + [
                f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}"])
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 1100},
                                           permissions=["camera", "microphone"]).new_page()
                page.goto(url, wait_until="load")
                page.wait_for_selector("#admc-badges .admc-badge", timeout=60000)
                start_camera(page)
                page.locator("#admc-mic-toggle").click(timeout=20000)
                time.sleep(args.wait)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
            finally:
                browser.close()
    finally:
        stop(proc)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
