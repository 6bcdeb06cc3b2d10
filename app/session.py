"""LiveSession: timestamped video frames and audio chunks in, one result per analysis window out.

Data flow (all times are stream seconds, the clock of the pushed frames/chunks)::

    push_video(frame, t) -> FaceExtractor (MTCNN + expression network) -> VideoHealth, V row buffer
    push_audio(chunk, sr, t) -> AudioFrontEnd (resample once, ring, silero VAD once, speech gate)
                              -> AudioHealth (reads the gate), StreamingTranscriber (utterances,
                                 ASR on its worker), ring -> A row source (openSMILE LLD
                                 stream, or the Whisper encoder per window)
    ASR results (polled)      -> TextFrontEnd (extractors/live/text_frontend.py): T health, hallucinations
                                 dropped, the transcript, T word features of the latest transcript
    step(t) every 200 ms      -> StreamHealth decides what is missing -> window assembly
                              -> app.window.predict_available (admc.pipeline.predict_window)
                              -> WindowResult (app.window; typed up to the JSONL/UI edge)

Window assembly for a window ending at ``t`` (3 s long; the checkpoint's feature set,
:mod:`extractors.live_schema`):
:class:`extractors.live.window.WindowAssembler` (pure; the same assembler builds ``admc extract``'s
training windows) -- ``A`` from the feature set's A source (``Components.audio_rows``), ``V`` from
the face rows at 10 slots/s
(sample-and-hold), ``T`` the word-piece features of the latest transcript -- each only while
StreamHealth says that stream is live, else ``None`` -> completed by the ADN.

Modes.  Who runs what is the driver's business (app/driver.py): :class:`~app.driver.InlineDriver`
(``threaded=False``: replay, tests; the caller drives windows with :meth:`LiveSession.advance`
or :meth:`step`) or :class:`~app.driver.ThreadedDriver` (``threaded=True``: the UI, local capture,
real-time replay; face worker, aux thread, window ticker).  The session's methods are the same in
both.  ASR always runs on the StreamingTranscriber's own worker.  The extractors come from
:class:`~app.components.Components`; results history and recording are :class:`~app.recording.Recorder`,
counters and rates :class:`~app.stats.SessionStats`.

Robustness.  An extractor exception, a garbage frame or chunk, or a source that stops delivering
never raises out of the session: the stream is marked missing with the reason and the other
streams go on.  With all three missing the window carries no prediction (``probs`` empty,
``label`` None).  A window the checkpoint does not trust keeps its ``probs`` and ``label`` with
``uncertain`` True (a live modality out of distribution is completed like a missing one; ``ood``
has the scores: :func:`admc.pipeline.predict_window`), and the UI shows "uncertain".  Every buffer
is bounded, so memory stays flat over long sessions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.components import Components, short_error as _short  # noqa: F401 - Components re-exported
from app.driver import InlineDriver, ThreadedDriver
from app.recording import Recorder
from app.stats import RateMeter, SessionStats  # noqa: F401 - RateMeter re-exported
from app.window import FaceRow, FaultTable, WindowAssembler, WindowResult, predict_available  # noqa: F401 - FaceRow re-exported
from extractors.models.audio import TARGET_SR  # noqa: F401 - re-exported
from extractors.live.audio_frontend import AudioFrontEnd, prepare_chunk  # noqa: F401 - re-exported
from extractors.models.audio_rows import AudioRing, LldStream  # noqa: F401 - re-exported
from extractors.live.face_frontend import FaceFrontEnd
from extractors.live.health import HealthConfig, StreamHealth
from extractors.live.text_frontend import TextFrontEnd
from extractors.live_schema import AUDIO_FRAME_RATE, HOP_SECONDS, VIDEO_FRAME_RATE, WINDOW_SECONDS
from extractors.types import FaceResult

MODS = ("A", "V", "T")
_CORE_LOCK = threading.Lock()   # one core call at a time (models are shared between sessions)


# ------------------------------------------------------------------------------------------ config
@dataclass
class SessionConfig:
    window_s: float = WINDOW_SECONDS      # analysis window length
    hop_s: float = HOP_SECONDS            # a result every hop (200 ms)
    video_rate: float = VIDEO_FRAME_RATE  # V rows per second in a window
    audio_rate: float = AUDIO_FRAME_RATE  # A rows per second (openSMILE, fixed by the extractor)
    face_fps: float | None = 20.0         # at most this many frames/s through the face extractor (live)
    face_tracking: bool = True            # follow the face with O-Net between full MTCNN searches
    max_frame_width: int = 640            # wider frames are downscaled first (resolution cap)
    start_step: int | None = None         # diffusion start step n (None: the checkpoint's)
    mmer: bool = True                     # MMER enhancement (only if the checkpoint has it)
    health: HealthConfig = field(default_factory=HealthConfig)
    fault_hold_s: float = 1.0             # an extractor exception keeps its stream missing this long
    asr_sync: bool = False                # wait for pending ASR before each window (fast replay)
    asr_partial_every_s: float | None = 1.0  # partial transcripts of an open utterance this often (so
    #                                          T is live before the utterance's final transcript)
    seed: int = 0                         # diffusion noise seed, per window (reproducible results)
    history: int = 3000                   # results kept in memory (10 min at 5/s)
    record_limit: int = 18000             # recorded results kept for export (1 h at 5/s)
    transcript_lines: int = 20            # finalized utterances kept for the running transcript


# ------------------------------------------------------------------------------------------ session
class LiveSession:
    """One live stream (one person in front of one camera/microphone)."""

    def __init__(self, model, components: Components, config: SessionConfig | None = None, *,
                 heads: dict | None = None, threaded: bool = False,
                 on_result: "Callable[[WindowResult], None] | None" = None):
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
        # extractor faults: a stream missing for fault_hold_s after an exception, for good when its
        # extractor could not be loaded
        self.faults = FaultTable(self.cfg.fault_hold_s, components.errors, lock=self._lock)
        self._closed = False
        self.core_error: str | None = None
        self.t0_wall = time.perf_counter()
        self.t0_unix = time.time()              # the wall clock at stream time 0 (for traces, exports)
        self.trace = None                       # app.trace.StageTrace (python -m app --trace)
        self.trace_key: str | None = None

        self.health = StreamHealth(self.cfg.health)
        face_cap = int(self.cfg.window_s * 60) + 16
        self._faces: deque[FaceRow] = deque(maxlen=face_cap)
        self.assembler = WindowAssembler(self.names, self.cfg.window_s, self.cfg.video_rate)
        # audio: one front end (resampling, ring, VAD, speech gate) feeds health, openSMILE and the ASR
        vad = components.vad_factory() if components.vad_factory is not None else None
        self.audio_in = AudioFrontEnd(vad, self.cfg.health, ring_s=self.cfg.window_s + 2.0, lock=self._lock)
        self.audio_in.consumers.append(self)
        self._audio = self.audio_in.ring
        self._audio_next: float | None = None     # stream time right after the last chunk accepted
        self.audio_arrived: float | None = None   # session clock when the newest chunk arrived
        # A rows: the feature set's source (openSMILE LLD frames, or the Whisper encoder per window)
        self._audio_rows = components.audio_rows(keep_s=self.cfg.window_s + 2.0)
        self.last_face: FaceResult | None = None
        # video: one front end (normalising, rate cap, frame verdict, this stream's face tracker,
        # the aligned crop) feeds health and the V rows; the extractor's networks are shared
        self.face_in = FaceFrontEnd(components.face, self.cfg, self.cfg.health, lock=components.face_lock)
        self.last_frame_t: float | None = None

        # text: the ASR on the audio front end, then the text front end (transcript, T rows)
        self.transcriber = None
        if components.recognizer is not None and vad is not None:
            from extractors.live.transcriber import StreamingTranscriber

            self.transcriber = StreamingTranscriber(components.recognizer, frontend=self.audio_in,
                                                    partial_every_s=self.cfg.asr_partial_every_s)
        self.text_in = TextFrontEnd(self.transcriber, components.text, self.health, self._lock,
                                    encoder_lock=components.text_lock, lines=self.cfg.transcript_lines,
                                    fault=self.fault, trace=self._trace)

        # results, stats
        self.recorder = Recorder(self.cfg.history, self.cfg.record_limit, self._lock)
        self.perf = SessionStats()
        self.extra: dict[str, dict] = {}        # latest extra-head probabilities
        self.last_result: WindowResult | None = None
        self._next_t: float | None = None
        # who runs what: the caller (inline) or worker threads (app/driver.py)
        self.driver = ThreadedDriver(self) if threaded else InlineDriver(self)

    # results and stats live in app/recording.py and app/stats.py
    results = property(lambda self: self.recorder.results)
    recorded = property(lambda self: self.recorder.recorded)
    recording = property(lambda self: self.recorder.recording)
    counts = property(lambda self: self.perf.counts)
    face_ms = property(lambda self: self.perf.face_ms)
    latencies = property(lambda self: self.perf.latencies)

    # -------------------------------------------------------------------- clock / controls
    def clock(self) -> float:
        """Seconds since the session started (wall clock): the stream time of live capture."""
        return time.perf_counter() - self.t0_wall

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
        newest = self.driver.newest_frame_t()
        newest = self.last_frame_t if newest is None else newest
        return f if newest - float(f.t) <= max_age else None

    def set_health(self, **kw) -> None:
        """Change detector thresholds (HealthConfig fields) on the fly."""
        with self._lock:
            for k, v in kw.items():
                if not hasattr(self.cfg.health, k):
                    raise ValueError(f"unknown health setting {k!r}")
                setattr(self.cfg.health, k, v)   # the monitors read the config on every update

    def start_recording(self) -> None:
        self.recorder.start()

    def stop_recording(self) -> list[WindowResult]:
        return self.recorder.stop()

    def _trace(self, ev: str, **fields) -> None:
        if self.trace is not None:
            self.trace.event(ev, self.trace_key, **fields)

    # -------------------------------------------------------------------- faults
    def fault(self, mod: str, reason: str, t: float, hold: float | None = None) -> None:
        """Mark ``mod`` missing with ``reason`` from stream time ``t`` for ``hold`` seconds."""
        self.faults.record(mod, reason, t, hold)

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
        self.perf.frame()
        try:
            frame = self.cap_frame(frame)
        except Exception as e:  # noqa: BLE001
            self.fault("V", f"bad frame: {_short(e)}", t)
            return self.last_face
        self.driver.frame(frame, t)                 # inline: processed now if due; threaded: handed over
        return self.last_face

    def process_frame(self, frame, t: float) -> None:
        """A frame due for the face extractor: the face front end, then health and the V rows."""
        ff = self.face_in.process(frame, t)
        if ff.error is not None:
            self.fault("V", f"extractor error: {_short(ff.error)}", t)
        self.perf.face(ff.ms)
        self._trace("face", t=round(t, 4), ms=None if ff.ms is None else round(ff.ms, 2))
        with self._lock:
            try:
                self.health.update_video(ff)
            except Exception as e:  # noqa: BLE001
                self.fault("V", f"health error: {_short(e)}", t)
            self._faces.append(FaceRow(t, ff.feature, ff.person))
            self.last_face = ff.result
            self.last_frame_t = t

    # -------------------------------------------------------------------- audio
    def push_audio(self, chunk, sr: int, t: float | None = None) -> None:
        """A chunk of microphone audio (mono or ``[n, channels]``, float or integer PCM) starting
        at stream time ``t`` (default: right after the previous chunk).  Never raises."""
        if self._closed:
            return
        self.audio_arrived = self.clock()
        now = self.audio_arrived if t is None else float(t)
        self.counts["audio_chunks"] += 1
        a_next = self._audio_next
        try:
            x, sr = prepare_chunk(chunk, sr)
            if x.size == 0:
                return
        except Exception as e:  # noqa: BLE001
            self.fault("A", f"bad audio: {_short(e, 80)}", a_next or now)
            return
        if t is None:
            t = self.driver.chunk_time(a_next, now, x.size / sr)
        t = float(t)
        self._audio_next = t + x.size / sr
        self.driver.audio(x, sr, t)                   # inline: now; threaded: the audio worker, in order

    def feed_audio(self, x: np.ndarray, sr: int, t: float) -> None:
        """A prepared mono chunk through the audio front end (resampling, VAD, speech gate, ASR
        cutter), then the A row source.  Never raises."""
        t_in = time.perf_counter()
        try:
            self.audio_in.push_mono(x, sr, t)         # -> on_audio / on_run_start (under the lock)
        except Exception as e:  # noqa: BLE001
            self.fault("A", f"extractor error: {_short(e)}", t)
            return
        self._trace("audio_in", t=round(t, 4), seconds=round(x.size / sr, 4), sr=int(sr),
                    ms=round((time.perf_counter() - t_in) * 1000.0, 2))
        self.driver.audio_pushed()                    # the A row source catches up (on this thread)

    # audio front-end consumer (called under self._lock)
    def on_run_start(self, t: float) -> None:
        if self._audio_rows is not None:
            self._audio_rows.reset()

    def on_audio(self, frame) -> None:
        if frame.padding:
            return
        for st in frame.steps:
            self.health.update_audio(st)

    def update_audio_features(self, force: bool = False) -> None:
        """Bring the A row source up to date with the ring (openSMILE: the LLD frames, ``force``: to
        its end; Whisper: nothing ahead, the encoder runs per window)."""
        if self._audio_rows is None:
            return
        try:
            self._audio_rows.update(self._audio, self._lock, force=force)
        except Exception as e:  # noqa: BLE001
            self.fault("A", f"extractor error: {_short(e)}", self.audio_in.next_t or 0.0)

    def window_rows(self, t: float, t_audio: float | None = None, audio: bool = True) -> dict:
        """The rows per modality the streams have delivered for the window ending at ``t``
        (:meth:`extractors.live.window.WindowAssembler.rows`, as ``admc extract`` assembles them).
        An A source that fails (the Whisper encoder runs here) faults A for this window.
        ``audio`` False: no A rows (A is not live in this window: the encoder need not run)."""
        with self._lock:
            try:
                return self.assembler.rows(t, faces=self._faces, audio=self._audio_rows if audio else None,
                                           audio_t0=self._audio.t0, text=self.text_in.feature, audio_t=t_audio)
            except Exception as e:  # noqa: BLE001
                self.fault("A", f"extractor error: {_short(e)}", t)
                return self.assembler.rows(t, faces=self._faces, audio=None, text=self.text_in.feature)

    # -------------------------------------------------------------------- text
    def pump_text(self, segs: list | None = None) -> None:
        """Collect ASR results into the text front end (T health, transcript, T rows)."""
        self.text_in.pump(segs)

    @property
    def transcript(self) -> str:
        """The running transcript (finalized utterances, then the current partial)."""
        return self.text_in.transcript

    @property
    def transcript_lines(self):
        return self.text_in.lines

    # -------------------------------------------------------------------- windows
    def step(self, t: float | None = None, due_wall: float | None = None) -> WindowResult:
        """Analyse the window ending at stream time ``t``; returns its result."""
        t = self.clock() if t is None else float(t)
        due_wall = self.driver.before_window(due_wall)   # inline: ASR results collected first
        due = time.perf_counter() if due_wall is None else due_wall
        t_audio = self.driver.audio_clock(t)              # threaded: the audio's own time when it lags
        with self._lock:
            dec = {m: (d.live, d.reason) for m, d in self.health.poll(t, audio_now=t_audio).items()}
            rows = self.window_rows(t, t_audio, audio=bool(dec.get("A", (False,))[0]))
            text_src = self.text_in.source
            speech_end = self.health.audio.speech_end     # the trace's: where the last utterance ended
        faults = {m: self.faults.active(m, t) for m in self.names}
        feats, streams, reasons = self.assembler.window(t, dec, rows, faults)
        probs: dict[str, float] = {}
        label = None
        imputed: list[str] = []
        uncertain = False
        ood: dict = {m: None for m in self.names}     # modality -> admc.pipeline.ModalityOOD | None
        t_predict = time.perf_counter()
        if any(v is not None for v in feats.values()):
            try:
                out = self._predict(self.model, feats, streams, reasons)
                if out is not None:
                    probs, label, imputed, uncertain = out.probs, out.label, list(out.imputed), out.uncertain
                    if uncertain:
                        label = None                # not named: the probabilities stay for who wants them
                    ood.update(out.ood)
                    for name, hm in self.heads.items():
                        ho = self._predict(hm, dict(feats), dict(streams), dict(reasons))
                        if ho is not None:
                            self.extra[name] = ho.probs
            except Exception as e:  # noqa: BLE001 - a core failure gives a window without prediction
                probs, label, imputed, uncertain = {}, None, [], False
                ood = {m: None for m in self.names}
                self.core_error = _short(e)
        transcript = text_src if text_src is not None else (
            self.transcript_lines[-1] if self.transcript_lines else None)
        predict_ms = (time.perf_counter() - t_predict) * 1000.0
        win = WindowResult(round(t, 3), streams, reasons, imputed, probs, label, transcript,
                           round((time.perf_counter() - due) * 1000.0, 2), uncertain, ood)
        if self.trace is not None:
            face_t = self._faces[-1].t if self._faces else None
            self._trace("window", t=win.t, t_audio=round(t_audio, 4),
                        due_wall=round(self.t0_unix + (due - self.t0_wall), 4),
                        ms=win.latency_ms, predict_ms=round(predict_ms, 2), face_t=face_t,
                        speech_end=None if speech_end is None else round(float(speech_end), 3),
                        streams=dict(streams), reasons=dict(reasons), label=label, uncertain=bool(uncertain),
                        ood={m: win.out_of_distribution(m) for m in ood})
        self.last_result = win
        self.perf.window(win.latency_ms)
        self.recorder.add(win)
        if self.on_result is not None:
            try:
                self.on_result(win)
            except Exception:  # noqa: BLE001
                pass
        return win

    def _predict(self, model, feats, streams, reasons):
        """The pipeline (:func:`app.window.predict_available`: a modality whose features the core
        rejects is dropped, missing), one core call at a time, with this session's start step n."""
        def generator():
            return self._torch.Generator().manual_seed(int(self.cfg.seed))

        with _CORE_LOCK, model.using_start_step(self.cfg.start_step):   # the user's n, this window only
            return predict_available(model, feats, streams, reasons, generator, mmer=bool(self.cfg.mmer))

    def advance(self, now: float) -> list[WindowResult]:
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

    # -------------------------------------------------------------------- stats / close
    def stats(self) -> dict:
        return self.perf.summary()

    def wait_for_audio(self, timeout: float = 10.0) -> bool:
        """Until every audio chunk pushed so far went through the audio front end (threaded: the
        audio worker feeds them in order; inline: at once).  False when ``timeout`` passed first."""
        return self.driver.wait_for_audio(timeout)

    def finish(self, timeout: float = 30.0) -> None:
        """End of stream: flush the ASR (final utterance) and collect its results."""
        self.wait_for_audio(timeout)
        self.update_audio_features(force=True)
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
        self.driver.close()
        if self.transcriber is not None:
            try:
                self.transcriber.close(timeout=5.0)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "LiveSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
