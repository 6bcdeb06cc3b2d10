"""The live path (issue 12): settings changed live reach every consumer, the audio and face front
ends, the typed window result.  Fakes stand in for the networks (fast); the real extractors are
covered by tests/test_app.py."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_app import FakeAudio, FakeFace, tiny_model, tiny_run  # noqa: F401 - fixtures


class LevelVad:
    """A VAD whose speech probability is the chunk's peak amplitude (so a test picks it exactly)."""

    pending_samples = 0

    def __init__(self, threshold=0.5):
        self.t = None

    def reset(self, t=0.0):
        self.t = float(t)

    def process(self, x, sr, t=None):
        from extractors.types import VadResult

        if self.t is None or (t is not None and abs(t - self.t) > 0.05):
            self.t = 0.0 if t is None else float(t)
        out, win = [], int(0.032 * sr)
        for i in range(0, len(x) - win + 1, win):
            out.append(VadResult(t=self.t, duration=0.032, speech_prob=float(np.abs(x[i:i + win]).max())))
            self.t += 0.032
        return out


class CountingRecognizer:
    """SpeechRecognizer's interface; records what it was asked to transcribe."""

    def __init__(self):
        self.jobs: list[tuple[float, float, bool]] = []

    def transcribe(self, audio, sr=16000, *, offset=0.0, final=True):
        from extractors.types import AsrSegment

        end = offset + len(audio) / sr
        self.jobs.append((offset, end, final))
        return [AsrSegment(start=offset, end=end, text="hello there", words=[], avg_logprob=-0.1,
                           no_speech_prob=0.01, final=final)]


def level(seconds: float, p: float, sr: int = 16000) -> np.ndarray:
    """Audio whose LevelVad probability is ``p`` in every window (a square wave of amplitude p)."""
    n = int(seconds * sr)
    return (p * np.sign(np.sin(2 * np.pi * 200 * np.arange(n) / sr) + 1e-9)).astype(np.float32)


def components(recognizer):
    from app.session import Components

    return Components(face=FakeFace(), audio=FakeAudio(), recognizer=recognizer, vad_factory=LevelVad)


def speak(session, p: float, t0: float = 0.0) -> float:
    """0.5 s silence, 1.5 s at VAD probability ``p``, 1 s silence, in 100 ms chunks; returns the end."""
    t = t0
    for seconds, prob in ((0.5, 0.0), (1.5, p), (1.0, 0.0)):
        x = level(seconds, prob)
        for i in range(0, x.size, 1600):
            session.push_audio(x[i:i + 1600], 16000, t)
            t += 0.1
    return t


# ------------------------------------------------------------------------------------------ live settings
@pytest.mark.parametrize("vad_on,utterances", [(0.5, 1), (0.8, 0)])
def test_vad_threshold_from_the_ui_reaches_the_transcriber(tiny_run, vad_on, utterances):  # noqa: F811
    """The UI's VAD slider (Engine.set -> session.set_health) changes where the ASR cuts speech:
    speech at VAD probability 0.65 is an utterance under the default threshold (0.5), none after
    the slider moved it to 0.8 (the transcriber used to keep the threshold it was built with)."""
    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine

    rec = CountingRecognizer()
    eng = Engine(load_checkpoint(tiny_run), components(rec),
                 lambda: SessionConfig(face_fps=None, asr_partial_every_s=None))
    s = eng.get("browser")
    try:
        eng.set("browser", vad_on=vad_on)            # what the slider's change handler does
        assert s.cfg.health.vad_on == vad_on
        speak(s, 0.65)
        assert s.wait_for_audio(10.0)                # the audio worker fed every chunk
        s.transcriber.flush()
        s.transcriber.drain(timeout=10)
        finals = [j for j in rec.jobs if j[2]]
        assert len(finals) == utterances, rec.jobs
        if utterances:                               # the utterance is the 1.5 s of speech (+ padding)
            start, end, _ = finals[0]
            assert 0.2 <= start <= 0.5 and 1.9 <= end <= 2.5 + 1e-6
    finally:
        eng.close("browser")


