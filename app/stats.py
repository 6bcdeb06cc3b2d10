"""A live session's counters and rates (what the UI's performance line and the latency benchmark read)."""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np


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


class SessionStats:
    """Counts (``frames``, ``faces``, ``windows``, ``audio_chunks``), rates and timings, bounded."""

    def __init__(self):
        self.preview_rate = RateMeter()
        self.face_rate = RateMeter()
        self.result_rate = RateMeter()
        self.latencies: deque[float] = deque(maxlen=1000)
        self.face_ms: deque[float] = deque(maxlen=1000)
        self.counts = {"frames": 0, "faces": 0, "windows": 0, "audio_chunks": 0}

    def frame(self) -> None:
        self.preview_rate.tick()
        self.counts["frames"] += 1

    def face(self, ms: float | None) -> None:
        if ms is not None:
            self.face_ms.append(ms)
        self.face_rate.tick()
        self.counts["faces"] += 1

    def window(self, latency_ms: float) -> None:
        self.latencies.append(latency_ms)
        self.result_rate.tick()
        self.counts["windows"] += 1

    def summary(self) -> dict:
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
