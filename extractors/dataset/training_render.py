"""Training windows rendered the way the live path sees them.

A live voice window is not an isolated utterance centred in 3 s of quiet: the microphone delivers a
continuous stream (neighbouring utterances, pauses, room noise, the capture rate), the app cuts a
window every 200 ms, and A is live only while the speech gate says someone speaks.  Training on
isolated, centred utterances left 78-97 % of live voice windows out of distribution.  This module
makes training windows from such streams, through the same code the live session runs:

* :func:`speech_stream` lays utterances of one speaker and one class end to end with natural gaps,
  levels and a room-noise bed (pink noise at an SNR drawn per stream, plus a sensor floor), at the
  browser's capture rate (48 kHz);
* :class:`LiveAudioWindows` pushes that stream in 200 ms chunks through
  :class:`~extractors.live.audio_frontend.AudioFrontEnd` (the resampler, the ring, the VAD, the speech
  gate), feeds :class:`~extractors.live.health.StreamHealth` with the gate's steps, brings the feature
  set's A row source up to date after every chunk and assembles the window ending at each hop with
  :class:`~extractors.live.window.WindowAssembler` -- what ``LiveSession`` does for a window, minus the
  threads.  A window is kept only where the live app would call A live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAPTURE_SR = 48_000          # the browser's capture rate (the live front end resamples it once)
CHUNK_S = 0.2                # the page's uplink posts 200 ms chunks


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise (room hum and ventilation are closer to pink than to white)."""
    white = rng.standard_normal(n + 1)
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n + 1)[:n]
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


@dataclass
class RenderedStream:
    wave: np.ndarray                       # mono float32 at ``sr``
    sr: int
    spans: list[tuple[float, float]]       # each utterance's (start, end) in stream seconds
    snr_db: float                          # speech RMS over room-noise RMS
    floor_dbfs: float                      # the sensor floor under everything


