"""Output directories: what an ``--out`` may replace, and replacing it without losing anything.

Every command that writes a directory (``admc train``, ``admc import``, ``admc bench``'s runs,
``admc extract``) writes into a temporary sibling ``.NAME.tmp-XXXX`` and renames it into place at
the end, so an interrupted or killed command leaves the old content under ``NAME`` and never a
half-written directory there.  Before any work the command checks ``--out``:

- a missing or empty directory is fine;
- a directory of ours of the kind being written (a run, a dataset, a bench output) is replaced only
  with ``--overwrite`` (a bench output is reused: its runs are resumed);
- anything else (a file, a directory holding anything that is not ours, ours of another kind) is
  refused, as is an ``--out`` that is, contains or lies inside an input directory.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from admc.data import FORMAT as DATASET_FORMAT

RUN_FORMAT = "admc-run/1"
RUN_FILES = frozenset({"run.json", "model.safetensors"})
DATASET_FILES = frozenset({"meta.json", "train.npz", "val.npz", "test.npz", "transcripts.jsonl", ".cache"})
BENCH_FILES = frozenset({"results.json", "results.md", "runs", "cells", "figures"})
BENCH_SUFFIXES = {"cells": ".json", "figures": ".png"}  # what bench writes in these folders
LABELS = {"run": "run directory (admc train)", "dataset": "feature dataset", "bench": "bench output (admc bench)"}


class OutputError(ValueError):
    """An output directory that must not be replaced; the message names the option and the path."""


def _is_leftover(name: str) -> bool:
    """A staging or parked directory left by an interrupted write (``.NAME.tmp-*``, ``.NAME.old-*``)."""
    return name.startswith(".") and (".tmp-" in name or ".old-" in name)


def _json_format(path: Path) -> str | None:
    try:
        if path.stat().st_size > 64 * 2**20:
            return None
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return obj.get("format") if isinstance(obj, dict) else None


def describe(path: str | os.PathLike) -> str:
    """What is at ``path``: "missing", "empty", "run", "dataset", "bench", "file" or "foreign"."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return "missing"
    if not path.is_dir():
        return "file"
    names = {p.name for p in path.iterdir()}
    if not names:
        return "empty"
    if names <= RUN_FILES and "run.json" in names:
        return "run" if _json_format(path / "run.json") == RUN_FORMAT else "foreign"
    if names <= DATASET_FILES:
        if "meta.json" in names:
            return "dataset" if _json_format(path / "meta.json") == DATASET_FORMAT else "foreign"
        return "dataset" if names <= {".cache", "transcripts.jsonl"} else "foreign"
    if names <= BENCH_FILES:
        runs = path / "runs"
        if runs.exists():
            if not runs.is_dir():
                return "foreign"
            for p in runs.iterdir():
                if not _is_leftover(p.name) and describe(p) not in ("run", "empty"):
                    return "foreign"
        for folder, suffix in BENCH_SUFFIXES.items():
            d = path / folder
            if d.exists() and (not d.is_dir() or any(
                    not (p.is_file() and (p.suffix == suffix or _is_leftover(p.name))) for p in d.iterdir())):
                return "foreign"
        return "bench"
    return "foreign"


def check_out(out: str | os.PathLike, kind: str, *, overwrite: bool, inputs: dict | None = None,
              flag: str = "--out") -> Path:
    """Refuse an output directory that writing a ``kind`` ("run", "dataset", "bench") there would lose.

    ``inputs`` maps an option name to a path the command reads (``{"--data": DIR}``; or a list of
    (option, path) pairs, one option for several paths): ``out`` may not be it, contain it or lie
    inside it.  Raises :class:`OutputError`; returns ``Path(out)``.
    """
    out = Path(out)
    resolved = out.resolve()
    pairs = inputs.items() if isinstance(inputs, dict) else (inputs or ())
    for opt, p in pairs:
        if p is None:
            continue
        q = Path(p).resolve()
        if resolved == q:
            raise OutputError(f"{flag} {out}: is the {opt} path; write to another directory")
        if q.is_relative_to(resolved):
            raise OutputError(f"{flag} {out}: contains the {opt} path {p}; write to another directory")
        if resolved.is_relative_to(q):
            raise OutputError(f"{flag} {out}: lies inside the {opt} directory {p}; write to another directory")
    found = describe(out)
    if found in ("missing", "empty"):
        return out
    if found == "file":
        raise OutputError(f"{flag} {out}: exists and is not a directory")
    if found == "foreign":
        raise OutputError(f"{flag} {out}: is not empty and is not an admc {LABELS[kind]}; refusing to replace "
                          "it (choose a new or empty directory)")
    if found != kind:
        raise OutputError(f"{flag} {out}: holds an admc {LABELS[found]}, not a {LABELS[kind]}; refusing to "
                          "replace it")
    if not overwrite and kind != "bench":
        raise OutputError(f"{flag} {out}: already holds an admc {LABELS[kind]}; pass --overwrite to replace it")
    return out


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def make_staging_dir(final: Path) -> Path:
    """A temporary sibling ``.NAME.tmp-XXXX`` of ``final`` to write into before :func:`install`, with
    the permissions a normal ``mkdir`` would give (``mkdtemp`` makes it private)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o777 & ~current_umask())
    return tmp


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux ``renameat2(RENAME_EXCHANGE)``); False when the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def install(tmp: Path, final: Path, kind: str) -> Path:
    """Move the finished staging directory ``tmp`` to ``final``, replacing what is there only when it
    is empty or an admc ``kind`` (checked again now: something may have appeared meanwhile).

    The two are swapped atomically where the system allows (Linux), so at every instant ``final``
    holds the old or the new complete content; the old one is then deleted.  Elsewhere the old
    directory is renamed to ``.NAME.old-XXXX`` first: killed between the two renames, the old
    content is there."""
    found = describe(final)
    if found not in ("missing", "empty", kind):
        check_out(final, kind, overwrite=True)  # raises with the reason
    if found == "missing":
        tmp.rename(final)
        return final
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old content
        return final
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    final.rename(old)
    try:
        tmp.rename(final)
    except BaseException:
        old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final
