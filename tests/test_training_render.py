"""Training windows rendered through the live path (extractors/dataset/training_render.py).

The A rows a rendered training window gets must be exactly the rows the live session computes for
the window ending at the same time of the same stream (pushed in the page's 200 ms chunks at the
browser's 48 kHz), with A live in the same windows: the renderer runs the live front end, it does
not imitate it.  The faces: a face placed into a webcam-sized frame is found by the live face front
end and gives a usable V row.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.media import espeak
from tests.test_app import tiny_run  # noqa: F401 - fixture


def fer_faces(n: int) -> list[np.ndarray]:
    """The first ``n`` FER2013 PublicTest faces (48x48 grey) of the shared data."""
    import csv

    from PIL import Image

    from tests.shared_data import SHARED_DATA

    manifest = SHARED_DATA / "fer2013" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"no FER2013 in the shared data ({manifest})")
    rows = [r for r in csv.DictReader(open(manifest)) if "PublicTest" in r["path"]][:n]
    return [np.asarray(Image.open(SHARED_DATA / "fer2013" / r["path"]).convert("L"), np.uint8) for r in rows]


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    d = tmp_path_factory.mktemp("render")
    out = []
    for i, text in enumerate(("I cannot believe you did that again", "Please leave the door open tonight")):
        wave, sr = espeak(text, d / f"u{i}.wav")
        from scipy.signal import resample_poly

        out.append(resample_poly(wave, 16000, sr).astype(np.float32) if sr != 16000 else wave)
    return out


@pytest.mark.slow
def test_rendered_voice_windows_are_the_live_sessions_windows(tiny_run, utterances):  # noqa: F811
    from app.checkpoint import load_checkpoint
    from app.session import Components, LiveSession, SessionConfig
    from extractors.models.audio import VoiceActivityDetector
    from extractors.live_schema import feature_set
    from extractors.dataset.training_render import CAPTURE_SR, CHUNK_S, LiveAudioWindows, speech_stream
    from extractors.live.health import HealthConfig

    fs = feature_set()
    stream = speech_stream(utterances, np.random.default_rng(3))
    assert stream.sr == CAPTURE_SR and len(stream.spans) == 2
    ends = [round(x, 1) for x in np.arange(1.0, stream.wave.size / stream.sr - 0.2, 0.4)]
    settings = HealthConfig(a_hold_s=0.3)      # a short voice hold, so the pauses between are missing
    got = LiveAudioWindows(fs.build(face=False, text=False).audio, VoiceActivityDetector(num_threads=1),
                           settings=settings).windows(stream, ends)

    # the live session on the same stream, in the page's chunks
    comp = Components.load("cpu", feature_set=fs, face=False, asr=False, text=False)
    s = LiveSession(load_checkpoint(tiny_run).model, comp, SessionConfig(face_fps=None, health=settings))
    live = {}
    try:
        step = int(CHUNK_S * stream.sr)
        t, want = 0.0, list(ends)
        for i in range(0, stream.wave.size, step):
            x = stream.wave[i:i + step]
            s.push_audio(x, stream.sr, t)
            t += x.size / stream.sr
            while want and want[0] <= t + 1e-6:
                e = want.pop(0)
                with s._lock:
                    a_live = bool(s.health.poll(e)["A"].live)
                live[round(e, 6)] = (a_live, s.window_rows(e)["A"] if a_live else None)
    finally:
        s.close()
    assert set(got) == set(live)
    states = [got[e][0] for e in sorted(got)]
    assert any(states) and not all(states), states           # speech and the pauses between
    for e in sorted(got):
        assert got[e][0] == live[e][0], e
        if got[e][0]:
            assert got[e][1].shape == live[e][1].shape
            np.testing.assert_allclose(got[e][1], live[e][1], rtol=1e-5, atol=1e-5, err_msg=f"window ending {e}")


def test_a_face_placed_in_a_frame_is_found_by_the_live_front_end():
    from extractors.live_schema import feature_set
    from extractors.dataset.training_render import FRAME_SIZE, LiveFaceRows, face_in_frame
    faces = fer_faces(3)
    frame, draw = face_in_frame(faces[0], np.random.default_rng(0))
    assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3) and frame.dtype == np.uint8
    assert 120 <= draw["px"] <= 300
    rows = LiveFaceRows(feature_set().build(audio=False, text=False).face, keyframes=3)
    found = [rows.sequence(g, np.random.default_rng(i))[1] for i, g in enumerate(faces)]
    assert sum(found) >= 6, found                              # most frames of most faces
