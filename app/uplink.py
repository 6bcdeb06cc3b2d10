"""The page's microphone uplink: lossless, ordered, timestamped audio from the browser to its session.

Why not Gradio's streaming ``gr.Audio``: its stream connection keeps only the newest chunk while
the handler of the previous one runs (``/stream/{event_id}`` overwrites the event's data), which is
right for video frames and wrong for audio: on a busy 2-core machine a third of the chunks were
lost, the speech arrived cut, the ASR heard fragments and the voice windows looked unlike any
training window.  Here the page records with an AudioWorklet and posts raw 16-bit PCM every
200 ms, one request at a time, in order; what piles up while a request is in flight goes in the
next one, so nothing is dropped.  Each chunk carries its position in the recording (samples since
the microphone started), so its stream time is exact whatever the network or server delay.

Capture settings, chosen on purpose: ``echoCancellation``, ``noiseSuppression`` and
``autoGainControl`` off, mono.  The voice model was trained on studio recordings (RAVDESS) as they
are; Chromium's noise suppression and gain control change the spectrum and the level envelope the
prosodic features measure, and echo cancellation only matters when the page plays sound (it does
not).  Levels are left to the speech gate (its thresholds are relative to the VAD, not absolute).

Security: a chunk names the session by an unguessable token the server handed to that page only
(``Engine.uplink_token``); with ``--auth`` the request must also carry the login that holds the
session.  Bodies over :data:`MAX_BODY` bytes, unknown tokens and malformed headers are refused.
"""

from __future__ import annotations

import html
import json

import numpy as np

PATH = "/admc/audio"
MAX_BODY = 2_000_000            # 20 s of 48 kHz 16-bit mono: far more than one request ever carries
CHUNK_S = 0.2                   # the page posts this often

# the page side: window.admcMic.toggle() starts / stops the microphone (the "Start microphone" button)
PAGE_JS = """
<script>
(() => {
  const WORKLET = `class Tap extends AudioWorkletProcessor {
    process(inputs) { const x = inputs[0] && inputs[0][0]; if (x) this.port.postMessage(x.slice(0)); return true; }
  }
  registerProcessor('admc-tap', Tap);`;
  const M = window.admcMic = {on: false, parts: [], n: 0, offset: 0, run: '', sending: false, sent: 0, lost: 0,
                              status: 'off', timer: null};
  const say = (s) => { M.status = s; const el = document.querySelector('#admc-mic-status');
                       if (el) el.textContent = 'Microphone: ' + s; };
  const token = () => { const el = document.querySelector('#admc-uplink [data-token]');
                        return el ? el.dataset.token : ''; };
  async function flush() {
    if (M.sending || !M.n) return;
    const pcm = new Int16Array(M.n); let k = 0;
    for (const p of M.parts) { for (let i = 0; i < p.length; i++) {
      const v = Math.max(-1, Math.min(1, p[i])); pcm[k++] = v < 0 ? v * 32768 : v * 32767; } }
    const offset = M.offset; M.parts = []; M.offset += M.n; M.n = 0; M.sending = true;
    try {
      const r = await fetch('""" + PATH + """', {method: 'POST', body: pcm.buffer, headers: {
        'Content-Type': 'application/octet-stream', 'X-Admc-Token': token(), 'X-Admc-Run': M.run,
        'X-Admc-Offset': String(offset), 'X-Admc-Rate': String(M.ctx.sampleRate)}});
      if (r.ok) { M.sent += 1; if (M.on) say('on'); }
      else { M.lost += 1; say('the server refused audio (' + r.status + ': ' + (await r.text()).slice(0, 160) + ')'); }
    } catch (e) { M.lost += 1; say('cannot reach the server (' + e + ')'); }
    M.sending = false;
  }
  M.start = async () => {
    if (M.on) return;
    try {
      M.stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: false,
                                                                    noiseSuppression: false, autoGainControl: false}});
    } catch (e) { say('no microphone (' + e.name + ')'); return; }
    M.ctx = new AudioContext();
    const url = URL.createObjectURL(new Blob([WORKLET], {type: 'application/javascript'}));
    await M.ctx.audioWorklet.addModule(url);
    M.src = M.ctx.createMediaStreamSource(M.stream);
    M.tap = new AudioWorkletNode(M.ctx, 'admc-tap');
    M.tap.port.onmessage = (e) => { if (M.on) { M.parts.push(e.data); M.n += e.data.length; } };
    M.src.connect(M.tap);
    M.mute = M.ctx.createGain(); M.mute.gain.value = 0; M.tap.connect(M.mute); M.mute.connect(M.ctx.destination);
    M.run = Math.random().toString(36).slice(2) + Date.now().toString(36);
    M.offset = 0; M.parts = []; M.n = 0; M.on = true; M.started = Date.now();
    M.stream.getAudioTracks().forEach(t => t.addEventListener('ended', () => { say('the microphone stopped'); M.stop(); }));
    M.timer = setInterval(flush, """ + str(int(CHUNK_S * 1000)) + """);
    say('on');
  };
  M.stop = async () => {
    if (!M.on) return;
    M.on = false; clearInterval(M.timer); await flush();
    try { M.src.disconnect(); M.stream.getTracks().forEach(t => t.stop()); await M.ctx.close(); } catch (e) {}
    if (M.status === 'on') say('off');
  };
  M.toggle = () => (M.on ? M.stop() : M.start());
})();
</script>
"""