def speech_stream(utterances: list[np.ndarray], rng: np.random.Generator, *, sr_in: int = 16_000,
                  sr_out: int = CAPTURE_SR, lead_s: tuple[float, float] = (0.4, 1.5),
                  gap_s: tuple[float, float] = (0.25, 1.2), level_db: tuple[float, float] = (-8.0, 8.0),
                  utterance_db: tuple[float, float] = (-3.0, 3.0), snr_db: tuple[float, float] = (12.0, 40.0),
                  floor_dbfs: tuple[float, float] = (-75.0, -55.0)) -> RenderedStream:
    """Utterances (mono float32 at ``sr_in``) one after another as one microphone stream at ``sr_out``:
    a lead-in, then each utterance with a gap after it; a stream gain and a per-utterance gain; a
    pink room-noise bed at an SNR drawn from ``snr_db`` (against the speech's RMS) and a white sensor
    floor.  Clipped to [-1, 1] like a real capture."""
    from scipy.signal import resample_poly

    g = np.gcd(sr_in, sr_out)
    parts, spans, t = [], [], 0.0
    lead = np.zeros(int(rng.uniform(*lead_s) * sr_out), np.float32)
    parts.append(lead)
    t = lead.size / sr_out
    stream_gain = 10 ** (rng.uniform(*level_db) / 20)
    for u in utterances:
        x = resample_poly(np.asarray(u, np.float32), sr_out // g, sr_in // g).astype(np.float32)
        x *= stream_gain * 10 ** (rng.uniform(*utterance_db) / 20)
        parts.append(x)
        spans.append((t, t + x.size / sr_out))
        t += x.size / sr_out
        gap = np.zeros(int(rng.uniform(*gap_s) * sr_out), np.float32)
        parts.append(gap)
        t += gap.size / sr_out
    wave = np.concatenate(parts)
    voiced = np.concatenate([wave[int(a * sr_out):int(b * sr_out)] for a, b in spans]) if spans else wave
    rms = float(np.sqrt(np.mean(voiced ** 2))) if voiced.size else 0.0
    snr = float(rng.uniform(*snr_db))
    floor = float(rng.uniform(*floor_dbfs))
    noise = pink_noise(wave.size, rng) * (rms / 10 ** (snr / 20) if rms > 0 else 0.0)
    noise += rng.standard_normal(wave.size).astype(np.float32) * 10 ** (floor / 20)
    return RenderedStream(np.clip(wave + noise, -1.0, 1.0).astype(np.float32), sr_out, spans, snr, floor)


class LiveAudioWindows:
    """A stream through the live audio path; the A rows of chosen windows, as a live session makes them.

    ``audio_extractor``: the feature set's A extractor (:meth:`FeatureSet.build` ``.audio``);
    ``vad``: the live VAD; ``settings``: the live session's :class:`~extractors.live.health.HealthConfig`
    (default its defaults).  :meth:`windows` returns, for each requested window end on the hop grid,
    whether A would be live there and its rows.
    """

    def __init__(self, audio_extractor, vad, *, window_s: float = 3.0, hop_s: float = 0.2,
                 video_rate: float = 10.0, settings=None):
        from extractors.live.window import WindowAssembler

        self.audio_extractor, self.vad = audio_extractor, vad
        self.settings = settings                  # a HealthConfig (default: the live session's defaults)
        self.window_s, self.hop_s = float(window_s), float(hop_s)
        self.assembler = WindowAssembler(["A"], self.window_s, video_rate)

    def windows(self, stream: RenderedStream, ends: list[float]) -> dict[float, tuple[bool, np.ndarray | None]]:
        """``{end: (A live there, rows or None)}`` for each ``end`` (stream seconds, rounded to the hop)."""
        from extractors.live.audio_frontend import AudioFrontEnd
        from extractors.live.health import HealthConfig, StreamHealth

        cfg = self.settings or HealthConfig()
        health = StreamHealth(cfg)
        if hasattr(self.vad, "reset"):
            self.vad.reset(0.0)
        front = AudioFrontEnd(self.vad, cfg, ring_s=self.window_s + 2.0)

        class _Health:
            @staticmethod
            def on_audio(frame):
                if not frame.padding:
                    for st in frame.steps:
                        health.update_audio(st)

        front.consumers.append(_Health())
        rows_src = self.audio_extractor.window_source(self.window_s + 2.0)

        class _Reset:
            @staticmethod
            def on_run_start(t):
                rows_src.reset()

            @staticmethod
            def on_audio(frame):
                pass

        front.consumers.append(_Reset())
        want = sorted({round(round(e / self.hop_s) * self.hop_s, 6) for e in ends})
        out: dict[float, tuple[bool, np.ndarray | None]] = {}
        step = int(round(CHUNK_S * stream.sr))
        i, t = 0, 0.0
        wave = stream.wave
        while i < wave.size and want:
            chunk = wave[i:i + step]
            front.push_mono(chunk, stream.sr, t)
            t += chunk.size / stream.sr
            i += chunk.size
            rows_src.update(front.ring, front.lock)
            while want and want[0] <= t + 1e-6:
                end = want.pop(0)
                live = bool(health.poll(end)["A"].live)
                rows = None
                if live:
                    rows = self.assembler.rows(end, audio=rows_src, audio_t0=front.ring.t0)["A"]
                out[end] = (live, rows)
        return out


# ------------------------------------------------------------------------------------------ faces
FRAME_SIZE = (640, 480)      # the browser camera the app asks for


def face_in_frame(gray: np.ndarray, rng: np.random.Generator, *, size=FRAME_SIZE, face_px: tuple[float, float] = (120, 300),
                  place: tuple[float, float] | None = None, scale: float | None = None) -> tuple[np.ndarray, dict]:
    """A still face crop (``[h, w]`` uint8, e.g. FER2013's 48x48) placed into a webcam-like RGB frame:
    a lit background with a gradient and sensor noise, the face scaled to ``face_px`` tall at a
    random place (or ``place``, the face centre as fractions of the frame), blurred, lit and mirrored
    at random, then JPEG-compressed as a browser sends it.  Returns (frame, the draw)."""
    from PIL import Image, ImageFilter

    W, H = size
    px = int(scale if scale is not None else rng.uniform(*face_px))
    face = Image.fromarray(gray).resize((px, px), Image.Resampling.BICUBIC)
    blur = float(rng.uniform(0.0, 1.5))
    if blur > 0.2:
        face = face.filter(ImageFilter.GaussianBlur(blur))
    f = np.asarray(face, np.float32)
    if rng.random() < 0.5:
        f = f[:, ::-1]
    base = float(rng.uniform(60, 200))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    gx, gy = rng.uniform(-0.08, 0.08, 2)
    bg = base + gx * (xx - W / 2) + gy * (yy - H / 2)
    tint = rng.uniform(0.85, 1.15, 3)
    img = np.repeat(bg[..., None], 3, axis=2) * tint
    cx, cy = (place if place is not None else (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)))
    x0 = int(np.clip(cx * W - px / 2, 0, W - px))
    y0 = int(np.clip(cy * H - px / 2, 0, H - px))
    gain, bias = float(rng.uniform(0.7, 1.3)), float(rng.uniform(-20, 20))
    img[y0:y0 + px, x0:x0 + px] = (f * gain + bias)[..., None] * tint
    img += rng.normal(0, 2.0, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    q = int(rng.integers(55, 96))
    from extractors.media import jpeg_roundtrip

    return jpeg_roundtrip(img, q), {"px": px, "x0": x0, "y0": y0, "blur": blur, "jpeg": q, "gain": gain, "bias": bias}


class LiveFaceRows:
    """Face features as the live face front end makes them from frames: detection (MTCNN, then
    O-Net tracking between frames, as live), alignment, the aligned crop, the expression network,
    and the usable-feature rule (detection score).  One :meth:`sequence` call is one short "take" of
    a face: ``keyframes`` frames of it moving slightly, each through the front end."""

    def __init__(self, face_extractor, keyframes: int = 4):
        from extractors.live.health import HealthConfig

        self.face = face_extractor
        self.keyframes = int(keyframes)
        self.settings = HealthConfig()

    def _front_end(self):
        from types import SimpleNamespace

        from extractors.live.face_frontend import FaceFrontEnd

        cfg = SimpleNamespace(face_fps=None, face_tracking=True, max_frame_width=640)
        return FaceFrontEnd(self.face, cfg, self.settings)

    def sequence(self, gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray | None, int]:
        """``([found, dim] features, frames where a usable face was found)``; None when none was."""
        fe = self._front_end()
        px = float(rng.uniform(120, 300))
        cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)
        feats = []
        for k in range(self.keyframes):
            # the same face drifting a little between frames (head motion), each frame its own draw
            frame, _ = face_in_frame(gray, rng, scale=px * rng.uniform(0.96, 1.04),
                                     place=(cx + rng.uniform(-0.02, 0.02), cy + rng.uniform(-0.02, 0.02)))
            ff = fe.process(fe.normalise(frame), k / 15.0)
            if ff.feature is not None:
                feats.append(np.asarray(ff.feature, np.float32))
        return (np.stack(feats) if feats else None), len(feats)
