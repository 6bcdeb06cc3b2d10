"""Feature datasets in the "admc-features/1" interchange format (see docs/feature-dataset.md).

A dataset directory holds ``meta.json`` and one ``.npz`` per split.  Everything is plain NumPy,
read by :class:`NpzReader`: only the keys the format names, never unpickled, sizes checked before
anything is allocated.  Every problem found while reading is raised as
:class:`DatasetError` with the file and key it concerns.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from admc.formats import DATASET_FORMAT

FORMAT = DATASET_FORMAT
KINDS = ("sequence", "vector")
ENCODERS = {"sequence": ("lstm", "textcnn"), "vector": ("mlp",)}
DEFAULT_ENCODER = {"sequence": "lstm", "vector": "mlp"}
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A feature dataset that does not follow the format; the message names file and key."""


@dataclass(frozen=True)
class Modality:
    name: str
    dim: int
    kind: str
    encoder: str

    def to_json(self) -> dict:
        return {"dim": self.dim, "kind": self.kind, "encoder": self.encoder}


@dataclass(frozen=True)
class Schema:
    """What a model consumes: ordered modalities and class names."""

    modalities: tuple[Modality, ...]
    classes: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def to_json(self) -> dict:
        return {
            "classes": list(self.classes),
            "modalities": {m.name: m.to_json() for m in self.modalities},
        }

    @classmethod
    def from_json(cls, obj: dict, where: str = "schema") -> "Schema":
        return parse_schema(obj, where)

    def differences(self, other: "Schema") -> list[str]:
        """Human-readable list of what differs between two schemas (empty when they match)."""
        out = []
        if list(self.classes) != list(other.classes):
            out.append(f"classes {list(self.classes)} != {list(other.classes)}")
        if self.names != other.names:
            out.append(f"modalities {self.names} != {other.names}")
        for a, b in zip(self.modalities, other.modalities):
            if a.name == b.name and (a.dim, a.kind) != (b.dim, b.kind):
                out.append(f"modality {a.name}: dim/kind {a.dim}/{a.kind} != {b.dim}/{b.kind}")
        return out


def parse_schema(meta: dict, where: str) -> Schema:
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DatasetError(f"{where}: key 'classes' must be a non-empty list of strings")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"{where}: key 'classes' has duplicate names")
    mods = meta.get("modalities")
    if not isinstance(mods, dict) or len(mods) < 2:
        raise DatasetError(f"{where}: key 'modalities' must be an object with two or more modalities")
    out = []
    for name, spec in mods.items():
        key = f"modalities.{name}"
        if not name or "+" in name or name == "full":
            raise DatasetError(f"{where}: modality name {name!r} is empty, 'full' or contains '+'")
        if not isinstance(spec, dict):
            raise DatasetError(f"{where}: key '{key}' must be an object")
        dim, kind = spec.get("dim"), spec.get("kind")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise DatasetError(f"{where}: key '{key}.dim' must be a positive integer, got {dim!r}")
        if kind not in KINDS:
            raise DatasetError(f"{where}: key '{key}.kind' must be one of {KINDS}, got {kind!r}")
        enc = spec.get("encoder", DEFAULT_ENCODER[kind])
        if enc not in ENCODERS[kind]:
            raise DatasetError(
                f"{where}: key '{key}.encoder' must be one of {ENCODERS[kind]} for kind {kind!r}, got {enc!r}"
            )
        out.append(Modality(name, dim, kind, enc))
    return Schema(tuple(out), tuple(classes))


@dataclass
class Split:
    """One split: labels, ids, and per modality stacked rows + offsets + presence."""

    name: str
    labels: np.ndarray
    ids: np.ndarray
    rows: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    present: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.labels)

    def presence_matrix(self, names: list[str]) -> np.ndarray:
        """bool [n, M]: which modalities each sample has in the data itself."""
        return np.stack([self.present[m] for m in names], axis=1)

    def subset(self, idx: np.ndarray) -> "Split":
        idx = np.asarray(idx, dtype=np.int64)
        rows, offsets = {}, {}
        for m, r in self.rows.items():
            off = self.offsets[m]
            parts = [r[off[i] : off[i + 1]] for i in idx]
            lens = np.array([len(p) for p in parts], dtype=np.int64)
            rows[m] = np.concatenate(parts) if parts else r[:0]
            offsets[m] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return Split(
            self.name,
            self.labels[idx],
            self.ids[idx],
            rows,
            offsets,
            {m: p[idx] for m, p in self.present.items()},
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"labels": self.labels, "ids": self.ids}
        for m in self.rows:
            out[m] = self.rows[m]
            out[f"{m}_offsets"] = self.offsets[m]
            if not self.present[m].all():
                out[f"{m}_present"] = self.present[m]
        return out


