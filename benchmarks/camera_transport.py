"""The camera's transport into a live session: Gradio's streaming image against WebRTC (aiortc).

    .venv/bin/python benchmarks/camera_transport.py                 # 60 s each, gradio then webrtc
    .venv/bin/python benchmarks/camera_transport.py --seconds 30 --name quick

Both runs play the same media through Debian's Chromium (Playwright, headless): a fake 640x480
camera at 30 frames/s showing the live evaluation's clip (``benchmarks/live_eval.py``: FER2013
PrivateTest faces), each frame carrying its number in a strip at the top (:func:`benchmarks.browser_path.draw_file_mark`), into a
:class:`app.session.LiveSession` of the same checkpoint with the app's settings (face cap
``SessionConfig.face_fps``, a window every 200 ms).  Camera only: the microphone travels by the app's
own uplink either way, so what differs is how the frames travel.

* ``gradio``: ``python -m app --camera-transport stream --trace`` (the app's camera before WebRTC); the page grabs the camera every
  1/``face_fps`` s into a canvas and sends it as a JPEG, one request a frame
  (:mod:`benchmarks.browser_path`'s page probe numbers each grab).
* ``webrtc``: this script's own server (``--serve-webrtc``, a child process): Starlette and aiortc on
  127.0.0.1.  The page sends its camera track (offer and answer over HTTP; the sender keeps the
  resolution and lowers the frame rate under load); the server decodes every frame (VP8), reads its
  number from the luma plane, and a converter thread makes RGB of the newest frame only when the
  face path will take it (the same token bucket, ``FaceFrontEnd.due``), then pushes it into the
  session.  Chromium must run with ``--allow-loopback-in-peer-connection`` and aiortc must gather
  only 127.0.0.1 (its host-address list leaves loopback out): both are done here; a real deployment
  would gather on the address it serves on.

Per run: frames reaching the server per second and their size, face fps, capture to server per
frame (p50/p95: the camera's capture time of the file frame a server frame holds, from the page's
``requestVideoFrameCallback``, to its arrival in the server; for gradio also the page's grab to the
server), the face front end and window latency, CPU seconds per second and peak RSS of the server
and of the browser.  Writes ``benchmarks/results/browser/camera_transport.{json,md}`` (``--name``
changes the stem, ``--out`` the folder; a result file there it did not write is kept unless
``--overwrite``).  Needs requirements/webrtc.txt (aiortc) and the live evaluation's clip.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from app.trace import FILE_MARK_CELL, file_mark
from benchmarks.browser_path import (CHROMIUM, FILE_MARK_JS, FLAGS, FPS, PAGE_PROBE, SIZE, browser_run_arguments, draw_file_mark,
                                     free_port, machine_record, p50_p95, settle, shown_path, start_app,
                                     start_server, stop, stream_metered, write_results)

MARK_CELL = FILE_MARK_CELL   # px per cell of the file's frame number (draw_file_mark, app.trace.file_mark)
WARMUP_S = 8.0         # not counted: page start, the sender's bandwidth ramp
RTC_FLAGS = ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"]


# ------------------------------------------------------------------------------------ the frame number
def render_marked(info: dict, work: Path, seconds: float) -> Path:
    """The clip's first ``seconds`` as a 640x480 30 fps MJPEG whose frames carry their numbers."""
    from PIL import Image

    from benchmarks.browser_path import write_mjpeg
    from extractors.media import iter_video

    work.mkdir(parents=True, exist_ok=True)
    import zlib

    path = work / f"camera_marked_{zlib.crc32(str(info['clip']).encode()):08x}_{seconds:g}.mjpeg"
    if path.is_file():
        return path
    src = [f for _t, f in iter_video(info["clip"], start=0.0, end=seconds)]
    src_fps = float(info["fps"])

    def frames():
        for k in range(int(round(seconds * FPS))):
            f = src[min(len(src) - 1, int(k / FPS * src_fps))]
            f = np.asarray(Image.fromarray(f).resize(SIZE, Image.Resampling.BILINEAR), np.uint8)
            yield draw_file_mark(f, k & 0xFFFF)

    return write_mjpeg(frames(), path)


# ------------------------------------------------------------------------------------ the pages
READ_MARK_JS = FILE_MARK_JS    # MARK.read / MARK.watch: the file's frame number as the page shows it

