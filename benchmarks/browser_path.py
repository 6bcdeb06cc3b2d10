"""The browser path, stage by stage: what a user of ``python -m app`` meets.

    .venv/bin/python benchmarks/browser_path.py                  # idle, then one competing busy process
    .venv/bin/python benchmarks/browser_path.py --loads idle --seconds 40

Debian's Chromium (Playwright, headless) opens the app with a fake camera and microphone playing
the live evaluation's labelled clip (``benchmarks/live_eval.py``: FER2013 PrivateTest faces and
RAVDESS test-actor speech), rendered at 640x480 and 30 frames/s (an MJPEG file, Chromium's fake
capture plays it at 30 fps) with the audio at 48 kHz.  The app runs as ``python -m app --checkpoint
CK --trace TRACE``: every frame, face, audio chunk, ASR segment and window is logged with its wall
time (:mod:`app.trace`).  The page is instrumented before it loads: the time each camera frame is
captured and the time each window appears in the page's badges.  The camera file's frames carry
their numbers (:func:`draw_file_mark`); over WebRTC (the app's default) the page records Chromium's
capture time of each numbered frame its camera view shows, and the server reads the number of the
frames it takes (:func:`app.trace.file_mark`); with Gradio's stream (``--camera-transport stream``)
the page numbers each grab it sends (:func:`app.trace.frame_mark`).

Per stage, p50 / p95: capture to server (a frame's capture to its arrival in the server, matched
by its number), face front end, audio front end, ASR final (the end of an utterance to
its final transcript), window (due to done) and within it completion + fusion, server to page (a
window done to shown), end to end (the capture of the newest face frame a window used to the
window shown).  Rates: face fps, preview fps, windows computed and shown per second; stream
states (stalled audio windows, T live share); RSS of server and browser; CPU seconds per second
of media.  ``--loads idle,busy``: the second run with one competing process spinning a core.

Writes ``benchmarks/results/browser/browser_path.{json,md}`` (``--name`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from app.trace import FILE_MARK_CELL, MARK_BITS

FILE_MARK_EVERY = 8  # the page reads the frame number of one camera frame in this many (WebRTC)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]
SIZE = (640, 480)
FPS = 30             # Chromium plays an MJPEG fake camera at 30 frames/s
AUDIO_SR = 48000

# the camera file's frame number read in the page, as app.trace.file_mark reads it on the server:
# MARK.read(video or canvas) -> number or null; MARK.watch(video, out, every) records one frame shown in
# ``every`` as [number, its capture time (requestVideoFrameCallback's captureTime) or null, now]
FILE_MARK_JS = """
const MARK = (() => {
  const C = %(cell)d, N = %(bits)d + 2, c = document.createElement('canvas');
  c.width = C * N; c.height = C;
  const g = c.getContext('2d', {willReadFrequently: true});
  const read = (src) => {
    g.drawImage(src, 0, 0, C * N, C, 0, 0, C * N, C);
    const d = g.getImageData(0, 0, C * N, C).data, q = C >> 2, cells = [];
    for (let i = 0; i < N; i++) { let sum = 0, k = 0;
      for (let y = q; y < C - q; y++) for (let x = i * C + q; x < (i + 1) * C - q; x++) {
        const o = (y * C * N + x) * 4; sum += (d[o] + d[o + 1] + d[o + 2]) / 3; k++; }
      cells.push(sum / k); }
    if (!(cells[0] > 170 && cells[1] < 85) || cells.slice(2).some(v => v >= 85 && v <= 170)) return null;
    let n = 0; for (let i = 2; i < N; i++) if (cells[i] > 128) n |= 1 << (i - 2);
    return n;
  };
  const watch = (v, out, every = 1) => {
    let seen = 0;
    const on = (now, md) => {
      const n = (seen++ %% every) ? null : read(v);
      if (n !== null) out.push([n, md.captureTime !== undefined ? performance.timeOrigin + md.captureTime : null, Date.now()]);
      v.requestVideoFrameCallback(on);
    };
    v.requestVideoFrameCallback(on);
  };
  return {read, watch, width: C * N};
})();
""" % {"cell": FILE_MARK_CELL, "bits": MARK_BITS}

# the page's own clock: stream starts, frame grabs (the canvas Gradio sends), windows shown
PAGE_PROBE = """
(() => {""" + FILE_MARK_JS + """
  const P = window.__admc = {captures: [], shown: [], streams: []};
  const gum = navigator.mediaDevices && navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  if (gum) navigator.mediaDevices.getUserMedia = async (c) => {
    const s = await gum(c);
    P.streams.push([c && c.video ? 'video' : 'audio', Date.now()]);
    return s;
  };
  // each camera frame Gradio grabs gets its number drawn into the top-left corner (app.trace.frame_mark
  // reads it on the server): a white and a black cell, then 16 bits, 6 px cells
  const toURL = HTMLCanvasElement.prototype.toDataURL;
  HTMLCanvasElement.prototype.toDataURL = function (type, q) {
    if (type === 'image/jpeg') {
      const n = P.captures.length & 0xffff, g = this.getContext('2d'), c = 6;
      if (g) {
        for (let i = 0; i < 18; i++) {
          const on = i === 0 ? true : i === 1 ? false : ((n >> (i - 2)) & 1) === 1;
          g.fillStyle = on ? '#fff' : '#000'; g.fillRect(i * c, 0, c, c);
        }
      }
      P.captures.push(Date.now());
    }
    return toURL.call(this, type, q);
  };
  // over WebRTC: frames the page's camera <video> shows, with Chromium's capture time, by the number the
  // camera file carries: one frame in FILE_MARK_EVERY is read (reading one copies the frame out of the
  // video; reading all of them cost the browser about 0.2 CPU-s per second), the frames between two read
  // ones are placed on the line between them (stages)
  P.frames = [];
  setInterval(() => {
    const v = document.querySelector('#admc-rtc-video');
    if (!v || v.__watched || !v.srcObject || !v.requestVideoFrameCallback) return;
    v.__watched = true;
    MARK.watch(v, P.frames, """ + str(FILE_MARK_EVERY) + """);
  }, 200);
  const watch = () => new MutationObserver(() => {
    const el = document.querySelector('#admc-badges .admc-t');
    const t = el ? el.dataset.t : '';
    if (t && t !== P.lastT) { P.lastT = t; P.shown.push([parseFloat(t), Date.now()]); }
  }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  if (document.body) watch(); else document.addEventListener('DOMContentLoaded', watch);
})();
"""


# ------------------------------------------------------------------------------------------ media
def write_mjpeg(frames, path: Path, seed: int = 0, quality: int = 85) -> Path:
    """RGB frames (any size) as Chromium's fake-camera MJPEG (concatenated JPEGs, played at 30 fps),
    scaled to 640x480 with fresh sensor noise per frame (so no two frames are identical)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    tmp = Path(str(path) + ".part")
    with open(tmp, "wb") as fh:
        for frame in frames:
            img = np.asarray(Image.fromarray(frame).resize(SIZE, Image.Resampling.BILINEAR), np.int16)
            img = np.clip(img + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=quality)
            fh.write(buf.getvalue())
    os.replace(tmp, path)
    return path


def write_wav48(audio16k: np.ndarray, path: Path) -> Path:
    """16 kHz mono audio as a 48 kHz 16-bit WAV (what a browser microphone captures)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    x = resample_poly(np.asarray(audio16k, np.float32), AUDIO_SR // 16000, 1)
    sf.write(str(path), np.clip(x, -1, 1), AUDIO_SR, subtype="PCM_16")
    return path


def draw_file_mark(frame: np.ndarray, n: int) -> np.ndarray:
    """``frame`` (RGB uint8, 640 px wide or so) with ``n`` drawn into its top-left corner, as
    :func:`app.trace.file_mark` reads it: a white and a black cell, then 16 bits (white = 1), cells of
    ``FILE_MARK_CELL`` px (a strip 288 x 16 px at 640 wide, away from the face)."""
    from app.trace import FILE_MARK_CELL as c, MARK_BITS

    out = frame.copy()
    for i in range(MARK_BITS + 2):
        on = i == 0 or (i >= 2 and (n >> (i - 2)) & 1)
        out[:c, i * c:(i + 1) * c] = 255 if on else 0
    return out


def render_media(info: dict, work: Path, start: float, seconds: float, seed: int = 0,
                 marked: bool = False) -> tuple[Path, Path]:
    """The clip's ``[start, start + seconds)`` as a 640x480 30 fps MJPEG and a 48 kHz WAV (cached);
    ``marked``: each frame carries its number (:func:`draw_file_mark`, after the scaling to 640x480)."""
    from PIL import Image

    from extractors.media import decode_audio, iter_video

    work.mkdir(parents=True, exist_ok=True)
    stem = work / f"browser_{start:g}_{seconds:g}{'_marked' if marked else ''}"
    mjpeg, wav = stem.with_suffix(".mjpeg"), stem.with_suffix(".wav")
    if mjpeg.is_file() and wav.is_file():
        return mjpeg, wav
    src = [f for _t, f in iter_video(info["clip"], start=start, end=start + seconds)]
    src_fps = float(info["fps"])

    def frame(k: int) -> np.ndarray:
        f = src[min(len(src) - 1, int(k / FPS * src_fps))]
        if not marked:
            return f
        f = np.asarray(Image.fromarray(f).resize(SIZE, Image.Resampling.BILINEAR), np.uint8)
        return draw_file_mark(f, k & 0xFFFF)

    write_mjpeg((frame(k) for k in range(int(round(seconds * FPS)))), mjpeg, seed)
    write_wav48(np.asarray(decode_audio(info["clip"], start, start + seconds), np.float32), wav)
    return mjpeg, wav


# ------------------------------------------------------------------------------------------ running
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ResourceMeter:
    """RSS (peak) and CPU seconds of a process tree, sampled."""

    def __init__(self, select):
        self.select = select                  # () -> list[psutil.Process]
        self.peak_rss = 0
        self.cpu0 = self._cpu()

    def _cpu(self) -> float:
        tot = 0.0
        for p in self.select():
            try:
                c = p.cpu_times()
                tot += c.user + c.system
            except Exception:  # noqa: BLE001 - a process that just ended
                pass
        return tot

    def sample(self) -> None:
        rss = 0
        for p in self.select():
            try:
                rss += p.memory_info().rss
            except Exception:  # noqa: BLE001
                pass
        self.peak_rss = max(self.peak_rss, rss)

    def cpu_seconds(self) -> float:
        return self._cpu() - self.cpu0


def server_and_browser_meters(server_pid: int) -> tuple[ResourceMeter, ResourceMeter]:
    """Meters of the server's process tree and of this process's Chromium children, started now."""
    import psutil

    me, server = psutil.Process(), psutil.Process(server_pid)

    def server_tree():
        try:
            return [server, *server.children(recursive=True)]
        except psutil.Error:
            return []

    def browser_tree():
        return [p for p in me.children(recursive=True) if "chrom" in (p.name() or "").lower()]

    return ResourceMeter(server_tree), ResourceMeter(browser_tree)


def stream_metered(server_pid: int, seconds: float) -> dict:
    """Wait ``seconds`` while the page streams, sampling the server's and the browser's memory:
    ``started_wall``, ``streamed_s``, and per process ``peak_rss_mb`` and ``cpu_s_per_s``."""
    started = time.time()
    srv, brw = server_and_browser_meters(server_pid)
    while time.time() - started < seconds:
        time.sleep(1.0)
        srv.sample()
        brw.sample()
    elapsed = time.time() - started
    return {"started_wall": started, "streamed_s": round(elapsed, 2),
            "server": {"peak_rss_mb": round(srv.peak_rss / 2 ** 20, 1), "cpu_s_per_s": round(srv.cpu_seconds() / elapsed, 3)},
            "browser": {"peak_rss_mb": round(brw.peak_rss / 2 ** 20, 1),
                        "cpu_s_per_s": round(brw.cpu_seconds() / elapsed, 3)}}


def start_app(checkpoint: Path, log: Path, *, trace: Path | None = None, threads: int = 1,
              app_args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """``python -m app`` on a free local port (output to ``log``, the stage trace to ``trace``, and
    ``app_args`` after the rest); returns once the page answers: (the process, its URL)."""
    port = free_port()
    cmd = [sys.executable, "-m", "app", "--checkpoint", str(checkpoint), "--port", str(port), "--threads", str(threads),
           *app_args]
    if trace is not None:
        cmd += ["--trace", str(trace), "--overwrite"]
    return start_server(cmd, port, log, "the app")


def start_server(cmd: list[str], port: int, log: Path, what: str) -> tuple[subprocess.Popen, str]:
    """Run ``cmd`` (a server on 127.0.0.1:``port``, output to ``log``) until its page answers:
    (the process, its URL); exits with the log's end when it dies or does not answer in 180 s."""
    with open(log, "w") as fh:          # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{Path(sys.argv[0]).stem}: {what} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"{Path(sys.argv[0]).stem}: {what} did not start within 180 s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_camera(page) -> str:
    """Start the page's camera as a user does: its "Start / stop camera" button (WebRTC, the app's
    default; when it cannot connect the page shows Gradio's camera, started here too), or Gradio's
    camera (``--camera-transport stream``).  Returns the transport the camera took."""
    if page.locator("#admc-cam-toggle").count():
        page.locator("#admc-cam-toggle").click(timeout=20000)
        page.wait_for_function("() => window.admcCam.transport || window.admcCam.status.startsWith('no camera')",
                               timeout=30000)
        transport = page.evaluate("() => window.admcCam.transport")
        if transport == "webrtc":
            return transport
        if transport != "stream":
            raise SystemExit(f"{Path(sys.argv[0]).stem}: the page's camera did not start: "
                             f"{page.evaluate('() => window.admcCam.status')}")
    page.get_by_text("Click to Access Webcam").click()
    page.locator("#admc-webcam button[aria-label='capture photo']").click(timeout=20000)
    return "stream"


def run_browser(url: str, mjpeg: Path, wav: Path, seconds: float, server_pid: int, export: bool = True) -> dict:
    """Stream ``seconds`` of the fake camera and microphone into the page at ``url``; returns the
    page's probe (captures, shown windows, stream starts), the exported windows and resources."""
    from playwright.sync_api import sync_playwright

    flags = FLAGS + [f"--use-file-for-fake-video-capture={mjpeg}", f"--use-file-for-fake-audio-capture={wav}"]
    out: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 1100}, permissions=["camera", "microphone"])
            ctx.add_init_script(PAGE_PROBE)
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_selector("#admc-badges .admc-badge", timeout=60000)
            out["camera_transport"] = start_camera(page)
            page.locator("#admc-mic-toggle").click(timeout=20000)
            out.update(stream_metered(server_pid, seconds))
            out["probe"] = page.evaluate("() => window.__admc")
            if export:
                page.locator("#admc-export-json").click()
                page.wait_for_selector("#admc-export a[href]", timeout=30000)
                href = page.locator("#admc-export a[href]").first.get_attribute("href")
                body = page.request.get(href if href.startswith("http") else url.rstrip("/") + href).text()
                out["windows"] = json.loads(body)
        finally:
            browser.close()
    return out


