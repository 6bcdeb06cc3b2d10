"""The extractors a live session uses, loaded once and shared by every session."""

from __future__ import annotations

import threading


def short_error(e: BaseException, n: int = 120) -> str:
    """``Type: message``, cut to ``n`` characters (a reason shown in the UI)."""
    s = f"{type(e).__name__}: {e}"
    return s if len(s) <= n else s[: n - 3] + "..."


_short = short_error


class Components:
    """The extractors, loaded once and shared by every session (each guarded by a lock).

    A component that cannot be loaded is ``None`` and its modality is reported missing with the
    reason in ``errors`` (e.g. ``{"T": "unavailable: ..."}``) -- the others still work.
    """

    def __init__(self, face=None, audio=None, recognizer=None, text=None, vad_factory=None,
                 errors: dict[str, str] | None = None):
        self.face = face
        self.audio = audio
        self.recognizer = recognizer
        self.text = text
        self.vad_factory = vad_factory
        self.errors = dict(errors or {})
        self.face_lock = threading.Lock()
        self.text_lock = threading.Lock()

    @property
    def text_dim(self) -> int | None:
        return getattr(self.text, "dim", None)

    @classmethod
    def load(cls, device="cpu", *, face: bool = True, audio: bool = True, asr: bool = True,
             text: bool = True, face_kwargs: dict | None = None, asr_threads: int = 1,
             asr_model: str | None = None, text_model: str | None = None) -> "Components":
        errors: dict[str, str] = {}
        fx = ax = rec = tx = vad_factory = None
        if face:
            try:
                from extractors.face import FaceExtractor

                fx = FaceExtractor(device=device, **(face_kwargs or {}))
            except Exception as e:  # noqa: BLE001
                errors["V"] = f"unavailable: face extractor ({_short(e)})"
        if audio:
            try:
                from extractors.audio import AudioFeatureExtractor, VoiceActivityDetector

                ax = AudioFeatureExtractor()
                VoiceActivityDetector()           # the model file is there
                vad_factory = VoiceActivityDetector
            except Exception as e:  # noqa: BLE001
                errors["A"] = f"unavailable: audio extractor ({_short(e)})"
        if asr and vad_factory is not None:
            try:
                from extractors.speech import SpeechRecognizer

                rec = SpeechRecognizer("faster-whisper", asr_model, cpu_threads=int(asr_threads))
            except Exception as e:  # noqa: BLE001
                errors["T"] = f"unavailable: speech recognizer ({_short(e)})"
        elif not asr:
            errors["T"] = "unavailable: ASR switched off"
        if text and "T" not in errors:
            try:
                try:
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except Exception:  # noqa: BLE001
                    pass
                from extractors.text import TextEncoder

                tx = TextEncoder(text_model)
            except Exception as e:  # noqa: BLE001
                errors["T"] = f"unavailable: text encoder ({_short(e)})"
        if "A" in errors and "T" not in errors:
            errors["T"] = "unavailable: needs the audio stream"
        return cls(fx, ax, rec, tx, vad_factory, errors)
