"""Result types shared by the live extractors and the stream-health detectors.

Data flows one way: capture -> extractors (these results) -> stream health -> window assembly
-> ADMC pipeline.  These dataclasses are the contract between the stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TARGET_SR = 16000           # every audio stream is resampled to 16 kHz mono (VAD, openSMILE, Whisper)


def is_finite_number(x) -> bool:
    """``x`` is a number that is not NaN or infinite (anything else, None included, is not)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class FaceResult:
    """One video frame through the face extractor (modality ``V``)."""

    t: float                                  # seconds since stream start
    detected: bool                            # a face was found
    score: float                              # detection probability (0 when none)
    box: np.ndarray | None = None             # [4] x1, y1, x2, y2 in frame pixels
    landmarks: np.ndarray | None = None       # [5, 2] eyes, nose, mouth corners
    feature: np.ndarray | None = None         # [dim] expression-network feature vector
    expression: dict[str, float] | None = None  # expression-network class probabilities


@dataclass
class VadResult:
    """Voice activity for one chunk of audio."""

    t: float                                  # chunk start, seconds since stream start
    duration: float                           # seconds
    speech_prob: float


@dataclass
class AsrSegment:
    """One recognised speech segment (modality ``T`` is built from these)."""

    start: float
    end: float
    text: str
    words: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, word)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0
    final: bool = True
    wait_s: float | None = None         # StreamingTranscriber: from the job's submission to its start
    asr_s: float | None = None          # ... and its transcription


@dataclass
class HealthDecision:
    """Whether one modality is usable right now, and why."""

    modality: str                             # "A", "V" or "T"
    live: bool
    reason: str                               # e.g. "ok", "silence", "no face", "occlusion", "asr failure"
    score: float                              # the evidence the decision rests on (probability, ratio...)
    t: float = 0.0


def short_error(e: BaseException, n: int = 120) -> str:
    """``Type: message``, cut to ``n`` characters (a reason shown in the UI)."""
    s = f"{type(e).__name__}: {e}"
    return s if len(s) <= n else s[: n - 3] + "..."
