"""The UI in a real browser: Debian's Chromium (Playwright) with a fake camera and microphone.

Chromium plays the generated clip as its webcam (``--use-file-for-fake-video-capture``, a y4m of
the same frames: face, black, face) and microphone (``--use-file-for-fake-audio-capture``: speech
then silence), looping.  The app runs as ``python -m app --checkpoint <tiny run> --port <free>``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.test_app import REPO, clip, tiny_run  # noqa: F401 - fixtures

CHROMIUM = "/usr/bin/chromium"
DELIVERED = {"live", "ood"}    # a stream that arrived: in distribution, or unlike training (then completed)
BASE_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"]

STATE_JS = """() => {
  const b = {};
  document.querySelectorAll('#admc-badges .admc-badge').forEach(e => b[e.dataset.mod] = [e.dataset.state, e.title]);
  const t = document.querySelector('#admc-badges .admc-t');
  const m = document.querySelector('#admc-badges .admc-imputed-marker');
  const probs = Array.from(document.querySelectorAll('#admc-emotion .bar, #admc-emotion [data-testid="label-output-value"] *'))
      .length;
  return {badges: b, t: t ? t.dataset.t : '', marker: m ? m.dataset.imputed : null,
          emotion: document.querySelector('#admc-emotion') ? document.querySelector('#admc-emotion').innerText : '',
          preview: !!document.querySelector('#admc-preview img[src]'), probs: probs};
}"""

# every window time the badges show, as the page changes (a poll of the page would miss some)
SHOWN_PROBE = """
(() => {
  const P = window.__shown = [];
  const watch = () => new MutationObserver(() => {
    const el = document.querySelector('#admc-badges .admc-t');
    const t = el ? el.dataset.t : '';
    if (t && t !== P[P.length - 1]) P.push(t);
  }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  if (document.body) watch(); else document.addEventListener('DOMContentLoaded', watch);
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):  # noqa: F811
    port = free_port()
    log = tmp_path_factory.mktemp("app-ui") / "server.log"
    fh = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "app", "--checkpoint", str(tiny_run), "--port", str(port),
                             "--share"], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            fh.close()
            pytest.fail(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"app did not start:\n{log.read_text()[-3000:]}")
    yield url, log
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    fh.close()


@pytest.mark.slow
def test_browser_live_badges_imputation_and_updates(server, clip, tmp_path):  # noqa: F811
    # the page as the test saw it (the README's screenshot is benchmarks/readme_screenshot.py's, with the starter)
    shot_path = tmp_path / "app.png"
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium (requirements/apt.txt)")
    url, log = server
    flags = BASE_FLAGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                          f"--use-file-for-fake-video-capture={clip['y4m']}",
                          f"--use-file-for-fake-audio-capture={clip['wav']}"]
    seen = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1100},
                                       permissions=["camera", "microphone"]).new_page()
            page.add_init_script(SHOWN_PROBE)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#admc-badges .admc-badge", timeout=60000)
            assert "tiny-live-random" in page.locator("#admc-provenance").inner_text()   # provenance shown
            # the camera goes over WebRTC (the app's default): the page's video track into the session
            page.locator("#admc-cam-toggle").click(timeout=20000)
            page.wait_for_function("() => window.admcCam.status !== 'starting' && window.admcCam.status !== 'off'",
                                   timeout=30000)
            assert page.evaluate("() => [window.admcCam.status, window.admcCam.transport]") == ["on", "webrtc"]
            assert not page.locator("#admc-webcam").is_visible()          # Gradio's camera: only the fallback
            page.locator("#admc-mic-toggle").click(timeout=20000)
            shot = False
            v_was_imputed = False
            start = time.time()
            while time.time() - start < 75:
                time.sleep(0.5)
                st = page.evaluate(STATE_JS)
                seen.append(st)
                v = st["badges"].get("V", ["", ""])[0]
                a = st["badges"].get("A", ["", ""])[0]
                v_was_imputed |= v == "imputed"
                # screenshot: the face is back (box drawn) after the ADN completed it, and the
                # speech has stopped (A completed by the ADN); the timeline shows both spans
                if not shot and v_was_imputed and v in DELIVERED and a == "imputed" and st["preview"]:
                    time.sleep(1.0)
                    shot_path.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shot_path), full_page=True)
                    shot = True
                states = {m: {x["badges"].get(m, ["", ""])[0] for x in seen} for m in "AV"}
                ts = {x["t"] for x in seen if x["t"]}
                if shot and states["V"] & DELIVERED and "imputed" in states["V"] and states["A"] - DELIVERED \
                        and states["A"] & DELIVERED and len(ts) >= 20:
                    break
            if not shot:
                shot_path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot_path), full_page=True)
            # export what was seen (the download is served by the app)
            page.locator("#admc-export-csv").click()
            page.wait_for_selector("#admc-export a[href]", timeout=20000)
            href = page.locator("#admc-export a[href]").first.get_attribute("href")
            csv_text = page.request.get(href if href.startswith("http") else url.rstrip("/") + href).text()
            shown_ts = page.evaluate("() => window.__shown")
            # the camera vanishes (its track ends, as when it is unplugged): the page says so and closes the
            # connection, the app keeps running and V goes missing
            page.evaluate("() => window.admcCam.stream.getVideoTracks()[0].dispatchEvent(new Event('ended'))")
            assert page.locator("#admc-cam-status").inner_text() == "Camera: the camera stopped"
            time.sleep(3.0)                   # (the clip's face is away 3 of its 14 s: watch longer than that)
            after = []
            for _ in range(32):
                after.append(page.evaluate(STATE_JS)["badges"].get("V", ["", ""])[0])
                time.sleep(0.25)
            assert not set(after) & DELIVERED, after
        finally:
            browser.close()
    v_states = [s["badges"].get("V", ["", ""])[0] for s in seen]
    a_states = [s["badges"].get("A", ["", ""])[0] for s in seen]
    # the badges change: V delivered with the face (live, or "unlike training" when this random
    # checkpoint rejects it), missing and completed by the ADN on black frames
    assert set(v_states) & DELIVERED and "imputed" in v_states, v_states
    reasons = {s["badges"]["V"][1] for s in seen if s["badges"].get("V", [""])[0] == "imputed"}
    assert reasons & {"black frame", "no face", "stalled"}, reasons
    assert set(a_states) & DELIVERED and set(a_states) - DELIVERED, a_states
    # the imputed marker appears
    assert any(s["marker"] for s in seen)
    # predictions keep updating: the window time moves on, emotion bars are shown
    ts = [float(s["t"]) for s in seen if s["t"]]
    assert len(set(ts)) >= 20 and ts[-1] > ts[0] + 8, ts
    assert sum(1 for s in seen if s["emotion"].strip()) >= len(seen) // 2
    assert any(s["preview"] for s in seen)
    assert shot_path.is_file() and shot_path.stat().st_size > 10_000
    # the export is a CSV of the windows seen
    lines = csv_text.splitlines()
    assert lines[0].startswith("t,label,p_neutral") and len(lines) > 20, csv_text[:300]
    # every window the server made reaches the page (pushed as it is made; a 0.2 s poll, out of step
    # with the windows, showed about 4 in 5)
    made = [round(float(line.split(",", 1)[0]), 2) for line in lines[1:]]
    shown_set = {round(float(t), 2) for t in shown_ts}
    assert shown_set, "no window reached the page"
    span = [t for t in made if min(shown_set) <= t <= max(shown_set)]
    assert len(span) >= 20 and len(shown_set & set(span)) >= 0.95 * len(span), (len(span), len(shown_set & set(span)))
    # --share offline: a clear message, and the app kept serving locally
    text = log.read_text()
    assert "share" in text.lower() and ("serving locally" in text or "gradio.live" in text), text[-2000:]


