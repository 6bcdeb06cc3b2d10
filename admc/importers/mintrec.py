"""Import the MIntRec release (thuiar/MIntRec, multimodal intent recognition, 20 intents).

Source layout (``root`` is MIntRec's ``data_path/MIntRec``)::

    root/train.tsv, root/dev.tsv, root/test.tsv
        tab-separated, one header row, columns: season, episode, clip, text, label
        (MIntRec's ``data/base.py`` uses line[0..2] for the id and line[4] for the label)
    root/audio_data/audio_feats.pkl
        pickled dict: "{season}_{episode}_{clip}" -> torch tensor [frames, 768]
        (wav2vec2-base-960h last_hidden_state, ``tools/audio_preprocess.py``)
    root/video_data/video_feats.pkl
        pickled dict: "{season}_{episode}_{clip}" -> list of arrays [1, 256], one per keyframe
        (Faster R-CNN ROI features; MIntRec's ``data/video_pre.py`` does ``np.array(feat).squeeze(1)``)

Sample ids are ``"_".join([season, episode, clip])`` (e.g. ``S05_E02_99``), as in MIntRec.  The
feature pickles are loaded with a restricted unpickler (NumPy arrays and plain CPU tensors only;
see :mod:`admc.importers._safe_pickle`); files in torch's own format are read with
``torch.load(weights_only=True)``.  Sequences are kept at their full length (MIntRec pads or cuts
them to 480 audio / 230 video frames at load time; the dataset format is variable-length).

Text features
-------------
MIntRec feeds raw text to a fine-tuned BERT, so the release has no text features.  Either the
``text`` column of the tsv files is encoded by the ``text_encoder`` the caller passes in (``admc
import mintrec`` passes the live text extractor, :class:`extractors.models.text.TextEncoder`:
all-MiniLM-L6-v2 word-piece features, 384-d; an empty text becomes ``T_present = False``; this core
package never imports the extractors), or pass ``text_features``: an ``.npz`` file (read
with ``allow_pickle=False``) whose keys are the sample ids and whose values are float arrays
``[words, dim]`` (one row per token or word, at least one row; the same ``dim`` for every sample;
keys of samples not in the split files are never read), e.g.::

    np.savez("mintrec_text.npz", **{"S05_E02_99": bert_hidden_states_of_that_utterance, ...})

Classes are the 20 intents in the order of MIntRec's ``benchmarks['MIntRec']['intent_labels']``
(``data/__init__.py``).  Splits train/dev/test become train/val/test.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from admc.data import DatasetError, Modality, NpzReader, Schema, split_from_samples, write_dataset
from admc.outdir import check_out
from admc.importers._safe_pickle import load_feature_pickle

INTENT_LABELS = (
    "Complain", "Praise", "Apologise", "Thank", "Criticize",
    "Agree", "Taunt", "Flaunt",
    "Joke", "Oppose",
    "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave",
    "Prevent", "Greet", "Ask for help",
)
SPLIT_MAP = {"train": "train", "dev": "val", "test": "test"}
AUDIO_FILE = Path("audio_data") / "audio_feats.pkl"
VIDEO_FILE = Path("video_data") / "video_feats.pkl"
AUDIO_DIM = 768
VIDEO_DIM = 256


def schema(text_dim: int) -> Schema:
    return Schema(
        (
            Modality("A", AUDIO_DIM, "sequence", "lstm"),
            Modality("V", VIDEO_DIM, "sequence", "lstm"),
            Modality("T", text_dim, "sequence", "textcnn"),
        ),
        INTENT_LABELS,
    )


def read_tsv(path: Path, texts: dict[str, str] | None = None) -> tuple[list[str], list[int]]:
    """Ids and label indexes of one split file, as MIntRec's ``_get_indexes_annotations``
    (``texts``, when given, receives id -> text utterance)."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing split file")
    label_map = {label: i for i, label in enumerate(INTENT_LABELS)}
    ids, labels = [], []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    for i, line in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter="\t")):
        if i == 0:
            continue  # header: season, episode, clip, text, label
        if not line:
            continue
        if len(line) < 5:
            raise DatasetError(f"{path}: line {i + 1}: {len(line)} columns, expected season, episode, "
                               f"clip, text, label")
        if line[4] not in label_map:
            raise DatasetError(f"{path}: line {i + 1}: unknown intent label {line[4]!r} "
                               f"(known: {list(INTENT_LABELS)})")
        ids.append("_".join([line[0], line[1], line[2]]))
        labels.append(label_map[line[4]])
        if texts is not None:
            texts[ids[-1]] = line[3]
    if not ids:
        raise DatasetError(f"{path}: no samples")
    return ids, labels


