"""Audio (modality ``A``): openSMILE ComParE_2016 frame features and silero voice activity.

* :class:`AudioFeatureExtractor` -- the MMIN IEMOCAP acoustic recipe: ComParE_2016 low-level
  descriptors (65) plus their deltas (65) at a 10 ms hop, downsampled by 10 to 100 ms frames
  (``scipy.signal.resample_poly(lld, 1, 10, axis=0)``, exactly what MMIN's
  ``ComParEExtractor(downsample=10)`` does), i.e. ``[frames, 130]`` at 10 frames per second.
* :class:`VoiceActivityDetector` -- silero-vad's bundled ONNX model (shipped inside the
  ``silero-vad`` wheel, no hub) run on 512-sample windows at 16 kHz, streaming state kept
  between chunks; yields :class:`~extractors.types.VadResult` per 32 ms window.
* :class:`StreamingResampler` -- chunked polyphase resampling that gives the same samples as
  resampling the whole signal at once (used to bring a microphone's rate to 16 kHz).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from extractors.types import TARGET_SR, VadResult
FEATURE_DIM = 130           # 65 ComParE_2016 LLDs + 65 deltas
LLD_HOP_S = 0.01            # openSMILE ComParE frame hop
VAD_WINDOW = 512            # samples at 16 kHz (32 ms); the only size silero v5+ accepts
VAD_CONTEXT = 64            # samples of the previous window the model sees


# ---------------------------------------------------------------------------------------------
# waveform helpers
# ---------------------------------------------------------------------------------------------

def to_mono_float32(waveform) -> np.ndarray:
    """Any PCM-like array -> 1-D float32 in [-1, 1].

    Integer input is scaled by its dtype range; 2-D input is averaged over its channel axis (the
    shorter one, so both ``[n, ch]`` and ``[ch, n]`` work).
    """
    x = np.asarray(waveform)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    elif x.ndim != 1:
        raise ValueError(f"expected mono [n] or [n, channels] audio, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def audio_problem(x: np.ndarray) -> str | None:
    """What makes a mono float waveform unusable, or None.  The one rule for the live app (a
    microphone chunk) and ``admc extract`` (a file's whole track): any NaN or infinite sample makes
    the audio unusable -- it is rejected, never fed to openSMILE (which quietly turns NaN into
    finite garbage) or the ASR."""
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        return f"non-finite samples ({bad} of {np.size(x)} are NaN or infinite)"
    return None


def _ratio(sr_in: int, sr_out: int) -> tuple[int, int]:
    g = math.gcd(int(sr_in), int(sr_out))
    return int(sr_out) // g, int(sr_in) // g


def resample(waveform, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """Whole-signal polyphase resampling (scipy ``resample_poly``) to ``target_sr``, float32 mono."""
    x = to_mono_float32(waveform)
    if int(sr) <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if int(sr) == int(target_sr) or x.size == 0:
        return x
    up, down = _ratio(sr, target_sr)
    return resample_poly(x, up, down).astype(np.float32)


def load_audio(path: str | Path, target_sr: int = TARGET_SR) -> np.ndarray:
    """Read any file libsndfile can read (wav, flac, ogg...) as float32 mono at ``target_sr``."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(x.mean(axis=1), sr, target_sr)


class StreamingResampler:
    """Resample a stream chunk by chunk; the output equals :func:`resample` of the whole stream.

    Each block is resampled with ``pad`` input samples of real context on either side (``pad`` a
    multiple of the decimation factor and longer than the anti-aliasing filter's half length)
    and the padded part is cropped, so blocks join seamlessly.  The cost is ``pad`` input samples
    of latency (about 10 ms at 44.1/48 kHz); :meth:`flush` returns the held-back tail.
    """

    def __init__(self, sr_in: int, sr_out: int = TARGET_SR):
        if sr_in <= 0 or sr_out <= 0:
            raise ValueError("sample rates must be positive")
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.up, self.down = _ratio(self.sr_in, self.sr_out)
        self.passthrough = self.up == self.down
        # resample_poly's default filter: half length 10*max(up, down) taps at the upsampled rate
        half_in = math.ceil(10 * max(self.up, self.down) / self.up) + 1
        self.pad = self.down * math.ceil(half_in / self.down)
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(self.pad, dtype=np.float32)   # left context; zeros = stream start
        self._pos = self.pad                                # next unprocessed index into _buf

    def process(self, chunk) -> np.ndarray:
        x = to_mono_float32(chunk)
        if self.passthrough:
            return x
        self._buf = np.concatenate([self._buf, x])
        # process [pos, end) where end leaves `pad` samples of right context, multiple of `down`
        n_new = (len(self._buf) - self.pad - self._pos) // self.down * self.down
        if n_new <= 0:
            return np.zeros(0, dtype=np.float32)
        return self._run(n_new)

    def flush(self) -> np.ndarray:
        """End of stream: the remaining output (zero right context, as offline resampling)."""
        if self.passthrough:
            return np.zeros(0, dtype=np.float32)
        remaining = len(self._buf) - self._pos
        total_out = math.ceil(remaining * self.up / self.down)
        n_new = math.ceil(remaining / self.down) * self.down
        self._buf = np.concatenate([self._buf, np.zeros(n_new - remaining + self.pad, np.float32)])
        out = self._run(n_new) if n_new > 0 else np.zeros(0, dtype=np.float32)
        self.reset()
        return out[:total_out]

    def _run(self, n_new: int) -> np.ndarray:
        start, pad = self._pos, self.pad
        seg = self._buf[start - pad:start + n_new + pad]
        y = resample_poly(seg, self.up, self.down)
        o_pad = pad * self.up // self.down
        out = y[o_pad:o_pad + n_new * self.up // self.down].astype(np.float32)
        self._pos = start + n_new
        keep = self._pos - pad                               # drop consumed history
        self._buf = self._buf[keep:]
        self._pos -= keep
        return out


# ---------------------------------------------------------------------------------------------
# openSMILE ComParE_2016 LLD + deltas
# ---------------------------------------------------------------------------------------------

class AudioFeatureExtractor:
    """``extractor(waveform, sr) -> float32 [frames, 130]`` (ComParE_2016 LLD + deltas, 10 fps).

    Args:
        downsample: LLD frames (10 ms each) per output frame; 10 gives MMIN's 100 ms frames, 1
            (or 0) keeps the raw 100 fps LLDs.
        method: ``"poly"`` -- ``scipy.signal.resample_poly(lld, 1, downsample, axis=0)``, MMIN's
            exact recipe (anti-aliased; ``ceil(n / downsample)`` frames); ``"mean"`` -- plain
            averaging of every ``downsample`` frames (last partial block averaged as it is).
        target_sr: rate the audio is resampled to before openSMILE (IEMOCAP/MMIN used 16 kHz).

    Frame ``j`` of the output summarises roughly ``[j * 0.1 s, (j + 1) * 0.1 s + 50 ms)`` of the
    input (ComParE windows are up to 60 ms long).  Audio shorter than one LLD window gives a
    ``[0, 130]`` array.  Features are *not* normalised: MMIN z-scores them with the training
    set's mean/std, which belongs to the model's preprocessing.
    """

    dim = FEATURE_DIM

    def __init__(self, downsample: int = 10, method: str = "poly", target_sr: int = TARGET_SR):
        import opensmile

        if method not in ("poly", "mean"):
            raise ValueError(f"method must be 'poly' or 'mean', got {method!r}")
        self.downsample = max(1, int(downsample))
        self.method = method
        self.target_sr = int(target_sr)
        # One openSMILE pass reading both data-memory levels, "lld;lld_de": identical values to
        # two separate Smile objects (LowLevelDescriptors, LowLevelDescriptors_Deltas) at half
        # the cost, and the same 130 columns SMILExtract's -lldcsvoutput wrote for MMIN.
        level = (f"{opensmile.FeatureLevel.LowLevelDescriptors.value};"
                 f"{opensmile.FeatureLevel.LowLevelDescriptors_Deltas.value}")
        self._smile = opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016,
                                      feature_level=level)
        self._lock = threading.Lock()
        names = list(self._smile.feature_names)
        if len(names) != FEATURE_DIM:
            raise RuntimeError(f"openSMILE returned {len(names)} ComParE features, expected 130")
        self.feature_names: list[str] = names
        self._engine = None            # the reused openSMILE instance (see _run_smile)
        self._engine_ran = False
        self._engine_ok = True         # False: the reuse failed once; process_signal from then on

    @property
    def frame_rate(self) -> float:
        """Output frames per second (10 with the default ``downsample=10``)."""
        return 1.0 / (LLD_HOP_S * self.downsample)

    def lld(self, waveform, sr: int) -> np.ndarray:
        """Raw 100 fps ComParE LLD + deltas, float32 ``[n_lld, 130]``."""
        x = resample(waveform, sr, self.target_sr)
        # openSMILE converts with int16(x * 32768): clip so loud input saturates, not wraps
        x = np.clip(x, -1.0, 32767.0 / 32768.0)
        if x.size < int(0.06 * self.target_sr):            # shorter than one 60 ms window
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        with self._lock:
            feats = self._run_smile(x)
        if np.isnan(feats).all(axis=1).any():
            feats = feats[~np.isnan(feats).all(axis=1)]
        return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)

    def _run_smile(self, x: np.ndarray) -> np.ndarray:
        """openSMILE on ``x`` (target rate, clipped), float32 ``[n, 130]``: the values
        ``Smile.process_signal`` gives (same config, same int16 conversion, same sink), without
        its per-call set-up.  ``process_signal`` builds and parses the ComParE configuration and
        wraps the frames in pandas on every call -- about half the cost of a live 1.3 s block --
        so one openSMILE instance is kept and reset between runs (``smile_reset``: "call run
        again without initialize").  The live path calls this ~4-5 times a second.  Any failure
        of the reused instance falls back to ``process_signal`` for good.  Caller holds ``_lock``."""
        if self._engine_ok:
            try:
                return self._run_engine(x)
            except Exception:  # noqa: BLE001 - an openSMILE/API surprise: the documented path
                self._engine_ok = False
                self._free_engine()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "Segment too short, filling with NaN"
            df = self._smile.process_signal(x, self.target_sr)
        return df.to_numpy(dtype=np.float32)

    def _run_engine(self, x: np.ndarray) -> np.ndarray:
        # what opensmile.Smile._extract (2.6.0) does for one channel, on a kept instance
        import os

        from opensmile.core.config import config
        from opensmile.core.smile import Smile

        if self._engine is None:
            opts = self._smile._options()
            opts["source"] = os.path.join(self._smile.default_config_root, config.EXTERNAL_INPUT_CONFIG)
            opts["sampleRate"] = self.target_sr
            opts["nBits"] = 16
            self._engine, self._engine_ran = self._smile._smile(options=opts), False
        eng = self._engine
        if self._engine_ran:
            eng.reset()
        self._engine_ran = True
        y: list[np.ndarray] = []
        eng._callbacks.clear()         # the previous run's sink callback (re-registered below)
        eng.external_sink_set_callback_ex(config.EXTERNAL_OUTPUT_COMPONENT, Smile._sink_callback(y, [], []))
        pcm = np.asarray(x).copy()
        pcm *= 32768
        eng.external_audio_source_write_data(config.EXTERNAL_SOURCE_COMPONENT, bytes(pcm.astype(np.int16)))
        eng.external_audio_source_set_eoi(config.EXTERNAL_SOURCE_COMPONENT)
        eng.run()
        if not y:                      # process_signal: one NaN row ("Segment too short")
            return np.full((1, FEATURE_DIM), np.nan, np.float32)
        return np.vstack(y).astype(np.float32, copy=False)

    def _free_engine(self) -> None:
        eng, self._engine = self._engine, None
        if eng is not None:
            try:
                eng.free()
            except Exception:  # noqa: BLE001
                pass

    def __del__(self):
        try:
            self._free_engine()
        except Exception:  # noqa: BLE001
            pass

    def window_source(self, keep_s: float = 5.0):
        """A live A row source over a session's audio ring: the streamed LLD frames."""
        from extractors.models.audio_rows import LldStream

        return LldStream(self, keep_s=keep_s)

    def wave_source(self, wave: np.ndarray):
        """The A row source of one whole 16 kHz recording, as it would stream live."""
        from extractors.models.audio_rows import LldStream

        return LldStream.frames_of(self, wave)

    def __call__(self, waveform, sr: int) -> np.ndarray:
        return self.downsample_frames(self.lld(waveform, sr))

    def downsample_frames(self, lld: np.ndarray) -> np.ndarray:
        n = lld.shape[0]
        if self.downsample == 1 or n == 0:
            return lld.astype(np.float32, copy=False)
        if self.method == "poly":
            out = resample_poly(lld.astype(np.float64), 1, self.downsample, axis=0)
        else:
            n_out = math.ceil(n / self.downsample)
            pad = n_out * self.downsample - n
            sums = np.pad(lld, ((0, pad), (0, 0))).reshape(n_out, self.downsample, -1).sum(axis=1)
            counts = np.full(n_out, self.downsample, dtype=np.float64)
            counts[-1] -= pad
            out = sums / counts[:, None]
        return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# silero VAD
