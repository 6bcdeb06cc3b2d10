"""Feature datasets in the "admc-features/1" interchange format (see docs/feature-dataset.md).

A dataset directory holds ``meta.json`` and one ``.npz`` per split.  Everything is plain NumPy,
read with ``allow_pickle=False``.  Every problem found while reading is raised as
:class:`DatasetError` with the file and key it concerns.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

FORMAT = "admc-features/1"
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


def load_dataset(path: str | os.PathLike, splits=SPLITS) -> FeatureDataset:
    """Read and validate a dataset directory. Raises :class:`DatasetError` on any problem."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing (a dataset directory needs meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{meta_path}: not valid JSON ({e})") from None
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
        try:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as e:  # object arrays need pickle: refused
            raise DatasetError(f"{f}: cannot be read without unpickling ({e})") from None
        except Exception as e:  # noqa: BLE001 - zip/npy corruption has many exception types
            raise DatasetError(f"{f}: not a readable .npz file ({type(e).__name__}: {e})") from None
        ds.splits[s] = validate_split(f, arrays, schema, s)
    return ds


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
