"""The text front end of the live path: ASR segments in, the running transcript and T features out.

::

    StreamingTranscriber.poll() (or segments handed in)
      -> StreamHealth.update_text        T's state (live / no speech / asr failure: ...)
      -> hallucination check             TextHealth.segment_problem: a refused segment is neither
                                         shown nor encoded (Whisper's no-speech and compression
                                         signals, repeated words, noise phrases over silence)
      -> transcript                      finalized utterances (bounded) + the current partial
      -> text encoder                    the T rows of the newest usable transcript (a partial only
                                         when it is newer than the last final)

Health is shared with the session and updated under the session's ``lock``; the encoder under its
own ``encoder_lock`` (it is shared between sessions).  ``fault(mod, reason, t, hold=None)`` and
``trace(ev, **fields)`` are the session's; nothing here raises.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from extractors.types import short_error as _short


class TextFrontEnd:
    def __init__(self, transcriber, encoder, health, lock, *, encoder_lock=None, lines: int = 20,
                 fault: Callable | None = None, trace: Callable | None = None):
        self.transcriber = transcriber
        self.encoder = encoder
        self.encoder_lock = encoder_lock if encoder_lock is not None else threading.Lock()
        self.health = health
        self.lock = lock
        self.fault = fault or (lambda *a, **k: None)
        self.trace = trace or (lambda *a, **k: None)
        self.lines: deque[str] = deque(maxlen=int(lines))
        self.partial: str | None = None
        self.feature: np.ndarray | None = None     # T rows of the newest usable transcript
        self.source: str | None = None             # ... and its text
        self._final_end = -float("inf")
        self._errors_seen = 0

    @property
    def transcript(self) -> str:
        """The running transcript (finalized utterances, then the current partial)."""
        parts = list(self.lines)
        if self.partial:
            parts.append(self.partial + " ...")
        return " ".join(parts)

    def pump(self, segs: list | None = None) -> None:
        """Collect ASR results (polled, or ``segs`` already taken from the transcriber)."""
        tr = self.transcriber
        if tr is None:
            return
        segs = list(segs or []) + tr.poll()
        errs = tr.errors
        if len(errs) > self._errors_seen:
            e = errs[-1]
            self._errors_seen = len(errs)
            self.fault("T", f"asr failure: {_short(e, 80)}", self.health.now, hold=3.0)
        for s in segs:
            self._one(s)

    def _one(self, s) -> None:
        problem = None
        with self.lock:
            try:
                self.health.update_text(s)
                problem = self.health.text.segment_problem(s) if (s.text or "").strip() else None
            except Exception as e:  # noqa: BLE001
                self.fault("T", f"health error: {_short(e)}", self.health.now)
        text = (s.text or "").strip()
        self.trace("asr", final=bool(s.final), start=round(float(s.start), 3), end=round(float(s.end), 3),
                   chars=len(text), dropped=None if problem is None else problem[0],
                   wait_s=getattr(s, "wait_s", None), asr_s=getattr(s, "asr_s", None))
        if problem is not None:
            # a hallucination: neither shown nor encoded; T health already says why it is missing
            if s.final:
                self.partial = None
            return
        if s.final:
            if text:
                self.lines.append(text)
            self.partial = None
        elif text:
            self.partial = text
        if not text or (not s.final and s.start <= self._final_end):
            return
        feat = None
        if self.encoder is not None:
            try:
                with self.encoder_lock:
                    enc = self.encoder(text)
                feat = None if enc is None else enc[0]
            except Exception as e:  # noqa: BLE001
                self.fault("T", f"extractor error: {_short(e)}", self.health.now)
        with self.lock:
            if feat is not None:
                self.feature, self.source = feat, text
            if s.final:
                self._final_end = max(self._final_end, float(s.end))