# gradio: after benchmarks.browser_path.PAGE_PROBE (which numbers each grab it sees sent): the frames
# Gradio's webcam <video> shows, and which file frame each grab holds (read before the probe draws)
GRADIO_WATCH = "(() => {" + READ_MARK_JS + """
  const P = window.__admc; P.frames = []; P.grabs = [];
  setInterval(() => {
    const v = document.querySelector('#admc-webcam video');
    if (v && !v.__watched) { v.__watched = true; MARK.watch(v, P.frames); }
  }, 200);
  const inner = HTMLCanvasElement.prototype.toDataURL;
  HTMLCanvasElement.prototype.toDataURL = function (type, q) {
    if (type === 'image/jpeg') P.grabs.push(this.width >= MARK.width ? MARK.read(this) : null);
    return inner.call(this, type, q);
  };
})();
"""

RTC_PAGE = """<!doctype html><html><body><video id="v" autoplay muted playsinline></video><script>
const P = window.__admc = {frames: [], err: null, ready: false};
""" + READ_MARK_JS + """
(async () => { try {
  const s = await navigator.mediaDevices.getUserMedia({audio: false, video: {width: {ideal: 640, max: 640},
      height: {ideal: 480, max: 480}, frameRate: {ideal: 30, max: 30}}});
  const v = document.getElementById('v'); v.srcObject = s;
  MARK.watch(v, P.frames);
  const pc = new RTCPeerConnection();
  const sender = pc.addTrack(s.getVideoTracks()[0], s);
  const prm = sender.getParameters(); prm.degradationPreference = 'maintain-resolution';
  try { await sender.setParameters(prm); } catch (e) {}
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => { if (pc.iceGatheringState === 'complete') r();
    else pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); });
  const r = await fetch('/offer', {method: 'POST', headers: {'content-type': 'application/json'},
      body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type})});
  await pc.setRemoteDescription(await r.json());
  P.state = () => pc.connectionState; P.ready = true;
} catch (e) { P.err = String(e); } })();
</script></body></html>"""


