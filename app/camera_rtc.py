"""The page's camera over WebRTC: the browser's own video track into its session.

Why not Gradio's streaming image (kept as the fallback, ``--camera-transport stream``): with it the
page copies each frame into a canvas, encodes a JPEG and posts it as base64, one request a frame,
and the server decodes each one.  Over WebRTC the browser sends its camera track as VP8 with its own
pacing and congestion control; the server decodes it off the event loop (aiortc's decoder thread)
and makes RGB only of the frames the face path will take.  Measured in the browser on the 2-core
machine (benchmarks/camera_transport.py): the two processes' CPU halves (1.36 -> 0.76 s per s),
capture to server p95 86 -> 42 ms, every camera frame available.

Flow: "Start / stop camera" (``window.admcCam``) takes the camera (``getUserMedia``, 640x480 at up to
30 fps), shows it in the page, and posts an SDP offer to :data:`OFFER_PATH` with the page's token
(the microphone uplink's, :meth:`app.engine.Engine.uplink_token`; with ``--auth`` the login must
hold the session).  The answer's ICE candidates are on the address the app serves on: 127.0.0.1 by
default, which a browser on the same machine reaches from its own candidates (Chromium gathers no
loopback candidates of its own and needs none), so nothing listens beyond this machine.  When no
connection comes up within :data:`CONNECT_S` (a browser without WebRTC, a policy that forbids UDP),
the page says why and shows the Gradio camera instead.

A session has at most one camera feed; a new offer replaces the old one, and closing the session
(page gone, idle, unload) closes its feed.  Bodies over :data:`MAX_OFFER` bytes, unknown tokens and
malformed offers are refused with a one-line message.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

from app.uplink import UplinkError, read_body, request_headers, respond, respond_json

OFFER_PATH = "/admc/camera"
MAX_OFFER = 200_000       # bytes of an offer (a browser's video offer is a few kB)
CONNECT_S = 10.0          # the page waits this long for the connection before it falls back

# the page side: window.admcCam.toggle() starts / stops the camera (the "Start / stop camera" button)
PAGE_JS = """
<script>
(() => {
  const C = window.admcCam = {on: false, pc: null, stream: null, status: 'off', transport: ''};
  const say = (s) => { C.status = s; const el = document.querySelector('#admc-cam-status');
                       if (el) el.textContent = 'Camera: ' + s; };
  const token = () => { const el = document.querySelector('#admc-uplink [data-token]');
                        return el ? el.dataset.token : ''; };
  const within = (ms, p, what) => Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error(what)), ms))]);
  const release = () => {
    try { if (C.pc) C.pc.close(); } catch (e) {}
    try { if (C.stream) C.stream.getTracks().forEach(t => t.stop()); } catch (e) {}
    C.pc = null; C.stream = null;
    const v = document.querySelector('#admc-rtc-video'); if (v) v.srcObject = null;
  };
  const fallback = (why) => {
    release(); C.on = false; C.transport = 'stream';
    document.body.classList.add('admc-camera-stream');
    say('WebRTC could not connect (' + why + '); use the camera below (sent frame by frame)');
  };
  C.start = async () => {
    if (C.on) return;
    C.on = true; say('starting');
    try {
      C.stream = await navigator.mediaDevices.getUserMedia({audio: false, video: {width: {ideal: 640, max: 640},
                                                            height: {ideal: 480, max: 480}, frameRate: {ideal: 30, max: 30}}});
    } catch (e) { C.on = false; say('no camera (' + e.name + ')'); return; }
    const v = document.querySelector('#admc-rtc-video'); if (v) v.srcObject = C.stream;
    if (!window.RTCPeerConnection) { fallback('this browser has no WebRTC'); return; }
    try {
      const pc = C.pc = new RTCPeerConnection();
      const sender = pc.addTrack(C.stream.getVideoTracks()[0], C.stream);
      const prm = sender.getParameters(); prm.degradationPreference = 'maintain-resolution';
      try { await sender.setParameters(prm); } catch (e) {}
      await pc.setLocalDescription(await pc.createOffer());
      await within(3000, new Promise(r => { if (pc.iceGatheringState === 'complete') r();
        else pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()); }),
        'gathering').catch(() => {});
      for (let i = 0; i < 50 && !token(); i++) await new Promise(r => setTimeout(r, 100));   // the page's token loads
      const r = await fetch('""" + OFFER_PATH + """', {method: 'POST', body: JSON.stringify({sdp: pc.localDescription.sdp,
          type: pc.localDescription.type}), headers: {'Content-Type': 'application/json', 'X-Admc-Token': token()}});
      if (!r.ok) throw new Error('the server refused the camera: ' + r.status + ' ' + (await r.text()).slice(0, 160));
      await pc.setRemoteDescription(await r.json());
      await within(""" + str(int(CONNECT_S * 1000)) + """, new Promise((ok, no) => {
        const check = () => { if (pc.connectionState === 'connected') ok();
                              else if (pc.connectionState === 'failed') no(new Error('the connection failed')); };
        pc.addEventListener('connectionstatechange', check); check(); }), 'no connection in """ + f"{CONNECT_S:g}" + """ s');
      if (!C.on) { release(); return; }
      C.transport = 'webrtc'; say('on');
      pc.addEventListener('connectionstatechange', () => {
        if (C.pc === pc && C.on && pc.connectionState === 'failed') fallback('the connection was lost'); });
      C.stream.getVideoTracks().forEach(t => t.addEventListener('ended', () => { C.stop(); say('the camera stopped'); }));
    } catch (e) { if (C.on) fallback(e.message || String(e)); }
  };
  C.stop = () => { if (!C.on) return; C.on = false; release(); say('off'); };
  C.toggle = () => (C.on ? C.stop() : C.start());
})();
</script>
"""

# the page's camera element: the camera as the browser sees it (the face box is on the preview)
CAMERA_HTML = ('<video id="admc-rtc-video" autoplay muted playsinline '
               'style="width: 100%; max-height: 300px; background: #111; border-radius: 6px"></video>')
# the Gradio camera shows only when the page fell back to it (or with --camera-transport stream)
CSS = ("body:not(.admc-camera-stream) #admc-webcam-fallback {display: none !important}\n"
       "body.admc-camera-stream #admc-rtc-camera {display: none !important}\n")


def problem() -> str | None:
    """Why the WebRTC camera cannot be offered here (None: it can)."""
    import importlib.util

    if importlib.util.find_spec("aiortc") is None:
        return "aiortc is not installed (pip install -r requirements/webrtc.txt)"
    return None


def gather_on(host: str | None) -> None:
    """ICE host candidates on the address the app serves on only: 127.0.0.1 for a loopback host
    (aioice leaves loopback out by default), that address for another, every interface for 0.0.0.0
    or ``::``.  (aiortc has no setting for it; aioice's host-address function is the one place.)"""
    import ipaddress

    import aioice.ice

    if host in (None, "", "localhost"):
        addresses = ["127.0.0.1"]
    else:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return                                  # a host name: aioice's own choice
        if ip.is_unspecified:
            return
        addresses = ["127.0.0.1" if ip.is_loopback else str(ip)]
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: list(addresses)


class NewestFrame:
    """The newest decoded frame, handed from the receiving loop to the converter thread (never a queue)."""

    def __init__(self):
        self.cv = threading.Condition()
        self.item = None
        self.closed = False

    def put(self, item) -> None:
        with self.cv:
            self.item = item
            self.cv.notify()

    def take(self):
        with self.cv:
            while self.item is None and not self.closed:
                self.cv.wait(0.5)
            item, self.item = self.item, None
            return item

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()


class CameraFeed:
    """One page's camera track into the session ``key``: a pump on the event loop takes each decoded
    frame with its arrival time, a converter thread makes RGB of the newest one when the face path
    will take it (the session's rate, :meth:`FaceFrontEnd.due`) and pushes it.  The converter goes
    through :meth:`Engine.get` for each frame, so a session kept alive by its camera stays open; it
    never opens a session that was closed."""

    def __init__(self, engine, key: str, pc, loop):
        from extractors.live.face_frontend import FaceFrontEnd

        self.engine, self.key, self.pc, self.loop = engine, key, pc, loop
        cfg = engine.make_config()
        self.gate = FaceFrontEnd(None, cfg, cfg.health)
        self.newest = NewestFrame()
        self.last_rgb = None            # the newest frame pushed (the preview draws on it)
        self.tasks: list = []
        self.thread = threading.Thread(target=self._convert, daemon=True, name="rtc-camera")
        self.thread.start()

    def track(self, track) -> None:
        """The page's video track arrived: pump it (on the event loop)."""
        self.tasks.append(asyncio.ensure_future(self._pump(track)))

    async def _pump(self, track) -> None:
        while not self.newest.closed:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - the track ended (page gone, camera stopped)
                return
            s = self.engine.sessions.get(self.key)
            if s is None:
                continue
            self.newest.put((frame, s.clock()))

    def _convert(self) -> None:
        from app.engine import SessionLimit

        while not self.newest.closed:
            item = self.newest.take()
            if item is None:
                continue
            frame, t = item
            if not self.gate.due(t) or self.key not in self.engine.sessions:
                continue                       # (a session closed a moment ago is not opened again)
            try:
                s = self.engine.get(self.key)  # (keeps it open while its camera sends)
            except SessionLimit:
                continue
            try:
                rgb = frame.to_ndarray(format="rgb24")
            except Exception as e:  # noqa: BLE001 - a frame the decoder could not give as RGB
                s.fault("V", f"bad camera frame: {type(e).__name__}", t)
                continue
            if self.engine.trace is not None:
                self.engine.trace_frame(self.key, dropped=False, frame=rgb)
            self.last_rgb = rgb
            s.push_video(rgb, t)

    def close(self) -> None:
        """Stop the converter and close the connection (from any thread)."""
        self.newest.close()
        pc = self.pc
        try:
            if self.loop.is_closed():
                return
            if self.loop is _running_loop():
                asyncio.ensure_future(pc.close())
            else:
                asyncio.run_coroutine_threadsafe(pc.close(), self.loop)
        except RuntimeError:
            pass                               # the loop is shutting down: the connection goes with it


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class CameraFeeds:
    """The sessions' camera feeds (at most one each), closed with their session."""

    def __init__(self, engine):
        self.engine = engine
        self.lock = threading.Lock()
        self.feeds: dict[str, CameraFeed] = {}
        engine.on_forget.append(self.close)

    def get(self, key: str) -> CameraFeed | None:
        return self.feeds.get(key)

    async def answer(self, token: str, offer: dict, login: str | None) -> dict:
        """The answer to the page's ``offer`` (``{"sdp", "type"}``) for the session of ``token``.
        Raises :class:`UplinkError`."""
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from app.engine import SessionLimit

        key = self.engine.key_of_token(token, login)
        try:
            self.engine.get(key)
        except SessionLimit as e:                  # (the page's panel says it too)
            raise UplinkError(503, str(e)) from None
        pc = RTCPeerConnection()
        feed = CameraFeed(self.engine, key, pc, asyncio.get_running_loop())

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                feed.track(track)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                with self.lock:
                    if self.feeds.get(key) is feed:
                        del self.feeds[key]
                feed.newest.close()
                if pc.connectionState == "failed":
                    await pc.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
            if not any(t.kind == "video" for t in pc.getTransceivers()):
                raise UplinkError(400, "the offer has no video track")
            await pc.setLocalDescription(await pc.createAnswer())
        except UplinkError:
            feed.close()
            raise
        except Exception as e:  # noqa: BLE001 - aiortc's parse errors: the page gets one line
            feed.close()
            raise UplinkError(400, f"not a usable WebRTC offer ({type(e).__name__}: {str(e)[:120]})") from None
        with self.lock:
            old, self.feeds[key] = self.feeds.get(key), feed
        if old is not None:
            old.close()
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def close(self, key: str) -> None:
        with self.lock:
            feed = self.feeds.pop(key, None)
        if feed is not None:
            feed.close()

    def close_all(self) -> None:
        for key in list(self.feeds):
            self.close(key)


def parse_offer(body: bytes) -> dict:
    """``{"sdp": str, "type": "offer"}`` from a request body, or :class:`UplinkError` (400)."""
    try:
        offer = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise UplinkError(400, "the body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}") from None
    if not isinstance(offer, dict) or not isinstance(offer.get("sdp"), str) or offer.get("type") != "offer":
        raise UplinkError(400, "the body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}")
    return offer


class CameraOffers:
    """ASGI middleware serving ``POST /admc/camera`` (see the module's docstring); everything else
    goes to the app.  ``login_of(scope)`` gives the request's login (None: none or no auth)."""

    def __init__(self, app, feeds: CameraFeeds, login_of=None):
        self.app, self.feeds, self.login_of = app, feeds, login_of

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("path") != OFFER_PATH:
            await self.app(scope, receive, send)
            return
        try:
            if scope.get("method") != "POST":
                raise UplinkError(405, "POST only")
            token = request_headers(scope).get("x-admc-token", "")
            if not token:
                raise UplinkError(401, "no X-Admc-Token")
            offer = parse_offer(await read_body(receive, MAX_OFFER))
            login = self.login_of(scope) if self.login_of is not None else None
            answer = await self.feeds.answer(token, offer, login)
        except UplinkError as e:
            await respond(send, e.status, str(e))
            return
        except Exception as e:  # noqa: BLE001 - never a traceback to the page
            print(f"app: camera offer: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            await respond(send, 500, f"the camera could not be connected ({type(e).__name__})")
            return
        await respond_json(send, 200, answer)
