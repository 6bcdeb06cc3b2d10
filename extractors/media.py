"""Decoding recorded media with PyAV: the one module that opens a video or audio file to read it.

Used by ``admc extract`` (:mod:`extractors.dataset.builder`), :meth:`FaceExtractor.extract_video
<extractors.models.face.FaceExtractor.extract_video>` and the app's file replay (:mod:`app.replay`).

* :func:`probe`: which streams a file has (raises on an unreadable file);
* :func:`iter_video`: ``(t, RGB uint8 frame)``, optionally one frame per ``1/fps`` tick
  (:func:`subsample_gate`), from ``start`` to ``end``;
* :func:`iter_audio`: ``(t, mono float32 chunk, sample rate)`` as decoded, at the file's rate or
  resampled; :func:`decode_audio`: the whole track (or a segment) as one array;
* :func:`iter_media`: both streams merged in time order, as a live capture delivers them;
* :func:`codec_roundtrip`: a waveform as it comes back from a lossy audio codec (AAC in MP4, in
  memory): what a recorded video does to the voice, for training on it.

A frame's time is its presentation time in seconds, or ``n / average_rate`` (n = frames decoded
so far) for a stream without timestamps.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# an audio frame whose timestamp is within this of where the previous chunk ended continues it
AUDIO_CONTINUITY_S = 0.05


@dataclass(frozen=True)
class Probe:
    audio: bool
    video: bool
    format: str          # the demuxer's name (e.g. "mov,mp4,m4a,3gp,3g2,mj2", "image2")
    video_frames: int    # frames in the first video stream per the container (0: unknown or none)
    duration: float | None = None   # seconds, per the container (None: unknown)


def probe(path: str | Path) -> Probe:
    """The file's streams; raises (PyAV's error) for a file it cannot open."""
    import av

    with av.open(str(path)) as c:
        return Probe(bool(c.streams.audio), bool(c.streams.video), c.format.name or "",
                     int(c.streams.video[0].frames) if c.streams.video else 0,
                     c.duration / av.time_base if c.duration is not None else None)


def subsample_gate(t: float, next_t: float, fps: float) -> tuple[bool, float]:
    """Keep the first frame at or after each 1/fps tick: (keep this frame at t, the next tick)."""
    if t + 1e-6 < next_t:
        return False, next_t
    next_t += 1.0 / fps
    while next_t <= t:
        next_t += 1.0 / fps
    return True, next_t


def iter_video(path: str | Path, *, fps: float | None = None, start: float | None = None,
               end: float | None = None, max_frames: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """``(t, uint8 RGB frame)`` of the first video stream, nothing when there is none.

    ``t`` counts from ``start`` (the file's start by default); with ``start`` the frames before it
    are skipped (a ``start`` past 1 s seeks first), with ``end`` the frames at or after it; ``fps`` keeps the first frame at
    or after each multiple of 1/fps; ``max_frames`` stops after that many frames.
    """
    import av

    t0 = start or 0.0
    with av.open(str(path)) as c:
        if not c.streams.video:
            return
        stream = c.streams.video[0]
        if t0 > 1.0 and stream.time_base:
            try:
                c.seek(int(max(0.0, t0 - 1.0) / stream.time_base), stream=stream, backward=True)
            except av.error.FFmpegError:
                c.seek(0, stream=stream)
        next_t = 0.0
        n = kept = 0
        for frame in c.decode(stream):
            t_abs = float(frame.time) if frame.time is not None else n / float(stream.average_rate or 25)
            n += 1
            if start is not None and t_abs + 1e-6 < t0:
                continue
            if end is not None and t_abs >= end:
                return
            t = t_abs - t0
            if fps is not None:
                keep, next_t = subsample_gate(t, next_t, fps)
                if not keep:
                    continue
            yield t, frame.to_ndarray(format="rgb24")
            kept += 1
            if max_frames is not None and kept >= max_frames:
                return


def iter_audio(path: str | Path, *, rate: int | None = None) -> Iterator[tuple[float, np.ndarray, int]]:
    """``(t, mono float32 chunk, sr)`` of the first audio stream, nothing when there is none;
    ``sr`` is ``rate``, or the stream's own rate when None.  Chunks are contiguous: a chunk starts
    where the previous one ended unless its timestamp jumps by more than
    :data:`AUDIO_CONTINUITY_S` (a gap in the recording)."""
    import av

    with av.open(str(path)) as c:
        if c.streams.audio:
            yield from _audio_chunks(c, rate)


def _audio_chunks(c, rate: int | None) -> Iterator[tuple[float, np.ndarray, int]]:
    import av

    resampler = None
    a_next = None
    sr = rate
    for frame in c.decode(c.streams.audio[0]):
        if resampler is None:
            sr = int(rate or frame.sample_rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        t0 = float(frame.time) if frame.time is not None else (a_next or 0.0)
        for rf in resampler.resample(frame):
            x = rf.to_ndarray().reshape(-1).astype(np.float32)
            t = t0 if a_next is None or abs(t0 - a_next) > AUDIO_CONTINUITY_S else a_next
            yield t, x, sr
            a_next = t + x.size / sr
            t0 = a_next
    if resampler is not None:
        for rf in resampler.resample(None):  # what the resampler still holds
            x = rf.to_ndarray().reshape(-1).astype(np.float32)
            if x.size:
                yield a_next or 0.0, x, sr
                a_next = (a_next or 0.0) + x.size / sr


def decode_audio(path: str | Path, start: float | None = None, end: float | None = None,
                 sr: int = 16000) -> np.ndarray | None:
    """The first audio stream as one float32 mono array at ``sr`` (``None`` when there is no audio
    stream), cut to ``[start, end)`` seconds."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        chunks = [x for _, x, _ in _audio_chunks(c, sr)]
    x = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    a = int(round((start or 0.0) * sr))
    b = len(x) if end is None else int(round(end * sr))
    return x[a:b]


def iter_media(path: str | Path) -> Iterator[tuple[str, float, object, int]]:
    """``("V", t, rgb_frame, 0)`` and ``("A", t, mono_float32_chunk, sr)`` in time order (the two
    streams are decoded separately and merged, whatever the file's interleaving); audio at the
    file's own rate."""
    video = (("V", t, frame, 0) for t, frame in iter_video(path))
    audio = (("A", t, x, sr) for t, x, sr in iter_audio(path))
    return heapq.merge(video, audio, key=lambda item: item[1])


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """An RGB uint8 frame JPEG-encoded at ``quality`` and decoded again (what a page's canvas or a
    webcam's MJPEG does to it)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def codec_roundtrip(wave: np.ndarray, sr: int, bit_rate: int, codec: str = "aac") -> np.ndarray:
    """``wave`` (mono float32 in [-1, 1]) encoded with ``codec`` at ``bit_rate`` bit/s into an MP4 in
    memory and decoded again: same length and alignment (the MP4 edit list drops the encoder delay;
    the tail is zero-padded or cut)."""
    import io
    from fractions import Fraction

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        st = c.add_stream(codec, rate=sr, layout="mono")
        st.bit_rate = int(bit_rate)
        frame = av.AudioFrame.from_ndarray(np.clip(wave, -1, 1).astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)  # timestamps: the muxer writes the edit list
        for pkt in st.encode(frame):
            c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    buf.seek(0)
    with av.open(buf) as c:
        chunks = [x for _, x, _ in _audio_chunks(c, sr)]
    out = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    n = len(wave)
    return out[:n] if len(out) >= n else np.concatenate([out, np.zeros(n - len(out), np.float32)])
