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
    from app.ui import Engine

    rec = CountingRecognizer()
    eng = Engine(load_checkpoint(tiny_run), components(rec),
                 lambda: SessionConfig(face_fps=None, asr_partial_every_s=None))
    s = eng.get("browser")
    try:
        eng.set("browser", vad_on=vad_on)            # what the slider's change handler does
        assert s.cfg.health.vad_on == vad_on
        speak(s, 0.65)
        s.transcriber.flush()
        s.transcriber.drain(timeout=10)
        finals = [j for j in rec.jobs if j[2]]
        assert len(finals) == utterances, rec.jobs
        if utterances:                               # the utterance is the 1.5 s of speech (+ padding)
            start, end, _ = finals[0]
            assert 0.2 <= start <= 0.5 and 1.9 <= end <= 2.5
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
