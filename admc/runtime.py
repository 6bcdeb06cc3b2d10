"""Device choice, seeding and progress bars shared by every command (torch is imported by the
functions that need it, so a command can set its output mode before any model code loads)."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

if TYPE_CHECKING:  # pragma: no cover
    import torch

_QUIET = False


def set_quiet(quiet: bool) -> None:
    global _QUIET
    _QUIET = bool(quiet)


def set_threads(threads: int | None) -> None:
    """torch's CPU threads for this process (None: leave torch's default); imports torch only when set."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def progress(iterable=None, **kw):
    """A tqdm progress bar (with its rate and ETA where the total is known), silent with ``--quiet``
    and when stderr is not a terminal (a log file, a pipe, a test)."""
    kw.setdefault("leave", False)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=True if _QUIET else None, **kw)


def log(msg: str) -> None:
    if not _QUIET:
        tqdm.write(msg)


def resolve_device(device: str | None = "auto") -> "torch.device":
    """``auto`` -> CUDA when present, else CPU. Any explicit torch device string is honoured."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
    return dev


def seed_everything(seed: int) -> "torch.Generator":
    """Seed Python, NumPy and torch; make torch deterministic where it allows."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    g = torch.Generator()
    g.manual_seed(seed)
    return g