def write_results(out: Path, name: str, res: dict, md: str) -> None:
    """``out/name.json`` and ``out/name.md`` (the markdown also printed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{name}.md").write_text(md)
    print(md)


def shown_path(path: Path) -> str:
    """A path as the results name it: relative to the repository when inside it (no machine paths)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


# ------------------------------------------------------------------------------------------ stages
def pct(xs, p) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return round(float(np.percentile(xs, p)), 1) if xs else None


def p50_p95(xs) -> dict:
    return {"p50": pct(xs, 50), "p95": pct(xs, 95), "n": len([x for x in xs if x is not None])}


def stages(trace: list[dict], probe: dict, warmup_s: float = 8.0) -> dict:
    """Per-stage latencies and rates from the server's trace and the page's probe (one session)."""
    sessions = [e for e in trace if e["ev"] == "session"]
    if not sessions:
        return {"error": "no live session in the trace"}
    # the page's session: its first opening (a frame arriving after the page closed may open it again)
    key, t0 = sessions[0]["session"], float(sessions[0]["t0_wall"])
    trace = [e for e in trace if not (e["ev"] in ("frame_in", "face", "audio_in", "asr", "window")
                                      and e["wall"] < t0 - 1.0)]
    later = [e["wall"] for e in sessions[1:] if e["session"] == key]
    if later:                                     # ... and what that reopened session did is not counted
        trace = [e for e in trace if e["wall"] < later[0]]
    ev = [e for e in trace if e.get("session") == key]
    by = {k: [e for e in ev if e["ev"] == k] for k in ("frame_in", "face", "audio_in", "asr", "window")}
    wins = [w for w in by["window"] if w["t"] >= warmup_s]
    span = (wins[-1]["t"] - wins[0]["t"]) if len(wins) > 1 else 0.0

    # capture -> server: each frame carries the number of its grab in the page (app.trace.frame_mark;
    # Gradio's stream keeps only the newest frame while the previous one is handled, so grabs and
    # arrivals are not one to one); the mark counts modulo 2**16
    caps = [c / 1000.0 for c in probe.get("captures", [])]
    frames = by["frame_in"]

    def grab_of(mark) -> float | None:
        if mark is None:
            return None
        idx = [i for i in range(mark, len(caps), 1 << 16)]
        return caps[idx[-1]] if idx else None

    # over WebRTC the page grabs nothing: a frame carries the camera file's number (app.trace.file_mark),
    # and the page saw that file frame captured (its <video>'s requestVideoFrameCallback); a frame the
    # page did not see (it shows what it can) is not matched
    file_caps: dict[int, float] = {}
    for n, cap, seen in probe.get("frames", []):
        file_caps.setdefault(int(n), (cap if cap is not None else seen) / 1000.0)
    read_n = np.array(sorted(file_caps), dtype=float)
    read_t = np.array([file_caps[int(n)] for n in read_n])

    def file_capture(n: int) -> float | None:
        """Capture time of the file's frame ``n``: read by the page, or placed on the line between the
        frames read on either side of it (at most 2 FILE_MARK_EVERY apart; none beyond them)."""
        if n in file_caps:
            return file_caps[n]
        i = int(np.searchsorted(read_n, n))
        if i == 0 or i == len(read_n) or read_n[i] - read_n[i - 1] > 2 * FILE_MARK_EVERY:
            return None
        return float(np.interp(n, read_n[i - 1:i + 1], read_t[i - 1:i + 1]))

    def capture_time(f: dict) -> float | None:
        if f.get("mark") is not None:
            return grab_of(f["mark"])
        return file_capture(int(f["file_mark"])) if f.get("file_mark") is not None else None

    frame_caps = [capture_time(f) for f in frames]
    cap_to_server = [1000.0 * (f["wall"] - c) for f, c in zip(frames, frame_caps) if c is not None]
    frame_walls = np.array([f["wall"] for f in frames]) if frames else np.zeros(0)

    def capture_of(face_t: float | None) -> float | None:
        """The page's grab time of the frame the face row at stream time ``face_t`` came from."""
        if face_t is None or not len(frame_walls):
            return None
        i = int(np.searchsorted(frame_walls, t0 + face_t + 1e-3)) - 1
        return frame_caps[i] if 0 <= i < len(frame_caps) else None

    done = {round(w["t"], 3): w["due_wall"] + w["ms"] / 1000.0 for w in by["window"]}
    face_of = {round(w["t"], 3): w.get("face_t") for w in by["window"]}
    shown = [(round(float(t), 3), wall / 1000.0) for t, wall in probe.get("shown", [])]
    shown = [(t, wall) for t, wall in shown if t >= warmup_s]
    to_page = [1000.0 * (wall - done[t]) for t, wall in shown if t in done]
    e2e = []
    for t, wall in shown:
        c = capture_of(face_of.get(t))
        if c is not None:
            e2e.append(1000.0 * (wall - c))
    finals = [e for e in by["asr"] if e["final"] and e["chars"] > 0 and e["end"] >= warmup_s]
    # when the server had the utterance's end: the audio chunk holding stream time `end` arrived at its
    # wall time, less the part of the chunk after `end` (the microphone's audio can fall behind the
    # wall clock -- the fake device and the page under load -- so `t0 + end` would count that lag too)
    au_end = np.array([a["t"] + a["seconds"] for a in by["audio_in"]])
    au_wall = np.array([a["wall"] for a in by["audio_in"]])

    def heard_at(end: float) -> float | None:
        i = int(np.searchsorted(au_end, end - 1e-6))
        return float(au_wall[i] - (au_end[i] - end)) if i < len(au_end) else None

    asr_final = [e["wall"] - h for e in finals for h in [heard_at(float(e["end"]))] if h is not None]
    asr_final_stream_clock = [e["wall"] - (t0 + e["end"]) for e in finals]
    audio_lag = [float(w - t0 - e) for e, w, a in zip(au_end, au_wall, by["audio_in"]) if a["t"] >= warmup_s]
    faces = [f for f in by["face"] if f["t"] >= warmup_s]
    frames_w = [f for f in frames if f["wall"] - t0 >= warmup_s]
    shown_span = (shown[-1][0] - shown[0][0]) if len(shown) > 1 else 0.0

    def share(pred) -> float | None:
        return round(100.0 * sum(1 for w in wins if pred(w)) / len(wins), 1) if wins else None

    return {
        "capture_to_server_ms": p50_p95(cap_to_server),
        "face_ms": p50_p95([f["ms"] for f in faces]),
        "audio_frontend_ms": p50_p95([a["ms"] for a in by["audio_in"] if a["t"] >= warmup_s]),
        "asr_final_s": p50_p95(asr_final),
        "asr_final_stream_clock_s": p50_p95(asr_final_stream_clock),
        "audio_lag_s": p50_p95(audio_lag),
        "asr_final_waiting_s": p50_p95([e.get("wait_s") for e in finals]),
        "asr_final_transcribing_s": p50_p95([e.get("asr_s") for e in finals]),
        "window_ms": p50_p95([w["ms"] for w in wins]),
        "completion_fusion_ms": p50_p95([w["predict_ms"] for w in wins]),
        "server_to_page_ms": p50_p95(to_page),
        "end_to_end_ms": p50_p95(e2e),
        "face_fps": round(len(faces) / span, 2) if span else None,
        "frames_in_fps": round(len(frames_w) / span, 2) if span else None,
        "frames_dropped_share": round(100.0 * sum(f["dropped"] for f in frames_w) / max(1, len(frames_w)), 1),
        "windows_per_s": round((len(wins) - 1) / span, 2) if span else None,
        "shown_per_s": round((len(shown) - 1) / shown_span, 2) if shown_span else None,
        "windows": len(wins),
        "audio_stalled_share": share(lambda w: w["reasons"].get("A") == "stalled"),
        "audio_live_share": share(lambda w: w["streams"].get("A") == "live"),
        "face_live_share": share(lambda w: w["streams"].get("V") == "live"),
        "text_live_share": share(lambda w: w["streams"].get("T") == "live"),
        "text_live_after_utterance_share": text_after_utterances(wins),
        "voice_ood_share_of_live": _ood_share(wins, "A"),
        "face_ood_share_of_live": _ood_share(wins, "V"),
        "grabs_in_page": len(caps), "frames_at_server": len(frames),
        "frames_marked": sum(c is not None for c in frame_caps),
    }


