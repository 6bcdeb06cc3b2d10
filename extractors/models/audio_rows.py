"""The A rows of a live audio stream: the ring of its last seconds of 16 kHz audio and the openSMILE
LLD frames computed from it incrementally (the same frames ``admc extract`` gets for a whole
recording, :meth:`LldStream.frames_of`).

Below both the extractors that make rows (:mod:`extractors.models.audio`, :mod:`extractors.models.speech_encoder`)
and the live front end (:mod:`extractors.live.audio_frontend`): it imports neither.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

import numpy as np

from extractors.types import TARGET_SR

LLD_RATE = 100                     # openSMILE LLD frames per second
LLD_PER_ROW = 10                   # LLD frames per A row (10 rows/s)


def a_rows(frames: Iterable[tuple[int, np.ndarray]], g_end: int, window_frames: int,
           downsample: Callable[[np.ndarray], np.ndarray], pre_frames: int = 100) -> np.ndarray | None:
    """A rows (``downsample``: 10 LLD frames per row) of the frames before ``g_end`` that lie in
    the last ``window_frames``; ``pre_frames`` of earlier frames feed the downsampling filter, as in
    a longer clip.  Rows lie on the run's 100 ms grid.  None when there are none."""
    lo = g_end - window_frames
    start = (lo - pre_frames) // LLD_PER_ROW * LLD_PER_ROW
    fr = [(g, f) for g, f in frames if start <= g < g_end]
    if not fr:
        return None
    g_first = -(-fr[0][0] // LLD_PER_ROW) * LLD_PER_ROW
    fr = [(g, f) for g, f in fr if g >= g_first]
    if not fr:
        return None
    rows = downsample(np.stack([f for _, f in fr]))
    keep = [j for j in range(len(rows)) if g_first + LLD_PER_ROW * j >= lo - LLD_PER_ROW // 2]
    out = rows[keep] if keep else rows[:0]
    return out if len(out) else None



class AudioRing:
    """The last ``seconds`` of 16 kHz audio of the current run (since the stream (re)started at
    stream time ``t0``), indexed by the run's sample count ``total`` (a circular buffer)."""

    def __init__(self, seconds: float, sr: int = TARGET_SR):
        self.sr = sr
        self.cap = int(seconds * sr)
        self.buf = np.zeros(self.cap, np.float32)
        self.reset(0.0)

    def reset(self, t0: float) -> None:
        self.n = 0                   # valid samples (<= cap)
        self.total = 0               # samples of the current run so far
        self.t0 = float(t0)

    @property
    def first(self) -> int:
        """Run index of the oldest sample held."""
        return self.total - self.n

    @property
    def end_time(self) -> float:
        """Stream time just after the newest sample."""
        return self.t0 + self.total / self.sr

    def append(self, y: np.ndarray) -> None:
        y = np.asarray(y, np.float32)
        total = self.total + y.size
        if y.size >= self.cap:                   # sample k of the run lives at buf[k % cap]
            self.buf[:] = np.roll(y[-self.cap:], total % self.cap)
        elif y.size:
            i = self.total % self.cap
            k = min(y.size, self.cap - i)
            self.buf[i:i + k] = y[:k]
            self.buf[:y.size - k] = y[k:]
        self.n = min(self.cap, self.n + y.size)
        self.total = total

    def samples(self, a: int, b: int) -> np.ndarray:
        """Run samples ``[a, b)`` (clipped to what is held; a copy)."""
        a, b = max(a, self.first), min(b, self.total)
        if b <= a:
            return np.zeros(0, np.float32)
        i, j = a % self.cap, b % self.cap
        if i < j:
            return self.buf[i:j].copy()
        return np.concatenate([self.buf[i:], self.buf[:j]])

    def index(self, t: float) -> int:
        """Run sample index of stream time ``t``."""
        return int(round((float(t) - self.t0) * self.sr))


class LldStream:
    """openSMILE ComParE LLD frames (100 fps) of the audio stream, computed incrementally.

    Every ``block_s`` of new audio, openSMILE runs on it plus ``ctx_s`` of left context and the
    frames that are final (all but the last ``margin``, whose deltas/smoothing still need the
    future) are kept.  The frames equal those of one pass over the whole stream up to the context
    effects on a few smoothed features, at a fraction of the cost of re-extracting every 3 s
    window; ``admc extract`` gets the very same frames (:meth:`frames_of`).  Frame ``g`` starts at
    run sample ``160 * g``.  Bounded: the last ``keep_s`` seconds of frames.

    Cost with the defaults: about 4.5 openSMILE runs per second of audio, each on 1.31 s (5.9 s of
    audio through openSMILE per second).  Each run's fixed part -- configuration set-up and
    pandas wrapping, about half of a run through ``Smile.process_signal`` -- is mostly saved by
    :meth:`extractors.models.audio.AudioFeatureExtractor.lld`, which reuses one openSMILE instance.
    """

    HOP = 160                        # 10 ms at 16 kHz

    def __init__(self, extractor, ctx_s: float = 1.0, margin: int = 5, block_s: float = 0.2,
                 keep_s: float = 5.0):
        self.fx = extractor
        self.ctx = int(ctx_s * TARGET_SR)
        self.margin = int(margin)
        self.block = int(block_s * TARGET_SR)
        self.frames: deque[tuple[int, np.ndarray]] = deque(maxlen=int(keep_s * 100))
        self.reset()

    def reset(self) -> None:
        self.frames.clear()
        self.ptr = 0                 # next frame index to produce

    def update(self, ring: AudioRing, lock, force: bool = False) -> None:
        """Extract what is due; ``lock`` guards ring and frames (openSMILE runs outside it).

        The audio goes through openSMILE in fixed steps -- ``ctx_s`` of context, then
        ``block_s`` plus the margin from the next frame to produce -- so the frames depend only on
        the audio (not on how it was chunked or how often this is called): a file streamed in
        chunks, a live microphone and ``admc extract`` (:meth:`frames_of`) get the same frames.
        ``force`` (end of stream) also takes the rest, to the last sample."""
        need = self.block + (self.margin + 6) * self.HOP
        while True:
            with lock:
                lag = ring.total - self.ptr * self.HOP
                tail = lag < need
                if tail and not (force and lag > 0):
                    return
                s0 = max(ring.first, self.ptr * self.HOP - self.ctx)
                s0 = -(-s0 // self.HOP) * self.HOP           # frame grid
                seg = ring.samples(s0, ring.total if tail else self.ptr * self.HOP + need)
                run = id(ring), ring.t0
                ptr0 = self.ptr
            if seg.size < int(0.06 * TARGET_SR):
                return
            lld = self.fx.lld(seg, TARGET_SR)
            g0 = s0 // self.HOP
            usable = len(lld) if tail else len(lld) - self.margin
            with lock:
                if (id(ring), ring.t0) != run:           # the stream restarted meanwhile
                    return
                if self.ptr != ptr0:                     # another caller produced these meanwhile
                    continue
                for i in range(max(0, self.ptr - g0), usable):
                    self.frames.append((g0 + i, lld[i]))
                if usable > 0:
                    self.ptr = max(self.ptr, g0 + usable)
                if tail or self.ptr == ptr0:
                    return

    def window_rows(self, t: float, t0: float, window_s: float) -> np.ndarray | None:
        """The A rows of the window ending at stream time ``t`` (the run started at ``t0``): its
        frames downsampled to 10 rows/s (:func:`a_rows`); None when there are none."""
        g_end = int(np.floor((t - t0) * LLD_RATE + 1e-6))
        return a_rows(self.frames, g_end, int(round(window_s * LLD_RATE)), self.fx.downsample_frames)

    @classmethod
    def frames_of(cls, extractor, wave: np.ndarray, **kw) -> "LldStream":
        """The stream of one whole 16 kHz recording (``admc extract``): the same frames as the
        recording pushed live, chunk by chunk, up to its end."""
        import threading

        lld = cls(extractor, keep_s=len(wave) / TARGET_SR + 1.0, **kw)
        ring = AudioRing(len(wave) / TARGET_SR + 1.0)
        ring.reset(0.0)
        ring.append(np.asarray(wave, np.float32))
        lld.update(ring, threading.Lock(), force=True)
        return lld

    def rows(self, g_end: int, window_frames: int, pre_frames: int = 100) -> np.ndarray | None:
        """A rows of the frames before ``g_end`` in the last ``window_frames``
        (:func:`a_rows`)."""
        return a_rows(self.frames, g_end, window_frames, self.fx.downsample_frames, pre_frames)