def test_vad_threshold_changed_mid_stream(tiny_model):  # noqa: F811
    """The same session, the threshold raised between two utterances: only the first is cut."""
    from app.session import LiveSession, SessionConfig

    rec = CountingRecognizer()
    s = LiveSession(tiny_model, components(rec), SessionConfig(face_fps=None, asr_partial_every_s=None))
    t = speak(s, 0.65)
    s.set_health(vad_on=0.8)
    speak(s, 0.65, t)
    s.transcriber.flush()
    s.transcriber.drain(timeout=10)
    s.close()
    assert [round(j[0], 1) for j in rec.jobs if j[2]] == [0.3], rec.jobs


# ------------------------------------------------------------------------------------------ audio front end
def test_each_chunk_is_resampled_once_and_gated_by_the_front_end(tiny_model, monkeypatch):  # noqa: F811
    """A 44.1 kHz microphone: one resampler pass and one VAD pass per chunk for health, ASR and
    openSMILE together; health reads the front end's gate (runs none of its own)."""
    from app.session import LiveSession, SessionConfig
    from extractors.models.audio import StreamingResampler

    calls = []
    orig = StreamingResampler.process
    monkeypatch.setattr(StreamingResampler, "process", lambda self, x: calls.append(len(x)) or orig(self, x))
    vads = []

    class CountingVad(LevelVad):
        def process(self, x, sr, t=None):
            vads.append((len(x), sr))
            return super().process(x, sr, t)

    rec = CountingRecognizer()
    from app.session import Components

    comp = Components(face=FakeFace(), audio=FakeAudio(), recognizer=rec, vad_factory=CountingVad)
    s = LiveSession(tiny_model, comp, SessionConfig(face_fps=None, asr_partial_every_s=None))
    x = level(3.0, 0.9, sr=44100)
    for k, i in enumerate(range(0, x.size, 4410)):
        s.push_audio(x[i:i + 4410], 44100, k * 0.1)
    s.finish(timeout=10)
    r = s.step(3.0)
    s.close()
    assert len(calls) == 30 and all(n == 4410 for n in calls)           # every chunk resampled once
    assert len(vads) == 30 + 1 and {sr for _, sr in vads} == {16000}     # + the zero-padded last window
    assert 48000 <= sum(n for n, _ in vads) < 48000 + 512              # every sample once (+ padding)
    assert s.health.audio._gate is None                                 # health only read the gate's steps
    assert r.streams["A"] == "live" and [j[2] for j in rec.jobs] == [True]


def test_one_dropout_tolerance_for_ring_vad_and_asr(tiny_model):  # noqa: F811
    """A gap up to gap_s (0.1 s) continues the run everywhere; a longer one ends the open
    utterance and restarts ring, VAD clock and gates at the new time."""
    from app.session import LiveSession, SessionConfig

    rec = CountingRecognizer()
    s = LiveSession(tiny_model, components(rec), SessionConfig(face_fps=None, asr_partial_every_s=None))
    x = level(0.1, 0.9)
    t = 0.0
    for _ in range(10):
        s.push_audio(x, 16000, t)
        t += 0.1
    t += 0.08                                        # small gap: same run
    s.push_audio(x, 16000, t)
    assert s._audio.t0 == 0.0 and not rec.jobs
    t += 0.1 + 0.15                                  # drop-out: the utterance ends, a new run starts
    s.push_audio(x, 16000, t)
    s.transcriber.drain(timeout=10)
    assert s._audio.t0 == pytest.approx(t) and s._audio.total == 1600
    assert [j[2] for j in rec.jobs] == [True] and rec.jobs[0][1] <= 1.2 + 1e-6
    assert s.transcriber.gate.speaking                # the new run's speech opened a new utterance
    s.close()


def test_audio_ring_is_circular_and_exact():
    from extractors.models.audio_rows import AudioRing

    rng = np.random.default_rng(0)
    ring = AudioRing(0.01, sr=16000)                  # 160 samples
    ref = np.zeros(0, np.float32)
    for n in rng.integers(0, 400, 60):
        y = rng.standard_normal(int(n)).astype(np.float32)
        ring.append(y)
        ref = np.concatenate([ref, y])
        assert ring.total == ref.size and ring.n == min(160, ref.size)
        for a, b in ((0, ref.size), (ref.size - 50, ref.size), (ref.size - 160, ref.size - 7)):
            got = ring.samples(a, b)
            want = ref[max(a, ref.size - 160, 0):max(b, 0)]
            assert np.array_equal(got, want)


