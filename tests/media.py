"""Generated test media shared by the extractor tests."""

from pathlib import Path

import numpy as np
import pytest


def espeak(text: str, path: Path, speed: int = 130) -> tuple[np.ndarray, int]:
    """Speech synthesized by espeak-ng into ``path``; a missing espeak-ng fails the test loudly."""
    from benchmarks.fixtures import espeak as synthesize

    try:
        return synthesize(text, path, speed)
    except RuntimeError as e:
        pytest.fail(str(e))
