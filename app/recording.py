"""A live session's results (:class:`app.window.WindowResult`): the recent history (bounded) and,
while recording, the take to export."""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.window import WindowResult


class Recorder:
    """``results``: the last ``history`` window results; ``recorded``: those since
    :meth:`start` while recording (at most ``limit``)."""

    def __init__(self, history: int, limit: int, lock=None):
        self.results: deque[WindowResult] = deque(maxlen=history)
        self.recorded: deque[WindowResult] = deque(maxlen=limit)
        self.recording = False
        self._lock = lock if lock is not None else threading.Lock()

    def add(self, res: WindowResult) -> None:
        with self._lock:
            self.results.append(res)
            if self.recording:
                self.recorded.append(res)

    def start(self) -> None:
        with self._lock:
            self.recorded.clear()
            self.recording = True

    def stop(self) -> list[WindowResult]:
        with self._lock:
            self.recording = False
            return list(self.recorded)
