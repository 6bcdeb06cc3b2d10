"""LiveSession: timestamped video frames and audio chunks in, one result per analysis window out.

Data flow (all times are stream seconds, the clock of the pushed frames/chunks)::

    push_video(frame, t) -> FaceExtractor (MTCNN + mini-Xception) -> VideoHealth, V row buffer
    push_audio(chunk, sr, t) -> AudioFrontEnd (resample once, ring, silero VAD once, speech gate)
                              -> AudioHealth (reads the gate), StreamingTranscriber (utterances,
                                 ASR on its worker), ring -> openSMILE LLD stream
    ASR results (polled)      -> TextHealth; TextEncoder -> T word features of the latest transcript
    step(t) every 200 ms      -> StreamHealth decides what is missing -> window assembly
                              -> app.window.predict (admc.pipeline.predict_window)
                              -> WindowResult (app.window; published as its dict, RESULT_KEYS)

Window assembly for a window ending at ``t`` (3 s long, :mod:`extractors.live_schema`;
:class:`app.window.WindowAssembler`, pure):

* ``A``: the last 3 s of the stream's A rows (``[<=30, 130]``): ComParE LLD+deltas computed
  incrementally every 200 ms (:class:`LldStream`; equal to one pass over the whole stream, as
  ``admc extract`` runs on whole clips) and downsampled to 10 rows/s as the extractor does;
* ``V``: face features sampled at 10 rows/s over the last 3 s: for each 100 ms slot the newest
  frame at or before it with a usable face (sample-and-hold over at most two slots);
* ``T``: word-piece features of the latest finalized transcript (a newer partial of the utterance
  being spoken is used until its final arrives);

each only while StreamHealth says that stream is live, else ``None`` -> completed by the ADN.

Modes.  ``threaded=False`` (replay, tests): frames are processed inline in ``push_video``; the
caller drives windows with :meth:`LiveSession.advance` (or :meth:`step`).  ``threaded=True`` (the
UI, local capture, real-time replay): ``push_video`` only hands the newest frame to a face worker
thread (older unprocessed frames are dropped, never queued), ``push_audio`` only resamples and
runs the VAD, an aux thread extracts the audio LLDs and polls the ASR / encodes transcripts, and a
ticker thread runs :meth:`step` every hop; the caller never waits on any extractor.  ASR always runs on the StreamingTranscriber's own worker.

Robustness.  An extractor exception, a garbage frame or chunk, or a source that stops delivering
never raises out of the session: the stream is marked missing with the reason and the other
streams go on.  With all three missing the window carries no prediction (``probs`` empty,
``label`` None).  Every buffer is bounded, so memory stays flat over long sessions.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.window import FaceRow, ModalityError, WindowAssembler, WindowResult, predict  # noqa: F401 - FaceRow re-exported
from extractors.audio import TARGET_SR  # noqa: F401 - re-exported
from extractors.audio_frontend import AudioFrontEnd, AudioRing, LldStream, prepare_chunk  # noqa: F401 - re-exported
from extractors.face_frontend import FaceFrontEnd
from extractors.health import HealthConfig, StreamHealth
from extractors.live_schema import AUDIO_FRAME_RATE, HOP_SECONDS, VIDEO_FRAME_RATE, WINDOW_SECONDS
from extractors.types import FaceResult

MODS = ("A", "V", "T")
_CORE_LOCK = threading.Lock()   # one core call at a time (models are shared between sessions)


def _short(e: BaseException, n: int = 120) -> str:
    s = f"{type(e).__name__}: {e}"
    return s if len(s) <= n else s[: n - 3] + "..."


# ------------------------------------------------------------------------------------------ config
@dataclass
class SessionConfig:
    window_s: float = WINDOW_SECONDS      # analysis window length
    hop_s: float = HOP_SECONDS            # a result every hop (200 ms)
    video_rate: float = VIDEO_FRAME_RATE  # V rows per second in a window
    audio_rate: float = AUDIO_FRAME_RATE  # A rows per second (openSMILE, fixed by the extractor)
    face_fps: float | None = 15.0         # at most this many frames/s through the face extractor
    face_tracking: bool = True            # follow the face with O-Net between full MTCNN searches
    max_frame_width: int = 640            # wider frames are downscaled first (resolution cap)
    start_step: int | None = None         # diffusion start step n (None: the checkpoint's)
    mmer: bool = True                     # MMER enhancement (only if the checkpoint has it)
    health: HealthConfig = field(default_factory=HealthConfig)
    fault_hold_s: float = 1.0             # an extractor exception keeps its stream missing this long
    asr_sync: bool = False                # wait for pending ASR before each window (fast replay)
    asr_partial_every_s: float | None = 2.0  # partial transcripts of a long utterance this often
    seed: int = 0                         # diffusion noise seed, per window (reproducible results)
    history: int = 3000                   # results kept in memory (10 min at 5/s)
    record_limit: int = 18000             # recorded results kept for export (1 h at 5/s)
    transcript_lines: int = 20            # finalized utterances kept for the running transcript


# ------------------------------------------------------------------------------------------ components
class Components:
    """The extractors, loaded once and shared by every session (each guarded by a lock).

    A component that cannot be loaded is ``None`` and its modality is reported missing with the
    reason in ``errors`` (e.g. ``{"T": "unavailable: ..."}``) -- the others still work.
    """

    def __init__(self, face=None, audio=None, recognizer=None, text=None, vad_factory=None,
                 errors: dict[str, str] | None = None):
        self.face = face
        self.audio = audio
        self.recognizer = recognizer
        self.text = text
        self.vad_factory = vad_factory
        self.errors = dict(errors or {})
        self.face_lock = threading.Lock()
        self.text_lock = threading.Lock()

    @property
    def text_dim(self) -> int | None:
        return getattr(self.text, "dim", None)

    @classmethod
    def load(cls, device="cpu", *, face: bool = True, audio: bool = True, asr: bool = True,
             text: bool = True, face_kwargs: dict | None = None, asr_threads: int = 1,
             asr_model: str | None = None, text_model: str | None = None) -> "Components":
        errors: dict[str, str] = {}
        fx = ax = rec = tx = vad_factory = None
        if face:
            try:
                from extractors.face import FaceExtractor

                fx = FaceExtractor(device=device, **(face_kwargs or {}))
            except Exception as e:  # noqa: BLE001
                errors["V"] = f"unavailable: face extractor ({_short(e)})"
        if audio:
            try:
                from extractors.audio import AudioFeatureExtractor, VoiceActivityDetector

                ax = AudioFeatureExtractor()
                VoiceActivityDetector()           # the model file is there
                vad_factory = VoiceActivityDetector
            except Exception as e:  # noqa: BLE001
                errors["A"] = f"unavailable: audio extractor ({_short(e)})"
        if asr and vad_factory is not None:
            try:
                from extractors.speech import SpeechRecognizer

                rec = SpeechRecognizer("faster-whisper", asr_model, cpu_threads=int(asr_threads))
            except Exception as e:  # noqa: BLE001
                errors["T"] = f"unavailable: speech recognizer ({_short(e)})"
        elif not asr:
            errors["T"] = "unavailable: ASR switched off"
        if text and "T" not in errors:
            try:
                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except Exception:  # noqa: BLE001
                    pass
                from extractors.text import TextEncoder

                tx = TextEncoder(text_model)
            except Exception as e:  # noqa: BLE001
                errors["T"] = f"unavailable: text encoder ({_short(e)})"
        if "A" in errors and "T" not in errors:
            errors["T"] = "unavailable: needs the audio stream"
        return cls(fx, ax, rec, tx, vad_factory, errors)


# ------------------------------------------------------------------------------------------ buffers
class RateMeter:
    """Events per second over the last ``span`` seconds of wall time (bounded)."""

    def __init__(self, span: float = 5.0, maxlen: int = 2000):
        self.span = span
        self.times: deque[float] = deque(maxlen=maxlen)

    def tick(self, now: float | None = None) -> None:
        self.times.append(time.perf_counter() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        while self.times and now - self.times[0] > self.span:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        dt = now - self.times[0]
        return (len(self.times) - 1) / dt if dt > 0 else 0.0


# ------------------------------------------------------------------------------------------ session
class LiveSession:
    """One live stream (one person in front of one camera/microphone)."""

    def __init__(self, model, components: Components, config: SessionConfig | None = None, *,
                 heads: dict | None = None, threaded: bool = False,
                 on_result: Callable[[dict], None] | None = None):
        import torch

        self.model = model
        self.heads = dict(heads or {})          # name -> model (extra classifier heads, e.g. intent)
        self.c = components
        self.cfg = config or SessionConfig()
        self.classes = list(model.schema.classes)
        self.names = list(model.schema.names)
        self.threaded = threaded
        self.on_result = on_result
        self._torch = torch
        self._lock = threading.RLock()
        self._closed = False
        self.core_error: str | None = None
        self._t0_wall = time.perf_counter()

        self.health = StreamHealth(self.cfg.health)
        face_cap = int(self.cfg.window_s * 60) + 16
        self._faces: deque[FaceRow] = deque(maxlen=face_cap)
        self.assembler = WindowAssembler(self.names, self.cfg.window_s, self.cfg.video_rate)
        # audio: one front end (resampling, ring, VAD, speech gate) feeds health, openSMILE and the ASR
        vad = components.vad_factory() if components.vad_factory is not None else None
        self.audio_in = AudioFrontEnd(vad, self.cfg.health, ring_s=self.cfg.window_s + 2.0, lock=self._lock)
        self.audio_in.consumers.append(self)
        self._audio = self.audio_in.ring
        self._lld = LldStream(components.audio, keep_s=self.cfg.window_s + 2.0) if components.audio else None
        self._faults: dict[str, tuple[str, float]] = {}     # modality -> (reason, until t)
        self.last_face: FaceResult | None = None
        # video: one front end (normalising, rate cap, frame verdict, this stream's face tracker,
        # the aligned crop) feeds health and the V rows; the extractor's networks are shared
        self.face_in = FaceFrontEnd(components.face, self.cfg, self.cfg.health, lock=components.face_lock)
        self.last_frame_t: float | None = None

        # text
        self.transcript_lines: deque[str] = deque(maxlen=self.cfg.transcript_lines)
        self.partial: str | None = None
        self._text_feat: np.ndarray | None = None
        self._text_src: str | None = None
        self._text_final_end = -math.inf
        self._asr_errors_seen = 0

        self.transcriber = None
        if components.recognizer is not None and vad is not None:
            from extractors.speech import StreamingTranscriber

            self.transcriber = StreamingTranscriber(components.recognizer, frontend=self.audio_in,
                                                    partial_every_s=self.cfg.asr_partial_every_s)

        # results
        self.results: deque[dict] = deque(maxlen=self.cfg.history)
        self.recording = False
        self.recorded: deque[dict] = deque(maxlen=self.cfg.record_limit)
        self.extra: dict[str, dict] = {}        # latest extra-head probabilities
        self.last_result: WindowResult | None = None
        self._next_t: float | None = None
        self.preview_rate = RateMeter()
        self.face_rate = RateMeter()
        self.result_rate = RateMeter()
        self.latencies: deque[float] = deque(maxlen=1000)
        self.face_ms: deque[float] = deque(maxlen=1000)
        self.counts = {"frames": 0, "faces": 0, "windows": 0, "audio_chunks": 0}

        # threads (threaded mode)
        self._frame_slot: tuple | None = None
        self._frame_cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        if threaded:
            for name, target in (("face", self._face_loop), ("aux", self._aux_loop),
                                 ("ticker", self._tick_loop)):
                th = threading.Thread(target=target, name=f"live-{name}", daemon=True)
                th.start()
                self._threads.append(th)

    # -------------------------------------------------------------------- clock / controls
    def clock(self) -> float:
        """Seconds since the session started (wall clock): the stream time of live capture."""
        return time.perf_counter() - self._t0_wall

    @property
    def can_mmer(self) -> bool:
        """Whether MMER can be switched (the checkpoint was trained with it)."""
        return bool(getattr(self.model, "mmer", False))

    def set_mmer(self, on: bool) -> None:
        """MMER on/off for this session.  A checkpoint trained with MMER feeds its full-input
        classifier ``cat(F, F')``; off replaces the cross-generated ``F'`` by ``F`` itself (saves
        the M extra ADN passes).  Without MMER in the checkpoint this is a no-op."""
        self.cfg.mmer = bool(on)

    def set_model(self, model, heads: dict | None = None) -> None:
        """Swap the checkpoint (same live schema; its classes may differ)."""
        with self._lock:
            self.model = model
            self.heads = dict(heads or {})
            self.classes = list(model.schema.classes)
            self.names = list(model.schema.names)
            self.assembler = WindowAssembler(self.names, self.cfg.window_s, self.cfg.video_rate)
            self.extra = {}

    def preview_face(self, max_age: float = 1.0) -> FaceResult | None:
        """The newest face result if it is recent enough to draw on the current frame."""
        f = self.last_face
        if f is None or self.last_frame_t is None:
            return None
        newest = self._frame_slot[1] if self._frame_slot is not None else self.last_frame_t
        return f if newest - float(f.t) <= max_age else None

    def set_health(self, **kw) -> None:
        """Change detector thresholds (HealthConfig fields) on the fly."""
        with self._lock:
            for k, v in kw.items():
                if not hasattr(self.cfg.health, k):
                    raise ValueError(f"unknown health setting {k!r}")
                setattr(self.cfg.health, k, v)   # the monitors read the config on every update

    def start_recording(self) -> None:
        with self._lock:
            self.recorded.clear()
            self.recording = True

    def stop_recording(self) -> list[dict]:
        with self._lock:
            self.recording = False
            return list(self.recorded)

    # -------------------------------------------------------------------- faults
    def _fault(self, mod: str, reason: str, t: float, hold: float | None = None) -> None:
        until = t + (self.cfg.fault_hold_s if hold is None else hold)
        with self._lock:
            self._faults[mod] = (reason, until)

    def _active_fault(self, mod: str, t: float) -> str | None:
        if mod in self.c.errors:
            return self.c.errors[mod]
        f = self._faults.get(mod)
        if f is not None and t <= f[1] + 1e-9:
            return f[0]
        return None

    # -------------------------------------------------------------------- video
    def cap_frame(self, frame):
        """RGB uint8 at most ``max_frame_width`` wide (garbage passes through untouched)."""
        return self.face_in.normalise(frame)

    def push_video(self, frame, t: float | None = None) -> FaceResult | None:
        """One video frame (uint8 RGB ``[H, W, 3]``) at stream time ``t`` (default: now).

        Returns the newest face result (for drawing the preview).  Never raises.
        """
        if self._closed:
            return self.last_face
        t = self.clock() if t is None else float(t)
        self.preview_rate.tick()
        self.counts["frames"] += 1
        try:
            frame = self.cap_frame(frame)
        except Exception as e:  # noqa: BLE001
            self._fault("V", f"bad frame: {_short(e)}", t)
            return self.last_face
        if self.threaded:
            with self._frame_cv:
                self._frame_slot = (frame, t)       # the newest frame wins; never a queue
                self._frame_cv.notify()
            return self.last_face
        if not self.face_in.due(t):
            return self.last_face
        self._process_frame(frame, t)
        return self.last_face

    def _process_frame(self, frame, t: float) -> None:
        ff = self.face_in.process(frame, t)
        if ff.error is not None:
            self._fault("V", f"extractor error: {_short(ff.error)}", t)
        if ff.ms is not None:
            self.face_ms.append(ff.ms)
        self.face_rate.tick()
        self.counts["faces"] += 1
        with self._lock:
            try:
                self.health.update_video(ff)
            except Exception as e:  # noqa: BLE001
                self._fault("V", f"health error: {_short(e)}", t)
            self._faces.append(FaceRow(t, ff.feature))
            self.last_face = ff.result
            self.last_frame_t = t

    def _face_loop(self) -> None:
        while True:
            with self._frame_cv:
                while self._frame_slot is None and not self._closed:
                    self._frame_cv.wait(0.5)
                if self._closed:
                    return
                frame, t = self._frame_slot
                self._frame_slot = None
            if not self.face_in.due(t):
                continue
            try:
                self._process_frame(frame, t)
            except Exception as e:  # noqa: BLE001
                self._fault("V", f"extractor error: {_short(e)}", t)

    # -------------------------------------------------------------------- audio
    def push_audio(self, chunk, sr: int, t: float | None = None) -> None:
        """A chunk of microphone audio (mono or ``[n, channels]``, float or integer PCM) starting
        at stream time ``t`` (default: right after the previous chunk).  Never raises."""
        if self._closed:
            return
        now = self.clock() if t is None else float(t)
        self.counts["audio_chunks"] += 1
        a_next = self.audio_in.next_t
        try:
            x, sr = prepare_chunk(chunk, sr)
            if x.size == 0:
                return
        except Exception as e:  # noqa: BLE001
            self._fault("A", f"bad audio: {_short(e, 80)}", a_next or now)
            return
        if t is None:
            t = a_next if a_next is not None else now
            if self.threaded and t < now - 3.0:       # the microphone stopped for a while
                t = now - x.size / sr
        t = float(t)
        try:
            self.audio_in.push_mono(x, sr, t)         # -> on_audio / on_run_start (under the lock)
            if self._lld is not None and not self.threaded:
                self._update_lld()                    # threaded: on the aux thread
        except Exception as e:  # noqa: BLE001
            self._fault("A", f"extractor error: {_short(e)}", t)

    # audio front-end consumer (called under self._lock)
    def on_run_start(self, t: float) -> None:
        if self._lld is not None:
            self._lld.reset()

    def on_audio(self, frame) -> None:
        if frame.padding:
            return
        for st in frame.steps:
            self.health.update_audio(st)

    def _update_lld(self, force: bool = False) -> None:
        try:
            self._lld.update(self._audio, self._lock, force=force)
        except Exception as e:  # noqa: BLE001
            self._fault("A", f"extractor error: {_short(e)}", self.audio_in.next_t or 0.0)

    def window_rows(self, t: float) -> dict:
        """The rows per modality the streams have delivered for the window ending at ``t``
        (:meth:`extractors.window.WindowAssembler.rows`, as ``admc extract`` assembles them)."""
        with self._lock:
            return self.assembler.rows(t, faces=self._faces, lld=self._lld, audio_t0=self._audio.t0,
                                       text=self._text_feat)

    # -------------------------------------------------------------------- text
    def pump_text(self, segs: list | None = None) -> None:
        """Collect ASR results (polled, or ``segs`` already taken from the transcriber): T health,
        transcript, text features (TextEncoder)."""
        tr = self.transcriber
        if tr is None:
            return
        segs = list(segs or []) + tr.poll()
        errs = tr.errors
        if len(errs) > self._asr_errors_seen:
            e = errs[-1]
            self._asr_errors_seen = len(errs)
            self._fault("T", f"asr failure: {_short(e, 80)}", self.health.now, hold=3.0)
        for s in segs:
            with self._lock:
                try:
                    self.health.update_text(s)
                except Exception as e:  # noqa: BLE001
                    self._fault("T", f"health error: {_short(e)}", self.health.now)
            text = (s.text or "").strip()
            if s.final:
                if text:
                    self.transcript_lines.append(text)
                self.partial = None
            elif text:
                self.partial = text
            if not text or (not s.final and s.start <= self._text_final_end):
                continue
            feat = None
            if self.c.text is not None:
                try:
                    with self.c.text_lock:
                        enc = self.c.text(text)
                    feat = None if enc is None else enc[0]
                except Exception as e:  # noqa: BLE001
                    self._fault("T", f"extractor error: {_short(e)}", self.health.now)
            with self._lock:
                if feat is not None:
                    self._text_feat, self._text_src = feat, text
                if s.final:
                    self._text_final_end = max(self._text_final_end, float(s.end))

    @property
    def transcript(self) -> str:
        """The running transcript (finalized utterances, then the current partial)."""
        parts = list(self.transcript_lines)
        if self.partial:
            parts.append(self.partial + " ...")
        return " ".join(parts)

    def _aux_loop(self) -> None:
        """Threaded mode: audio features (openSMILE LLD stream) and ASR results / text features,
        off the capture handlers and off the window ticker."""
        while not self._closed:
            if self._lld is not None:
                self._update_lld()
            try:
                self.pump_text()
            except Exception as e:  # noqa: BLE001
                self._fault("T", f"extractor error: {_short(e)}", self.health.now)
            time.sleep(0.05)

    # -------------------------------------------------------------------- windows
    def step(self, t: float | None = None, due_wall: float | None = None) -> dict:
        """Analyse the window ending at stream time ``t``; returns the result dict."""
        t = self.clock() if t is None else float(t)
        if not self.threaded:
            segs = None
            if self.cfg.asr_sync and self.transcriber is not None:
                segs = self.transcriber.drain(timeout=30.0)
            self.pump_text(segs)
            due_wall = None          # ASR waits and text encoding are not window latency
        due = time.perf_counter() if due_wall is None else due_wall
        with self._lock:
            dec = {m: (d.live, d.reason) for m, d in self.health.poll(t).items()}
            rows = self.window_rows(t)
            text_src = self._text_src
        faults = {m: self._active_fault(m, t) for m in self.names}
        feats, streams, reasons = self.assembler.window(t, dec, rows, faults)
        probs: dict[str, float] = {}
        label = None
        imputed: list[str] = []
        if any(v is not None for v in feats.values()):
            try:
                out = self._predict(self.model, feats, streams, reasons)
                if out is not None:
                    probs, label, imputed = out["probs"], out["label"], list(out["imputed"])
                    for name, hm in self.heads.items():
                        ho = self._predict(hm, dict(feats), dict(streams), dict(reasons))
                        if ho is not None:
                            self.extra[name] = ho["probs"]
            except Exception as e:  # noqa: BLE001 - a core failure gives a window without prediction
                probs, label, imputed = {}, None, []
                self.core_error = _short(e)
        transcript = text_src if text_src is not None else (
            self.transcript_lines[-1] if self.transcript_lines else None)
        win = WindowResult(round(t, 3), streams, reasons, imputed, probs, label, transcript,
                           round((time.perf_counter() - due) * 1000.0, 2))
        self.last_result = win
        res = win.to_dict()
        self.latencies.append(win.latency_ms)
        self.result_rate.tick()
        self.counts["windows"] += 1
        with self._lock:
            self.results.append(res)
            if self.recording:
                self.recorded.append(res)
        if self.on_result is not None:
            try:
                self.on_result(res)
            except Exception:  # noqa: BLE001
                pass
        return res

    def _predict(self, model, feats, streams, reasons) -> dict | None:
        """The pipeline; a modality whose features the core rejects is dropped (missing)."""
        feats = {m: feats.get(m) for m in model.schema.names}
        while any(v is not None for v in feats.values()):
            gen = self._torch.Generator().manual_seed(int(self.cfg.seed))
            try:
                with _CORE_LOCK:
                    return predict(model, feats, generator=gen, start_step=self.cfg.start_step,
                                   mmer=bool(self.cfg.mmer))
            except ModalityError as e:
                feats[e.modality] = None
                streams[e.modality] = "missing"
                reasons[e.modality] = f"bad features: {e.reason}"
        for m in streams:
            streams[m] = "missing"
        return None

    def advance(self, now: float) -> list[dict]:
        """Run every window whose end (a multiple of the hop) is <= ``now``; returns them."""
        hop = self.cfg.hop_s
        if self._next_t is None:
            self._next_t = hop
        out = []
        due = time.perf_counter()
        while self._next_t <= now + 1e-9:
            out.append(self.step(round(self._next_t, 6), due_wall=due))
            self._next_t += hop
        return out

    def _tick_loop(self) -> None:
        hop = self.cfg.hop_s
        next_wall = time.perf_counter() + hop
        while not self._closed:
            delay = next_wall - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if self._closed:
                return
            due = next_wall
            next_wall += hop
            if time.perf_counter() - next_wall > hop:     # fell behind: skip, never pile up
                next_wall = time.perf_counter() + hop
            try:
                self.step(due - self._t0_wall, due_wall=due)
            except Exception:  # noqa: BLE001 - the ticker must survive anything
                pass

    # -------------------------------------------------------------------- stats / close
    def stats(self) -> dict:
        lat = sorted(self.latencies)

        def pct(p):
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(math.ceil(p / 100 * len(lat))) - 1)], 1)

        return {
            "preview_fps": round(self.preview_rate.rate(), 1),
            "face_fps": round(self.face_rate.rate(), 1),
            "predictions_per_s": round(self.result_rate.rate(), 2),
            "latency_p50_ms": pct(50),
            "latency_p95_ms": pct(95),
            "face_ms_p50": round(float(np.median(self.face_ms)), 1) if self.face_ms else None,
        }

    def finish(self, timeout: float = 30.0) -> None:
        """End of stream: flush the ASR (final utterance) and collect its results."""
        if self._lld is not None:
            self._update_lld(force=True)
        tr = self.transcriber
        try:
            self.audio_in.flush()                     # the ASR's open utterance ends here
        except Exception:  # noqa: BLE001
            pass
        if tr is not None:
            segs = []
            try:
                segs = tr.drain(timeout=timeout)
            except Exception:  # noqa: BLE001
                pass
            self.pump_text(segs)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._frame_cv:
            self._frame_cv.notify_all()
        for th in self._threads:
            th.join(timeout=2.0)
        if self.transcriber is not None:
            try:
                self.transcriber.close(timeout=5.0)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
