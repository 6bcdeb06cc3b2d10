"""The audio front end of the live path: every microphone chunk is handled once.

::

    chunk (any rate; mono or [n, channels]; float or integer PCM), stream time t
      -> StreamingResampler (once)          -> 16 kHz samples
      -> AudioRing (one ring buffer)        -> the last ``ring_s`` seconds of the current run
      -> VoiceActivityDetector (once)       -> one VadResult per 32 ms window
      -> SpeechGate, rule "activity"        -> GateStep per window: is the person speaking (A live)?
      -> AudioFrame to the consumers:
           StreamingTranscriber.on_audio     (its own SpeechGate, rule "utterance", cuts ASR jobs
                                              out of the ring)
           StreamHealth.update_audio         (reads the GateSteps; no VAD or hysteresis of its own)
           LldStream.update                  (openSMILE ComParE LLDs, reads the ring)

A drop-out -- a chunk more than ``gap_s`` away from where the stream was, or a new sample rate --
ends the run (the resampler's held-back tail and a zero-padded last VAD window go through first,
then every consumer's ``on_run_end``) and starts a new one at the chunk's time.

**Settings** (:class:`AudioSettings`, one set of defaults; the live session's
:class:`extractors.live.health.HealthConfig` *is* an AudioSettings, and the UI edits that object): every
reader -- both gates, the transcriber -- reads the fields on every VAD window, so a threshold
changed live applies to every consumer at once.

=========================  =======  ================================================================
field                      default  meaning
=========================  =======  ================================================================
``vad_on``                 0.5      speech when silero's probability >= this (silero's threshold)
``vad_off``                0.35     silence when < this (silero: threshold - 0.15); never above
                                    ``vad_on`` (clamped)
``a_min_speech_s``         0.1      A goes live after this much unbroken speech (about 3 windows)
``a_min_silence_s``        0.3      the speech gate turns off after this much unbroken silence
``a_hold_s``               3.0      A stays live this long after the end of speech (the voice hold):
                                    with the 3 s window, A is live while the window holds speech
                                    (chosen on the validation clip, docs/live-skew.md); never
                                    shorter than the gate's ``a_min_silence_s``
``utterance_silence_s``    0.5      an ASR utterance ends after this much silence
``utterance_min_speech_s`` 0.25     shorter utterances are not transcribed
``speech_pad_s``           0.2      audio kept before and after an utterance for the ASR
``max_segment_s``          20.0     an utterance longer than this is cut (and goes on)
``gap_s``                  0.1      a chunk this far from the stream's end is a drop-out (new run)
=========================  =======  ================================================================

The two gate rules differ on purpose: A's flag needs *unbroken* runs (a window between the two
thresholds breaks both runs: no flicker), the utterance cutter follows silero's VADIterator (such a
window neither starts nor ends a silence run), and an utterance lasts longer than a pause in the
gate.  A itself (:class:`extractors.live.health.AudioHealth`) stays live ``a_hold_s`` after the gate's
end of speech: the ASR cuts at a 0.5 s pause, the voice stays live through the pauses of a window.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from extractors.models.audio import TARGET_SR, VAD_WINDOW, StreamingResampler, audio_problem, to_mono_float32
from extractors.models.audio_rows import AudioRing, LldStream
from extractors.types import VadResult, is_finite_number

EPS = 1e-6  # time comparisons


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

@dataclass
class AudioSettings:
    """The audio front end's thresholds (documented in the module docstring)."""

    vad_on: float = 0.5
    vad_off: float = 0.35
    a_min_speech_s: float = 0.1
    a_min_silence_s: float = 0.3
    a_hold_s: float = 3.0
    utterance_silence_s: float = 0.5
    utterance_min_speech_s: float = 0.25
    speech_pad_s: float = 0.2
    max_segment_s: float = 20.0
    gap_s: float = 0.1

    @staticmethod
    def default_vad_off(vad_on: float) -> float:
        """Silence below this when only the speech threshold is given: silero's ``threshold - 0.15``."""
        return max(float(vad_on) - 0.15, 0.01)


# ---------------------------------------------------------------------------------------------
# the speech gate
# ---------------------------------------------------------------------------------------------

@dataclass
class GateStep:
    """One VAD window through a :class:`SpeechGate`."""

    t: float                      # window start (stream s)
    end: float                    # window end
    prob: float                   # speech probability (NaN: the VAD result was unusable)
    speaking: bool                # the gate's state after this window
    changed: bool                 # ... differs from the state before it
    onset: float | None           # start of the speech run that turned the gate on (while on)
    silence_start: float | None   # start of the current silence run (when it turned off: the end of speech)
    bad: bool = False             # the VAD result was garbage (then speaking is False)


