"""Where the project's shared real data lives: ``$ADMC_SHARED_DATA``, else ``../shared/data`` beside
the checkout (as in CI)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ADMC_SHARED_DATA") or REPO.parent / "shared" / "data")
