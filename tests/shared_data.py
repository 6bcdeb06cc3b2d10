"""Where the project's shared real data lives: ``../shared/data`` beside the checkout (as in CI),
else /work/shared/data."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()),
                   REPO.parent / "shared" / "data")