def _old_speech_regions(results, threshold=0.5, neg_threshold=None, min_silence_s=0.1, min_speech_s=0.25):
    """speech_regions as it was before the shared gate (silero's rule written out)."""
    neg = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
    regions, start, silence_since = [], None, None
    for r in results:
        if start is None:
            if r.speech_prob >= threshold:
                start, silence_since = r.t, None
            continue
        if r.speech_prob < neg:
            if silence_since is None:
                silence_since = r.t
            if r.t + r.duration - silence_since >= min_silence_s:
                if silence_since - start >= min_speech_s:
                    regions.append((start, silence_since))
                start, silence_since = None, None
        elif r.speech_prob >= threshold:
            silence_since = None
    if start is not None and results:
        end = silence_since if silence_since is not None else results[-1].t + results[-1].duration
        if end - start >= min_speech_s:
            regions.append((start, end))
    return regions


@pytest.mark.parametrize("seed", range(5))
def test_speech_regions_through_the_gate_match_silero_rule(seed):
    from extractors.live.audio_frontend import speech_regions
    from extractors.types import VadResult

    rng = np.random.default_rng(seed)
    p = np.clip(np.repeat(rng.uniform(0, 1, 80), rng.integers(1, 12, 80)) + rng.normal(0, 0.1, None), 0, 1)
    res = [VadResult(t=i * 0.032, duration=0.032, speech_prob=float(v)) for i, v in enumerate(p)]
    for kw in ({}, {"min_silence_s": 0.5}, {"threshold": 0.7, "neg_threshold": 0.3, "min_speech_s": 0.1}):
        assert speech_regions(res, **kw) == _old_speech_regions(res, **kw)


# ------------------------------------------------------------------------------------------ face front end
from tests.test_health import clip as face_clip  # noqa: E402,F401 - fixture: real extractor + astronaut frames

PLAN = (["face"] * 10 + ["black"] + ["face"] * 4 + ["hand"] * 8 + ["face"] * 4 + ["black"] * 6
        + ["face"] * 4 + ["scarf"] * 6)


def _frames(imgs):
    rng = np.random.default_rng(1)
    for i, kind in enumerate(PLAN):
        frame = imgs[kind]
        if kind != "black":
            frame = np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
        yield i / 15.0, frame


def test_face_front_end_aligns_once_and_health_reads_its_frames(face_clip, monkeypatch):
    """Per frame: one alignment (the tracker's, handed on in the FaceFrame), one frame verdict (the
    front end's, handed to the tracker or extractor: no second check); VideoHealth reading FaceFrames decides exactly as VideoHealth given the frames."""
    import extractors.models.face as face_mod
    import extractors.live.face_frontend as ffe
    from app.session import SessionConfig
    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig, VideoHealth

    fx, imgs = face_clip
    aligned, checked = [], []
    align, check = face_mod.align_face, face_mod.frame_problem
    monkeypatch.setattr(face_mod, "align_face", lambda *a, **k: aligned.append(1) or align(*a, **k))
    monkeypatch.setattr(ffe, "align_face", face_mod.align_face)
    monkeypatch.setattr(ffe, "frame_problem", lambda f: checked.append(1) or check(f))
    monkeypatch.setattr(face_mod, "frame_problem", lambda f: checked.append(1) or check(f))  # tracker, extractor
    cfg = HealthConfig()
    fe = FaceFrontEnd(fx, SessionConfig(face_fps=None), cfg)
    untracked = FaceFrontEnd(fx, SessionConfig(face_fps=None, face_tracking=False), cfg)
    live, reference = VideoHealth(cfg), VideoHealth(HealthConfig())
    tracker = fx.tracker()
    for t, frame in _frames(imgs):
        n_aligned, n_checked = len(aligned), len(checked)
        ff = fe.process(frame, t)
        assert len(checked) - n_checked == 1
        assert len(aligned) - n_aligned == (1 if ff.result.detected else 0)
        d = live.read(ff)
        assert len(aligned) - n_aligned == (1 if ff.result.detected else 0)   # health made no crop
        n_checked = len(checked)
        untracked.process(frame, t)                                            # the extractor, no tracker
        assert len(checked) - n_checked == 1
        ref = reference.update(tracker(frame, t), frame)                       # health given the frame
        assert (d.live, d.reason) == (ref.live, ref.reason), t
        if ff.result.detected:
            assert np.array_equal(ff.crop, align(Image_L(frame), ff.result.landmarks, 48))
            if ff.result.score >= cfg.v_min_score:
                assert np.array_equal(ff.feature, ff.result.feature)
            else:
                assert ff.feature is None
        else:
            assert ff.crop is None and ff.feature is None
    assert fe.fn.stats["tracked"] > 0                                          # the tracker was used