def token_html(token: str | None) -> str:
    """The hidden element the page's uplink reads its token from."""
    return f'<span data-token="{html.escape(token or "")}"></span>'


class UplinkError(ValueError):
    """A chunk the uplink refuses (the message is the response's body)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_chunk(headers: dict[str, str], body: bytes) -> tuple[str, str, int, int, np.ndarray]:
    """(token, run, offset in samples, sample rate, mono float32 samples) of one uplink request."""
    token = headers.get("x-admc-token", "")
    run = headers.get("x-admc-run", "")
    if not token:
        raise UplinkError(401, "no X-Admc-Token")
    try:
        offset = int(headers.get("x-admc-offset", ""))
        rate = int(headers.get("x-admc-rate", ""))
    except ValueError:
        raise UplinkError(400, "X-Admc-Offset and X-Admc-Rate must be integers") from None
    if offset < 0 or not 8000 <= rate <= 192000:
        raise UplinkError(400, f"X-Admc-Offset {offset} / X-Admc-Rate {rate} out of range")
    if len(body) % 2:
        raise UplinkError(400, "the body must be 16-bit PCM (an even number of bytes)")
    x = np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
    return token, run, offset, rate, x


class AudioUplink:
    """ASGI middleware serving ``POST /admc/audio`` (see the module's docstring); everything else
    goes to the app.  ``login_of(scope)`` gives the request's login (None: none or no auth)."""

    def __init__(self, app, engine, login_of=None):
        self.app, self.engine, self.login_of = app, engine, login_of

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("path") != PATH:
            await self.app(scope, receive, send)
            return
        status, message = 200, "ok"
        try:
            if scope.get("method") != "POST":
                raise UplinkError(405, "POST only")
            body = await read_body(receive)
            token, run, offset, rate, x = parse_chunk(request_headers(scope), body)
            login = self.login_of(scope) if self.login_of is not None else None
            self.engine.uplink_audio(token, run, offset, rate, x, login=login)
        except UplinkError as e:
            status, message = e.status, str(e)
        await respond(send, status, message)


def request_headers(scope) -> dict[str, str]:
    """An ASGI request's headers, names in lower case."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def read_body(receive, limit: int = MAX_BODY) -> bytes:
    """The request's body, refused (413) beyond ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise UplinkError(400, "the client went away")
        part = msg.get("body", b"")
        size += len(part)
        if size > limit:
            raise UplinkError(413, f"more than {limit} bytes in one request")
        chunks.append(part)
        if not msg.get("more_body"):
            return b"".join(chunks)


async def respond(send, status: int, message: str) -> None:
    """A JSON ``{"status", "message"}`` response."""
    await respond_json(send, status, {"status": status, "message": message})


async def respond_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