class SpeechGate:
    """Speech on/off with hysteresis over VAD windows -- the one implementation of the rule.

    A window is *speech* when ``prob >= vad_on``, *silence* when ``prob < vad_off`` (clamped to
    ``vad_on``), otherwise *between*.  The gate turns on when a speech run lasts ``min_speech``
    (0: at its first window) and off when a silence run lasts ``min_silence``.  Rules:

    * ``"activity"`` (is A live; ``a_min_speech_s`` / ``a_min_silence_s``): runs must be unbroken,
      a *between* window breaks both;
    * ``"utterance"`` (ASR segmentation; on at the first speech window, off after
      ``utterance_silence_s``): silero's VADIterator -- a *between* window changes nothing.

    Thresholds are read from ``settings`` on every window.  Garbage results (not a VadResult,
    non-finite values) never raise: a non-finite probability turns the gate off (``bad``).
    """

    RULES = {"activity": ("a_min_speech_s", "a_min_silence_s", True),
             "utterance": (None, "utterance_silence_s", False)}

    def __init__(self, settings: AudioSettings | None = None, rule: str = "activity"):
        if rule not in self.RULES:
            raise ValueError(f"rule must be one of {sorted(self.RULES)}, got {rule!r}")
        self.settings = settings if settings is not None else AudioSettings()
        self.rule = rule
        self._speech_key, self._silence_key, self.strict = self.RULES[rule]
        self.last_end: float | None = None
        self.reset()

    def reset(self) -> None:
        """Off, no runs (the clock of garbage results is kept)."""
        self.speaking = False
        self.onset: float | None = None
        self.speech_start: float | None = None
        self.silence_start: float | None = None

    def restart(self, t: float) -> None:
        """On, as if speech had just started at ``t`` (a forced cut of a long utterance)."""
        self.speaking, self.onset, self.speech_start, self.silence_start = True, float(t), float(t), None

    @property
    def thresholds(self) -> tuple[float, float]:
        on = float(self.settings.vad_on)
        return on, min(float(self.settings.vad_off), on)

    def step(self, vad: VadResult) -> GateStep:
        s = self.settings
        try:
            t, dur, p = float(vad.t), float(vad.duration), float(vad.speech_prob)
        except (AttributeError, TypeError, ValueError):
            t, dur, p = (self.last_end or 0.0), 0.0, float("nan")
        if not (is_finite_number(t) and is_finite_number(dur)):
            t, dur = (self.last_end or 0.0), 0.0
        end = t + max(dur, 0.0)
        self.last_end = end
        was = self.speaking
        if not is_finite_number(p):
            self.reset()
            return GateStep(t, end, float("nan"), False, was, None, None, bad=True)
        on, off = self.thresholds
        min_speech = float(getattr(s, self._speech_key)) if self._speech_key else 0.0
        min_silence = float(getattr(s, self._silence_key))
        if p >= on:
            self.silence_start = None
            if self.speech_start is None:
                self.speech_start = t
            if not self.speaking and end - self.speech_start >= min_speech - EPS:
                self.speaking, self.onset = True, self.speech_start
        elif p < off:
            self.speech_start = None
            if self.silence_start is None:
                self.silence_start = t
            if self.speaking and end - self.silence_start >= min_silence - EPS:
                self.speaking, self.onset = False, None
        elif self.strict:
            self.silence_start = self.speech_start = None
        return GateStep(t, end, p, self.speaking, self.speaking != was, self.onset, self.silence_start)


def speech_regions(results: list[VadResult], threshold: float = 0.5, neg_threshold: float | None = None,
                   min_silence_s: float = 0.1, min_speech_s: float = 0.25) -> list[tuple[float, float]]:
    """Speech regions ``(start, end)`` of a whole clip's VAD results: the utterance gate with these
    thresholds (``neg_threshold`` default ``threshold - 0.15``); regions shorter than
    ``min_speech_s`` are dropped.  The offline default pause (0.1 s) is shorter than the live
    utterance's: a clip's first and last voiced moments are wanted, not sentences."""
    neg = AudioSettings.default_vad_off(threshold) if neg_threshold is None else neg_threshold
    gate = SpeechGate(AudioSettings(vad_on=threshold, vad_off=neg, utterance_silence_s=min_silence_s),
                      "utterance")
    regions: list[tuple[float, float]] = []
    start = None
    for r in results:
        st = gate.step(r)
        if st.changed and st.speaking:
            start = st.onset
        elif st.changed and start is not None:
            end = st.silence_start if st.silence_start is not None else st.t
            if end - start >= min_speech_s:
                regions.append((start, end))
            start = None
    if start is not None and results:
        end = gate.silence_start if gate.silence_start is not None else results[-1].t + results[-1].duration
        if end - start >= min_speech_s:
            regions.append((start, end))
    return regions