def Image_L(frame):
    from PIL import Image

    return Image.fromarray(frame).convert("L")


def test_v_rows_follow_the_live_min_score(tiny_model):  # noqa: F811
    """The V-row rule lives in the face front end and reads the (live) health config."""
    from app.session import LiveSession, SessionConfig
    from extractors.live.face_frontend import usable_feature
    from extractors.types import FaceResult

    f = FaceResult(t=0.0, detected=True, score=0.95, feature=np.ones(128, np.float32))
    assert usable_feature(f, 0.9) is not None and usable_feature(f, 0.96) is None
    assert usable_feature(FaceResult(0.0, True, 0.99, feature=np.full(128, np.nan)), 0.5) is None
    s = LiveSession(tiny_model, components(CountingRecognizer()), SessionConfig(face_fps=None))
    rng = np.random.default_rng(0)
    s.push_video(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), 0.0)
    s.set_health(v_min_score=0.9999)                 # FakeFace scores 0.999
    s.push_video(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), 0.1)
    s.close()
    assert [r.feature is not None for r in s._faces] == [True, False]



# ------------------------------------------------------------------------------------------ typed results
def test_window_result_keeps_the_jsonl_contract_byte_for_byte(tiny_model):  # noqa: F811
    """The session publishes WindowResult objects up to the edge; their JSONL line is exactly what the
    writers wrote before (json.dumps of the contract dict, keys in RESULT_KEYS order, NaN refused),
    and a line read back gives the same result (the OOD entries typed again)."""
    import json

    from app import RESULT_KEYS
    from app.session import LiveSession, SessionConfig
    from admc.pipeline import ModalityOOD
    from app.window import WindowResult
    from tests.test_app import fake_components, run_sync

    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None))
    results = run_sync(s, 3, speech=(0, 2))
    s.close()
    assert all(isinstance(r, WindowResult) for r in results) and s.last_result is results[-1]
    assert list(s.results) == results
    scored = [o for r in results for o in r.ood.values() if o is not None]
    assert scored and all(isinstance(o, ModalityOOD) for o in scored)
    for r in results:
        line = json.dumps(r.to_dict(), allow_nan=False)
        w = WindowResult.from_dict(json.loads(line))
        assert list(w.to_dict()) == list(RESULT_KEYS)
        assert w.to_json() == line and w == r
    bad = WindowResult(t=1.0, streams={}, reasons={}, probs={"x": float("nan")})
    with pytest.raises(ValueError):
        bad.to_json()


