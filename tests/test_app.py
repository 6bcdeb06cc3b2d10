"""The real-time app: LiveSession (library), the --no-ui replay contract, checkpoint checks, rendering.

The replay test runs the real extractors (MTCNN + mini-Xception, openSMILE, silero VAD, Whisper
tiny.en, MiniLM) on a generated clip: scikit-image's astronaut for 4 s, black frames for 3 s, the
face again; espeak-ng speech for about 7.5 s, then silence.  The checkpoint is a tiny model trained
here on random live-schema features (its predictions mean nothing; the plumbing is what is tested).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app import RESULT_KEYS
from benchmarks.fixtures import cached_test_clip, cached_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return cached_tiny_checkpoint(tmp_path_factory.getbasetemp(), small=True)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> dict:
    return cached_test_clip(tmp_path_factory.getbasetemp())


# ------------------------------------------------------------------------------------------ fakes
LM = np.array([[150, 150], [210, 150], [180, 185], [155, 225], [205, 225]], np.float32)


class FakeFace:
    """Stands in for FaceExtractor: a plausible face in every usable frame (or an exception)."""

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.fail = False

    def __call__(self, frame, t):
        from extractors.models.face import frame_problem
        from extractors.types import FaceResult

        if self.fail:
            raise RuntimeError("face network exploded")
        if frame_problem(frame) is not None:
            return FaceResult(t=t, detected=False, score=0.0)
        return FaceResult(t=t, detected=True, score=0.999, box=np.array([100, 80, 260, 280], np.float32),
                          landmarks=LM.copy(), feature=self.rng.normal(size=128).astype(np.float32),
                          expression={"happy": 0.9, "neutral": 0.1})


class FakeAudio:
    """AudioFeatureExtractor's interface: 100 fps LLD frames, downsampled by 10, streamed live."""

    def window_source(self, keep_s=5.0):
        from extractors.models.audio_rows import LldStream

        return LldStream(self, keep_s=keep_s)

    def lld(self, audio, sr):
        n = max(0, len(audio) // (sr // 100) - 4)
        return np.random.default_rng(n).normal(size=(n, 130)).astype(np.float32)

    def downsample_frames(self, lld):
        n = -(-len(lld) // 10)
        return np.stack([lld[10 * j:10 * j + 10].mean(0) for j in range(n)]) if n else lld[:0]


class FakeVad:
    """Energy VAD with the VoiceActivityDetector interface the session uses."""

    def __init__(self, threshold=0.5):
        self.t = None

    def process(self, x, sr, t=None):
        from extractors.types import VadResult

        if self.t is None or (t is not None and abs(t - self.t) > 0.05):
            self.t = 0.0 if t is None else float(t)
        out, win = [], int(0.032 * sr)
        for i in range(0, len(x) - win + 1, win):
            rms = float(np.sqrt(np.mean(x[i:i + win] ** 2)))
            out.append(VadResult(t=self.t, duration=0.032, speech_prob=0.95 if rms > 0.01 else 0.02))
            self.t += 0.032
        return out


def noise_frame(rng, h=320, w=400):
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def tone(n, sr=16000, amp=0.2):
    return (amp * np.sin(2 * np.pi * 220 * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    import torch

    from app.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    return load_checkpoint(tiny_run).model


def fake_components(**kw):
    from app.session import Components

    return Components(face=kw.get("face", FakeFace()), audio=FakeAudio(), vad_factory=FakeVad,
                      errors={"T": "unavailable: ASR switched off"})


# ------------------------------------------------------------------------------------------ replay (contract)
@pytest.mark.slow
def test_replay_jsonl_contract(tiny_run, clip, tmp_path):
    out = tmp_path / "result.jsonl"
    p = subprocess.run([sys.executable, "-m", "app", "--source", str(clip["mp4"]), "--no-ui", "--out", str(out),
                        "--checkpoint", str(tiny_run)], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    dur, (off0, off1), s_end = clip["duration"], clip["face_off"], clip["speech_end"]
    assert abs(len(rows) - dur / 0.2) <= 2
    for r in rows:
        assert list(r) == list(RESULT_KEYS)                      # exactly the contract's keys
        assert set(r["streams"]) == set(r["reasons"]) == {"A", "V", "T"}
        assert set(r["streams"].values()) <= {"live", "missing"}
        assert all(isinstance(v, str) and v for v in r["reasons"].values())
        assert isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0
        assert r["transcript"] is None or isinstance(r["transcript"], str)
    ts = [r["t"] for r in rows]
    assert all(abs(b - a - 0.2) < 1e-6 for a, b in zip(ts, ts[1:]))

    def at(a, b):
        return [r for r in rows if a <= r["t"] <= b]

    # V goes missing when the face disappears (0.5 s of black frames at most), with the reason,
    # and the ADN completes it; it comes back with the face
    gone = at(off0 + 0.6, off1)
    assert gone and all(r["streams"]["V"] == "missing" and r["reasons"]["V"] == "black frame" for r in gone)
    assert all("V" in r["imputed"] for r in gone)
    assert all(r["streams"]["V"] == "live" for r in at(0.6, off0) + at(off1 + 0.6, dur))
    # A is live while the person speaks, for the voice hold after it (the window still holds speech),
    # and goes missing after that
    from extractors.live.health import HealthConfig

    hold = HealthConfig().a_hold_s
    speaking = at(1.0, s_end - 0.2)
    assert sum(r["streams"]["A"] == "live" for r in speaking) >= 0.8 * len(speaking)
    held = at(s_end + 0.6, s_end + hold - 0.6)
    assert held and all(r["streams"]["A"] == "live" for r in held)
    silent = at(s_end + hold + 0.6, dur)
    assert silent and all(r["streams"]["A"] == "missing" and r["reasons"]["A"] == "silence" for r in silent)
    assert all("A" in r["imputed"] for r in silent)
    # predictions keep coming throughout
    for r in at(0.4, dur):
        assert r["probs"] and math.isclose(sum(r["probs"].values()), 1.0, abs_tol=1e-4)
        assert r["label"] == (None if r["uncertain"] else max(r["probs"], key=r["probs"].get))
    # the speech was recognised; T is live for a while
    words = " ".join(r["transcript"] or "" for r in rows).lower()
    assert any(w in words for w in ("fox", "dog", "happy", "wonderful")), words[-300:]
    assert any(r["streams"]["T"] == "live" for r in rows)


@pytest.mark.slow
def test_replay_audio_only_file(tiny_run, clip, tmp_path):
    out = tmp_path / "audio.jsonl"
    p = subprocess.run([sys.executable, "-m", "app", "--source", str(clip["wav"]), "--no-ui", "--out", str(out),
                        "--checkpoint", str(tiny_run), "--no-asr"], cwd=REPO, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["streams"]["V"] == "missing" and r["reasons"]["V"] in ("no frames", "stalled") for r in rows)
    assert all(r["reasons"]["T"].startswith("unavailable") for r in rows)
    live = [r for r in rows if r["streams"]["A"] == "live"]
    assert live and all(set(r["imputed"]) == {"V", "T"} and r["probs"] for r in live)
    # nothing live at all: a window without prediction, not a crash
    none = [r for r in rows if r["streams"]["A"] == "missing"]
    assert none and all(r["probs"] == {} and r["label"] is None and r["imputed"] == [] for r in none)


# ------------------------------------------------------------------------------------------ checkpoints
def test_missing_default_checkpoint_is_a_clear_error(monkeypatch, capsys, tmp_path, clip):
    import app.checkpoint as ckmod
    from app.cli import main

    monkeypatch.setattr(ckmod, "DEFAULT_CHECKPOINT", tmp_path / "weights" / "starter")
    rc = main(["--source", str(clip["wav"]), "--no-ui", "--out", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "default starter checkpoint" in err and "not there yet" in err and "--checkpoint" in err
    assert "Traceback" not in err


def test_default_checkpoint_is_the_shipped_starter(tmp_path):
    """The real command without --checkpoint loads weights/starter/ and predicts its classes."""
    import json

    import soundfile as sf

    from app.checkpoint import DEFAULT_CHECKPOINT

    classes = json.loads((DEFAULT_CHECKPOINT / "run.json").read_text())["schema"]["classes"]
    wav, out = tmp_path / "s.wav", tmp_path / "r.jsonl"
    rng = np.random.default_rng(0)
    sf.write(str(wav), (0.01 * rng.standard_normal(3 * 16000)).astype(np.float32), 16000)
    p = subprocess.run([sys.executable, "-m", "app", "--source", str(wav), "--no-ui", "--no-asr", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "weights/starter" in p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["streams"]["V"] == "missing" for r in rows)  # an audio file has no face
    assert all(set(r["probs"]) == set(classes) for r in rows if r["probs"])


def test_schema_mismatch_is_refused_with_the_differences(tmp_path, capsys, clip):
    from admc.config import TrainConfig
    from admc.data import Modality, Schema
    from admc.pipeline import ADMCModel
    from admc.run import save_run
    from app.checkpoint import CheckpointError, load_checkpoint
    from app.cli import main

    cfg = TrainConfig()
    cfg.adn.d_model, cfg.adn.ff, cfg.adn.layers = 32, 64, 1
    schema = Schema((Modality("A", 130, "sequence", "lstm"), Modality("V", 64, "sequence", "lstm"),
                     Modality("T", 768, "sequence", "textcnn")), ("calm", "upset"))
    run = save_run(ADMCModel(schema, cfg), tmp_path / "wrong", {})
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(run)
    msg = str(ei.value)
    assert "modality V: dim/kind 128/sequence != 64/sequence" in msg
    assert "modality T: dim/kind 384/sequence != 768/sequence" in msg
    rc = main(["--source", str(clip["wav"]), "--no-ui", "--checkpoint", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match the live extractors" in err and "Traceback" not in err

    # a different set of modalities
    schema2 = Schema((Modality("A", 130, "sequence", "lstm"), Modality("V", 128, "sequence", "lstm")), ("x", "y"))
    run2 = save_run(ADMCModel(schema2, cfg), tmp_path / "two", {})
    with pytest.raises(CheckpointError, match=r"modalities \['A', 'V', 'T'\] != \['A', 'V'\]"):
        load_checkpoint(run2)
    with pytest.raises(CheckpointError, match="not a directory|does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_checkpoint_provenance(tiny_run):
    from app.checkpoint import load_checkpoint
    from app.render import provenance_md

    ck = load_checkpoint(tiny_run)
    prov = ck.provenance()
    assert prov["dataset"]["name"] == "tiny-live-random" and "make_tiny_checkpoint" in prov["command"]
    md = provenance_md(prov)
    head, details = md.split("<details>")
    assert "tiny-live-random" in head and "4 classes: neutral, happy, sad, angry" in head and "model card" in head
    assert str(tiny_run) not in head and "fingerprint" not in head          # long things stay behind the toggle
    assert str(tiny_run) in details and "make_tiny_checkpoint" in details


# ------------------------------------------------------------------------------------------ session (library)
def rows_of(results) -> list[dict]:
    """The windows as the JSONL/export edge publishes them (WindowResult.to_dict)."""
    return [r.to_dict() for r in results]


def run_sync(session, seconds, *, video=True, audio=True, fps=10, speech=(0, 1e9), video_until=1e9,
             garbage_at=(), rng=None):
    """Push synthetic frames/audio in stream order, windows every hop; returns the results
    (:class:`app.window.WindowResult`)."""
    rng = rng or np.random.default_rng(0)
    out = []
    n = int(seconds * fps)
    chunk = 16000 // fps
    for i in range(n):
        t = i / fps
        if video and t < video_until:
            frame = noise_frame(rng)
            if i in garbage_at:
                frame = [None, "not a frame", np.zeros((5, 5)), np.full((64, 64, 3), np.nan)][i % 4]
            session.push_video(frame, t)
        if audio:
            x = tone(chunk) if speech[0] <= t < speech[1] else np.zeros(chunk, np.float32)
            session.push_audio(x, 16000, t)
        out += session.advance(t + 1 / fps - 1e-9)
    return out


def test_session_windows_and_missing_streams(tiny_model, tmp_path):
    from app.session import LiveSession, SessionConfig
    from app.trace import StageTrace, read_trace

    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None))
    s.trace = StageTrace(tmp_path / "trace.jsonl")
    res = rows_of(run_sync(s, 10, speech=(0, 4), video_until=8))
    s.close()
    s.trace.close()
    assert all(list(r) == list(RESULT_KEYS) for r in res)
    by_t = {r["t"]: r for r in res}
    assert by_t[2.0]["streams"] == {"A": "live", "V": "live", "T": "missing"}
    assert by_t[2.0]["reasons"]["T"].startswith("unavailable") and by_t[2.0]["imputed"] == ["T"]
    assert by_t[5.0]["streams"]["A"] == "live"                   # the voice hold: 3 s after speech ends
    assert by_t[7.2]["streams"]["A"] == "missing" and by_t[7.2]["reasons"]["A"] == "silence"
    assert set(by_t[7.2]["imputed"]) == {"A", "T"}
    assert by_t[9.8]["streams"]["V"] == "missing" and by_t[9.8]["reasons"]["V"] == "stalled"   # source vanished
    assert by_t[9.8]["probs"] == {} and by_t[9.8]["label"] is None                           # all missing
    # the trace's windows say where the speech ended (not where the voice hold ends); the browser
    # benchmark's "T live after an utterance" counts the windows from there
    from benchmarks.browser_path import text_after_utterances

    wins = [e for e in read_trace(tmp_path / "trace.jsonl") if e["ev"] == "window"]
    assert len(wins) == len(res)
    ends = {w["speech_end"] for w in wins if 4.4 <= w["t"] <= 9.8}
    assert len(ends) == 1 and abs(ends.pop() - 4.0) < 0.4
    assert all(w["speech_end"] is None for w in wins if w["t"] < 3.8)
    t_after = [{**w, "streams": {**w["streams"], "T": "live" if 4.4 <= w["t"] <= 6.8 else "missing"}} for w in wins]
    assert text_after_utterances(t_after) >= 75
    for r in res:
        if r["probs"]:
            assert math.isclose(sum(r["probs"].values()), 1.0, abs_tol=1e-4)


def test_face_rate_cap_keeps_every_other_frame_of_a_jittery_30fps_camera(tiny_model):
    """15 fps through the face extractor from a 30 fps camera whose frames arrive up to 3 ms early or
    late (a minimum gap since the last face frame would fall to about 10 fps)."""
    from benchmarks.fixtures import clip_frame
    from app.session import LiveSession, SessionConfig

    calls = []

    class CountingFace(FakeFace):
        def __call__(self, frame, t):
            calls.append(t)
            return super().__call__(frame, t)

    s = LiveSession(tiny_model, fake_components(face=CountingFace()), SessionConfig(face_fps=15.0))
    frame = clip_frame("face", size=(160, 120))
    jitter = np.random.default_rng(0).uniform(-0.003, 0.003, 300)
    for i in range(300):                                   # 10 s
        s.push_video(frame, i / 30 + jitter[i])
    s.close()
    assert 149 <= len(calls) <= 151
    assert np.diff(calls).max() < 0.075                    # every other frame, never two skipped in a row


def test_session_survives_garbage_and_extractor_exceptions(tiny_model):
    from app.session import LiveSession, SessionConfig

    face = FakeFace()
    s = LiveSession(tiny_model, fake_components(face=face), SessionConfig(face_fps=None))
    res = rows_of(run_sync(s, 3, garbage_at=set(range(5, 30, 3))))
    # garbage audio of every kind: the A stream is marked missing with the reason, nothing raises
    for bad in (np.full(1600, np.nan, np.float32), np.zeros((2, 2, 2)), "noise", None):
        s.push_audio(bad, 16000, 3.0)
    s.push_audio(np.zeros(1600, np.float32), 0, 3.0)
    r = s.step(3.0)
    assert r.streams["A"] == "missing" and r.reasons["A"].startswith("bad audio")
    assert all(list(x) == list(RESULT_KEYS) for x in res)
    # the face extractor raises: V missing with the reason, A goes on
    face.fail = True
    more = []
    rng = np.random.default_rng(1)
    for i in range(31, 50):
        t = i / 10
        s.push_video(noise_frame(rng), t)
        s.push_audio(tone(1600), 16000, t)
        more += s.advance(t + 0.1 - 1e-9)
    last = more[-1].to_dict()
    assert last["streams"]["V"] == "missing" and "extractor error: RuntimeError: face network exploded" in last["reasons"]["V"]
    assert last["streams"]["A"] == "live" and last["probs"] and "V" in last["imputed"]
    # a core failure is a window without prediction, never an exception
    s.model = None
    r = s.step(5.0)
    assert r.probs == {} and r.label is None and not r.predicted and s.core_error
    s.close()


def test_session_memory_is_bounded(tiny_model):
    """A long session (5 min of stream) keeps every buffer at its cap."""
    import tracemalloc

    from app.session import LiveSession, SessionConfig

    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None, history=50, record_limit=40))
    s.start_recording()
    rng = np.random.default_rng(0)
    frame = noise_frame(rng, 120, 160)
    sizes = []
    tracemalloc.start()
    for sec in range(300):
        for k in range(10):
            t = sec + k / 10
            f = frame.copy()
            f[0, 0, 0] = k                      # not frozen
            s.push_video(f, t)
            s.push_audio(tone(1600) if (sec // 20) % 2 == 0 else np.zeros(1600, np.float32), 16000, t)
        if sec % 5 == 4:
            s.step(sec + 1.0)                   # a window now and then is enough for the buffers
        if sec in (60, 299):
            sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert len(s.results) == 50 and len(s.recorded) == 40
    assert len(s._faces) <= s._faces.maxlen and s._audio.n <= s._audio.cap
    assert len(s.health.text.vad) <= s.health.text.vad.maxlen
    assert sizes[1] - sizes[0] < 2_000_000, sizes
    s.close()


def test_slow_asr_never_stalls_the_stream(tiny_model, clip):
    """ASR that takes seconds per utterance: pushes stay fast and windows keep coming (threaded)."""
    import soundfile as sf

    from app.session import Components, LiveSession, SessionConfig
    from extractors.models.audio import VoiceActivityDetector
    from extractors.types import AsrSegment

    class SlowRecognizer:
        calls = 0

        def transcribe(self, audio, sr=16000, *, offset=0.0, final=True):
            SlowRecognizer.calls += 1
            time.sleep(2.5)
            end = offset + len(audio) / sr
            return [AsrSegment(start=offset, end=end, text="hello there my friend", words=[],
                               avg_logprob=-0.2, no_speech_prob=0.01, final=final)]

    class TinyText:
        dim = 384

        def __call__(self, text):
            n = len(text.split())
            return np.ones((n, 384), np.float32), np.ones(384, np.float32)

    comp = Components(face=FakeFace(), audio=FakeAudio(), recognizer=SlowRecognizer(), text=TinyText(),
                      vad_factory=VoiceActivityDetector)
    s = LiveSession(tiny_model, comp, SessionConfig(face_fps=None, asr_partial_every_s=0.5), threaded=True)
    audio, sr = sf.read(str(clip["wav"]), dtype="float32")
    rng = np.random.default_rng(0)
    push_ms = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < 5.0:
        t = i * 0.1
        a = time.perf_counter()
        s.push_video(noise_frame(rng), t)
        s.push_audio(audio[int(t * sr):int((t + 0.1) * sr)], sr, t)
        push_ms.append((time.perf_counter() - a) * 1000)
        i += 1
        time.sleep(max(0.0, start + i * 0.1 - time.perf_counter()))
    time.sleep(3.0)                 # the slow transcript arrives while windows go on
    res = list(s.results)
    s.close()
    assert SlowRecognizer.calls >= 1
    assert max(push_ms) < 150, max(push_ms)
    assert len(res) >= 25                                   # ~5 per second for 8 s
    assert any(r.streams["V"] == "live" for r in res[5:])
    assert any(r.streams["T"] == "live" for r in res), [r.reasons["T"] for r in res]


def test_session_controls(tiny_model):
    from app.session import LiveSession, SessionConfig

    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None))
    run_sync(s, 2)
    on = s.step(2.0)
    s.set_mmer(False)
    off = s.step(2.0)
    assert on.probs and off.probs and on.streams == off.streams
    assert "cross_generate" not in tiny_model.__dict__          # the per-call patch is gone
    s.set_health(v_min_score=0.9999)        # the fake face (0.999) no longer counts
    run_sync(s, 1)
    s.set_health(vad_on=0.6)
    with pytest.raises(ValueError):
        s.set_health(no_such_threshold=1)
    s.cfg.start_step = 30
    assert s.step(3.0).t == 3.0
    s.close()


# ------------------------------------------------------------------------------------------ rendering
def test_render_badges_timeline_exports(tmp_path):
    from app.render import annotate, badges_html, export_csv, export_json, timeline_svg
    from app.window import WindowResult
    from extractors.types import FaceResult

    d1 = {"t": 1.0, "streams": {"A": "live", "V": "missing", "T": "missing"},
          "reasons": {"A": "ok", "V": "black frame", "T": "no speech"}, "imputed": ["V", "T"],
          "probs": {"happy": 0.7, "sad": 0.3}, "label": "happy", "transcript": "hi", "latency_ms": 12.0,
          "uncertain": False, "ood": {"A": None, "V": None, "T": None}}
    r1 = WindowResult.from_dict(d1)
    r2 = WindowResult.from_dict({**d1, "t": 1.2, "streams": {"A": "missing", "V": "missing", "T": "missing"},
                                 "imputed": [], "probs": {}, "label": None})
    h = badges_html(r1, completer="the ridge estimate + one ADN step")
    assert 'data-mod="V" data-state="imputed"' in h and "black frame" in h
    assert "completed by the ridge estimate + one ADN step" in h
    assert 'data-mod="A" data-state="live"' in h and "admc-imputed-marker" in h
    assert 'data-state="missing"' in badges_html(r2) and "admc-imputed-marker" not in badges_html(r2)
    svg = timeline_svg([r1, r2], ["happy", "sad"])
    assert svg.startswith("<svg") and "admc-imputed-span" in svg and "admc-nopred" in svg
    c = export_csv([r1, r2], ["happy", "sad"], tmp_path / "r.csv").read_text().splitlines()
    assert c[0].startswith("t,label,p_happy,p_sad,A_stream") and len(c) == 3 and "V+T" in c[1]
    assert json.loads(export_json([r1, r2], tmp_path / "r.json").read_text())[0] == d1
    img = np.zeros((200, 200, 3), np.uint8) + 50
    face = FaceResult(t=0, detected=True, score=0.99, box=np.array([20, 20, 120, 150], np.float32),
                      landmarks=LM / 2)
    out = annotate(img, face, "happy")
    assert out.shape == img.shape and (out != img).any() and (img == 50).all()
    assert annotate("garbage", face) == "garbage"


def test_uncertain_windows_are_shown_as_uncertain_not_as_an_emotion(tiny_model, tmp_path):
    """Every window carries ``uncertain`` and ``ood`` (per modality {score, out, input_score} or null when absent);
    an uncertain one is badged and named "uncertain" instead of its emotion, and a live modality
    out of distribution is badged as completed."""
    from app.render import badges_html, export_csv, probs_label, shown_label
    from app.session import LiveSession, SessionConfig
    from app.window import WindowResult

    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None))
    res = rows_of(run_sync(s, 3, speech=(0, 3)))
    s.close()
    for r in res:
        assert isinstance(r["uncertain"], bool) and set(r["ood"]) == {"A", "V", "T"}
        for m, o in r["ood"].items():
            if r["streams"][m] == "missing" or not r["probs"]:
                assert o is None
            else:
                assert set(o) == {"score", "out", "input_score"} and isinstance(o["out"], bool) and o["score"] >= 0
                assert o["input_score"] is None or o["input_score"] >= 0
    assert json.loads(json.dumps(res[-1], allow_nan=False)) == res[-1]
    sure_d = {"t": 1.0, "streams": {"A": "live", "V": "live", "T": "missing"},
              "reasons": {"A": "ok", "V": "ok", "T": "x"},
              "imputed": ["V", "T"], "probs": {"happy": 0.9, "sad": 0.1}, "label": "happy", "transcript": None,
              "latency_ms": 1.0, "uncertain": False,
              "ood": {"A": {"score": 3.0, "out": False}, "V": {"score": 99.0, "out": True}, "T": None}}
    sure = WindowResult.from_dict(sure_d)
    unsure = WindowResult.from_dict({**sure_d, "uncertain": True, "label": None})   # an uncertain window names no label
    assert all(r["label"] is None for r in res if r["uncertain"])
    assert probs_label(sure) == {"happy": 0.9, "sad": 0.1} and shown_label(sure) == "happy"
    assert probs_label(unsure) == "uncertain" and shown_label(unsure) == "uncertain"
    assert "admc-uncertain" in badges_html(unsure) and "admc-uncertain" not in badges_html(sure)
    h = badges_html(sure)
    # a live modality out of distribution has its own state, never a green "live"
    assert 'data-mod="V" data-state="ood" data-ood="1"' in h and "unlike training" in h and "out of distribution" in h
    assert 'data-mod="A" data-state="live" data-ood="0"' in h
    nothing = WindowResult.from_dict({**sure_d, "streams": {m: "missing" for m in "AVT"}, "probs": {}, "label": None,
                                      "imputed": [], "ood": {m: None for m in "AVT"}})
    assert probs_label(nothing).startswith("no input")             # the emotion panel says so
    rows = list(csv.reader(export_csv([sure, unsure], ["happy", "sad"], tmp_path / "r.csv").read_text().splitlines()))
    head = rows[0]
    assert head[head.index("uncertain") + 1:] == ["A_ood", "V_ood", "T_ood", "A_ood_score", "V_ood_score", "T_ood_score"]
    col = {k: i for i, k in enumerate(head)}
    assert [r[col["uncertain"]] for r in rows[1:]] == ["0", "1"] and [r[col["label"]] for r in rows[1:]] == ["happy", ""]
    assert (rows[1][col["A_ood"]], rows[1][col["V_ood"]], rows[1][col["T_ood"]]) == ("0", "1", "")
    assert float(rows[1][col["V_ood_score"]]) == 99.0


# ------------------------------------------------------------------------------------------ CLI / UI plumbing
def test_intent_head_and_engine_sessions(tiny_run, tmp_path):
    """A second head (RUN/intent/) is loaded and predicted beside emotion; the UI engine keeps one
    session per browser and applies the controls to it."""
    import shutil

    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(tiny_run, run / "intent")
    ck = load_checkpoint(run)
    assert set(ck.heads) == {"intent"}
    eng = Engine(ck, fake_components(), lambda: SessionConfig(face_fps=None))
    s = eng.get("browser-1")
    assert eng.get("browser-1") is s and eng.get("browser-2") is not s
    eng.set("browser-1", start_step=25, mmer=False, v_min_score=0.85)
    assert s.cfg.start_step == 25 and s.cfg.mmer is False and s.cfg.health.v_min_score == 0.85
    s.threaded = False                      # drive it by hand
    rng = np.random.default_rng(0)
    for i in range(12):
        s.push_video(noise_frame(rng), i / 10)
        s.push_audio(tone(1600), 16000, i / 10)
    assert s.wait_for_audio(10)             # the audio worker fed every chunk (frames: the face worker)
    s.step(1.2)
    assert set(s.extra) == {"intent"} and math.isclose(sum(s.extra["intent"].values()), 1, abs_tol=1e-4)
    eng.close("browser-1")
    eng.close("browser-2")
    assert not eng.sessions


def test_ui_auth_and_offline_share(tiny_run):
    """--auth protects the app; --share offline says so and keeps serving locally."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine
    from app.ui import launch

    said = []
    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig())
    demo = launch(eng, port=None, auth=("ada", "s3cret"), quiet=True, share=False, say=said.append)
    try:
        base = demo.local_url.rstrip("/")
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(base + "/config", timeout=10)
        assert ei.value.code == 401
        bad = urllib.parse.urlencode({"username": "ada", "password": "nope"}).encode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/login", data=bad, timeout=10)
        good = urllib.parse.urlencode({"username": "ada", "password": "s3cret"}).encode()
        with urllib.request.urlopen(base + "/login", data=good, timeout=10) as r:
            assert r.status == 200
    finally:
        demo.close()


def test_source_local_reads_the_camera_and_reports_a_missing_microphone(tiny_run, clip, tmp_path, capsys):
    """--source local end to end with real OpenCV capture (the test clip opened as the camera, as
    OpenCV opens a device path or stream URL) and sounddevice (no input device on a CI machine)."""
    pytest.importorskip("cv2")
    from app.cli import main

    out = tmp_path / "local.jsonl"
    rc = main(["--source", "local", "--camera", str(clip["mp4"]), "--no-ui", "--checkpoint", str(tiny_run),
               "--no-asr", "--duration", "3.5", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 8 and all(list(r) == list(RESULT_KEYS) for r in rows)
    # the astronaut's face (the clip's first 4 s, read at the capture's 30 fps, not the file's rate),
    # then its black frames; on a loaded machine the first windows may close before the first frame
    # has been analysed, so the face is looked for in the first half
    first_live = next((i for i, r in enumerate(rows) if r["streams"]["V"] == "live"), len(rows))
    assert first_live < len(rows) // 2 and rows[first_live]["probs"]
    assert {r["reasons"]["V"] for r in rows[first_live:]} <= {"ok", "black frame"}
    if "microphone could not be opened" in err:                      # no input device here
        assert all(r["streams"]["A"] == "missing" for r in rows)


def test_camera_that_stops_mid_session_is_reported_and_v_goes_missing(tiny_model, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from benchmarks.fixtures import clip_frame
    from app.local import LocalCapture
    from app.session import LiveSession, SessionConfig

    path = tmp_path / "one_second.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (320, 240))
    for _ in range(15):
        writer.write(clip_frame("face", size=(320, 240))[..., ::-1])
    writer.release()
    results = []
    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None), threaded=True,
                    on_result=results.append)
    cap = LocalCapture(camera=str(path), microphone="no such microphone", fps=15, stall_after_s=0.5)
    cap.start(s)
    try:
        assert cap.video_on and not cap.audio_on and "microphone could not be opened" in cap.problem
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not (
                not cap.video_on and results and results[-1].streams["V"] == "missing"):
            time.sleep(0.1)
    finally:
        cap.stop()
        s.close()
    assert "the camera stopped delivering frames" in cap.problem
    assert any(r.streams["V"] == "live" for r in results)          # frames arrived while the file lasted
    assert results[-1].streams["V"] == "missing" and results[-1].reasons["V"] == "stalled"


def test_realtime_replay_is_paced(tiny_run, clip, tmp_path):
    import soundfile as sf

    x, sr = sf.read(str(clip["wav"]), dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(str(short), x[: 3 * sr], sr)
    out = tmp_path / "rt.jsonl"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "app", "--source", str(short), "--no-ui", "--out", str(out),
                        "--checkpoint", str(tiny_run), "--no-asr", "--realtime", "--quiet"], cwd=REPO,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert 10 <= len(rows) <= 20 and all(list(r) == list(RESULT_KEYS) for r in rows)
    assert any(r["streams"]["A"] == "live" for r in rows)
    assert time.perf_counter() - t0 > 3.0


def test_unreadable_source_is_reported(tiny_run, tmp_path, capsys):
    from app.cli import main

    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    rc = main(["--source", str(bad), "--no-ui", "--checkpoint", str(tiny_run), "--no-asr",
               "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot replay" in err and "Traceback" not in err
    assert main(["--source", str(tmp_path / "missing.mp4"), "--no-ui"]) == 2
    assert main(["--no-ui"]) == 2
    assert main(["--auth", "nocolon"]) == 2


def test_incremental_audio_rows_match_one_pass_over_the_stream(clip):
    """A rows from the incremental LLD stream == rows of one openSMILE pass over the whole audio."""
    import soundfile as sf

    from app.session import TARGET_SR, AudioRing, LldStream
    from extractors.models.audio import AudioFeatureExtractor

    fx = AudioFeatureExtractor()
    x, sr = sf.read(str(clip["wav"]), dtype="float32")
    assert sr == TARGET_SR
    ring, lock = AudioRing(5.0), threading.Lock()
    ring.reset(0.0)
    lld = LldStream(fx, keep_s=5.0)
    for i in range(0, int(6.0 * sr), 1600):          # 100 ms chunks up to t = 6 s
        ring.append(x[i:i + 1600])
        lld.update(ring, lock)
    rows = lld.rows(600, 300)                         # the window (3 s, 6 s]
    full = fx.downsample_frames(fx.lld(x, sr))[30:60]
    assert 26 <= len(rows) <= 30
    # the newest rows cannot see the future (the downsampling filter's edge, as at a clip's
    # end); the rest are the one-pass rows
    n = len(rows) - 4
    err = np.abs(rows[:n] - full[:n]) / (full.std(axis=0) + 1e-6)
    assert np.median(err) < 1e-3 and np.mean(err) < 0.15, (np.median(err), np.mean(err))
    # per-window extraction (openSMILE on the 3 s alone) is further off than the stream
    win = fx(x[3 * sr:6 * sr], sr)[:n]
    assert np.mean(np.abs(win - full[:n]) / (full.std(axis=0) + 1e-6)) > np.mean(err)