@dataclass
class FeatureDataset:
    path: Path | None
    name: str
    schema: Schema
    splits: dict[str, Split] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return self.schema.names

    @property
    def classes(self) -> list[str]:
        return list(self.schema.classes)

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise DatasetError(f"{self.path}: split {split!r} was not loaded (have {sorted(self.splits)})")
        return self.splits[split]


def restrict_modalities(ds: FeatureDataset, names: list[str]) -> FeatureDataset:
    """``ds`` with only the modalities ``names`` (in the schema's order); the arrays are shared."""
    keep = tuple(m for m in ds.schema.modalities if m.name in names)
    splits = {s: Split(sp.name, sp.labels, sp.ids, {m.name: sp.rows[m.name] for m in keep},
                       {m.name: sp.offsets[m.name] for m in keep}, {m.name: sp.present[m.name] for m in keep})
              for s, sp in ds.splits.items()}
    return FeatureDataset(ds.path, ds.name, Schema(keep, ds.schema.classes), splits, ds.meta)


def without_absent_modalities(ds: FeatureDataset) -> tuple[FeatureDataset, list[str]]:
    """``ds`` without the modalities no sample of any loaded split has (an audio-only extraction's
    V, say), and their names.  Raises :class:`DatasetError` when fewer than two modalities remain."""
    absent = [m for m in ds.names if not any(bool(sp.present[m].any()) for sp in ds.splits.values())]
    if not absent:
        return ds, []
    left = [m for m in ds.names if m not in absent]
    if len(left) < 2:
        raise DatasetError(f"{ds.path}: modalit{'ies' if len(absent) > 1 else 'y'} {', '.join(absent)} "
                           f"{'are' if len(absent) > 1 else 'is'} present in no sample, which leaves "
                           f"{', '.join(left) or 'nothing'}: admc fuses two or more modalities")
    return restrict_modalities(ds, left), absent


def _fail(path: Path, key: str, msg: str):
    raise DatasetError(f"{path}: key '{key}': {msg}")


