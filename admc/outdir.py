"""Outputs: what an output option may replace, and replacing it without losing anything.

The one rule for every file and directory the project writes (``admc train``, ``calibrate``,
``import``, ``extract``, ``bench``, ``eval --json``, ``manifest --out``, ``python -m app --out``):
an output is never an input, never contains one and never lies inside one (not even with
``--overwrite``); a path that exists and was not written by that command is refused unless
``--overwrite`` (directories holding anything that is not ours are refused even then); and every
write is atomic.  :func:`check_out` checks a directory output, :func:`check_out_file` a file
output, both before any work; :func:`atomic_write_bytes` and :class:`AtomicTextFile` write files.

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
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from admc.formats import BENCH_FORMAT, DATASET_FORMAT, EVAL_FORMAT, RUN_FORMAT

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


def _read_json(path: Path):
    """The JSON value in ``path`` (at most 64 MiB), or None when it is not one."""
    try:
        if path.stat().st_size > 64 * 2**20:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _json_format(path: Path) -> str | None:
    obj = _read_json(path)
    return obj.get("format") if isinstance(obj, dict) else None


def _is_bench_results(path: Path) -> bool:
    """``results.json`` as admc bench writes it (with its format; older ones: the keys it always has)."""
    obj = _read_json(path)
    return isinstance(obj, dict) and (obj.get("format") == BENCH_FORMAT
                                      or ("format" not in obj and {"cells", "seconds", "methods"} <= obj.keys()))


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
        if not names & {"runs", "cells"} and not _is_bench_results(path / "results.json"):
            return "foreign"    # a results.md or results.json that admc bench did not write
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


def _refuse_inputs(out: Path, inputs, flag: str, what: str) -> None:
    """``out`` may not be, contain or lie inside any input path (symbolic links resolved)."""
    resolved = out.resolve()
    pairs = inputs.items() if isinstance(inputs, dict) else (inputs or ())
    for opt, p in pairs:
        if p is None:
            continue
        q = Path(p).resolve()
        if resolved == q:
            raise OutputError(f"{flag} {out}: is the {opt} path; write to another {what}")
        if q.is_relative_to(resolved):
            raise OutputError(f"{flag} {out}: contains the {opt} path {p}; write to another {what}")
        if resolved.is_relative_to(q):
            raise OutputError(f"{flag} {out}: lies inside the {opt} directory {p}; write to another {what}")


def check_out(out: str | os.PathLike, kind: str, *, overwrite: bool, inputs: dict | None = None,
              flag: str = "--out") -> Path:
    """Refuse an output directory that writing a ``kind`` ("run", "dataset", "bench") there would lose.

    ``inputs`` maps an option name to a path the command reads (``{"--data": DIR}``; or a list of
    (option, path) pairs, one option for several paths): ``out`` may not be it, contain it or lie
    inside it.  Raises :class:`OutputError`; returns ``Path(out)``.
    """
    out = Path(out)
    _refuse_inputs(out, inputs, flag, "directory")
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


def check_extract_out(out: str | os.PathLike, manifest: str | os.PathLike, overwrite: bool) -> Path:
    """``admc extract --out``: ``out`` may be new, empty, an interrupted extraction (only ``.cache``) or a dataset this
    manifest was extracted into before (both resumed from the cache); another dataset only with
    ``overwrite``; anything else never (:func:`admc.outdir.check_out`)."""
    out, manifest = Path(out), Path(manifest)
    ours = False
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        ours = bool(names) and names <= {".cache"}
        if not ours and "meta.json" in names:
            try:
                meta = json.loads((out / "meta.json").read_bytes())
                ours = (isinstance(meta, dict) and isinstance(meta.get("source"), dict)
                        and meta["source"].get("kind") == "extract"
                        and meta["source"].get("manifest") == str(manifest.resolve()))
            except (OSError, ValueError, RecursionError):
                ours = False
    return check_out(out, "dataset", overwrite=overwrite or ours, inputs={"--manifest": manifest})


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


# --------------------------------------------------------------------------------------- files
def _first_json_line(path: Path):
    try:
        with open(path, "rb") as f:
            line = f.readline(1 << 20)
        return json.loads(line)
    except (OSError, ValueError, RecursionError):
        return None


def _is_eval_results(path: Path) -> bool:
    return _json_format(path) == EVAL_FORMAT


# app.RESULT_KEYS, the keys of one analysis window (the core knows the contract's names, not the app)
WINDOW_KEYS = frozenset({"t", "streams", "reasons", "imputed", "probs", "label", "transcript", "latency_ms"})


def _is_window_jsonl(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True        # an empty results file (a replay or capture that produced no window)
    obj = _first_json_line(path)
    return isinstance(obj, dict) and WINDOW_KEYS <= obj.keys()


def _is_stage_trace(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True
    obj = _first_json_line(path)
    return isinstance(obj, dict) and {"ev", "wall", "session"} <= obj.keys()


def _is_skew_report(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == "admc-skew/1"
    except (OSError, ValueError, AttributeError):
        return False


def _json_or_markdown(heading: str, keys: set[str]):
    """A recognizer of a script's pair of results: its markdown starts with ``heading``, its JSON is an
    object holding ``keys``."""

    def ours(path: Path) -> bool:
        try:
            text = path.read_text()
            if path.suffix == ".md":
                return text.startswith(heading)
            d = json.loads(text)
            return isinstance(d, dict) and keys <= set(d)
        except (OSError, ValueError, TypeError):
            return False

    return ours


_is_completion_study = _json_or_markdown("# Paired completion study", {"own_models"})  # completion_paired.py
_is_browser_path = _json_or_markdown("# Browser path:", {"checkpoint", "media", "runs"})    # browser_path.py
_is_live_eval = _json_or_markdown("# Live evaluation", {"checkpoint", "name", "scores"})   # live_eval.py (replay, browser)
_is_face_path_profile = _json_or_markdown("# Face path profile:", {"per_frame_ms", "tracker"})  # face_path_profile.py
_is_camera_transport = _json_or_markdown("# Camera transport:", {"checkpoint", "media", "runs"})  # camera_transport.py
_is_person_change = _json_or_markdown("# Person changes:", {"people", "kinds"})                  # person_change.py


# kind -> (what it is, how to recognize one this command wrote; None: it cannot be told apart)
FILE_KINDS = {
    "eval": ("admc eval results file", _is_eval_results),
    "jsonl": ("results file of python -m app (JSON lines)", _is_window_jsonl),
    "trace": ("stage trace of python -m app", _is_stage_trace),
    "skew": ("skew report of python -m app.skew", _is_skew_report),
    "completion-study": ("paired completion study (benchmarks/completion_paired.py)", _is_completion_study),
    "browser-path": ("browser-path benchmark result (benchmarks/browser_path.py)", _is_browser_path),
    "live-eval": ("live evaluation result (benchmarks/live_eval.py)", _is_live_eval),
    "face-path-profile": ("face path profile (benchmarks/face_path_profile.py)", _is_face_path_profile),
    "camera-transport": ("camera transport benchmark result (benchmarks/camera_transport.py)", _is_camera_transport),
    "person-change": ("person-change benchmark result (benchmarks/person_change.py)", _is_person_change),
    "manifest": ("manifest", None),
}


def check_out_file(out: str | os.PathLike, kind: str, *, overwrite: bool, inputs=None, flag: str = "--out") -> Path:
    """Refuse a file output that writing a ``kind`` (:data:`FILE_KINDS`) there would lose.

    Always refused: ``out`` a directory, an input (``inputs`` as for :func:`check_out`) or inside
    one, or inside an admc run, dataset or bench directory (its ``run.json``, ``meta.json`` ...).
    An existing file is replaced when this command wrote it (recognized by its content), otherwise
    only with ``overwrite``.  Raises :class:`OutputError`; returns ``Path(out)``."""
    what, ours = FILE_KINDS[kind]
    out = Path(out)
    if out.is_dir():
        example = {"eval": "results.json", "jsonl": "results.jsonl", "trace": "trace.jsonl"}.get(kind, "manifest.csv")
        raise OutputError(f"{flag} {out}: is a directory; give a file name, e.g. {out / example}")
    _refuse_inputs(out, inputs, flag, "file")
    parent = out.resolve().parent
    for d in (parent, *parent.parents):
        if d.exists() and not d.is_dir():
            raise OutputError(f"{flag} {out}: {d} is not a directory")
    for d in (parent, *parent.parents):
        found = describe(d) if d.is_dir() and d != Path(d.anchor) else "foreign"
        if found in LABELS:
            raise OutputError(f"{flag} {out}: lies inside the admc {LABELS[found]} {d}; write it elsewhere")
    if out.exists() or out.is_symlink():
        if not out.is_file():
            raise OutputError(f"{flag} {out}: exists and is not a regular file")
        if not (ours is not None and ours(out)) and not overwrite:
            raise OutputError(f"{flag} {out}: exists and is not an {what} written by this command; "
                              "pass --overwrite to replace it")
    return out


def add_result_pair_arguments(ap, folder: str | os.PathLike, name: str):
    """A benchmark's ``--out`` (the results' folder), ``--name`` (their file stem) and ``--overwrite``."""
    ap.add_argument("--out", type=Path, default=Path(folder), help="the folder of the results")
    ap.add_argument("--name", default=name, help="the results' file stem")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT/NAME.json / .md this script did not write")
    return ap


def check_result_pair(ap, out: str | os.PathLike, name: str, kind: str, *, overwrite: bool) -> list[Path]:
    """A benchmark's ``out/name.json`` and ``out/name.md``, checked by :func:`check_out_file` before it
    measures: ``ap.exit(2)`` with the one-line error where either would replace a file this kind of
    script did not write.  Returns the two paths."""
    try:
        return [check_out_file(Path(out) / f"{name}{suffix}", kind, overwrite=overwrite) for suffix in (".json", ".md")]
    except OutputError as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``path`` holds the old content or ``data``, never a part of it: a temporary sibling is
    written, flushed to disk and renamed over it (``os.replace``)."""
    try:
        with AtomicFile(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot write it ({e.strerror or e}); the old content is kept") from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class AtomicFile:
    """A file written into a hidden sibling ``.NAME.tmp-XXXX`` and renamed over ``path`` when the
    ``with`` block ends: normally, or interrupted (Ctrl-C, an error) after ``install_partial`` lines
    were written, so what was finished is kept; a process killed meanwhile leaves ``path`` as it was
    (and the temporary file beside it).  A failed write (disk full) removes the temporary file and
    leaves ``path`` untouched."""

    def __init__(self, path: str | os.PathLike, mode: str = "w", *, install_partial: bool = False):
        self.path, self.mode, self.install_partial = Path(path), mode, install_partial
        self.discard = False        # set True inside the block: nothing is installed
        self._f = None
        self._tmp: str | None = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent)
        self._f = os.fdopen(fd, self.mode, **({} if "b" in self.mode else {"encoding": "utf-8", "newline": ""}))
        return self._f

    def __exit__(self, exc_type, exc, tb):
        keep = not self.discard and (exc_type is None or (self.install_partial and not isinstance(exc, OSError)))
        try:
            if keep:
                self._f.flush()
                os.fsync(self._f.fileno())
            self._f.close()
            if keep:
                os.chmod(self._tmp, 0o666 & ~current_umask())
                os.replace(self._tmp, self.path)
                return False
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise
        Path(self._tmp).unlink(missing_ok=True)
        return False