# ---------------------------------------------------------------------------------------------
# the front end
# ---------------------------------------------------------------------------------------------

@dataclass
class AudioFrame:
    """What one chunk gave: its 16 kHz samples (in the ring from run index ``start``), the VAD
    windows it completed and the activity gate's step for each."""

    t: float                                   # stream time of the chunk's first sample
    start: int                                 # run index of samples[0]
    samples: np.ndarray                        # 16 kHz (may be empty: the resampler holds some back)
    vads: list[VadResult] = field(default_factory=list)
    steps: list[GateStep] = field(default_factory=list)
    restarted: bool = False                    # this chunk began a new run
    padding: bool = False                      # the end of a run: the resampler's tail and zeros
    #                                            that complete the last VAD window (not judged by health)


def prepare_chunk(chunk, sr) -> tuple[np.ndarray, int]:
    """(mono float32, rate) of a microphone chunk; ValueError naming what is wrong with it."""
    sr = int(sr)
    if sr <= 0:
        raise ValueError(f"sample rate {sr}")
    x = to_mono_float32(chunk)
    problem = audio_problem(x)
    if problem is not None:
        raise ValueError(problem)
    return x, sr


class AudioFrontEnd:
    """One audio stream in, 16 kHz samples + VAD + speech gate out, to every consumer.

    ``push(chunk, sr, t)`` resamples (kept state across chunks), appends to the ring, runs the
    VAD and the activity gate, then calls ``consumer.on_audio(frame)`` for each consumer, all
    under ``lock`` except the resampling and the VAD (the expensive part).  ``t`` None: right
    after the previous chunk.  Consumers may also define ``on_run_end(t)`` (a drop-out or
    :meth:`flush`: an open utterance ends) and ``on_run_start(t)``.
    """

    def __init__(self, vad=None, settings: AudioSettings | None = None, *, ring_s: float | None = None,
                 lock=None):
        self.settings = settings if settings is not None else AudioSettings()
        self.vad = vad
        need = float(self.settings.max_segment_s) + 2 * float(self.settings.speech_pad_s) + 1.0
        self.ring = AudioRing(max(float(ring_s or 0.0), need))
        self.gate = SpeechGate(self.settings, "activity")
        self.lock = lock if lock is not None else threading.RLock()
        self.consumers: list = []
        self.sr: int | None = None
        self.resampler: StreamingResampler | None = None
        self.next_t: float | None = None        # stream time just after the last input sample
        self._ended = True                      # no run open

    # ---- input
    def push(self, chunk, sr: int, t: float | None = None) -> AudioFrame:
        """One chunk (validated with :func:`prepare_chunk`; raises ValueError if unusable)."""
        x, sr = prepare_chunk(chunk, sr)
        return self.push_mono(x, sr, t)

    def push_mono(self, x: np.ndarray, sr: int, t: float | None = None) -> AudioFrame:
        """:meth:`push` for a chunk that :func:`prepare_chunk` has already checked."""
        t = (self.next_t if self.next_t is not None else 0.0) if t is None else float(t)
        restart = (self._ended or self.next_t is None or abs(t - self.next_t) > float(self.settings.gap_s)
                   or sr != self.sr)
        if restart:
            if not self._ended:
                self._end_run()
            self._start_run(t, sr)
        y = self.resampler.process(x)
        self.next_t = t + x.size / sr
        frame = self._feed(y, t)
        frame.restarted = restart
        return frame

    def flush(self) -> AudioFrame | None:
        """End of stream: the held-back audio and the last VAD window (zero-padded) go through,
        then every consumer's ``on_run_end``.  The next chunk starts a new run."""
        if self._ended:
            return None
        return self._end_run()

    # ---- runs
    def _start_run(self, t: float, sr: int) -> None:
        self.sr, self.resampler = sr, StreamingResampler(sr, TARGET_SR)
        with self.lock:
            self.ring.reset(t)
            self.gate.reset()
            if self.vad is not None and hasattr(self.vad, "reset"):
                self.vad.reset(t)
            self._vad_n = 0                     # 16 kHz samples given to the VAD this run
            self._ended = False
            for c in self.consumers:
                if hasattr(c, "on_run_start"):
                    c.on_run_start(t)

    def _end_run(self) -> AudioFrame:
        tail = self.resampler.flush() if self.resampler is not None else np.zeros(0, np.float32)
        pending = getattr(self.vad, "pending_samples", 0) if self.vad is not None else 0
        pad = (-(int(pending) + tail.size)) % VAD_WINDOW
        frame = self._feed(np.concatenate([tail, np.zeros(pad, np.float32)]), self.next_t or 0.0, padding=True)
        with self.lock:
            self._ended = True
            end = self.ring.end_time
            for c in self.consumers:
                if hasattr(c, "on_run_end"):
                    c.on_run_end(end)
        return frame

    def _feed(self, y: np.ndarray, t: float, padding: bool = False) -> AudioFrame:
        ring = self.ring
        vad_t = ring.t0 + self._vad_n / TARGET_SR
        vads = list(self.vad.process(y, TARGET_SR, vad_t)) if self.vad is not None and y.size else []
        self._vad_n += y.size
        with self.lock:
            frame = AudioFrame(t, ring.total, y, vads, padding=padding)
            ring.append(y)
            frame.steps = [self.gate.step(r) for r in vads]
            for c in self.consumers:
                c.on_audio(frame)
        return frame