def text_after_utterances(wins: list[dict], within_s: float = 3.0) -> float | None:
    """Of the windows that end within ``within_s`` after an utterance (where the app's own speech gate
    ended speech: the windows' ``speech_end``; not where A went silent, which with the voice hold is
    3 s later), the share with T live (%)."""
    ends = sorted({float(w["speech_end"]) for w in wins if w.get("speech_end") is not None})
    sel = [w for w in wins if any(e <= w["t"] <= e + within_s for e in ends)]
    return round(100.0 * sum(w["streams"].get("T") == "live" for w in sel) / len(sel), 1) if sel else None


def _ood_share(wins: list[dict], mod: str) -> float | None:
    live = [w for w in wins if w["streams"].get(mod) == "live"]
    return round(100.0 * sum(bool(w["ood"].get(mod)) for w in live) / len(live), 1) if live else None


# ------------------------------------------------------------------------------------------ main
def spin() -> subprocess.Popen:
    """One competing process that keeps a core busy."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    pass"], start_new_session=True)


def settle(limit_s: float = 90.0, busy_pct: float = 15.0) -> float:
    """Wait (up to ``limit_s``) until the machine's CPU is at most ``busy_pct`` % busy over a second
    (what the last run left behind has ended); returns the last reading."""
    import psutil

    deadline = time.time() + limit_s
    pct = psutil.cpu_percent(interval=1.0)
    while pct > busy_pct and time.time() < deadline:
        pct = psutil.cpu_percent(interval=1.0)
    return round(pct, 1)


def measure(checkpoint: Path, mjpeg: Path, wav: Path, seconds: float, load: str, work: Path, threads: int,
            camera: str = "webrtc") -> dict:
    from app.trace import read_trace

    trace, log = work / f"trace_{load}.jsonl", work / f"server_{load}.log"
    busy_before = settle()
    proc, url = start_app(checkpoint, log, trace=trace, threads=threads, app_args=("--camera-transport", camera))
    busy = spin() if load == "busy" else None
    try:
        load0 = os.getloadavg()[0]
        page = run_browser(url, mjpeg, wav, seconds, proc.pid)
    finally:
        if busy is not None:
            busy.kill()
        stop(proc)
    (work / f"probe_{load}.json").write_text(json.dumps(page["probe"]))
    return {"load": load, "camera_transport": page["camera_transport"], "streamed_s": page["streamed_s"],
            "server": page["server"], "browser": page["browser"],
            "stages": stages(read_trace(trace), page["probe"]), "machine": machine_record(busy_before, load0)}


def machine_record(busy_before: float, load_before: float) -> dict:
    """The machine a run measured on and its load: CPU busy before it (other work), 1-minute load
    average before and now."""
    from benchmarks.machine_info import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "load_1min_before": round(load_before, 2),
            "cpu_busy_before_pct": busy_before, "load_1min_after": round(os.getloadavg()[0], 2)}


def markdown(res: dict) -> str:
    rows = [("capture to server", "capture_to_server_ms", "ms"), ("face front end", "face_ms", "ms"),
            ("audio front end", "audio_frontend_ms", "ms"),
            ("audio arriving behind the wall clock (server receipt - stream time)", "audio_lag_s", "s"),
            ("ASR final after the utterance's end reached the server", "asr_final_s", "s"),
            ("  of which queued behind other ASR jobs", "asr_final_waiting_s", "s"),
            ("  of which transcribing", "asr_final_transcribing_s", "s"),
            ("  (by the stream clock: with the audio's lag)", "asr_final_stream_clock_s", "s"),
            ("window (due to done)", "window_ms", "ms"), ("  of which completion + fusion", "completion_fusion_ms", "ms"),
            ("server to page", "server_to_page_ms", "ms"), ("end to end (frame grab to window shown)", "end_to_end_ms", "ms")]
    runs = res["runs"]
    head = "| stage | " + " | ".join(f"{r['load']} p50 | {r['load']} p95" for r in runs) + " |"
    lines = [f"# Browser path: {res['checkpoint']}", "",
             f"Headless Chromium (Debian, Playwright) with a fake {SIZE[0]}x{SIZE[1]} {FPS} fps camera and a 48 kHz "
             f"microphone playing {res['media']}, into `python -m app` on the same machine; "
             f"{res['seconds']:g} s streamed per run, the first 8 s not counted. "
             f"Machine: {runs[0]['machine']['cpu']}, {runs[0]['machine']['cores']} cores; `busy`: one more process "
             "spinning a core.  Command: `python benchmarks/browser_path.py`.", "",
             "The camera's transport: " + ", ".join(f"{r['load']} {r.get('camera_transport', 'stream')}" for r in runs)
             + " (`webrtc`: the page's video track, the app's default; `stream`: Gradio's streaming image, a JPEG "
             "per frame).  A frame is followed from its capture to the server by the number the page drew into "
             "its grab (stream) or the number the camera file carries, read where the page shows the camera "
             "(WebRTC: Chromium's capture time); over WebRTC every camera frame arrives (30 a second) and the "
             "frames counted as reaching the server are those made RGB for the face path.", "",
             head, "|---|" + "---|---|" * len(runs)]
    for name, key, unit in rows:
        cells = []
        for r in runs:
            s = r["stages"].get(key, {})
            cells += [f"{s.get('p50')} {unit}" if s.get("p50") is not None else "-",
                      f"{s.get('p95')} {unit}" if s.get("p95") is not None else "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| rate / state | " + " | ".join(r["load"] for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for name, key in (("face fps", "face_fps"), ("frames reaching the server / s", "frames_in_fps"),
                      ("frames dropped at the server %", "frames_dropped_share"),
                      ("windows computed / s", "windows_per_s"), ("windows shown / s", "shown_per_s"),
                      ("audio stalled, % of windows", "audio_stalled_share"),
                      ("audio live %", "audio_live_share"), ("face live %", "face_live_share"),
                      ("text live %", "text_live_share"),
                      ("text live, % of windows ending <= 3 s after an utterance", "text_live_after_utterance_share"),
                      ("live voice windows out of distribution %", "voice_ood_share_of_live"),
                      ("live face windows out of distribution %", "face_ood_share_of_live")):
        lines.append(f"| {name} | " + " | ".join(str(r["stages"].get(key)) for r in runs) + " |")
    for name, part in (("server", "server"), ("browser", "browser")):
        lines.append(f"| {name} peak RSS MB | " + " | ".join(str(r[part]["peak_rss_mb"]) for r in runs) + " |")
        lines.append(f"| {name} CPU s per s of media | " + " | ".join(str(r[part]["cpu_s_per_s"]) for r in runs) + " |")
    lines.append("| CPU busy just before the run % (other work) | " + " | ".join(
        str(r["machine"].get("cpu_busy_before_pct")) for r in runs) + " |")
    lines.append("| load (1 min) before / after | " + " | ".join(
        f"{r['machine']['load_1min_before']} / {r['machine']['load_1min_after']}" for r in runs) + " |")
    return "\n".join(lines) + "\n"


def browser_run_arguments(ap: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The options every browser benchmark here has (checkpoint, seconds, threads, work, clip, out,
    name, overwrite); ``name``: the results' default stem and work folder."""
    from admc.cli import number_type
    from admc.outdir import add_result_pair_arguments

    ap.add_argument("--checkpoint", type=Path, default=REPO / "weights" / "starter")
    ap.add_argument("--seconds", type=number_type(float, 10.0, 3600.0, what="seconds"), default=60.0,
                    help="seconds streamed per run (the first 8 are not counted)")
    ap.add_argument("--threads", type=number_type(int, 1, 64, what="threads"), default=1, help="the server's torch threads")
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "_work" / name)
    ap.add_argument("--clip", type=Path, default=REPO / "benchmarks" / "_work" / "live_eval" / "takes2" / "clip.json",
                    help="the live evaluation's clip.json (built by benchmarks/live_eval.py)")
    return add_result_pair_arguments(ap, REPO / "benchmarks" / "results" / "browser", name)


