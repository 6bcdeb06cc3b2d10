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


def _pushed_live(src, wave, hop_s=0.2, chunk=1600):
    """``{window end: rows}`` of ``src`` over ``wave`` pushed chunk by chunk into a live ring, a window
    every ``hop_s`` as the session asks for them."""
    from extractors.models.audio_rows import AudioRing

    ring = AudioRing(5.0)
    ring.reset(0.0)
    out = {}
    for i in range(0, len(wave), chunk):
        ring.append(wave[i:i + chunk])
        src.update(ring)
        t = round(ring.total / 16_000, 6)
        if t >= hop_s and abs(t / hop_s - round(t / hop_s)) < 1e-6:
            out[t] = src.window_rows(t, 0.0, 3.0)
    return out


@pytest.fixture(scope="module")
def talk(speech):
    """8 s: speech, a pause, speech again, over a faint noise floor."""
    wave = np.zeros(16_000 * 8, np.float32)
    wave[4000:4000 + len(speech[:48_000])] = speech[:48_000]
    wave[72_000:72_000 + len(speech[:40_000])] = speech[:40_000]
    return wave + (np.random.default_rng(2).standard_normal(len(wave)) * 1e-3).astype(np.float32)


def test_grid_pieces_are_encoded_once_and_live_rows_equal_the_whole_recording(talk):
    from extractors.models.speech_encoder import EncoderGridRows

    enc = WhisperEncoderFeatures(threads=1, grid_s=1.0)
    live = enc.window_source()
    assert isinstance(live, EncoderGridRows)
    got = _pushed_live(live, talk)
    whole = enc.wave_source(talk)                       # how admc extract and the starter build make them
    for t, rows in got.items():
        assert np.array_equal(rows, whole.window_rows(t, 0.0, 3.0)), t
        if t >= 3.0:
            assert rows.shape == (30, 384)
    # each sample once in its finished piece, and in the unfinished piece at the four window ends inside it
    assert live.encoded_samples == 3 * len(talk)
    # the rows are those of the grid's pieces, each from the encoder's position 0: the window ending at
    # 6.4 s holds the end of piece 3, pieces 4 and 5, and piece 6 as far as it has arrived
    rows = got[6.4]
    assert np.allclose(rows[:6], enc.rows(talk[16_000 * 3:16_000 * 4])[4:], atol=1e-5)
    assert np.allclose(rows[6:16], enc.rows(talk[16_000 * 4:16_000 * 5]), atol=1e-5)
    assert np.allclose(rows[26:], enc.rows(talk[16_000 * 6:int(16_000 * 6.4)]), atol=1e-5)
    # a new run (here a new ring from time 0, other audio) starts the grid again: none of the last
    # run's pieces is reused
    other = talk[16_000:]
    again = _pushed_live(live, other)
    assert np.array_equal(again[6.4], enc.wave_source(other).window_rows(6.4, 0.0, 3.0))


def test_whole_window_encoding_stays_the_default_and_differs_from_the_grid(talk):
    from extractors.models.speech_encoder import EncoderGridRows

    enc = WhisperEncoderFeatures(threads=1)
    src = enc.window_source()
    assert not isinstance(src, EncoderGridRows)
    rows = _pushed_live(src, talk)[6.4]
    assert rows.shape == (30, 384)
    assert np.allclose(rows, enc.rows(talk[int(16_000 * 3.4):int(16_000 * 6.4)]), atol=1e-5)
    grid = _pushed_live(WhisperEncoderFeatures(threads=1, grid_s=1.0).window_source(), talk)[6.4]
    assert not np.allclose(rows, grid, atol=1e-3)
    # 3 s pieces: a window on the grid is one whole piece, as the whole-window encoding makes it; one
    # across two pieces is not
    grid3 = WhisperEncoderFeatures(threads=1, grid_s=3.0)
    assert np.array_equal(grid3.wave_source(talk).window_rows(6.0, 0.0, 3.0), enc.wave_source(talk).window_rows(6.0, 0.0, 3.0))
    assert not np.allclose(grid3.wave_source(talk).window_rows(6.4, 0.0, 3.0), rows, atol=1e-3)
