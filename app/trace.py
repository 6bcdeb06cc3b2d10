"""A stage trace of the live path: one JSON line per event, with the wall clock (Unix seconds) at
which it happened, so the time a browser captured a frame can be followed through the server to
the page.  ``python -m app --trace FILE`` writes it; ``benchmarks/browser_path.py`` reads it.

Events (``"ev"``; every line also has ``"wall"`` and ``"session"``, the session's key):

* ``session``: a live session opened; ``t0_wall`` is the wall time of its stream time 0.
* ``frame_in``: a camera frame reached the server (``seq`` counts them per session, dropped ones
  included; ``dropped``: every handling slot was busy; ``mark``: the number a benchmark page drew
  into the frame it grabbed, :func:`frame_mark`, else None; ``file_mark``: else the frame number
  a benchmark's camera file carries, :func:`file_mark`, else None).  Over WebRTC only the frames
  made RGB for the face path are traced.
* ``face``: a frame went through the face front end (``t`` stream s, ``ms``).
* ``audio_in``: a microphone chunk was pushed (``t`` stream s, ``seconds`` of audio, ``ms`` the
  audio front end took: resampling, VAD, speech gate).
* ``asr``: a transcript segment was collected (``final``, ``start``/``end`` stream s, ``chars``,
  ``dropped``: refused as a hallucination).
* ``window``: a window was analysed (``t`` its end, stream s; ``due_wall``, ``ms`` from due to done,
  ``predict_ms`` completion and fusion, ``face_t`` the newest face row in it, ``streams``, ``ood``).

Nothing here raises into the live path: a trace that cannot be written stops tracing.
"""

from __future__ import annotations

import json
import threading
import time


class StageTrace:
    """A JSONL event log, thread-safe and line-buffered (an interrupted server keeps what it wrote)."""

    def __init__(self, path):
        self.path = str(path)
        self._fh = open(self.path, "w", buffering=1)
        self._lock = threading.Lock()

    def event(self, ev: str, session: str | None = None, **fields) -> None:
        line = {"ev": ev, "wall": round(time.time(), 4), "session": session, **fields}
        with self._lock:
            if self._fh is None:
                return
            try:
                self._fh.write(json.dumps(line, default=str) + "\n")
            except (OSError, ValueError):
                self._fh = None                  # disk full or closed: stop tracing, keep serving

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


MARK_CELL = 6          # px per cell of the frame mark a benchmark page draws into each frame it grabs
MARK_BITS = 16
FILE_MARK_CELL = 16    # px per cell of the frame number a benchmark's camera file carries (survives a video codec)


def frame_mark(frame) -> int | None:
    """The number a benchmark page drew into a camera frame's top-left corner before sending it (a
    white and a black sentinel cell, then 16 bits, cells of :data:`MARK_CELL` px), so a frame can be
    followed from its capture in the page to the server; None when the corner holds no mark."""
    import numpy as np

    try:
        if frame is None or frame.ndim != 3:
            return None
        strip = np.asarray(frame[:MARK_CELL, :MARK_CELL * (MARK_BITS + 2)], np.float32).mean(axis=2)
        return _strip_number(strip, MARK_CELL, white=200, black=55)
    except Exception:  # noqa: BLE001 - instrumentation never breaks the live path
        return None


def file_mark(frame) -> int | None:
    """The frame number a benchmark's camera file carries in its top-left corner (a white and a black
    sentinel cell, then 16 bits, cells of :data:`FILE_MARK_CELL` px, drawn by
    ``benchmarks.browser_path.draw_file_mark``), read from an RGB, grey or luma image; large enough to
    be read after a video codec (WebRTC's VP8), so a frame sent over WebRTC can be followed from the
    camera's capture of it to the server.  None when the corner holds no such number."""
    import numpy as np

    try:
        g = np.asarray(frame)[:FILE_MARK_CELL, :FILE_MARK_CELL * (MARK_BITS + 2)]
        if g.ndim == 3:
            g = g[..., :3].mean(axis=2)
        return _strip_number(g, FILE_MARK_CELL, white=170, black=85)
    except Exception:  # noqa: BLE001 - instrumentation never breaks the live path
        return None


def _strip_number(grey, cell: int, white: float, black: float) -> int | None:
    """The number in a top-left strip of ``cell``-px cells of a grey image: a white (above ``white``)
    and a black (below ``black``) sentinel cell, then :data:`MARK_BITS` bits (white = 1), each cell
    judged by the mean of its inside (a quarter cell in from its edges); None when the strip is too
    small, the sentinels are missing or a bit cell is neither white nor black."""
    n = MARK_BITS + 2
    if grey.ndim != 2 or grey.shape[0] < cell or grey.shape[1] < cell * n:
        return None
    q = cell // 4
    cells = [float(grey[q:cell - q, i * cell + q:(i + 1) * cell - q].mean()) for i in range(n)]
    if not (cells[0] > white and cells[1] < black) or any(black <= v <= white for v in cells[2:]):
        return None
    return sum(1 << i for i, v in enumerate(cells[2:]) if v > 128)


def read_trace(path) -> list[dict]:
    """The events of a trace file (a torn last line, from a killed server, is skipped)."""
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