def test_modality_error_instead_of_message_parsing(tiny_model):  # noqa: F811
    """A modality whose features the core rejects: predict raises ModalityError(modality, reason);
    the session drops that modality with the reason and predicts from the others."""
    from app.session import LiveSession, SessionConfig
    from app.window import ModalityError, predict
    from tests.test_app import fake_components

    feats = {"A": np.zeros((30, 130), np.float32), "V": np.full((30, 128), np.nan, np.float32), "T": None}
    with pytest.raises(ModalityError) as ei:
        predict(tiny_model, feats)
    assert (ei.value.modality, ei.value.reason) == ("V", "NaN or inf in the features")
    with pytest.raises(ModalityError) as ei:
        predict(tiny_model, {"A": np.zeros((30, 7), np.float32), "V": None, "T": None})
    assert ei.value.modality == "A" and "expected [rows, 130]" in ei.value.reason
    with pytest.raises(ValueError) as ei:                    # not a modality's fault: passed on
        predict(tiny_model, {"A": None, "V": None, "T": None})
    assert not isinstance(ei.value, ModalityError)
    # the core raises it (no message parsing above it); str() is the message the CLI always printed
    from admc.errors import ModalityError as CoreModalityError
    from admc.pipeline import embed_features

    assert CoreModalityError is ModalityError
    with pytest.raises(CoreModalityError) as ei:
        embed_features(tiny_model, feats)
    assert str(ei.value) == "modality V: NaN or inf in the features" and isinstance(ei.value, ValueError)
    import pickle

    e2 = pickle.loads(pickle.dumps(ei.value))
    assert (e2.modality, e2.reason, str(e2)) == ("V", "NaN or inf in the features", str(ei.value))

    s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None))
    streams, reasons = {"A": "live", "V": "live", "T": "missing"}, {"A": "ok", "V": "ok", "T": "off"}
    out = s._predict(tiny_model, dict(feats), streams, reasons)
    s.close()
    assert out["probs"] and streams["V"] == "missing" and reasons["V"] == "bad features: NaN or inf in the features"
    assert "V" in out["imputed"]


# ------------------------------------------------------------------------------------------ UI controls
def _component(demo, elem_id):
    return next(c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == elem_id)


@pytest.mark.parametrize("reads_n", [False, True])
def test_ui_shows_only_controls_that_act_on_the_checkpoint(tiny_run, monkeypatch, reads_n):  # noqa: F811
    """The start-step slider only for a completer whose sampler reads n; MMER only when trained."""
    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine, checkpoint_controls
    from app.ui import build_ui
    from tests.test_app import fake_components

    ck = load_checkpoint(tiny_run)
    monkeypatch.setattr(type(ck.model.completer), "uses_start_step", reads_n, raising=False)
    demo = build_ui(Engine(ck, fake_components(), lambda: SessionConfig(face_fps=None)))
    assert _component(demo, "admc-start-step")["props"]["visible"] is reads_n
    assert _component(demo, "admc-mmer")["props"]["visible"] is bool(getattr(ck.model, "mmer", False))
    assert checkpoint_controls(ck) == {"start_step": reads_n, "mmer": bool(getattr(ck.model, "mmer", False))}


# ------------------------------------------------------------------------------------------ window assembly
def test_window_assembler_is_pure_and_names_why():
    from app.window import FaceRow, WindowAssembler

    wa = WindowAssembler(("A", "V", "T"), window_s=3.0, video_rate=10.0)
    a = np.ones((30, 130), np.float32)
    dec = {"A": (True, "ok"), "V": (True, "ok"), "T": (False, "no speech")}
    feats, streams, reasons = wa.window(5.0, dec, {"A": a, "V": None, "T": np.ones((4, 384))},
                                        {"A": None, "V": None, "T": None})
    assert feats["A"] is a and feats["V"] is None and feats["T"] is None
    assert streams == {"A": "live", "V": "missing", "T": "missing"}
    assert reasons == {"A": "ok", "V": "no face rows", "T": "no speech"}
    _, streams, reasons = wa.window(5.0, dec, {"A": a}, {"A": "extractor error: boom"})
    assert streams["A"] == "missing" and reasons["A"] == "extractor error: boom"
    assert wa.window(5.0, {}, {})[2] == {m: "unknown modality" for m in "AVT"}
    # face rows at 15 fps with a hole 3.0-3.47 s: a slot holds the newest face up to 0.25 s old
    faces = [FaceRow(i / 15, np.full(128, i, np.float32)) for i in range(76) if not 45 <= i <= 52]
    rows = wa.v_rows(faces, 5.0)
    assert list(rows[:, 0]) == [31, 33, 34, 36, 37, 39, 40, 42, 43, 44, 44,          # 3.0, 3.1: frame 44 held
                                54, 55, 57, 58, 60, 61, 63, 64, 66, 67, 69, 70, 72, 73, 75]  # 3.2-3.5: none
    assert wa.v_rows(faces, 20.0) is None


