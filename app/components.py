"""The extractors a live session uses, loaded once and shared by every session."""

from __future__ import annotations

import os

import threading


from extractors.types import short_error  # noqa: E402 - re-exported (app.components.short_error)

_short = short_error


class Components:
    """The extractors of one feature set (:class:`extractors.live_schema.FeatureSet`), loaded once and
    shared by every session (each guarded by a lock).

    A component that cannot be loaded is ``None`` and its modality is reported missing with the
    reason in ``errors`` (e.g. ``{"T": "unavailable: ..."}``) -- the others still work.
    ``audio`` is the A extractor (openSMILE :class:`~extractors.models.audio.AudioFeatureExtractor` or the
    Whisper :class:`~extractors.models.speech_encoder.WhisperEncoderFeatures`); each session gets its own
    A row source from :meth:`audio_rows`.
    """

    def __init__(self, face=None, audio=None, recognizer=None, text=None, vad_factory=None,
                 errors: dict[str, str] | None = None, feature_set=None):
        self.face = face
        self.audio = audio
        self.recognizer = recognizer
        self.text = text
        self.vad_factory = vad_factory
        self.errors = dict(errors or {})
        self.feature_set = feature_set
        self.face_lock = threading.Lock()
        self.text_lock = threading.Lock()

    @property
    def text_dim(self) -> int | None:
        return getattr(self.text, "dim", None)

    def audio_rows(self, keep_s: float = 5.0):
        """A new A row source for one session (None without an audio extractor): the extractor's
        ``window_source`` (openSMILE LLD stream, Whisper encoder per window, or both side by side)."""
        return None if self.audio is None else self.audio.window_source(keep_s)

    @classmethod
    def load(cls, device="cpu", *, feature_set=None, face: bool = True, audio: bool = True, asr: bool = True,
             text: bool = True, face_kwargs: dict | None = None, asr_threads: int | None = None,
             asr_model: str | None = None, text_model: str | None = None) -> "Components":
        """The extractors of ``feature_set`` (a :class:`~extractors.live_schema.FeatureSet`; default:
        the default feature set)."""
        from extractors.live_schema import feature_set as named_feature_set

        fs = feature_set if feature_set is not None else named_feature_set()
        errors: dict[str, str] = {}
        rec = tx = vad_factory = None
        built = fs.build(device, face=face, audio=audio, text=False, threads=1, face_kwargs=face_kwargs, strict=False)
        fx, ax = built.face, built.audio
        if "V" in built.errors:
            errors["V"] = f"unavailable: face extractor ({built.errors['V']})"
        if "A" in built.errors:
            errors["A"] = f"unavailable: audio extractor ({built.errors['A']})"
        elif audio:
            try:
                from extractors.models.audio import VoiceActivityDetector

                VoiceActivityDetector()           # the model file is there
                vad_factory = VoiceActivityDetector
            except Exception as e:  # noqa: BLE001
                errors["A"] = f"unavailable: audio extractor ({_short(e)})"
        if asr and vad_factory is not None:
            try:
                from extractors.models.speech import SpeechRecognizer

                # a person waits for the final transcript after an utterance: the ASR may use two cores
                # (it runs between utterances; the face worker yields to it)
                threads = asr_threads if asr_threads is not None else min(2, os.cpu_count() or 1)
                # live utterances are short: decoded over a shortened encoder context (5 times faster
                # than faster-whisper's 30 s padding, the same words; extractors/models/speech.py)
                rec = SpeechRecognizer("faster-whisper", asr_model, cpu_threads=int(threads), short_context=True)
            except Exception as e:  # noqa: BLE001
                errors["T"] = f"unavailable: speech recognizer ({_short(e)})"
        elif not asr:
            errors["T"] = "unavailable: ASR switched off"
        if text and "T" not in errors:
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except Exception:  # noqa: BLE001
                pass
            built = fs.build("cpu", face=False, audio=False, text_model=text_model, strict=False)
            tx = built.text
            if "T" in built.errors:
                errors["T"] = f"unavailable: text encoder ({built.errors['T']})"
        if "A" in errors and "T" not in errors:
            errors["T"] = "unavailable: needs the audio stream"
        return cls(fx, ax, rec, tx, vad_factory, errors, fs)
