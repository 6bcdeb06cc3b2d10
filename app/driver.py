"""How a :class:`~app.session.LiveSession` is driven: what runs on the caller's thread and what on
workers.  The session's own methods are the same in both modes; only the driver differs.

* :class:`InlineDriver` (``LiveSession(threaded=False)``: fast replay, tests): a frame due for the
  face extractor is processed in ``push_video``; the audio features are brought up to date in
  ``push_audio``; before each window the ASR results are collected (with ``asr_sync``, after
  waiting for the jobs queued so far); the caller runs the windows (``advance`` / ``step``).
* :class:`ThreadedDriver` (``threaded=True``: the UI, local capture, real-time replay):
  ``push_video`` only hands the newest frame to a face worker (older unprocessed frames are
  dropped, never queued); ``push_audio`` hands each chunk to an audio worker, which feeds the
  audio front end in order and brings the A row source (openSMILE) up to date; an aux thread
  collects ASR results; a ticker runs a window every hop on the wall clock.  The capture handlers
  never wait on an extractor.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from app.components import short_error

FACE_NICENESS = 10    # the face worker's scheduling niceness: when the CPU is short, frames go first,
#                       never the audio, the ASR or the windows (Linux: per thread; elsewhere a no-op)


def lower_thread_priority(niceness: int) -> None:
    """Make the calling thread at least this nice (Linux threads have their own niceness)."""
    import os

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), int(niceness)))
    except (AttributeError, OSError):
        pass


class InlineDriver:
    threaded = False

    def __init__(self, session):
        self.s = session

    def frame(self, frame, t: float) -> None:
        if self.s.face_in.due(t):
            self.s.process_frame(frame, t)

    def chunk_time(self, next_t: float | None, now: float, duration: float) -> float:
        """Stream time of a chunk pushed without one: right after the previous chunk."""
        return next_t if next_t is not None else now

    def audio(self, x, sr: int, t: float) -> None:
        self.s.feed_audio(x, sr, t)

    def audio_pushed(self) -> None:
        self.s.update_audio_features()

    def audio_clock(self, t: float) -> float:
        return t

    def wait_for_audio(self, timeout: float = 10.0) -> bool:
        return True

    def before_window(self, due_wall: float | None) -> None:
        """Collect the ASR results (ASR waits and text encoding are not window latency: the
        window is due after them)."""
        s = self.s
        segs = None
        if s.cfg.asr_sync and s.transcriber is not None:
            segs = s.transcriber.drain(timeout=30.0)
        s.pump_text(segs)
        return None

    def newest_frame_t(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class ThreadedDriver:
    threaded = True

    AUDIO_BACKLOG = 150         # chunks waiting for the audio worker (30 s of 200 ms chunks); beyond: oldest dropped

    def __init__(self, session):
        self.s = session
        self._slot: tuple | None = None
        self._cv = threading.Condition()
        self._audio_in: deque = deque()
        self._audio_cv = threading.Condition()
        self._audio_busy = False
        self.audio_dropped = 0
        self._closed = False
        self.threads: list[threading.Thread] = []
        for name, target in (("face", self._face_loop), ("audio", self._audio_loop), ("aux", self._aux_loop),
                             ("ticker", self._tick_loop)):
            th = threading.Thread(target=target, name=f"live-{name}", daemon=True)
            th.start()
            self.threads.append(th)

    def frame(self, frame, t: float) -> None:
        with self._cv:
            self._slot = (frame, t)                  # the newest frame wins; never a queue
            self._cv.notify()

    def chunk_time(self, next_t: float | None, now: float, duration: float) -> float:
        t = next_t if next_t is not None else now
        if t < now - 3.0:                             # the microphone stopped for a while
            t = now - duration
        return t

    def audio(self, x, sr: int, t: float) -> None:
        """Hand a chunk to the audio worker (in order; the capture handler never waits on it)."""
        with self._audio_cv:
            if len(self._audio_in) >= self.AUDIO_BACKLOG:
                self._audio_in.popleft()
                self.audio_dropped += 1
            self._audio_in.append((x, sr, t))
            self._audio_cv.notify()

    def audio_pushed(self) -> None:
        """On the audio worker, right after a chunk was fed: the A row source catches up (openSMILE's
        LLD stream), so a window asking for audio up to the newest chunk finds its rows."""
        self.s.update_audio_features()

    def wait_for_audio(self, timeout: float = 10.0) -> bool:
        """Until the audio worker has fed every chunk handed over so far (False: ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._audio_cv:
            while (self._audio_in or self._audio_busy) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._audio_cv.wait(min(left, 0.05))
        return True

    def audio_clock(self, t: float) -> float:
        """Where A and T are judged for the window ending at ``t``: the audio's own time when it runs
        behind (chunks arrive late, or wait for the worker) while chunks keep arriving (the newest
        came less than the stall time ago), so late audio is used late, never taken for a stalled
        stream; ``t`` otherwise (then a stream that stopped is "stalled")."""
        s = self.s
        a = s.audio_in.next_t
        if a is None or a >= t:
            return t
        arrived = s.audio_arrived
        if arrived is not None and t - arrived <= s.cfg.health.a_stall_s:
            return a
        return t

    def before_window(self, due_wall: float | None) -> float | None:
        return due_wall

    def newest_frame_t(self) -> float | None:
        slot = self._slot
        return slot[1] if slot is not None else None

    def close(self) -> None:
        self._closed = True
        with self._cv:
            self._cv.notify_all()
        with self._audio_cv:
            self._audio_cv.notify_all()
        for th in self.threads:
            th.join(timeout=2.0)

    # -------------------------------------------------------------------- workers
    def _face_loop(self) -> None:
        s = self.s
        lower_thread_priority(FACE_NICENESS)
        while True:
            with self._cv:
                while self._slot is None and not self._closed:
                    self._cv.wait(0.5)
                if self._closed:
                    return
                frame, t = self._slot
                self._slot = None
            if not s.face_in.due(t):
                continue
            try:
                s.process_frame(frame, t)
            except Exception as e:  # noqa: BLE001
                s.fault("V", f"extractor error: {short_error(e)}", t)

    def _audio_loop(self) -> None:
        s = self.s
        while True:
            with self._audio_cv:
                while not self._audio_in and not self._closed:
                    self._audio_cv.wait(0.5)
                if self._closed:
                    return
                x, sr, t = self._audio_in.popleft()
                self._audio_busy = True
            try:
                s.feed_audio(x, sr, t)
            except Exception as e:  # noqa: BLE001
                s.fault("A", f"extractor error: {short_error(e)}", t)
            finally:
                with self._audio_cv:
                    self._audio_busy = False
                    self._audio_cv.notify_all()

    def _aux_loop(self) -> None:
        """ASR results and text features, off the capture handlers and off the window ticker (the
        audio worker keeps the A row source up to date)."""
        s = self.s
        while not self._closed:
            try:
                s.pump_text()
            except Exception as e:  # noqa: BLE001
                s.fault("T", f"extractor error: {short_error(e)}", s.health.now)
            time.sleep(0.05)

    def _tick_loop(self) -> None:
        s = self.s
        hop = s.cfg.hop_s
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
                s.step(due - s.t0_wall, due_wall=due)
            except Exception:  # noqa: BLE001 - the ticker must survive anything
                pass