# ------------------------------------------------------------------------------------------ session structure
def test_threading_is_the_drivers_business(tiny_model):  # noqa: F811
    """The session's methods are the same in both modes: no method branches on ``threaded`` and no
    thread is started in app/session.py; the threaded driver runs the same process_frame on its
    face worker that the inline driver runs on the caller's thread."""
    import inspect
    import threading
    import time

    import app.session as sess
    from app.driver import InlineDriver, ThreadedDriver
    from app.session import LiveSession, SessionConfig
    from tests.test_app import fake_components

    src = inspect.getsource(sess)
    assert "threading.Thread(" not in src and src.count("self.threaded") == 1   # the attribute only
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for threaded, driver in ((False, InlineDriver), (True, ThreadedDriver)):
        s = LiveSession(tiny_model, fake_components(), SessionConfig(face_fps=None), threaded=threaded)
        assert type(s.driver) is driver
        seen = []
        real = s.process_frame
        s.process_frame = lambda f, t, real=real: (seen.append(threading.current_thread().name), real(f, t))
        s.push_video(frame, 0.0)
        for _ in range(100):
            if seen:
                break
            time.sleep(0.02)
        s.close()
        assert seen == (["live-face"] if threaded else [threading.current_thread().name])
        assert s.counts["frames"] == 1 and s.counts["faces"] == 1


class RepeatingRecognizer(CountingRecognizer):
    """Whisper stuck in a loop: the same word over and over (gzip compression ratio 3.1)."""

    def transcribe(self, audio, sr=16000, *, offset=0.0, final=True):
        from extractors.types import AsrSegment

        end = offset + len(audio) / sr
        self.jobs.append((offset, end, final))
        return [AsrSegment(start=offset, end=end, text="Dork! " * 12, words=[], avg_logprob=-0.2,
                           no_speech_prob=0.01, compression_ratio=3.1, final=final)]


@pytest.mark.parametrize("recognizer,shown", [(CountingRecognizer, "hello there"), (RepeatingRecognizer, "")])
def test_hallucinated_transcripts_are_neither_shown_nor_encoded(tiny_run, recognizer, shown):  # noqa: F811
    from app.checkpoint import load_checkpoint
    from app.session import LiveSession, SessionConfig

    ck = load_checkpoint(tiny_run)
    comp = components(recognizer())
    encoded = []
    comp.text = lambda text: encoded.append(text) or (np.zeros((3, 8), np.float32), None)
    s = LiveSession(ck.model, comp, SessionConfig(face_fps=None, asr_sync=True))
    try:
        speak(s, 0.9)
        s.finish()
        assert s.transcript == shown
        assert (encoded != []) == bool(shown)
    finally:
        s.close()


def test_fault_table_holds_a_fault_for_its_time_and_a_missing_extractor_for_good():
    from app.window import FaultTable

    faults = FaultTable(1.0, permanent={"T": "unavailable: ASR switched off"})
    faults.record("V", "extractor error: boom", t=2.0)
    assert faults.active("V", 2.5) == "extractor error: boom" and faults.active("V", 3.0) == "extractor error: boom"
    assert faults.active("V", 3.01) is None and faults.active("A", 2.5) is None
    faults.record("A", "bad audio", t=5.0, hold=0.2)
    assert faults.active("A", 5.2) == "bad audio" and faults.active("A", 5.3) is None
    assert faults.active("T", 0.0) == faults.active("T", 1e6) == "unavailable: ASR switched off"