def validate_split(path: Path, arrays, schema: Schema, split_name: str) -> Split:
    """Check one split's arrays against the schema; return a :class:`Split`."""
    keys = set(arrays.keys()) if hasattr(arrays, "keys") else set(arrays.files)
    for req in ("labels", "ids"):
        if req not in keys:
            _fail(path, req, "missing")
    labels = np.asarray(arrays["labels"])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        _fail(path, "labels", f"must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    n = len(labels)
    if n == 0:
        _fail(path, "labels", "split is empty")
    if labels.min() < 0 or labels.max() >= len(schema.classes):
        _fail(path, "labels", f"values must be in [0, {len(schema.classes) - 1}], got {labels.min()}..{labels.max()}")
    ids = np.asarray(arrays["ids"])
    if ids.dtype.kind != "U" or ids.shape != (n,):
        _fail(path, "ids", f"must be a unicode string array of shape ({n},), got {ids.dtype} {ids.shape}")
    if len(np.unique(ids)) != n:
        _fail(path, "ids", "sample ids are not unique")
    rows, offsets, present = {}, {}, {}
    for mod in schema.modalities:
        m = mod.name
        if m not in keys:
            _fail(path, m, "missing")
        if f"{m}_offsets" not in keys:
            _fail(path, f"{m}_offsets", "missing")
        r = np.asarray(arrays[m])
        if r.ndim != 2 or not np.issubdtype(r.dtype, np.floating):
            _fail(path, m, f"must be a 2-D float array, got {r.dtype} {r.shape}")
        if r.shape[1] != mod.dim:
            _fail(path, m, f"dim {r.shape[1]} differs from meta.json dim {mod.dim}")
        off = np.asarray(arrays[f"{m}_offsets"])
        if off.shape != (n + 1,) or not np.issubdtype(off.dtype, np.integer):
            _fail(path, f"{m}_offsets", f"must be an integer array of shape ({n + 1},), got {off.dtype} {off.shape}")
        off = off.astype(np.int64)
        if off[0] != 0:
            _fail(path, f"{m}_offsets", "must start at 0")
        if off[-1] != len(r):
            _fail(path, f"{m}_offsets", f"last offset {off[-1]} out of range: {m} has {len(r)} rows")
        lens = np.diff(off)
        if (lens < 1).any():
            bad = int(np.argmax(lens < 1))
            _fail(path, f"{m}_offsets", f"sample {bad} ({ids[bad]}) has no rows (offsets must increase)")
        if mod.kind == "vector" and (lens != 1).any():
            bad = int(np.argmax(lens != 1))
            _fail(path, f"{m}_offsets", f"vector modality: sample {bad} ({ids[bad]}) has {lens[bad]} rows, expected 1")
        pres = np.ones(n, dtype=bool)
        if f"{m}_present" in keys:
            pres = np.asarray(arrays[f"{m}_present"])
            if pres.shape != (n,) or pres.dtype != np.bool_:
                _fail(path, f"{m}_present", f"must be a bool array of shape ({n},), got {pres.dtype} {pres.shape}")
        r = r.astype(np.float32, copy=False)
        row_present = np.repeat(pres, lens)
        finite = np.isfinite(r).all(axis=1)
        if not finite[row_present].all():
            bad_row = int(np.flatnonzero(row_present & ~finite)[0])
            bad = int(np.searchsorted(off, bad_row, side="right") - 1)
            _fail(path, m, f"NaN or inf values (sample {bad}, id {ids[bad]}, row {bad_row})")
        rows[m], offsets[m], present[m] = r, off, pres.copy()
    if not np.stack(list(present.values()), 1).any(axis=1).all():
        _fail(path, "*_present", "a sample has no modality present")
    return Split(split_name, labels.astype(np.int64), ids, rows, offsets, present)


def split_keys(schema: Schema) -> list[str]:
    """The keys of a split file the format names; nothing else in the file is read."""
    keys = ["labels", "ids"]
    for m in schema.names:
        keys += [m, f"{m}_offsets", f"{m}_present"]
    return keys


def load_dataset(path: str | os.PathLike, splits=SPLITS) -> FeatureDataset:
    """Read and validate a dataset directory. Raises :class:`DatasetError` on any problem."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing (a dataset directory needs meta.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{meta_path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DatasetError(f"{meta_path}: nested too deeply to be a dataset's meta.json") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{meta_path}: must hold a JSON object")
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_path}: key 'format' must be {FORMAT!r}, got {meta.get('format')!r}")
    schema = parse_schema(meta, str(meta_path))
    ds = FeatureDataset(path, str(meta.get("name", path.name)), schema, meta=meta)
    for s in splits:
        f = path / f"{s}.npz"
        if not f.is_file():
            raise DatasetError(f"{f}: missing split file")
        with NpzReader(f) as z:
            arrays = {k: z.read(k) for k in split_keys(schema) if k in z}
        ds.splits[s] = validate_split(f, arrays, schema, s)
    _check_ids_across_splits(ds)
    return ds


def _check_ids_across_splits(ds: "FeatureDataset") -> None:
    """A sample id in two splits is one sample trained on and measured on: refused, naming both.  The
    splits not loaded are read for their ids alone (a split file that cannot be read is left to the
    command that loads it)."""
    ids = {s: sp.ids.tolist() for s, sp in ds.splits.items()}
    for s in SPLITS:
        f = ds.path / f"{s}.npz" if ds.path is not None else None
        if s not in ids and f is not None and f.is_file():
            try:
                with NpzReader(f) as z:
                    ids[s] = np.asarray(z.read("ids")).tolist() if "ids" in z else []
            except DatasetError:
                pass
    seen: dict[str, str] = {}
    for s in SPLITS:
        for i in ids.get(s, ()):
            if i in seen:
                raise DatasetError(f"{ds.path}: sample id {i!r} is in both the {seen[i]} and the {s} split "
                                   "(a sample in two splits is trained on and measured on)")
        seen.update((i, s) for i in ids.get(s, ()))


# --- reading .npz/.npy files without trusting them ------------------------------------------------

MAX_READ_BYTES = 32 * 2**30  # the most one .npz file may expand to in memory (the keys read, together)
MIN_READ_BUDGET = 64 * 2**20  # any file may expand to this much ...
MAX_EXPANSION = 200  # ... or to this many times its size (float features stored by np.savez: ~1x)
DEFLATE_MAX_RATIO = 1032  # the most a deflate stream can expand; a member declaring more lies


def _size(n: int) -> str:
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


def read_npy_header(f, where: str, allow_object: bool = False) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse an .npy header from the binary file object ``f``: ``(shape, fortran_order, dtype,
    data_bytes)``, refusing object (pickled) dtypes unless ``allow_object``, without reading or
    allocating the data (``data_bytes`` is 0 for object arrays: their size is the pickle's)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:  # 3.0: a utf-8 header, read by numpy's private helper
            from numpy.lib import _format_impl

            shape, fortran, dtype = _format_impl._read_array_header(f, version)
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(f"{where}: not an .npy array ({e})") from None
    if dtype.hasobject and not allow_object:
        raise DatasetError(f"{where}: contains pickled data (an object array); refused: store plain numbers "
                           "or strings")
    if any(d < 0 for d in shape):
        raise DatasetError(f"{where}: header declares a negative dimension {shape}")
    return tuple(shape), bool(fortran), dtype, 0 if dtype.hasobject else math.prod(shape) * dtype.itemsize


def _read_into(f, arr: np.ndarray, where: str) -> None:
    buf = memoryview(arr.reshape(-1).view(np.uint8))
    pos = 0
    while pos < len(buf):
        chunk = f.read(min(16 * 2**20, len(buf) - pos))
        if not chunk:
            raise DatasetError(f"{where}: data ends after {pos} of {len(buf)} bytes")
        buf[pos:pos + len(chunk)] = chunk
        pos += len(chunk)


class NpzReader:
    """Reads named arrays of an ``.npz`` file (``np.savez``) without unpickling and without trusting
    its sizes: every size a member declares is checked against the file's size, against what the
    compression can produce, and against a read budget before anything is allocated; keys that are
    not asked for are never read.  Every problem is a :class:`DatasetError` naming file and key."""

    def __init__(self, path: str | os.PathLike, max_bytes: int = MAX_READ_BYTES):
        self.path = Path(path)
        size = self.path.stat().st_size
        self.budget = min(max_bytes, max(MIN_READ_BUDGET, MAX_EXPANSION * size))
        self.used = 0
        with open(self.path, "rb") as f:
            head = f.read(8)
        if not zipfile.is_zipfile(self.path):
            if head.startswith(b"\x93NUMPY"):
                raise DatasetError(f"{self.path}: is a single .npy array, not an .npz archive (write it with np.savez)")
            raise DatasetError(f"{self.path}: not an .npz file (not a zip archive; it starts with {head!r})")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{self.path}: not a readable .npz file (corrupt zip archive: {e})") from None
        self.members = {}
        for i in self.zip.infolist():
            if i.filename.endswith(".npy"):
                key = i.filename[:-4]
                if key in self.members:     # zipfile would read the last one; np.load another: refuse
                    self.zip.close()
                    raise DatasetError(f"{self.path}: key '{key}': the archive holds two members named {i.filename}")
                self.members[key] = i

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def __contains__(self, key: str) -> bool:
        return key in self.members

    def keys(self) -> list[str]:
        return list(self.members)

    def read(self, key: str) -> np.ndarray:
        info = self.members.get(key)
        where = f"{self.path}: key '{key}'"
        if info is None:
            raise DatasetError(f"{where}: missing")
        if info.flag_bits & 0x1:
            raise DatasetError(f"{where}: encrypted member; refused")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DatasetError(f"{where}: zip compression method {info.compress_type} is not supported "
                               "(np.savez and np.savez_compressed write stored or deflated members)")
        declared, packed = info.file_size, info.compress_size
        if packed > self.path.stat().st_size or (info.compress_type == zipfile.ZIP_STORED and declared != packed):
            raise DatasetError(f"{where}: zip header declares {_size(declared)} from {_size(packed)} stored, "
                               f"which a {_size(self.path.stat().st_size)} file cannot hold")
        if declared > DEFLATE_MAX_RATIO * packed + 1024:
            raise DatasetError(f"{where}: zip header declares {_size(declared)} uncompressed from {_size(packed)} "
                               "compressed, more than deflate can produce; refused")
        if self.used + declared > self.budget:
            raise DatasetError(f"{where}: declares {_size(declared)}, over the read limit of {_size(self.budget)} "
                               f"for this {_size(self.path.stat().st_size)} file; refused")
        try:
            with self.zip.open(info) as f:
                shape, fortran, dtype, nbytes = read_npy_header(f, where)
                header = f.tell()
                if header + nbytes != declared:
                    raise DatasetError(f"{where}: .npy header declares shape {shape} {dtype} = {_size(nbytes)}, "
                                       f"but the member holds {_size(max(declared - header, 0))} of data; refused")
                arr = np.empty(shape[::-1] if fortran else shape, dtype)
                if nbytes:
                    _read_into(f, arr, where)
                    if f.read(1):
                        raise DatasetError(f"{where}: data continues after the declared size")
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
            raise DatasetError(f"{where}: corrupt member data ({type(e).__name__}: {e})") from None
        self.used += declared
        return arr.T if fortran else arr


def write_dataset(path: str | os.PathLike, name: str, schema: Schema, splits: dict[str, Split | dict],
                  extra_meta: dict | None = None) -> Path:
    """Write a dataset atomically: into a temporary sibling directory, validated, then renamed.

    ``splits`` maps split name to a :class:`Split` or a dict of arrays in the file layout.
    An existing dataset at ``path`` is replaced only once the new one is complete; anything else
    there (a file, a directory that is not a dataset) is refused with
    :class:`~admc.outdir.OutputError` (see :func:`admc.outdir.check_out` to refuse before the work).
    """
    from admc.outdir import install, make_staging_dir

    path = Path(path)
    tmp = make_staging_dir(path)
    try:
        meta = {"format": FORMAT, "name": name, **schema.to_json(), **(extra_meta or {})}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        for s, data in splits.items():
            arrays = data.to_arrays() if isinstance(data, Split) else data
            validate_split(tmp / f"{s}.npz", arrays, schema, s)
            np.savez(tmp / f"{s}.npz", **arrays)
        install(tmp, path, "dataset")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def split_from_samples(name: str, labels, ids, samples: dict[str, list[np.ndarray]],
                       present: dict[str, np.ndarray] | None = None) -> Split:
    """Build a :class:`Split` from per-sample arrays (``samples[m][i]`` is ``[rows_i, dim]``)."""
    rows, offsets = {}, {}
    for m, lst in samples.items():
        arrs = [np.atleast_2d(np.asarray(a, dtype=np.float32)) for a in lst]
        lens = np.array([len(a) for a in arrs], dtype=np.int64)
        rows[m] = np.concatenate(arrs).astype(np.float32)
        offsets[m] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    n = len(labels)
    pres = {m: (np.ones(n, bool) if present is None or m not in present else np.asarray(present[m], bool))
            for m in samples}
    return Split(name, np.asarray(labels, np.int64), np.asarray(ids, dtype=str), rows, offsets, pres)


# --- conditions -----------------------------------------------------------------------------------

def condition_name(names: list[str], mask) -> str:
    """``A+V`` for the available modalities in meta order; ``full`` when all are available."""
    mask = [bool(x) for x in mask]
    if all(mask):
        return "full"
    return "+".join(n for n, a in zip(names, mask) if a)


def condition_mask(names: list[str], cond: str) -> tuple[bool, ...]:
    if cond == "full":
        return tuple(True for _ in names)
    parts = cond.split("+")
    unknown = [p for p in parts if p not in names]
    if unknown or not parts:
        raise ValueError(f"condition {cond!r}: unknown modalities {unknown} (have {names})")
    return tuple(n in parts for n in names)


def missing_conditions(names: list[str]) -> list[tuple[str, tuple[bool, ...]]]:
    """All non-empty proper subsets of the modalities, smallest first, in meta order."""
    M = len(names)
    out = []
    for k in range(1, M):
        for combo in combinations(range(M), k):
            mask = tuple(i in combo for i in range(M))
            out.append((condition_name(names, mask), mask))
    return out
