"""The page's camera over WebRTC (app/camera_rtc.py), served by its ASGI middleware in front of a
stand-in app over real HTTP requests (Starlette's test client) into a real
:class:`app.engine.Engine` session.

End to end with a real WebRTC peer (aiortc on 127.0.0.1 sending a VP8 video track, as a browser
does): the frames arrive decoded, at most at the session's face rate, and closing the session closes
the connection.  What the offer route must refuse (no or unknown token, another login, not JSON, not
an offer, no video, oversize) gets a status and one line, and opens no connection.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest

from tests.test_app import fake_components, tiny_run  # noqa: F401 - fixture

pytest.importorskip("aiortc")
FACE_FPS = 10.0


def _client(engine, login=None):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from app.camera_rtc import CameraFeeds, CameraOffers, gather_on

    gather_on("127.0.0.1")
    feeds = CameraFeeds(engine)

    async def the_app(request):
        return PlainTextResponse("the app")

    inner = Starlette(routes=[Route("/{rest:path}", the_app)])       # (it also answers the lifespan)
    return TestClient(CameraOffers(inner, feeds, login_of=lambda scope: login)), feeds


@pytest.fixture()
def engine(tiny_run):  # noqa: F811
    from app.checkpoint import load_checkpoint
    from app.engine import Engine
    from app.session import SessionConfig

    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig(face_fps=FACE_FPS))
    yield eng
    for s in list(eng.sessions.values()):
        s.close()


def _grey_track(level: int):
    """A 640x480 30 fps video track of one grey level (what a camera would send)."""
    from aiortc import VideoStreamTrack
    from av import VideoFrame

    class Grey(VideoStreamTrack):
        async def recv(self):
            pts, base = await self.next_timestamp()
            f = VideoFrame.from_ndarray(np.full((480, 640, 3), level, np.uint8), format="rgb24")
            f.pts, f.time_base = pts, base if isinstance(base, fractions.Fraction) else fractions.Fraction(1, 90000)
            return f

    return Grey()


def test_the_camera_track_reaches_the_session_and_closes_with_it(engine):
    from aiortc import RTCPeerConnection, RTCSessionDescription

    client, feeds = _client(engine)
    tok = engine.uplink_token("page")
    got: dict = {}

    async def page():
        pc = RTCPeerConnection()
        pc.addTrack(_grey_track(180))
        await pc.setLocalDescription(await pc.createOffer())
        r = await asyncio.to_thread(client.post, "/admc/camera", json={"sdp": pc.localDescription.sdp, "type": "offer"},
                                    headers={"X-Admc-Token": tok})
        got["status"] = r.status_code
        assert r.status_code == 200, r.text
        await pc.setRemoteDescription(RTCSessionDescription(**r.json()))
        for _ in range(100):
            if pc.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        got["state"] = pc.connectionState
        t0 = time.monotonic()
        s = engine.sessions["page"]
        n0 = s.perf.counts["frames"]
        await asyncio.sleep(3.0)
        got["rate"] = (s.perf.counts["frames"] - n0) / (time.monotonic() - t0)
        got["feed"] = feeds.get("page")
        engine.close("page")                                   # the page went away
        for _ in range(50):
            if got["feed"].pc.connectionState == "closed":
                break
            await asyncio.sleep(0.1)
        got["server_state"] = got["feed"].pc.connectionState
        await pc.close()

    with client:
        asyncio.run(page())
    assert got["state"] == "connected"
    # frames reach the session at the face rate (the converter takes only the due ones) ...
    assert 0.5 * FACE_FPS <= got["rate"] <= FACE_FPS + 1.5, got["rate"]
    # ... decoded from VP8: the camera's size, its grey level within the codec's error
    rgb = got["feed"].last_rgb
    assert rgb.shape == (480, 640, 3) and abs(float(rgb.mean()) - 180.0) < 6.0, (rgb.shape, rgb.mean())
    # closing the session closed its camera connection and dropped the feed
    assert got["server_state"] == "closed" and feeds.get("page") is None


def test_what_the_offer_route_refuses(engine):
    from app.camera_rtc import MAX_OFFER

    client, feeds = _client(engine)
    tok = engine.uplink_token("page")
    offer_no_video = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
    cases = [
        (client.get("/admc/camera"), 405, "POST only"),
        (client.post("/admc/camera", json={"sdp": "x", "type": "offer"}), 401, "no X-Admc-Token"),
        (client.post("/admc/camera", json={"sdp": "x", "type": "offer"}, headers={"X-Admc-Token": "nope"}),
         403, "unknown uplink token"),
        (client.post("/admc/camera", content=b"{not json", headers={"X-Admc-Token": tok}), 400, "must be JSON"),
        (client.post("/admc/camera", json={"sdp": 3, "type": "offer"}, headers={"X-Admc-Token": tok}),
         400, "must be JSON"),
        (client.post("/admc/camera", json={"sdp": "x", "type": "answer"}, headers={"X-Admc-Token": tok}),
         400, "must be JSON"),
        (client.post("/admc/camera", json={"sdp": "m=video x UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"},
                     headers={"X-Admc-Token": tok}), 400, "not a usable WebRTC offer"),
        (client.post("/admc/camera", json={"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n",
                                           "type": "offer"}, headers={"X-Admc-Token": tok}),
         400, "ICE username fragment"),
        (client.post("/admc/camera", json={"sdp": offer_no_video, "type": "offer"}, headers={"X-Admc-Token": tok}),
         400, "no video track"),
        (client.post("/admc/camera", content=b"x" * (MAX_OFFER + 1), headers={"X-Admc-Token": tok}), 413, "bytes"),
    ]
    for r, status, words in cases:
        assert r.status_code == status, (status, r.text)
        msg = r.json()["message"]
        assert words in msg and "\n" not in msg and "Traceback" not in msg, msg
    assert feeds.feeds == {}                                   # nothing opened
    assert client.get("/elsewhere").text == "the app"          # other paths go to the app


def test_an_owned_session_takes_offers_only_from_its_login(engine):
    client, _feeds = _client(engine, login="bob")
    tok = engine.uplink_token("ada/page")                      # a session held by login "ada"
    r = client.post("/admc/camera", json={"sdp": "x", "type": "offer"}, headers={"X-Admc-Token": tok})
    assert r.status_code == 403 and r.json()["message"] == "not your session"


def test_gather_on_the_serving_address():
    import aioice.ice

    from app.camera_rtc import gather_on

    before = aioice.ice.get_host_addresses
    try:
        for host, want in (("127.0.0.1", ["127.0.0.1"]), ("localhost", ["127.0.0.1"]), (None, ["127.0.0.1"]),
                           ("::1", ["127.0.0.1"]), ("192.0.2.7", ["192.0.2.7"])):
            gather_on(host)
            assert aioice.ice.get_host_addresses(True, False) == want, host
        aioice.ice.get_host_addresses = before
        gather_on("0.0.0.0")                                   # every interface: aioice's own list
        assert aioice.ice.get_host_addresses is before
    finally:
        aioice.ice.get_host_addresses = before