# a page whose WebRTC can never connect: neither side learns the other's ICE candidates
NO_CANDIDATES = """
(() => {
  const strip = (d) => d && {type: d.type, sdp: d.sdp.split('\\r\\n').filter(l => !l.startsWith('a=candidate')).join('\\r\\n')};
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Orig {
    get localDescription() { return strip(super.localDescription); }
    setRemoteDescription(d) { return super.setRemoteDescription(strip(d)); }
    addIceCandidate() { return Promise.resolve(); }
  };
})();
"""


@pytest.mark.slow
@pytest.mark.parametrize("webrtc, why", [("none", "this browser has no WebRTC"),
                                         ("unreachable", "no connection in 10 s")])
def test_browser_without_webrtc_falls_back_to_the_stream_camera(server, clip, webrtc, why):  # noqa: F811
    """A browser where WebRTC cannot connect (none at all, or no route to the server's candidate):
    the page says why, shows Gradio's camera instead, and frames sent through it are analysed (the
    face badge is delivered)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    url, _log = server
    flags = BASE_FLAGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                          f"--use-file-for-fake-video-capture={clip['y4m']}"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1100}, permissions=["camera"]).new_page()
            page.add_init_script("delete window.RTCPeerConnection;" if webrtc == "none" else NO_CANDIDATES)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#admc-badges .admc-badge", timeout=60000)
            assert not page.locator("#admc-webcam").is_visible()
            page.locator("#admc-cam-toggle").click(timeout=20000)
            page.wait_for_function("() => window.admcCam.transport === 'stream'", timeout=30000)
            status = page.locator("#admc-cam-status").inner_text()
            assert "WebRTC could not connect" in status and why in status, status
            assert page.locator("#admc-webcam").is_visible() and not page.locator("#admc-rtc-video").is_visible()
            page.get_by_text("Click to Access Webcam").click()
            page.locator("#admc-webcam button[aria-label='capture photo']").click(timeout=20000)
            page.wait_for_function(
                "() => ['live', 'ood'].includes(document.querySelector('#admc-badges .admc-badge[data-mod=V]')"
                "?.dataset.state)", timeout=60000)
        finally:
            browser.close()