def serve_webrtc(checkpoint: Path, port: int, trace_path: Path, threads: int) -> int:
    """The WebRTC side: a page at / whose camera track goes into one LiveSession (child process)."""
    import torch

    torch.set_num_threads(threads)
    import aioice.ice
    import uvicorn
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from app.camera_rtc import NewestFrame
    from app.checkpoint import load_checkpoint
    from app.session import Components, LiveSession, SessionConfig
    from app.trace import StageTrace
    from extractors.live.face_frontend import FaceFrontEnd

    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]   # loopback only
    ck = load_checkpoint(checkpoint, torch.device("cpu"))
    comp = Components.load(torch.device("cpu"), feature_set=ck.feature_set, asr=True)
    cfg = SessionConfig()
    session = LiveSession(ck.model, comp, cfg, heads={n: m for n, (m, _meta) in ck.heads.items()}, threaded=True)
    trace, key = StageTrace(trace_path), "webrtc"
    session.trace, session.trace_key = trace, key
    trace.event("session", key, t0_wall=round(session.t0_unix, 4))
    newest, gate = NewestFrame(), FaceFrontEnd(None, cfg, cfg.health)
    peers, seq = [], [0]

    def convert() -> None:             # RGB only for the frames the face path takes
        while not newest.closed:
            item = newest.take()
            if item is None:
                continue
            frame, t = item
            if gate.due(t):
                session.push_video(frame.to_ndarray(format="rgb24"), t)

    threading.Thread(target=convert, daemon=True, name="rgb").start()

    async def index(request):
        return HTMLResponse(RTC_PAGE)

    async def offer(request):
        body = await request.json()
        pc = RTCPeerConnection()
        peers.append(pc)

        @pc.on("track")
        def on_track(track):
            async def pump():
                while True:
                    try:
                        f = await track.recv()
                    except Exception:  # noqa: BLE001 - the page went away
                        return
                    t = session.clock()
                    y = f.planes[0]
                    luma = np.frombuffer(y, np.uint8).reshape(y.height, y.line_size)[:MARK_CELL, :y.width]
                    trace.event("frame_in", key, seq=seq[0], dropped=False, mark=file_mark(luma),
                                size=[f.width, f.height])
                    seq[0] += 1
                    newest.put((f, t))

            import asyncio

            asyncio.ensure_future(pump())

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return JSONResponse({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    app = Starlette(routes=[Route("/", index), Route("/offer", offer, methods=["POST"])])
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        newest.closed = True
        session.close()
        trace.close()
    return 0


def start_webrtc(checkpoint: Path, log: Path, trace: Path, threads: int) -> tuple[subprocess.Popen, str]:
    """This script's WebRTC server (:func:`serve_webrtc`) on a free local port, once its page answers."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-webrtc", "--port", str(port),
           "--checkpoint", str(checkpoint), "--trace", str(trace), "--threads", str(threads)]
    return start_server(cmd, port, log, "the WebRTC server")


# ------------------------------------------------------------------------------------ one run
def stream(transport: str, url: str, mjpeg: Path, seconds: float, server_pid: int) -> dict:
    """The page at ``url`` with the fake camera for ``seconds``: the page's frame times and resources."""
    from playwright.sync_api import sync_playwright

    flags = FLAGS + [f"--use-file-for-fake-video-capture={mjpeg}"] + (RTC_FLAGS if transport == "webrtc" else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 1100}, permissions=["camera"])
            if transport == "gradio":
                ctx.add_init_script(PAGE_PROBE)
                ctx.add_init_script(GRADIO_WATCH)
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            if transport == "gradio":
                page.wait_for_selector("#admc-badges .admc-badge", timeout=60000)
                page.get_by_text("Click to Access Webcam").click()
                page.locator("#admc-webcam button[aria-label='capture photo']").click(timeout=20000)
            else:
                page.wait_for_function("window.__admc.ready || window.__admc.err", timeout=60000)
                err = page.evaluate("window.__admc.err")
                if err:
                    raise SystemExit(f"camera_transport: the WebRTC page failed: {err}")
            got = stream_metered(server_pid, seconds)
            got["probe"] = page.evaluate("() => ({captures: window.__admc.captures || [], frames: window.__admc.frames, "
                                         "grabs: window.__admc.grabs || [], state: window.__admc.state ? "
                                         "window.__admc.state() : null})")
            return got
        finally:
            browser.close()


def analyse(transport: str, trace: list[dict], probe: dict, started_wall: float) -> dict:
    """Rates and latencies after the warm-up, from the server's trace and the page's frame times.

    Capture to server: the camera's capture time of the file frame a server frame holds (the page's
    ``requestVideoFrameCallback``, its shown time where Chromium gives none) to the server's receipt.
    gradio also has its grab (the page's canvas copy it sends) to the server's receipt."""
    t_from = started_wall + WARMUP_S
    frames = [e for e in trace if e["ev"] == "frame_in" and e["wall"] >= t_from]
    faces = [e for e in trace if e["ev"] == "face" and e["wall"] >= t_from]
    wins = [e for e in trace if e["ev"] == "window" and e["wall"] >= t_from]
    span = (frames[-1]["wall"] - frames[0]["wall"]) if len(frames) > 1 else 0.0
    captured, with_capture_time = {}, 0
    for n, cap, shown in probe["frames"]:
        if int(n) not in captured:
            captured[int(n)] = (cap if cap is not None else shown) / 1000.0
            with_capture_time += cap is not None
    grab_ms, file_of = [], {}
    if transport == "gradio":           # the server's mark is the grab's index; the grab holds a file frame
        grabs, walls = probe["grabs"], probe["captures"]
        for e in frames:
            i = e.get("mark")
            if i is not None and i < len(walls):
                grab_ms.append(1000.0 * (e["wall"] - walls[i] / 1000.0))
                if i < len(grabs) and grabs[i] is not None:
                    file_of[id(e)] = int(grabs[i])
    else:                               # the server read the file frame's number itself
        file_of = {id(e): e["mark"] for e in frames if e.get("mark") is not None}
    cap_ms = [1000.0 * (e["wall"] - captured[file_of[id(e)]]) for e in frames if file_of.get(id(e)) in captured]
    sizes = sorted({tuple(e["size"]) for e in frames if e.get("size")}) or [tuple(SIZE)]
    return {"frames_in_fps": round(len(frames) / span, 2) if span else None,
            "face_fps": round(len(faces) / span, 2) if span else None,
            "frame_sizes": [list(x) for x in sizes],
            "capture_to_server_ms": p50_p95(cap_ms),
            "grab_to_server_ms": p50_p95(grab_ms),
            "frames_shown_in_page": len(probe["frames"]),
            "capture_time_share": round(100.0 * with_capture_time / max(1, len(captured)), 1),
            "face_ms": p50_p95([f["ms"] for f in faces]),
            "window_ms": p50_p95([w["ms"] for w in wins]),
            "windows_per_s": round(len(wins) / span, 2) if span else None}


def measure(transport: str, checkpoint: Path, mjpeg: Path, seconds: float, work: Path, threads: int) -> dict:
    from app.trace import read_trace

    trace, log = work / f"transport_{transport}.jsonl", work / f"transport_{transport}.log"
    busy_before = settle()
    load_before = os.getloadavg()[0]
    if transport == "gradio":
        proc, url = start_app(checkpoint, log, trace=trace, threads=threads, app_args=("--camera-transport", "stream"))
    else:
        proc, url = start_webrtc(checkpoint, log, trace, threads)
    try:
        got = stream(transport, url, mjpeg, seconds, proc.pid)
    finally:
        stop(proc)
    return {"transport": transport, "streamed_s": got["streamed_s"], "server": got["server"],
            "browser": got["browser"], "stages": analyse(transport, read_trace(trace), got["probe"], got["started_wall"]),
            "machine": machine_record(busy_before, load_before)}


def markdown(res: dict) -> str:
    runs = res["runs"]
    m = runs[0]["machine"]
    lines = [f"# Camera transport: {res['checkpoint']}", "",
             f"Headless Chromium (Debian, Playwright) with a fake {SIZE[0]}x{SIZE[1]} {FPS} fps camera playing "
             f"{res['media']} into a live session on the same machine, camera only; {res['seconds']:g} s per "
             f"run, the first {WARMUP_S:g} s not counted. `gradio`: `python -m app` (the page sends a JPEG "
             "per frame, one request each); `webrtc`: the camera track over WebRTC (VP8) into aiortc, RGB "
             f"made only for the frames the face path takes. Machine: {m['cpu']}, {m['cores']} cores, "
             "nothing else running. Command: `python benchmarks/camera_transport.py`.", "",
             "| | " + " | ".join(r["transport"] for r in runs) + " |", "|---|" + "---|" * len(runs)]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(str(fn(r)) for r in runs) + " |")

    def pp(key, unit="ms"):
        return lambda r: (f"{r['stages'][key]['p50']} / {r['stages'][key]['p95']} {unit}"
                          if r["stages"][key]["p50"] is not None else "-")

    row("frames reaching the server / s", lambda r: r["stages"]["frames_in_fps"])
    row("their size", lambda r: ", ".join(f"{w}x{h}" for w, h in r["stages"]["frame_sizes"]))
    row("face fps", lambda r: r["stages"]["face_fps"])
    row("capture to server p50 / p95 (frames matched)",
        lambda r: f"{pp('capture_to_server_ms')(r)} ({r['stages']['capture_to_server_ms']['n']})")
    row("the page's grab to server p50 / p95", pp("grab_to_server_ms"))
    row("frames the page showed with Chromium's capture time %", lambda r: r["stages"]["capture_time_share"])
    row("face front end p50 / p95", pp("face_ms"))
    row("window (due to done) p50 / p95", pp("window_ms"))
    row("windows / s", lambda r: r["stages"]["windows_per_s"])
    row("server CPU s per s", lambda r: r["server"]["cpu_s_per_s"])
    row("browser CPU s per s", lambda r: r["browser"]["cpu_s_per_s"])
    row("server peak RSS MB", lambda r: r["server"]["peak_rss_mb"])
    row("browser peak RSS MB", lambda r: r["browser"]["peak_rss_mb"])
    row("CPU busy just before the run % / load (1 min) before, after",
        lambda r: f"{r['machine']['cpu_busy_before_pct']} / {r['machine']['load_1min_before']}, "
                  f"{r['machine']['load_1min_after']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    from admc.cli import OneLineParser

    ap = browser_run_arguments(OneLineParser(description=__doc__.split("\n")[0]), "camera_transport")
    ap.add_argument("--transports", default="gradio,webrtc", help="comma list of gradio, webrtc")
    ap.add_argument("--serve-webrtc", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--trace", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_webrtc:
        return serve_webrtc(args.checkpoint, args.port, args.trace, args.threads)
    from admc.outdir import check_result_pair

    check_result_pair(ap, args.out, args.name, "camera-transport", overwrite=args.overwrite)
    transports = [x.strip() for x in args.transports.split(",") if x.strip()]
    if not transports or not set(transports) <= {"gradio", "webrtc"}:
        ap.error(f"--transports {args.transports}: a comma list of gradio, webrtc")
    if not args.clip.is_file():
        ap.error(f"--clip {args.clip}: no clip; run benchmarks/live_eval.py once to build it")
    if not Path(CHROMIUM).is_file():
        ap.error(f"{CHROMIUM}: Debian's chromium is needed (requirements/apt.txt)")
    if "webrtc" in transports and importlib.util.find_spec("aiortc") is None:
        ap.error("--transports webrtc: aiortc is not installed (pip install -r requirements/webrtc.txt)")
    try:
        info = json.loads(args.clip.read_text())
        info["clip"], info["fps"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        ap.error(f"--clip {args.clip}: not a live-evaluation clip.json ({type(e).__name__}: {e})")
    mjpeg = render_marked(info, args.work, args.seconds + 15.0)
    runs = [measure(t, args.checkpoint, mjpeg, args.seconds, args.work, args.threads) for t in transports]
    res = {"checkpoint": shown_path(args.checkpoint), "seconds": args.seconds, "threads": args.threads,
           "media": "the live-evaluation clip (FER2013 PrivateTest faces), frames numbered", "runs": runs}
    write_results(args.out, args.name, res, markdown(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
