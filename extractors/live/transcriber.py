"""Streaming speech recognition for the live path: microphone chunks at any rate go through an
audio front end (:mod:`extractors.live.audio_frontend`: resampling, silero VAD inline), voiced
utterances are cut and transcribed by a :class:`~extractors.models.speech.SpeechRecognizer` on a
worker thread; the caller polls for partial (``final=False``) and final results and is never
blocked by a slow transcript."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

import numpy as np

from extractors.models.audio import TARGET_SR, VoiceActivityDetector
from extractors.live.audio_frontend import AudioFrontEnd, AudioSettings, SpeechGate
from extractors.models.speech import SpeechRecognizer, merge_segments
from extractors.types import AsrSegment, VadResult


@dataclass
class _Job:
    utt_id: int
    start: float            # stream time of audio[0]
    audio: np.ndarray
    final: bool
    submitted: float


class StreamingTranscriber:
    """Feed microphone chunks; voiced utterances are transcribed off the caller's thread.

    Audio arrives through an :class:`~extractors.live.audio_frontend.AudioFrontEnd` (resampling to
    16 kHz, the ring buffer and the VAD happen there, once): standalone, ``feed(chunk, sr,
    t=None) -> list[VadResult]`` pushes into the transcriber's own front end; in the live session
    the session's front end calls :meth:`on_audio` for every chunk and the transcriber cuts its
    jobs out of that front end's ring.  Utterances follow the front end's
    :class:`~extractors.live.audio_frontend.SpeechGate` (rule ``"utterance"``, silero's hysteresis:
    start at ``p >= vad_on``; end after ``utterance_silence_s`` below ``vad_off``), padded by
    ``speech_pad_s``, forced cut at ``max_segment_s``; the thresholds are read from ``settings``
    (an :class:`~extractors.live.audio_frontend.AudioSettings`, e.g. the live session's HealthConfig)
    at every VAD window, so a threshold changed live applies at once.  It never waits for ASR.
    ``poll()`` returns the results ready so far: one :class:`AsrSegment` per utterance with
    ``final=True`` (``start``/``end`` = the utterance's padded VAD bounds in stream time, words in
    stream time; an utterance where ASR heard nothing gives ``text=""``), preceded by
    ``final=False`` partials of a still-open utterance every ``partial_every_s`` (same
    ``start``, growing ``end``; a pending partial is replaced by a newer one, never queued
    behind it).  If finals pile up beyond ``max_pending`` the oldest is dropped and counted in
    ``stats["dropped"]``.  Worker exceptions are kept in ``errors``, never raised into feed().

    ``threshold``, ``neg_threshold``, ``min_silence_s``, ``min_speech_s``, ``speech_pad_s`` and
    ``max_segment_s`` build the settings when none are given (``vad_on``, ``vad_off``,
    ``utterance_silence_s``, ``utterance_min_speech_s``, ``speech_pad_s``, ``max_segment_s``).
    """

    def __init__(self, recognizer: SpeechRecognizer | None = None,
                 vad: VoiceActivityDetector | None = None, *, threshold: float = 0.5,
                 neg_threshold: float | None = None, min_silence_s: float = 0.5,
                 min_speech_s: float = 0.25, speech_pad_s: float = 0.2,
                 max_segment_s: float = 20.0, partial_every_s: float | None = 1.0,
                 max_pending: int = 8, settings: AudioSettings | None = None,
                 frontend: AudioFrontEnd | None = None):
        self.recognizer = recognizer if recognizer is not None else SpeechRecognizer()
        if settings is None:
            settings = frontend.settings if frontend is not None else AudioSettings(
                vad_on=float(threshold),
                vad_off=AudioSettings.default_vad_off(threshold) if neg_threshold is None else float(neg_threshold),
                utterance_silence_s=float(min_silence_s), utterance_min_speech_s=float(min_speech_s),
                speech_pad_s=float(speech_pad_s), max_segment_s=float(max_segment_s))
        self.settings = settings
        if frontend is None:
            vad = vad if vad is not None else VoiceActivityDetector()
            frontend = AudioFrontEnd(vad, self.settings)
        self.frontend = frontend
        self.vad = frontend.vad
        self.gate = SpeechGate(self.settings, "utterance")
        self.partial_every_s = partial_every_s
        self.max_pending = int(max_pending)

        self._cond = threading.Condition()
        self._finals: collections.deque[_Job] = collections.deque()
        self._partial: _Job | None = None
        self._busy = False
        self._closed = False
        self._results: collections.deque[AsrSegment] = collections.deque()
        self._done_utts: set[int] = set()
        self.errors: list[BaseException] = []
        self.stats = {"jobs": 0, "partials": 0, "finals": 0, "dropped": 0,
                      "asr_seconds": 0.0, "audio_seconds": 0.0, "max_latency_s": 0.0}
        self._utt_id = 0
        self.on_run_start(0.0)
        frontend.consumers.append(self)
        self._worker = threading.Thread(target=self._run, name="asr-worker", daemon=True)
        self._worker.start()

    @property
    def threshold(self) -> float:
        return self.gate.thresholds[0]

    @property
    def neg_threshold(self) -> float:
        return self.gate.thresholds[1]

    # ---- caller side --------------------------------------------------------------------

    def feed(self, chunk, sr: int, t: float | None = None) -> list[VadResult]:
        """Push a chunk of microphone audio into the front end; returns its VAD results.  Never
        blocks on ASR.  ``t`` (optional) is the chunk's stream time; a drop-out (a gap of more
        than ``gap_s``) finalises any open utterance and restarts the stream clock at ``t``."""
        if self._closed:
            raise RuntimeError("StreamingTranscriber is closed")
        return self.frontend.push(chunk, sr, t).vads

    def flush(self) -> None:
        """End of stream (or a drop-out): push held-back audio, finalise an open utterance."""
        self.frontend.flush()

    # front-end consumer (called under the front end's lock)
    def on_run_start(self, t: float) -> None:
        self._t0 = float(t)                   # the run's start (utterances never begin before it)
        self._utt_start = 0.0
        self._speech_start = 0.0
        self._last_partial = 0.0
        self.gate.reset()

    def on_audio(self, frame) -> None:
        for r in frame.vads:
            self._step(r)

    def on_run_end(self, t: float) -> None:
        if self.gate.speaking:
            now = self._now()
            temp_end = self.gate.silence_start
            self._close_utterance(now, temp_end if temp_end is not None else now)

    def _now(self) -> float:
        return self.frontend.ring.end_time

    def _step(self, r: VadResult) -> None:
        end_t = r.t + r.duration
        st = self.gate.step(r)
        if st.changed and st.speaking:        # an utterance starts
            self._speech_start = st.onset
            self._utt_start = max(st.onset - float(self.settings.speech_pad_s), self._t0)
            self._last_partial = end_t
            return
        if st.changed:                        # ... and ends after enough silence
            end = st.silence_start if st.silence_start is not None else st.t
            self._close_utterance(end + float(self.settings.speech_pad_s), end)
            return
        if not st.speaking:
            return
        if end_t - self._utt_start >= float(self.settings.max_segment_s):
            self._close_utterance(end_t, end_t)
            self.gate.restart(end_t)          # speech goes on: next piece starts here
            self._utt_start, self._last_partial, self._speech_start = end_t, end_t, end_t
            return
        if self.partial_every_s and end_t - self._last_partial >= self.partial_every_s:
            if not (r.speech_prob < self.gate.thresholds[1]):   # not in a pause that may end the utterance:
                self._last_partial = end_t                      # a partial then would only delay the final
                self._submit(self._utt_start, end_t, final=False)

    def _close_utterance(self, end: float, speech_end: float) -> None:
        start = self._utt_start
        self.gate.reset()
        end = min(end, self._now())
        if speech_end - self._speech_start >= float(self.settings.utterance_min_speech_s):
            self._submit(start, end, final=True)
        self._utt_id += 1

    def _slice(self, start: float, end: float) -> np.ndarray:
        ring = self.frontend.ring
        a = ring.index(start)
        return ring.samples(a, max(a, ring.index(end)))

    def _submit(self, start: float, end: float, final: bool) -> None:
        job = _Job(self._utt_id, start, self._slice(start, end), final, time.perf_counter())
        with self._cond:
            if final:
                if self._partial is not None and self._partial.utt_id == job.utt_id:
                    self._partial = None
                self._finals.append(job)
                while len(self._finals) > self.max_pending:
                    self._finals.popleft()
                    self.stats["dropped"] += 1
            else:
                self._partial = job                 # supersede a waiting partial
            self._cond.notify_all()

    def poll(self) -> list[AsrSegment]:
        """Results ready so far (non-blocking), oldest first."""
        with self._cond:
            out = list(self._results)
            self._results.clear()
        return out

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._finals) + (self._partial is not None) + int(self._busy)

    def drain(self, timeout: float | None = None) -> list[AsrSegment]:
        """Wait until every queued job is done (or ``timeout``), then :meth:`poll`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._finals or self._partial is not None or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
        return self.poll()

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout)

    def __enter__(self) -> StreamingTranscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- worker side --------------------------------------------------------------------

    def _next_job(self) -> _Job | None:
        with self._cond:
            while True:
                if self._finals:
                    job = self._finals.popleft()
                    break
                if self._partial is not None:
                    job, self._partial = self._partial, None
                    if job.utt_id in self._done_utts:    # stale: utterance already final
                        continue
                    break
                if self._closed:
                    return None
                self._cond.notify_all()
                self._cond.wait()
            self._busy = True
            return job

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                t0 = time.perf_counter()
                segs = self.recognizer.transcribe(job.audio, TARGET_SR, offset=job.start,
                                                  final=job.final)
                end = job.start + job.audio.size / TARGET_SR
                merged = merge_segments(segs, job.start, end, final=job.final)
                dt = time.perf_counter() - t0
                merged.wait_s, merged.asr_s = round(t0 - job.submitted, 4), round(dt, 4)
                with self._cond:
                    self.stats["jobs"] += 1
                    self.stats["finals" if job.final else "partials"] += 1
                    self.stats["asr_seconds"] += dt
                    self.stats["audio_seconds"] += job.audio.size / TARGET_SR
                    self.stats["max_latency_s"] = max(self.stats["max_latency_s"],
                                                      time.perf_counter() - job.submitted)
                    if job.final:
                        self._done_utts.add(job.utt_id)
                        if len(self._done_utts) > 1000:
                            self._done_utts = {u for u in self._done_utts if u > job.utt_id - 100}
                        self._results.append(merged)
                    elif merged.text and job.utt_id not in self._done_utts:
                        self._results.append(merged)
            except Exception as e:                    # keep the worker alive
                with self._cond:
                    self.errors.append(e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
