"""extractors.media: the one PyAV decoder behind ``admc extract``, ``FaceExtractor.extract_video``
and the app's replay, on generated files (frame k of the video shows k in binary as black and white
blocks, so which frame came out is read from its pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from extractors import media
from tests.test_extract import write_video  # FPS = 10

FPS, N, SR = 10, 40, 22050


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    import soundfile as sf

    root = tmp_path_factory.mktemp("media")
    frames = [frame_with_number(k) for k in range(N)]
    tone = (0.3 * np.sin(np.arange(int(N / FPS * SR)) * 2 * np.pi * 440 / SR)).astype(np.float32)
    write_video(root / "av.mp4", frames, tone, SR)
    write_video(root / "v.mp4", frames)
    sf.write(str(root / "a.wav"), tone, SR)
    return {"av": root / "av.mp4", "v": root / "v.mp4", "a": root / "a.wav"}


def frame_with_number(k: int) -> np.ndarray:
    f = np.zeros((48, 64, 3), np.uint8)
    for bit in range(6):
        if k >> bit & 1:
            f[16:32, 8 * bit + 8:8 * bit + 16] = 255
    return f


def numbers(frames) -> list[int]:
    return [sum(1 << bit for bit in range(6) if f[18:30, 8 * bit + 10:8 * bit + 14].mean() > 128) for f in frames]


def test_probe(files):
    assert (media.probe(files["av"]).audio, media.probe(files["av"]).video) == (True, True)
    assert (media.probe(files["v"]).audio, media.probe(files["v"]).video) == (False, True)
    p = media.probe(files["a"])
    assert (p.audio, p.video, p.video_frames) == (True, False, 0) and p.format == "wav"


def test_every_frame_at_its_time(files):
    got = list(media.iter_video(files["av"]))
    assert len(got) == N
    assert [round(t * FPS) for t, _ in got] == list(range(N)) == numbers(f for _, f in got)
    assert got[0][1].dtype == np.uint8 and got[0][1].shape == (48, 64, 3)
    assert list(media.iter_video(files["a"])) == []


def test_subsampling_segments_and_max_frames(files):
    def frames(**kw):
        return numbers(f for _, f in media.iter_video(files["v"], **kw))

    # fps: the first frame at or after each 1/fps tick
    assert frames(fps=4) == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28,
                                                                          30, 33, 35, 38]
    # a segment: t counts from its start, the end is excluded; a start past 1 s seeks first
    seg = list(media.iter_video(files["v"], start=2.2, end=3.0))
    assert numbers(f for _, f in seg) == list(range(22, 30))
    assert np.allclose([t for t, _ in seg], np.arange(8) / FPS)
    assert len(list(media.iter_video(files["v"], max_frames=3))) == 3
    assert frames(fps=2, max_frames=3) == [0, 5, 10]


@pytest.mark.parametrize("name", ["av", "a"])
def test_audio_chunks_are_contiguous_and_make_the_whole_track(files, name):
    chunks = list(media.iter_audio(files[name]))
    assert {sr for _, _, sr in chunks} == {SR}  # the file's own rate
    ends = [t + x.size / SR for t, x, _ in chunks]
    assert all(abs(t - e) < 1e-6 for (t, _, _), e in zip(chunks[1:], ends))
    at16 = list(media.iter_audio(files[name], rate=16000))
    whole = media.decode_audio(files[name])
    assert {sr for _, _, sr in at16} == {16000} and whole.dtype == np.float32
    assert np.array_equal(whole, np.concatenate([x for _, x, _ in at16]))
    assert abs(len(whole) / 16000 - N / FPS) < 0.05
    seg = media.decode_audio(files[name], 1.0, 2.5)
    assert np.array_equal(seg, whole[16000:40000])
    assert media.decode_audio(files["v"]) is None


def test_merged_streams_are_in_time_order(files):
    items = list(media.iter_media(files["av"]))
    assert {k for k, *_ in items} == {"A", "V"}
    ts = [t for _, t, _, _ in items]
    assert ts == sorted(ts)
    assert sum(k == "V" for k, *_ in items) == N
    assert [k for k, *_ in media.iter_media(files["a"])] == ["A"] * sum(1 for _ in media.iter_audio(files["a"]))


def test_codec_roundtrip_keeps_length_and_alignment_and_loses_more_at_lower_bit_rates():
    """A chirp with clicks through AAC and back: same length, no delay (the encoder's priming samples
    are dropped), and a lower bit rate costs signal-to-noise ratio."""
    sr = 16000
    t = np.arange(3 * sr) / sr
    x = (0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t)).astype(np.float32)
    x[::4000] += 0.5
    snr = {}
    for rate in (24000, 96000):
        y = media.codec_roundtrip(x, sr, rate)
        assert y.shape == x.shape and y.dtype == np.float32
        lags = range(-1500, 1501)
        corr = [float(np.dot(x[2000:40000], y[2000 + k:40000 + k])) for k in lags]
        assert lags[int(np.argmax(corr))] == 0
        snr[rate] = 10 * np.log10(np.sum(x ** 2) / np.sum((x - y) ** 2))
    assert snr[96000] > snr[24000] + 3 and snr[96000] > 15
