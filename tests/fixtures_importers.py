"""Tiny, seeded fake releases with the same file structure as the real ones.

- :func:`make_mmin_release`: AIM3-RUC/MMIN "IEMOCAP_features_2021" layout: flat h5 files keyed by
  utterance id, ``comparE_mean_std.h5`` with one group per fold holding ``mean``/``std`` computed
  from that fold's training utterances (as MMIN's ``normlize_on_trn``), and
  ``target/{1..10}/{trn,val,tst}_{label,int2name}.npy`` with the real dtypes (int64 one-hot
  ``[n, 4]``; bytes ``[n, 1]``).
- :func:`make_mintrec_release`: thuiar/MIntRec layout: ``{train,dev,test}.tsv`` with the real
  header, ``audio_data/audio_feats.pkl`` (plain pickle of a dict of torch tensors ``[frames, 768]``),
  ``video_data/video_feats.pkl`` (plain pickle of a dict of lists of ``[1, 256]`` float32 arrays),
  plus a text-features ``.npz``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MMIN_CLASSES = ["ang", "hap", "neu", "sad"]
MINTREC_LABELS = [
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt", "Joke", "Oppose",
    "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent", "Greet", "Ask for help",
]


@dataclass
class MMINRelease:
    root: Path
    utterances: list[str]
    label_of: dict[str, int]
    feats: dict[str, dict[str, np.ndarray]]  # "A"/"V"/"L" -> id -> raw array as stored
    folds: dict[int, dict[str, list[str]]] = field(default_factory=dict)  # fold -> trn/val/tst -> ids
    mean_std: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def make_mmin_release(root: str | Path, seed: int = 0, per_speaker: int = 2, n_folds: int = 10) -> MMINRelease:
    import h5py

    rng = np.random.default_rng(seed)
    root = Path(root)
    for d in ("A", "V", "L", "target"):
        (root / d).mkdir(parents=True, exist_ok=True)
    speakers = [(s, g) for s in range(1, 6) for g in "FM"]  # 10 speakers, as IEMOCAP
    utts, spk_of = [], {}
    for s, g in speakers:
        for j in range(per_speaker):
            uid = f"Ses0{s}{g}_impro0{j + 1}_{g}{j:03d}"
            utts.append(uid)
            spk_of[uid] = (s, g)
    label_of = {u: int(rng.integers(0, 4)) for u in utts}
    feats = {"A": {}, "V": {}, "L": {}}
    for u in utts:
        a = rng.normal(3.0, 2.0, size=(int(rng.integers(1, 7)), 130))
        a[:, 7] = 5.0  # a constant column: std 0 -> 1 in MMIN's statistics
        feats["A"][u] = a  # float64, as the release
        feats["V"][u] = rng.normal(size=(int(rng.integers(1, 6)), 342))
        feats["L"][u] = rng.normal(size=(int(rng.integers(1, 5)), 1024)).astype(np.float32)
    for m, fname in (("A", "A/comparE.h5"), ("V", "V/denseface.h5"), ("L", "L/bert_large.h5")):
        with h5py.File(root / fname, "w") as f:
            for u in utts:
                f[u] = feats[m][u]
    rel = MMINRelease(root, utts, label_of, feats)
    # fold k: test = speaker k, val = the other speaker of the same session, train = the rest
    with h5py.File(root / "A" / "comparE_mean_std.h5", "w") as ms:
        for k in range(1, n_folds + 1):
            s, g = speakers[k - 1]
            other = (s, "M" if g == "F" else "F")
            split = {
                "tst": [u for u in utts if spk_of[u] == (s, g)],
                "val": [u for u in utts if spk_of[u] == other],
                "trn": [u for u in utts if spk_of[u][0] != s],
            }
            rel.folds[k] = split
            tdir = root / "target" / str(k)
            tdir.mkdir(parents=True, exist_ok=True)
            for name, ids in split.items():
                onehot = np.zeros((len(ids), 4), dtype=np.int64)
                onehot[np.arange(len(ids)), [label_of[u] for u in ids]] = 1
                np.save(tdir / f"{name}_label.npy", onehot)
                np.save(tdir / f"{name}_int2name.npy", np.array([[u.encode()] for u in ids]))  # |S.. [n,1]
            all_feat = np.concatenate([feats["A"][u] for u in split["trn"]], axis=0)
            mean_f, std_f = np.mean(all_feat, axis=0), np.std(all_feat, axis=0)
            std_f[std_f == 0.0] = 1.0
            grp = ms.create_group(str(k))
            grp["mean"] = mean_f
            grp["std"] = std_f
            rel.mean_std[k] = (mean_f, std_f)
    return rel


@dataclass
class MIntRecRelease:
    root: Path
    text_features: Path
    splits: dict[str, list[tuple[str, str, str, str, str]]]  # tsv rows (no header)
    audio: dict[str, np.ndarray]
    video: dict[str, np.ndarray]  # already [frames, 256]
    text: dict[str, np.ndarray]


def make_mintrec_release(root: str | Path, seed: int = 0, per_split=(8, 4, 4), text_dim: int = 768,
                         audio_format: str = "pickle") -> MIntRecRelease:
    """``audio_format``: "pickle" (as released: pickle.dump of torch tensors), "numpy" (pickle of
    arrays) or "torch" (torch.save zip file)."""
    import torch

    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "audio_data").mkdir(parents=True, exist_ok=True)
    (root / "video_data").mkdir(parents=True, exist_ok=True)
    splits, audio, video, text = {}, {}, {}, {}
    clip = 0
    for name, n in zip(("train", "dev", "test"), per_split):
        rows = []
        for i in range(n):
            clip += 1
            season, episode = f"S0{4 + clip % 3}", f"E{1 + clip % 12:02d}"
            label = MINTREC_LABELS[(clip * 7) % len(MINTREC_LABELS)]
            rows.append((season, episode, str(clip), f"utterance number {clip}, isn't it?", label))
            key = f"{season}_{episode}_{clip}"
            audio[key] = rng.normal(size=(int(rng.integers(1, 9)), 768)).astype(np.float32)
            video[key] = rng.normal(size=(int(rng.integers(1, 6)), 256)).astype(np.float32)
            text[key] = rng.normal(size=(int(rng.integers(1, 7)), text_dim)).astype(np.float32)
        splits[name] = rows
        with open(root / f"{name}.tsv", "w", newline="", encoding="utf-8") as f:
            f.write("season\tepisode\tclip\ttext\tlabel\n")
            for r in rows:
                f.write("\t".join(r) + "\n")
    audio_obj = {k: (torch.from_numpy(v.copy()) if audio_format != "numpy" else v) for k, v in audio.items()}
    if audio_format == "torch":
        torch.save(audio_obj, root / "audio_data" / "audio_feats.pkl")
    else:
        with open(root / "audio_data" / "audio_feats.pkl", "wb") as f:
            pickle.dump(audio_obj, f)
    video_obj = {k: [row[None, :].copy() for row in v] for k, v in video.items()}  # list of [1, 256]
    with open(root / "video_data" / "video_feats.pkl", "wb") as f:
        pickle.dump(video_obj, f)
    text_path = root / "text_feats.npz"
    np.savez(text_path, **text)
    return MIntRecRelease(root, text_path, splits, audio, video, text)


# --- hostile inputs --------------------------------------------------------------------------------

class SystemCall:
    """Unpickling this runs ``os.system(cmd)`` with the stock unpickler."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class EmbeddedTorchBytes:
    """Unpickles as ``torch.storage._load_from_bytes(payload)`` (how pickled tensors carry data)."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def __reduce__(self):
        import torch.storage

        return (torch.storage._load_from_bytes, (self.payload,))


def write_object_npy(path: str | Path, payload_obj, shape=(1,)) -> None:
    """An object-dtype ``.npy`` whose pickled payload is ``payload_obj``."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": shape})
        pickle.dump(payload_obj, f, protocol=3)
