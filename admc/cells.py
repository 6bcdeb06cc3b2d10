"""One finished piece of ``admc bench`` work (a method on one fold and seed) as one JSON file.

A cell file is written whole or not at all: into a hidden temporary sibling (``.NAME.tmp-XXXX``,
what :mod:`admc.outdir` calls a leftover), flushed to disk, then renamed over ``NAME`` with
``os.replace``.  It carries the key it was computed for and the SHA-256 of its content, so a reader
can tell a finished cell of this very bench from a truncated, edited or foreign one::

    {"format": "admc-bench-cell/1", "key": {...}, "result": {...}, "sha256": "<hex>"}

:func:`read_cell` gives the result only when the format, the hash and the key all match; anything
else (missing, unreadable, half-written, computed for other settings) is ``None``: compute it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from admc.formats import CELL_FORMAT
from admc.outdir import atomic_write_text

MAX_CELL_BYTES = 64 * 2**20


def _digest(key: dict, result: dict) -> str:
    body = json.dumps({"key": key, "result": result}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def write_cell(path: Path, key: dict, result: dict) -> dict:
    """Write a cell atomically (:func:`atomic_write_text`); returns ``result`` as :func:`read_cell`
    will give it back (plain JSON values), so a fresh and a reused cell are equal."""
    key, result = _plain(key), _plain(result)
    doc = {"format": CELL_FORMAT, "key": key, "result": result, "sha256": _digest(key, result)}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return result


def read_cell(path: Path, key: dict) -> dict | None:
    """The result stored at ``path`` if it is a complete cell computed for ``key``, else ``None``."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > MAX_CELL_BYTES:
            return None
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    if not isinstance(doc, dict) or doc.get("format") != CELL_FORMAT:
        return None
    result = doc.get("result")
    key = _plain(key)
    if not isinstance(result, dict) or doc.get("key") != key:
        return None
    # the key is the expected one; the hash says nothing in the file was cut or changed after writing
    return result if doc.get("sha256") == _digest(key, result) else None


def _plain(key: dict) -> dict:
    """``key`` as it reads back from JSON (tuples become lists), so the two compare equal."""
    return json.loads(json.dumps(key))
