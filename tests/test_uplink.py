"""The page's microphone uplink (app/uplink.py) and what the live session does with late audio.

The uplink is served by its ASGI middleware in front of a stand-in app, over real HTTP requests
(Starlette's test client), into a real :class:`app.engine.Engine` session: chunks arrive in order,
are placed on the session's clock by their sample offset (not by when they arrive), and a chunk
the uplink must refuse (no or unknown token, another login, malformed headers, oversize) is
answered with a status and one line, never reaching a session.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.test_app import fake_components, tiny_run  # noqa: F401 - fixture


def _client(engine, login=None):
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient

    from app.uplink import AudioUplink

    async def inner(scope, receive, send):
        await PlainTextResponse("the app")(scope, receive, send)

    return TestClient(AudioUplink(inner, engine, login_of=lambda scope: login))


def _post(client, token, offset, x, rate=48000, run="r1", **extra):
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    headers = {"X-Admc-Token": token, "X-Admc-Run": run, "X-Admc-Offset": str(offset), "X-Admc-Rate": str(rate)}
    headers.update(extra)
    return client.post("/admc/audio", content=pcm, headers=headers)


@pytest.fixture()
def engine(tiny_run):  # noqa: F811
    from app.checkpoint import load_checkpoint
    from app.engine import Engine
    from app.session import SessionConfig

    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig(face_fps=None))
    yield eng
    for s in list(eng.sessions.values()):
        s.close()


def test_chunks_are_placed_by_their_offset_not_their_arrival(engine):
    client = _client(engine)
    tok = engine.uplink_token("page")
    assert engine.uplink_token("page") == tok                 # one token per session
    rate, n = 48000, 9600                                     # 200 ms chunks
    rng = np.random.default_rng(0)
    chunks = [0.05 * rng.standard_normal(n).astype(np.float32) for _ in range(10)]
    r = _post(client, tok, 0, chunks[0])
    assert r.status_code == 200, r.text
    s = engine.sessions["page"]
    t0 = s.audio_in.next_t if s.wait_for_audio(5) else None
    start = t0 - n / rate
    time.sleep(3.5)                                           # the network stalled: arrival is late ...
    for k in range(1, 10):
        assert _post(client, tok, k * n, chunks[k]).status_code == 200
    assert s.wait_for_audio(10)
    # ... but the stream is sample-exact from where the first chunk put it: no gap, no restart
    assert s.audio_in.next_t == pytest.approx(start + 10 * n / rate, abs=1e-6)
    ring = s.audio_in.ring
    assert ring.total == pytest.approx(10 * n / 3, abs=2 * 160)   # 16 kHz, less the resampler's held tail
    # a new recording (the page stopped and started the microphone) starts where it is now
    before = s.clock()
    assert _post(client, tok, 0, chunks[0], run="r2").status_code == 200
    assert s.wait_for_audio(5)
    assert s.audio_in.next_t >= before - 1e-3


def test_what_the_uplink_refuses(engine):
    client = _client(engine)
    tok = engine.uplink_token("page")
    x = np.zeros(4800, np.float32)
    cases = [
        (_post(client, "", 0, x), 401, "X-Admc-Token"),
        (_post(client, "not-a-token", 0, x), 403, "unknown uplink token"),
        (_post(client, tok, "minus-one", x), 400, "integers"),
        (_post(client, tok, 0, x, rate=1000), 400, "out of range"),
        (client.post("/admc/audio", content=b"\x00\x01\x02", headers={"X-Admc-Token": tok, "X-Admc-Offset": "0",
                                                                        "X-Admc-Rate": "48000"}), 400, "16-bit"),
        (client.post("/admc/audio", content=b"\x00" * 2_000_002, headers={"X-Admc-Token": tok, "X-Admc-Offset": "0",
                                                                           "X-Admc-Rate": "48000"}), 413, "bytes"),
        (client.get("/admc/audio"), 405, "POST"),
    ]
    for resp, status, words in cases:
        assert resp.status_code == status and words in resp.json()["message"], (status, resp.text)
    assert "page" not in engine.sessions                       # nothing refused reached a session
    assert client.get("/anything-else").text == "the app"      # the rest goes to the app
    # with a login, only the login that holds the session may post into it
    alice_tok = engine.uplink_token("alice/h1")
    assert _post(_client(engine, login="bob"), alice_tok, 0, x).status_code == 403
    assert _post(_client(engine, login=None), alice_tok, 0, x).status_code == 403
    assert _post(_client(engine, login="alice"), alice_tok, 0, x).status_code == 200
    # closing the session forgets its token
    engine.close("alice/h1")
    assert _post(_client(engine, login="alice"), alice_tok, 0, x).status_code == 403


def test_late_audio_is_judged_on_its_own_clock_not_as_stalled(engine):
    """Audio that runs 2.5 s behind the window clock while its chunks keep arriving keeps A's state
    (speech stays live, judged on the audio's own clock); once no chunk has arrived for a_stall_s,
    A is "stalled"."""
    from tests.test_live_path import level

    s = engine.get("late")
    d = s.driver
    sr = 16000
    x = level(3.0, 0.9)                                          # speech level for the fake VAD
    while s.clock() < 6.0:                                       # stream times stay positive
        time.sleep(0.1)
    base = s.clock() - 5.5                                       # the 3 s of audio ended 2.5 s ago
    for i in range(0, x.size, 3200):
        s.push_audio(x[i:i + 3200], sr, t=base + i / sr)
    assert s.wait_for_audio(10)
    now = s.clock()
    assert d.audio_clock(now) == pytest.approx(base + 3.0)      # late but arriving: its own time
    with s._lock:
        dec = s.health.poll(now, audio_now=d.audio_clock(now))
    assert dec["A"].live, dec["A"]
    time.sleep(s.cfg.health.a_stall_s + 0.2)                     # nothing arrives any more
    now = s.clock()
    assert d.audio_clock(now) == now
    with s._lock:
        dec = s.health.poll(now, audio_now=d.audio_clock(now))
    assert not dec["A"].live and dec["A"].reason == "stalled"