# ---------------------------------------------------------------------------------------------
# several A extractors side by side
# ---------------------------------------------------------------------------------------------

class StackedAudioFeatures:
    """A extractors whose rows are concatenated (e.g. openSMILE LLDs next to Whisper encoder states).

    Each part has ``dim``, ``window_source(keep_s)`` (a live row source) and ``wave_source(wave)``
    (the source of a whole recording); the stacked rows of a window are the parts' rows side by
    side, the last ``n`` rows of each where ``n`` is the fewest any part gave (all parts' rows end
    at the window's end, 10 per second).
    """

    def __init__(self, parts):
        self.parts = list(parts)
        self.dim = int(sum(p.dim for p in self.parts))

    def window_source(self, keep_s: float = 5.0) -> "StackedRows":
        return StackedRows([p.window_source(keep_s) for p in self.parts])

    def wave_source(self, wave: np.ndarray) -> "StackedRows":
        return StackedRows([p.wave_source(wave) for p in self.parts])


class StackedRows:
    """Row sources side by side (see :class:`StackedAudioFeatures`)."""

    def __init__(self, sources):
        self.sources = list(sources)

    def reset(self) -> None:
        for s in self.sources:
            s.reset()

    def update(self, ring: AudioRing, lock, force: bool = False) -> None:
        for s in self.sources:
            s.update(ring, lock, force=force)

    def window_rows(self, t: float, t0: float, window_s: float) -> np.ndarray | None:
        rows = [s.window_rows(t, t0, window_s) for s in self.sources]
        if any(r is None or not len(r) for r in rows):
            return None
        n = min(len(r) for r in rows)
        return np.concatenate([r[len(r) - n:] for r in rows], axis=1).astype(np.float32)


# the Whisper A extractors: kind -> the grid of encoder pieces in seconds (None: each window whole)
WHISPER_GRID_S: dict[str, float | None] = {"whisper": None, "whisper-1s": 1.0, "whisper-3s": 3.0}


def build_audio_features(kinds: tuple[str, ...], threads: int = 1):
    """The A extractor of a feature set: ``("opensmile",)``, ``("whisper",)`` or both (stacked);
    ``"whisper-1s"`` / ``"whisper-3s"`` are the Whisper encoder on 1 s / 3 s pieces of a fixed grid
    (:class:`extractors.models.speech_encoder.EncoderGridRows`) instead of each window whole."""
    parts = []
    for kind in kinds:
        if kind == "opensmile":
            from extractors.models.audio import AudioFeatureExtractor

            parts.append(AudioFeatureExtractor())
        elif kind in WHISPER_GRID_S:
            from extractors.models.speech_encoder import WhisperEncoderFeatures

            parts.append(WhisperEncoderFeatures(threads=threads, grid_s=WHISPER_GRID_S[kind]))
        else:
            raise ValueError(f"A extractor {kind!r}: must be one of opensmile, {', '.join(WHISPER_GRID_S)}")
    return parts[0] if len(parts) == 1 else StackedAudioFeatures(parts)
