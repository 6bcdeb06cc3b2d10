"""The shipped starter through the browser path, as a user meets it (short; the full measurement is
``benchmarks/browser_path.py``).

Debian's Chromium plays a fake camera (a FER2013 PrivateTest face in a 640x480 frame, 30 fps) and a
fake microphone (RAVDESS test-actor utterances of one emotion with pauses, 48 kHz) into
``python -m app`` with its stage trace on.  Asserted: the audio is never "stalled" by our own
transport, the text stream goes live after people speak (the ASR's transcript reaches the model),
and the voice windows are not all rejected as out of distribution.
"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA

STARTER_EMOTION = "happy"


def _media(tmp_path):
    from PIL import Image

    from benchmarks.browser_path import draw_file_mark, write_mjpeg, write_wav48
    from extractors.models.audio import load_audio
    from scripts.starter.recipe import RAVDESS_TEST

    fer = SHARED_DATA / "fer2013" / "manifest.csv"
    rav = SHARED_DATA / "ravdess_speech" / "manifest.csv"
    if not (fer.is_file() and rav.is_file()):
        pytest.skip("the shared data (FER2013, RAVDESS) is not here")
    face_row = next(r for r in csv.DictReader(open(fer)) if "PrivateTest" in r["path"] and r["label"] == STARTER_EMOTION)
    face = np.asarray(Image.open(SHARED_DATA / "fer2013" / face_row["path"]).convert("L").resize((192, 192)))
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[140:332, 224:416] = face[..., None]
    clips = [r for r in csv.DictReader(open(rav))
             if int(r["speaker_or_subject"]) in RAVDESS_TEST and r["label"] == STARTER_EMOTION][:6]
    rng = np.random.default_rng(0)
    parts = [np.zeros(8000, np.float32)]
    for r in clips:
        parts += [load_audio(SHARED_DATA / "ravdess_speech" / r["path"], 16000),
                  np.zeros(int(rng.uniform(0.5, 1.5) * 16000), np.float32)]
    audio = np.concatenate(parts)
    audio = np.clip(audio + rng.standard_normal(audio.size).astype(np.float32) * 10 ** (-65 / 20), -1, 1)
    seconds = audio.size / 16000
    mjpeg = write_mjpeg((draw_file_mark(frame, k) for k in range(int(seconds * 30))), tmp_path / "cam.mjpeg")
    wav = write_wav48(audio, tmp_path / "mic.wav")
    return mjpeg, wav, seconds


@pytest.mark.slow
def test_starter_in_the_browser_text_goes_live_and_voice_is_not_all_flagged(tmp_path):
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("psutil")
    from app.checkpoint import DEFAULT_CHECKPOINT
    from app.trace import read_trace
    from benchmarks import browser_path as bp

    if not shutil.which(bp.CHROMIUM):
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium (requirements/apt.txt)")
    mjpeg, wav, seconds = _media(tmp_path)
    trace, log = tmp_path / "trace.jsonl", tmp_path / "server.log"
    proc, url = bp.start_app(DEFAULT_CHECKPOINT, log, trace=trace)
    try:
        page = bp.run_browser(url, mjpeg, wav, min(seconds, 40.0), proc.pid, export=False)
    finally:
        bp.stop(proc)
    st = bp.stages(read_trace(trace), page["probe"], warmup_s=4.0)
    assert st["windows"] >= 60, st
    assert st["audio_stalled_share"] == 0.0, st                  # no audio lost on the way
    assert st["audio_live_share"] > 20, st                       # the speech arrives and is heard
    # T goes live (the benchmark measures how often: docs/app.md); 30 % leaves room for a loaded CI machine
    assert st["text_live_share"] > 0 and st["text_live_after_utterance_share"] >= 30, st
    assert st["voice_ood_share_of_live"] is not None and st["voice_ood_share_of_live"] < 100, st
    # the camera went over WebRTC (the app's default) and its frames reached the face path, followed from
    # their capture in the page by the number the camera file carries; the face path keeps up with more than
    # 2 faces a second (the speed targets are the benchmark's: a CPU without AVX2 gave 4.6 here, a face in 167 ms)
    assert page["camera_transport"] == "webrtc" and st["frames_at_server"] > 0 and st["face_fps"] > 2, st
    assert st["frames_marked"] > 0.8 * st["frames_at_server"] and st["end_to_end_ms"]["n"] > 0, st
    assert 0 < st["capture_to_server_ms"]["p50"] < 1000, st
