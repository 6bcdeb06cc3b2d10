"""Audio modality: openSMILE ComParE features, silero VAD, streaming resampling.

Real components on generated media: speech is synthesised with espeak-ng (apt package, see
requirements/apt.txt), silence and noise with numpy.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from extractors.models.audio import (FEATURE_DIM, AudioFeatureExtractor, StreamingResampler,
                              VoiceActivityDetector, load_audio, resample)
from extractors.live.audio_frontend import speech_regions
from extractors.types import VadResult
from tests.media import espeak

SENTENCE = "the quick brown fox jumps over the lazy dog"
REPO = Path(__file__).resolve().parents[1]


def voiced_bounds(x: np.ndarray, sr: int, level: float = 0.02) -> tuple[float, float]:
    idx = np.flatnonzero(np.abs(x) > level)
    return idx[0] / sr, idx[-1] / sr


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1 s silence, speech, 1.5 s silence, 1 s white noise, 0.5 s silence (espeak's 22.05 kHz).

    Returns (waveform, sr, (speech_start, speech_end), (noise_start, noise_end)).
    """
    speech, sr = espeak(SENTENCE, tmp_path_factory.mktemp("audio") / "fox.wav")
    s0, s1 = voiced_bounds(speech, sr)
    rng = np.random.default_rng(0)
    parts = [np.zeros(sr, np.float32), speech, np.zeros(int(1.5 * sr), np.float32),
             (0.05 * rng.standard_normal(sr)).astype(np.float32), np.zeros(sr // 2, np.float32)]
    x = np.concatenate(parts)
    noise0 = (sr + speech.size + int(1.5 * sr)) / sr
    return x, sr, (1.0 + s0, 1.0 + s1), (noise0, noise0 + 1.0)


@pytest.fixture(scope="module")
def fe():
    return AudioFeatureExtractor()


@pytest.fixture(scope="module")
def vad():
    return VoiceActivityDetector()


# ---------------------------------------------------------------------------------- features

def test_features_130d_at_10fps(fe, clip):
    x, sr, _, _ = clip
    feats = fe(x, sr)
    duration = x.size / sr
    assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[1] == FEATURE_DIM == 130
    assert fe.frame_rate == 10.0
    assert abs(feats.shape[0] - duration * 10) <= 1.5
    assert np.isfinite(feats).all()
    names = fe.feature_names
    assert len(names) == 130
    # deltas follow the 65 LLDs in the same order: 'mfcc_sma[1]' -> 'mfcc_sma_de[1]'
    assert [n.replace("_sma", "_sma_de", 1) for n in names[:65]] == names[65:]


def test_lld_rate_and_mmin_downsampling(fe, clip):
    x, sr, _, _ = clip
    lld = fe.lld(x, sr)
    assert abs(lld.shape[0] - x.size / sr * 100) <= 8          # 10 ms hop, 60 ms last window
    # MMIN: scipy.signal.resample_poly(lld, up=1, down=10, axis=0) on the 130 LLD+delta columns
    expected = resample_poly(lld.astype(np.float64), 1, 10, axis=0)
    np.testing.assert_allclose(fe(x, sr), expected, rtol=1e-5, atol=1e-4)
    mean = AudioFeatureExtractor(method="mean").downsample_frames(lld)
    assert mean.shape == (math.ceil(lld.shape[0] / 10), 130)
    np.testing.assert_allclose(mean[0], lld[:10].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_single_pass_equals_separate_lld_and_delta_extractors(fe, clip):
    import opensmile

    x, sr, _, _ = clip
    x16 = resample(x, sr)[: 3 * 16000]
    kw = dict(feature_set=opensmile.FeatureSet.ComParE_2016)
    lld = opensmile.Smile(feature_level=opensmile.FeatureLevel.LowLevelDescriptors, **kw)
    de = opensmile.Smile(feature_level=opensmile.FeatureLevel.LowLevelDescriptors_Deltas, **kw)
    a = lld.process_signal(x16, 16000).to_numpy()
    b = de.process_signal(x16, 16000).to_numpy()
    both = fe.lld(x16, 16000)
    n = both.shape[0]
    np.testing.assert_allclose(both[:, :65], a[:n], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both[:, 65:], b[:n], rtol=1e-5, atol=1e-5)


def test_features_track_speech_energy(fe, clip):
    x, sr, (s0, s1), _ = clip
    feats = fe(x, sr)
    rms = feats[:, fe.feature_names.index("pcm_RMSenergy_sma")]
    speech = rms[int(s0 * 10) + 2:int(s1 * 10) - 1]
    silence = rms[2:int(s0 * 10) - 2]
    assert speech.mean() > 10 * max(silence.mean(), 1e-6)


def test_features_edge_cases(fe):
    assert fe(np.zeros(100, np.float32), 16000).shape == (0, 130)
    pcm = (np.sin(np.linspace(0, 400 * np.pi, 16000)) * 8000).astype(np.int16)
    out = fe(pcm, 16000)                                   # integer PCM is scaled
    assert out.shape == (10, 130) and np.isfinite(out).all()
    loud = np.full(16000, 3.0, np.float32)                 # clipped, not wrapped
    assert np.isfinite(fe(loud, 16000)).all()
    stereo = np.stack([pcm, pcm], axis=1)
    np.testing.assert_allclose(fe(stereo, 16000), out, atol=1e-3)


def test_reused_opensmile_instance_equals_process_signal(fe, clip):
    """lld() keeps one openSMILE instance and resets it between runs: bit for bit the values of a
    fresh ``Smile.process_signal`` per call, run after run (short, silent, clipped, long)."""
    import warnings

    x, sr, _, _ = clip
    x16 = resample(x, sr).astype(np.float32)
    segs = [x16[16000:36960], x16[:1000], np.zeros(20960, np.float32), np.clip(3 * x16[20000:40000], -1, 1),
            x16, x16[50000:50961], x16[16000:36960]]
    for seg in segs:
        got = fe.lld(seg, 16000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ref = fe._smile.process_signal(np.clip(seg, -1.0, 32767 / 32768), 16000).to_numpy(np.float32)
        ref = np.nan_to_num(ref[~np.isnan(ref).all(axis=1)], nan=0.0, posinf=0.0, neginf=0.0)
        assert got.shape == ref.shape and np.array_equal(got, ref), seg.size
    assert fe._engine_ok and fe._engine is not None
    assert len(fe._engine._callbacks) == 1          # callbacks do not pile up run after run


# ---------------------------------------------------------------------------------- VAD

def test_vad_high_on_speech_low_on_silence_and_noise(vad, clip):
    x, sr, (s0, s1), (n0, n1) = clip
    res = vad.detect(x, sr)
    assert all(isinstance(r, VadResult) for r in res)
    assert res[0].t == 0.0 and res[1].t == pytest.approx(0.032)
    assert res[-1].t + res[-1].duration >= x.size / sr - 0.001
    t = np.array([r.t for r in res])
    p = np.array([r.speech_prob for r in res])
    in_speech = p[(t > s0 + 0.2) & (t < s1 - 0.3)]
    silence = p[((t > 0.1) & (t < s0 - 0.3)) | ((t > s1 + 0.6) & (t < n0 - 0.1))]
    noise = p[(t > n0) & (t < n1 - 0.05)]
    assert np.mean(in_speech > 0.5) > 0.8
    assert silence.max() < 0.2
    assert noise.mean() < 0.3
    regions = speech_regions(res)
    assert len(regions) == 1
    assert regions[0][0] == pytest.approx(s0, abs=0.15)
    assert regions[0][1] == pytest.approx(s1, abs=0.4)


def test_vad_streaming_any_chunking_and_rate_matches_offline(vad, clip):
    x, sr, _, _ = clip
    x48 = resample(x, sr, 48000)
    offline = vad.probabilities(x48, 48000)
    stream = VoiceActivityDetector()
    rng = np.random.default_rng(1)
    res, i = [], 0
    while i < x48.size:
        n = int(rng.integers(100, 5000))
        res += stream.process(x48[i:i + n], 48000)
        i += n
    res += stream.flush()
    np.testing.assert_allclose([r.speech_prob for r in res], offline, atol=1e-5)
    np.testing.assert_allclose([r.t for r in res], np.arange(len(res)) * 0.032, atol=1e-9)


def test_vad_dropout_rebases_clock():
    v = VoiceActivityDetector()
    sr = 16000
    first = v.process(np.zeros(sr, np.float32), sr, t=5.0)
    assert first[0].t == pytest.approx(5.0)
    again = v.process(np.zeros(sr // 2, np.float32), sr, t=6.0)   # contiguous: no reset
    assert again[0].t == pytest.approx(first[-1].t + 0.032)
    after_gap = v.process(np.zeros(sr, np.float32), sr, t=20.0)   # drop-out
    assert after_gap[0].t == pytest.approx(20.0)


@pytest.mark.parametrize("sr", [44100, 48000, 8000, 22050])
def test_streaming_resampler_equals_offline(sr):
    rng = np.random.default_rng(sr)
    x = (0.1 * rng.standard_normal(sr + 777)).astype(np.float32)
    r = StreamingResampler(sr, 16000)
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 4000))
        out.append(r.process(x[i:i + n]))
        i += n
    out.append(r.flush())
    np.testing.assert_allclose(np.concatenate(out), resample(x, sr), atol=1e-6)


# ---------------------------------------------------------------------------------- RAVDESS

def _ravdess_dir() -> Path | None:
    from tests.shared_data import SHARED_DATA

    cands = [os.environ.get("RAVDESS_SPEECH_DIR"), SHARED_DATA / "ravdess_speech"]
    for c in cands:
        if c and (Path(c) / "manifest.csv").is_file():
            return Path(c)
    return None


def test_real_ravdess_file(fe, vad):
    root = _ravdess_dir()
    if root is None:
        pytest.skip("shared RAVDESS speech data not available")
    with open(root / "manifest.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["label"] == "angry")
    x = load_audio(root / row["path"])                       # read in place, 16 kHz mono
    feats = fe(x, 16000)
    assert feats.shape[1] == 130 and abs(feats.shape[0] - x.size / 1600) <= 1.5
    assert np.isfinite(feats).all()
    res = vad.detect(x, 16000)
    probs = np.array([r.speech_prob for r in res])
    assert probs.max() > 0.9
    regions = speech_regions(res)
    assert regions and sum(b - a for a, b in regions) > 0.5