def _to_numpy(x, where: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("torch"):
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)):
        if not x:
            raise DatasetError(f"{where}: empty list of frames")
        parts = [_to_numpy(y, where) for y in x]
        shapes = {p.shape for p in parts}
        if len(shapes) != 1:
            raise DatasetError(f"{where}: frames have different shapes {sorted(shapes)}")
        return np.stack(parts)  # == np.array(list) in MIntRec
    raise DatasetError(f"{where}: value is {type(x).__name__}, expected a tensor, array or list of them")


def _feature(feats: dict, path: Path, key: str, dim: int, video: bool) -> np.ndarray:
    if key not in feats:
        raise DatasetError(f"{path}: key '{key}': missing (sample listed in the split .tsv)")
    where = f"{path}: key '{key}'"
    x = _to_numpy(feats[key], where)
    if video and x.ndim == 3 and x.shape[1] == 1:
        x = x.squeeze(1)  # MIntRec video_pre: np.array(feat).squeeze(1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise DatasetError(f"{where}: shape {x.shape}, expected [frames, {dim}]")
    if len(x) == 0:
        raise DatasetError(f"{where}: no frames")
    if not np.issubdtype(x.dtype, np.number):
        raise DatasetError(f"{where}: dtype {x.dtype} is not numeric")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(f"{where}: NaN or inf values")
    return x