def test_window_streams_are_capped_and_the_rest_are_polled(tiny_run):  # noqa: F811
    """Each page's window stream holds a Gradio job slot while the page is open, so at most two per
    admitted session run at once; a page beyond that gets its panel once, then its stream ends and
    the once-a-second poll serves it (the poll skips pages whose stream is alive)."""
    import asyncio
    from types import SimpleNamespace

    from app.checkpoint import load_checkpoint
    from app.engine import Engine
    from app.session import SessionConfig
    from app.ui import build_ui
    from tests.test_app import fake_components

    engine = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig(face_fps=None),
                    max_sessions=1)
    demo = build_ui(engine)
    fn = {getattr(f.fn, "__name__", ""): f.fn for f in demo.fns.values()}
    push, poll = fn["push_windows"], fn["poll_window"]

    def page(name):
        return SimpleNamespace(session_hash=name, username=None, headers={}, client=None)

    async def run():
        streams = [push(page(f"p{i}")) for i in range(3)]
        for g in streams:
            first = await g.__anext__()                    # the panel, at once
            assert "admc-badge" in first[0]
        alive = [asyncio.ensure_future(g.__anext__()) for g in streams[:2]]
        with pytest.raises(StopAsyncIteration):            # the third: over the cap (2 x 1 session)
            await streams[2].__anext__()
        await asyncio.sleep(0.1)
        polled = [poll(page(f"p{i}")) for i in range(3)]
        for t in alive:
            t.cancel()
        return polled

    polled = asyncio.run(run())
    skip = type(polled[0][0])
    assert all(isinstance(x, skip) for x in polled[0] + polled[1]), polled[:2]   # streamed pages: skipped
    assert "admc-badge" in polled[2][0]                                         # the third: polled


def _taken(times, fps):
    from app.session import SessionConfig
    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig

    fe = FaceFrontEnd(None, SessionConfig(face_fps=fps), HealthConfig())
    return np.array([t for t in times if fe.due(t)])


def test_face_rate_cap_keeps_every_tick_of_a_jittery_stream_and_never_exceeds_the_cap():
    """The page sends about as many frames as the face path takes (15/s), with jitter: every tick is
    used (a late frame's tick goes to the next frame), never more than the cap over any stretch
    (a burst of at most FACE_BURST frames), and a steady 30 fps stream gives every other frame."""
    from extractors.live.face_frontend import FACE_BURST, FACE_EARLY

    rng = np.random.default_rng(0)
    # 60 s at 15.1 frames/s, arrival gaps jittered as a loaded browser's (p5..p95 about 45..95 ms)
    gaps = np.clip(rng.normal(1 / 15.1, 0.015, 906), 0.01, None)
    jittery = np.cumsum(gaps)
    taken = _taken(jittery, 15.0)
    span = jittery[-1] - jittery[0]
    assert len(taken) >= 0.99 * min(len(jittery), 15.0 * span), (len(taken), len(jittery), span)
    for i in range(len(taken)):       # at most the cap over any stretch, plus the burst
        j = np.searchsorted(taken, taken[i] + np.array([0.5, 2.0, 10.0]), side="right")
        assert np.all(j - i <= 15.0 * np.array([0.5, 2.0, 10.0]) + FACE_BURST + FACE_EARLY)
    steady = np.arange(900) / 30.0
    assert np.array_equal(_taken(steady, 15.0), steady[::2])
    fast = np.arange(3600) / 60.0 + rng.uniform(0, 0.005, 3600)
    assert abs(len(_taken(fast, 15.0)) - 15 * 60) <= FACE_BURST
    assert len(_taken(jittery, None)) == len(jittery)
    # a new stream (time starts again) is not starved by the old one's clock
    assert len(_taken(np.concatenate([steady, steady]), 15.0)) == 900


def test_page_sends_as_many_webcam_frames_as_the_face_path_takes():
    """The live face cap is above the 15 fps target, and the page sends that many frames a second
    (a page sending exactly the target rate left the face path at 14.9 in the browser), never more
    than the camera gives; a 20 fps page through the default cap keeps every frame."""
    from app.session import SessionConfig
    from app.ui import WEBCAM_MAX_FPS, webcam_every_s

    cap = SessionConfig().face_fps
    assert cap is not None and cap > 15.0
    assert webcam_every_s(cap) == pytest.approx(1.0 / cap)
    assert webcam_every_s(None) == webcam_every_s(120.0) == pytest.approx(1.0 / WEBCAM_MAX_FPS)
    sent = np.arange(int(60 * cap)) * webcam_every_s(cap)
    assert len(_taken(sent, cap)) == len(sent)
