"""Whisper encoder speech features (``extractors.models.speech_encoder``) on synthesized speech."""

from __future__ import annotations

import numpy as np
import pytest

from extractors.models.audio import resample
from extractors.models.speech_encoder import WhisperEncoderFeatures
from tests.media import espeak


@pytest.fixture(scope="module")
def enc():
    return WhisperEncoderFeatures(threads=1)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    x, sr = espeak("she sells sea shells by the sea shore", tmp_path_factory.mktemp("w") / "s.wav")
    return resample(x, sr, 16_000)


def test_rows_cover_the_audio_at_the_requested_rate(enc, speech):
    seq = enc.sequence(speech)
    assert seq.shape == (int(np.ceil(len(speech) / 320)), enc.dim) and enc.dim == 384
    win = speech[:48_000] if len(speech) >= 48_000 else np.pad(speech, (0, 48_000 - len(speech)))
    rows = enc.rows(win, rate=10.0)
    assert rows.shape == (30, 384) and np.isfinite(rows).all()
    assert np.allclose(rows[0], enc.sequence(win)[:5].mean(0), atol=1e-5)
    assert enc.pooled(win).shape == (768,)


def test_speech_and_silence_give_different_states_and_the_same_audio_the_same(enc, speech):
    win = np.pad(speech, (0, max(0, 48_000 - len(speech))))[:48_000]
    silence = (np.random.default_rng(0).standard_normal(48_000) * 1e-4).astype(np.float32)
    a, b = enc.pooled(win), enc.pooled(win.copy())
    assert np.array_equal(a, b)
    s = enc.pooled(silence)
    cos = float(a @ s / np.linalg.norm(a) / np.linalg.norm(s))
    assert cos < 0.9


def test_long_audio_is_encoded_in_30_s_pieces_and_empty_audio_is_refused(enc):
    x = (np.random.default_rng(1).standard_normal(16_000 * 31) * 0.01).astype(np.float32)
    assert enc.sequence(x).shape[0] == 1500 + 50
    with pytest.raises(ValueError, match="empty"):
        enc.sequence(np.zeros(0, np.float32))