def _load_feature_dict(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: missing feature file")
    obj = load_feature_pickle(path)
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: holds {type(obj).__name__}, expected a dict of sample id -> features")
    return obj


def import_mintrec(root: str | Path, out: str | Path, text_features: str | Path | None = None,
                   progress: bool = True, text_encoder=None, overwrite: bool = False) -> Path:
    """Convert the MIntRec release at ``root`` into a dataset directory ``out``; returns it.

    ``text_features``: an ``.npz`` of text features per sample id (see the module docstring); when
    None the tsv text is encoded by ``text_encoder``: an object with ``encode_batch(texts) -> [(words
    [n, dim], pooled) or None]``, ``dim`` and ``path`` (e.g. :class:`extractors.models.text.TextEncoder`),
    or a callable with no argument that returns one (called once the inputs are checked, so that a
    slow model load comes after the quick errors).  One of the two is required.
    Raises :class:`~admc.data.DatasetError` naming the file and key for every problem and, before
    reading anything, :class:`~admc.outdir.OutputError` when ``out`` holds anything but a dataset
    (a dataset only with ``overwrite``) or is, contains or lies inside an input.
    """
    from tqdm import tqdm

    root = Path(root)
    if text_features is None and text_encoder is None:
        raise ValueError("import_mintrec: pass text_features (an .npz of text features per sample) or a "
                         "text_encoder (e.g. extractors.models.text.TextEncoder)")
    check_out(out, "dataset", overwrite=overwrite, inputs={"--root": root, "--text-features": text_features})
    texts: dict[str, str] = {}
    split_rows = {s: read_tsv(root / f"{s}.tsv", texts) for s in SPLIT_MAP}
    if text_features is None:
        return _import_with_text_encoder(root, out, split_rows, texts, text_encoder, progress)
    text_path = Path(text_features)
    if not text_path.is_file():
        raise DatasetError(f"{text_path}: missing text features file")

    audio_path, video_path = root / AUDIO_FILE, root / VIDEO_FILE
    for p in (audio_path, video_path):
        if not p.is_file():
            raise DatasetError(f"{p}: missing feature file")

    text_npz = NpzReader(text_path)  # only the keys of listed samples are read, sizes checked first

    audio = _load_feature_dict(audio_path)
    video = _load_feature_dict(video_path)

    total = sum(len(ids) for ids, _ in split_rows.values())
    text_dim = None
    splits = {}
    with text_npz, tqdm(total=total, desc="MIntRec", unit="clip", disable=not progress) as bar:
        for s, (ids, labels) in split_rows.items():
            samples = {"A": [], "V": [], "T": []}
            for key in ids:
                samples["A"].append(_feature(audio, audio_path, key, AUDIO_DIM, video=False))
                samples["V"].append(_feature(video, video_path, key, VIDEO_DIM, video=True))
                if key not in text_npz:
                    raise DatasetError(f"{text_path}: key '{key}': missing (sample listed in {s}.tsv)")
                t = text_npz.read(key)
                if t.ndim != 2 or not np.issubdtype(t.dtype, np.number) or len(t) == 0:
                    raise DatasetError(f"{text_path}: key '{key}': expected a numeric [words, dim] array with "
                                       f"at least one row, got {t.dtype} {t.shape}")
                if text_dim is None:
                    text_dim = int(t.shape[1])
                elif t.shape[1] != text_dim:
                    raise DatasetError(f"{text_path}: key '{key}': dim {t.shape[1]} differs from the first "
                                       f"sample's dim {text_dim}")
                t = t.astype(np.float32)
                if not np.isfinite(t).all():
                    raise DatasetError(f"{text_path}: key '{key}': NaN or inf values")
                samples["T"].append(t)
                bar.update(1)
            ours = SPLIT_MAP[s]
            splits[ours] = split_from_samples(ours, labels, ids, samples)

    return write_dataset(out, "mintrec", schema(text_dim), splits, extra_meta=_source_meta(text_path.name))


def _source_meta(text_source: str) -> dict:
    """meta.json ``source``: where each modality of an imported MIntRec dataset came from."""
    return {
        "source": {
            "kind": "mintrec",
            "files": {"A": str(AUDIO_FILE), "V": str(VIDEO_FILE), "T": text_source, "splits": "{train,dev,test}.tsv"},
            "splits": {v: k for k, v in SPLIT_MAP.items()},
        }
    }


def _import_with_text_encoder(root: Path, out, split_rows: dict, texts: dict[str, str], encoder,
                              progress: bool) -> Path:
    """``import_mintrec`` with T computed from the tsv text by ``encoder`` (or what it returns)."""
    from tqdm import tqdm

    audio_path, video_path = root / AUDIO_FILE, root / VIDEO_FILE
    for p in (audio_path, video_path):
        if not p.is_file():
            raise DatasetError(f"{p}: missing feature file")
    if not hasattr(encoder, "encode_batch"):
        encoder = encoder()  # a factory: build the (slow) model now that the inputs are checked
    audio = _load_feature_dict(audio_path)
    video = _load_feature_dict(video_path)
    total = sum(len(ids) for ids, _ in split_rows.values())
    splits = {}
    with tqdm(total=total, desc="MIntRec", unit="clip", disable=not progress) as bar:
        for s, (ids, labels) in split_rows.items():
            samples = {"A": [], "V": [], "T": []}
            t_present = []
            for start in range(0, len(ids), 64):
                chunk = ids[start:start + 64]
                encoded = encoder.encode_batch([texts.get(k, "") for k in chunk])
                for key, enc in zip(chunk, encoded):
                    samples["A"].append(_feature(audio, audio_path, key, AUDIO_DIM, video=False))
                    samples["V"].append(_feature(video, video_path, key, VIDEO_DIM, video=True))
                    t_present.append(enc is not None)
                    samples["T"].append(enc[0] if enc is not None else np.zeros((1, encoder.dim), np.float32))
                    bar.update(1)
            ours = SPLIT_MAP[s]
            splits[ours] = split_from_samples(ours, labels, ids, samples, {"T": np.array(t_present, bool)})
    kind = type(encoder)
    text_source = (f"text column of the tsv files, encoded by {kind.__module__}.{kind.__qualname__} "
                   f"({Path(getattr(encoder, 'path', '?')).name})")
    return write_dataset(out, "mintrec", schema(encoder.dim), splits, extra_meta=_source_meta(text_source))
