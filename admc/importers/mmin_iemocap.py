"""Import the MMIN release of IEMOCAP features (AIM3-RUC/MMIN, "IEMOCAP_features_2021").

Source layout (``root`` is MMIN's ``feature_root``; its ``target_root`` is ``root/target``)::

    root/A/comparE.h5            utterance id -> dataset [frames, 130]  (OpenSMILE ComParE LLDs)
    root/A/comparE_mean_std.h5   group str(fold) -> datasets 'mean' [130], 'std' [130]
    root/V/denseface.h5          utterance id -> dataset [frames, 342]
    root/L/bert_large.h5         utterance id -> dataset [words, 1024]
    root/target/{fold}/{trn,val,tst}_label.npy      int one-hot [n, 4]
    root/target/{fold}/{trn,val,tst}_int2name.npy   bytes [n, 1]  (e.g. b"Ses01F_impro01_F000")

What MMIN's ``data/multimodal_dataset.py`` does, and this importer reproduces:

- folds are ``cvNo`` 1..10 (``scripts/CAP_*.sh``: ``seq 1 1 10``);
- labels: ``np.argmax(np.load(label), axis=1)`` (IEMOCAP labels are one-hot);
- ids: ``int2name[i][0].decode()``; features ``h5[id][()]`` (flat, one dataset per utterance);
- audio is z-scored with the fold's training statistics (``--norm_method=trn`` in every IEMOCAP
  script): ``(A.float() - mean.float()) / std.float()`` in float32, with ``mean``/``std`` from
  ``comparE_mean_std.h5[str(fold)]``.  V and L are used as stored.

Class order is the column order of the one-hot labels: ang, hap (happy + excited), neu, sad.
(Checked against the class counts of the release: 1103 / 1636 / 1708 / 1084 over 5531
utterances, which are IEMOCAP's ang / hap+exc / neu / sad counts.)

The text modality (MMIN's "L") is named "T" here, as in the ADMC paper.  Splits trn/val/tst
become train/val/test.  A sample whose stored sequence has zero rows is kept with one zero row and
marked absent (``<m>_present``), since the format needs at least one row per sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from admc.data import DatasetError, Modality, Schema, split_from_samples, write_dataset
from admc.outdir import check_out
from admc.importers._safe_pickle import load_npy_restricted

CLASSES = ("ang", "hap", "neu", "sad")
SPLIT_MAP = {"trn": "train", "val": "val", "tst": "test"}
FOLDS = tuple(range(1, 11))
# (our name, MMIN dir, MMIN feature file, dim, encoder)
FEATURES = (
    ("A", "A", "comparE.h5", 130, "lstm"),
    ("V", "V", "denseface.h5", 342, "lstm"),
    ("T", "L", "bert_large.h5", 1024, "textcnn"),
)
MEAN_STD = "comparE_mean_std.h5"


def schema() -> Schema:
    return Schema(tuple(Modality(n, d, "sequence", enc) for n, _, _, d, enc in FEATURES), CLASSES)


def _h5py():
    import h5py

    return h5py


def _load_labels(path: Path, n_classes: int) -> np.ndarray:
    lab = load_npy_restricted(path)
    if lab.ndim == 2:
        if lab.shape[1] != n_classes:
            raise DatasetError(f"{path}: one-hot labels have {lab.shape[1]} columns, expected {n_classes}")
        if not np.isfinite(lab.astype(np.float64)).all():
            raise DatasetError(f"{path}: labels contain NaN or inf")
        hot = lab == lab.max(axis=1, keepdims=True)
        bad = np.flatnonzero((hot.sum(axis=1) != 1) | (lab.max(axis=1) <= 0))
        if len(bad):
            raise DatasetError(f"{path}: row {bad[0]} is not one-hot: {lab[bad[0]].tolist()}")
        return np.argmax(lab, axis=1).astype(np.int64)
    if lab.ndim == 1 and np.issubdtype(lab.dtype, np.integer):
        if len(lab) and (lab.min() < 0 or lab.max() >= n_classes):
            raise DatasetError(f"{path}: label indexes must be in [0, {n_classes - 1}]")
        return lab.astype(np.int64)
    raise DatasetError(f"{path}: expected one-hot labels [n, {n_classes}] or indexes [n], got {lab.dtype} {lab.shape}")


def _decode(x) -> str:
    if isinstance(x, (bytes, np.bytes_)):
        return bytes(x).decode()
    return str(x)


def _load_names(path: Path) -> list[str]:
    names = load_npy_restricted(path)
    if names.ndim == 2 and names.shape[1] >= 1:
        items = [row[0] for row in names]  # MMIN: int2name[i][0].decode()
    elif names.ndim == 1:
        items = list(names)
    else:
        raise DatasetError(f"{path}: expected utterance names [n, 1] or [n], got shape {names.shape}")
    out = []
    for i, x in enumerate(items):
        if isinstance(x, np.ndarray) and x.size == 1:
            x = x.reshape(()).item()
        if not isinstance(x, (str, bytes, np.str_, np.bytes_)):
            raise DatasetError(f"{path}: entry {i} is {type(x).__name__}, expected bytes or str")
        out.append(_decode(x))
    return out


def _read_mean_std(path: Path, fold: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    h5py = _h5py()
    if not path.is_file():
        raise DatasetError(f"{path}: missing (MMIN's per-fold ComParE normalisation statistics)")
    with h5py.File(path, "r") as f:
        key = str(fold)
        if key not in f:
            raise DatasetError(f"{path}: key '{key}': missing (have {sorted(f.keys(), key=str)})")
        out = []
        for stat in ("mean", "std"):
            if stat not in f[key]:
                raise DatasetError(f"{path}: key '{key}/{stat}': missing")
            v = np.asarray(f[key][stat][()], dtype=np.float64).reshape(-1)
            if v.shape != (dim,):
                raise DatasetError(f"{path}: key '{key}/{stat}': shape {v.shape}, expected ({dim},)")
            if not np.isfinite(v).all():
                raise DatasetError(f"{path}: key '{key}/{stat}': NaN or inf values")
            out.append(v.astype(np.float32))  # MMIN: torch.from_numpy(...).float()
    mean, std = out
    if (std == 0).any():
        raise DatasetError(f"{path}: key '{key}/std': zero entries (would divide by zero)")
    return mean, std


def _read_feature(h5, path: Path, uid: str, dim: int, where: str) -> np.ndarray:
    h5py = _h5py()
    if uid not in h5:
        raise DatasetError(f"{path}: key '{uid}': missing (utterance listed in {where})")
    node = h5[uid]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(
            f"{path}: key '{uid}': is a group, expected a dataset (MMIN reads h5[id][()]; this looks "
            f"like the raw/aligned layout with 'feat'/'start'/'end' members, which is not supported)"
        )
    x = np.asarray(node[()])
    if x.ndim != 2 or x.shape[1] != dim:
        raise DatasetError(f"{path}: key '{uid}': shape {x.shape}, expected [rows, {dim}]")
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{path}: key '{uid}': dtype {x.dtype} is not numeric")
    x = x.astype(np.float32)  # MMIN: torch.from_numpy(...).float()
    if not np.isfinite(x).all():
        raise DatasetError(f"{path}: key '{uid}': NaN or inf values")
    return x


def import_mmin_iemocap(root: str | Path, fold: int, out: str | Path, progress: bool = True,
                        overwrite: bool = False) -> Path:
    """Convert one fold of the MMIN IEMOCAP release at ``root`` into a dataset directory ``out``.

    Returns the written directory.  Raises :class:`~admc.data.DatasetError` naming the file and
    key for missing files or ids, wrong dims, NaN values, and malformed targets, and, before
    reading anything, :class:`~admc.outdir.OutputError` when ``out`` holds anything but a dataset
    (a dataset only with ``overwrite``) or is, contains or lies inside ``root``.
    """
    from tqdm import tqdm

    root = Path(root)
    check_out(out, "dataset", overwrite=overwrite, inputs={"--root": root})
    h5py = _h5py()
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)):
        raise DatasetError(f"fold must be an integer in 1..10, got {fold!r}")
    fold = int(fold)
    target = root / "target" / str(fold)
    if not target.is_dir():
        have = sorted((int(p.name) for p in (root / "target").glob("*") if p.name.isdigit()),
                      key=int) if (root / "target").is_dir() else []
        raise DatasetError(
            f"{target}: missing fold directory (the MMIN release has folds 1..10; found {have or 'none'})"
        )
    for _, d, fname, _, _ in FEATURES:
        if not (root / d / fname).is_file():
            raise DatasetError(f"{root / d / fname}: missing feature file")
    mean, std = _read_mean_std(root / "A" / MEAN_STD, fold, FEATURES[0][3])

    targets = {}
    for s in SPLIT_MAP:
        lab_p, names_p = target / f"{s}_label.npy", target / f"{s}_int2name.npy"
        for p in (lab_p, names_p):
            if not p.is_file():
                raise DatasetError(f"{p}: missing target file")
        labels = _load_labels(lab_p, len(CLASSES))
        names = _load_names(names_p)
        if len(labels) != len(names):
            raise DatasetError(f"{names_p}: {len(names)} names but {lab_p.name} has {len(labels)} labels")
        if not names:
            raise DatasetError(f"{names_p}: split is empty")
        targets[s] = (labels, names, names_p)

    total = sum(len(t[1]) for t in targets.values())
    files = {m: h5py.File(root / d / fname, "r") for m, d, fname, _, _ in FEATURES}
    splits, absent_counts = {}, {}
    try:
        with tqdm(total=total, desc=f"MMIN IEMOCAP fold {fold}", unit="utt", disable=not progress) as bar:
            for s, (labels, names, names_p) in targets.items():
                where = f"{names_p.relative_to(root)}"
                samples = {m: [] for m, *_ in FEATURES}
                present = {m: np.ones(len(names), bool) for m, *_ in FEATURES}
                for i, uid in enumerate(names):
                    for m, d, fname, dim, _ in FEATURES:
                        x = _read_feature(files[m], root / d / fname, uid, dim, where)
                        if m == "A":
                            x = (x - mean[None, :]) / std[None, :]  # MMIN normalize_on_trn, float32
                            if not np.isfinite(x).all():
                                raise DatasetError(f"{root / d / fname}: key '{uid}': NaN/inf after z-scoring")
                        if len(x) == 0:
                            x = np.zeros((1, dim), np.float32)
                            present[m][i] = False
                        samples[m].append(x)
                    bar.update(1)
                for m in present:
                    absent_counts.setdefault(m, 0)
                    absent_counts[m] += int((~present[m]).sum())
                ours = SPLIT_MAP[s]
                if any((~p).any() for p in present.values()):
                    no_mod = ~np.stack(list(present.values()), 1).any(1)
                    if no_mod.any():
                        raise DatasetError(f"{where}: utterance '{names[int(np.argmax(no_mod))]}' has no rows "
                                           f"in any modality")
                    splits[ours] = split_from_samples(ours, labels, names, samples, present)
                else:
                    splits[ours] = split_from_samples(ours, labels, names, samples)
    finally:
        for f in files.values():
            f.close()

    extra = {
        "source": {
            "kind": "mmin-iemocap",
            "fold": fold,
            "files": {
                "A": "A/comparE.h5",
                "V": "V/denseface.h5",
                "T": "L/bert_large.h5",
                "targets": f"target/{fold}/{{trn,val,tst}}_{{label,int2name}}.npy",
            },
            "splits": {v: k for k, v in SPLIT_MAP.items()},
            "audio_normalisation": f"(x - mean) / std, float32, from A/{MEAN_STD}['{fold}']",
            "empty_sequences_marked_absent": absent_counts,
        }
    }
    return write_dataset(out, f"iemocap-mmin-fold{fold}", schema(), splits, extra_meta=extra)