def main() -> int:
    ap = browser_run_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]), "browser_path")
    ap.add_argument("--start", type=float, default=0.0, help="where in the live-evaluation clip the media starts")
    ap.add_argument("--loads", default="idle,busy", help="comma list of idle, busy")
    ap.add_argument("--camera-transport", choices=("webrtc", "stream"), default="webrtc",
                    help="the app's --camera-transport (default: the app's own, webrtc)")
    args = ap.parse_args()
    from admc.outdir import check_result_pair

    # before minutes of measuring: a file of someone else's is kept
    check_result_pair(ap, args.out, args.name, "browser-path", overwrite=args.overwrite)
    loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    if not set(loads) <= {"idle", "busy"} or not loads:
        ap.error(f"--loads {args.loads}: a comma list of idle, busy")
    if not args.clip.is_file():
        ap.error(f"--clip {args.clip}: no clip; run benchmarks/live_eval.py once to build it")
    if not Path(CHROMIUM).is_file():
        ap.error(f"{CHROMIUM}: Debian's chromium is needed (requirements/apt.txt)")
    info = json.loads(args.clip.read_text())
    mjpeg, wav = render_media(info, args.work, args.start, args.seconds + 15.0, marked=True)
    runs = [measure(args.checkpoint, mjpeg, wav, args.seconds, load, args.work, args.threads, args.camera_transport)
            for load in loads]
    res = {"checkpoint": shown_path(args.checkpoint), "seconds": args.seconds, "threads": args.threads,
           "media": f"the live-evaluation clip from {args.start:g} s (FER2013 PrivateTest faces, RAVDESS test actors)",
           "runs": runs}
    write_results(args.out, args.name, res, markdown(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