# ---------------------------------------------------------------------------------------------

def silero_model_path(name: str = "silero_vad.onnx") -> Path:
    """Path of a model file bundled in the ``silero-vad`` wheel.

    Found through the package spec so ``silero_vad/__init__`` (which imports torch and calls
    ``torch.set_num_threads(1)`` process-wide) is never executed.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'silero-vad' package is not installed (pip install silero-vad)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"silero-vad model file missing: {path}")
    return path


class VoiceActivityDetector:
    """Streaming silero-vad: feed chunks of any rate/length, get one :class:`VadResult` per
    32 ms window (512 samples at 16 kHz) once the window is complete.

    The model's recurrent state, the 64-sample context and a partial window carry over between
    :meth:`process` calls; the sample clock gives each result's ``t`` (seconds since stream
    start) unless the caller passes a chunk's own start time, in which case a gap (a dropped
    stream) resets the model and re-bases the clock.
    """

    window_s = VAD_WINDOW / TARGET_SR

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1):
        from extractors.models.ort_session import cpu_session

        self._session = cpu_session(Path(model_path) if model_path else silero_model_path(), num_threads)
        self._sr_arr = np.array(TARGET_SR, dtype=np.int64)
        self._resampler: StreamingResampler | None = None
        self.reset()

    def reset(self, t: float = 0.0) -> None:
        """Forget all state; the next sample is at stream time ``t``."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(VAD_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._t0 = float(t)          # time of sample 0 of the 16 kHz clock
        self._n = 0                  # 16 kHz samples consumed into full windows
        self._in_sr: int | None = None
        self._in_time = float(t)     # stream time just after the last input sample received
        self._resampler = None

    @property
    def pending_samples(self) -> int:
        """16 kHz samples waiting for their window to complete."""
        return int(self._pending.size)

    @property
    def time(self) -> float:
        """Stream time of the next window's start."""
        return self._t0 + self._n / TARGET_SR

    def window_prob(self, window: np.ndarray) -> float:
        """Run the model on exactly 512 samples at 16 kHz (stateful)."""
        x = np.concatenate([self._context, window]).astype(np.float32)[None, :]
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr_arr})
        self._context = x[0, -VAD_CONTEXT:]
        return float(out.reshape(-1)[0])

    def process(self, chunk, sr: int = TARGET_SR, t: float | None = None) -> list[VadResult]:
        """Feed a chunk; return results for every window completed by it.

        Args:
            chunk: mono audio (float in [-1, 1] or integer PCM).
            sr: the chunk's sample rate (resampled to 16 kHz with state kept across chunks).
            t: optional stream time of the chunk's first sample; a jump of more than one window
                from where the stream was resets the detector at ``t`` (stream drop-out).
        """
        sr = int(sr)
        if t is not None:
            if self._in_sr is None and self._n == 0 and self._pending.size == 0:
                self._t0 = self._in_time = float(t)
            elif abs(float(t) - self._in_time) > self.window_s:
                self.reset(float(t))
        pre = np.zeros(0, dtype=np.float32)
        if self._in_sr != sr:
            if self._resampler is not None:        # rate change mid-stream: drain the old one
                pre = self._resampler.flush()
            self._in_sr = sr
            self._resampler = StreamingResampler(sr, TARGET_SR)
        x = to_mono_float32(chunk)
        self._in_time += x.size / sr
        y = self._resampler.process(x)
        if pre.size:
            y = np.concatenate([pre, y])
        return self._consume(y)

    def flush(self) -> list[VadResult]:
        """End of stream: emit the held-back tail (last window zero-padded)."""
        y = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.float32)
        buf = np.concatenate([self._pending, y])
        if buf.size == 0:
            return []
        self._pending = np.zeros(0, dtype=np.float32)
        pad = (-buf.size) % VAD_WINDOW
        results = self._consume(np.concatenate([buf, np.zeros(pad, np.float32)]))
        return results

    def _consume(self, y: np.ndarray) -> list[VadResult]:
        buf = np.concatenate([self._pending, y]) if self._pending.size else y
        n_win = buf.size // VAD_WINDOW
        results = []
        for i in range(n_win):
            w = buf[i * VAD_WINDOW:(i + 1) * VAD_WINDOW]
            p = self.window_prob(w)
            results.append(VadResult(t=self.time, duration=self.window_s, speech_prob=p))
            self._n += VAD_WINDOW
        self._pending = buf[n_win * VAD_WINDOW:].copy()
        return results

    def detect(self, waveform, sr: int) -> list[VadResult]:
        """Whole clip, fresh state: one result per 32 ms window from t=0."""
        self.reset()
        out = self.process(waveform, sr)
        out += self.flush()
        self.reset()
        return out

    def probabilities(self, waveform, sr: int) -> np.ndarray:
        """Speech probability per 32 ms window for a whole clip (fresh state)."""
        return np.array([r.speech_prob for r in self.detect(waveform, sr)], dtype=np.float32)
