"""Stage ``pairs``: the class-conditional paired dataset (one face, voice window and comment per sample)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from scripts.starter import recipe
from scripts.starter.faces import interpolate_rows
from scripts.starter.recipe import (CLASSES, NEUTRAL_FACE_VOICE_P, NEUTRAL_WORDS_P, PAIRS_PER_CLASS,
                                    SEED)


class Sources:
    """The cached unimodal features."""

    def __init__(self, work: Path):
        f = np.load(work / "faces.npz", allow_pickle=False)
        self.faces = {k: f[k] for k in f.files}
        s = np.load(work / "speech.npz", allow_pickle=False)
        self.speech = {k: s[k] for k in s.files}
        t = np.load(work / "text.npz", allow_pickle=False)
        self.text = {k: t[k] for k in t.files}

    def face_seq(self, i: int) -> np.ndarray:
        return interpolate_rows(self.faces["key"][i])

    def text_rows(self, i: int) -> np.ndarray:
        o = self.text["offsets"]
        return self.text["rows"][o[i]:o[i + 1]]

    def pools(self, split: str, c: int) -> dict[str, np.ndarray]:
        fs = self.faces["split"]
        face_split = np.isin(fs, ["test_public", "test_private"]) if split == "test" else fs == split
        clip_ok = (self.speech["split"] == split) & (self.speech["label"] == c)
        return {
            "V": np.flatnonzero(face_split & (self.faces["labels"] == c)),
            "A": np.flatnonzero(clip_ok[self.speech["win_clip"]]),
            "T": np.flatnonzero((self.text["split"] == split) & (self.text["label"] == c)),
        }


def _cycle(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws that use every pool item once before any is used again."""
    reps = -(-n // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


def neutral_mix(n: int, rng: np.random.Generator, words_p: float = NEUTRAL_WORDS_P,
                face_voice_p: float = NEUTRAL_FACE_VOICE_P) -> np.ndarray:
    """Which of a class's ``n`` pairs take neutral material: ``[n]`` of 0 (words, face and voice of the
    class), 1 (neutral words: the face and voice carry the class) or 2 (neutral face and voice: the
    words carry it); ``round(words_p * n)`` ones and ``round(face_voice_p * n)`` twos at random places."""
    kind = np.zeros(n, np.int8)
    order = rng.permutation(n)
    n1, n2 = int(round(words_p * n)), int(round(face_voice_p * n))
    kind[order[:n1]] = 1
    kind[order[n1:n1 + n2]] = 2
    return kind


MIX_NAMES = ("class", "neutral words", "neutral face and voice")


def stage_pairs(work: Path, src: Sources) -> None:
    """The paired dataset: per split and class, faces, voice windows and comments of that class drawn
    so each is used once before any repeats; in training and validation a share of a non-neutral
    class's pairs takes its words, or its face and voice, from the neutral class
    (:func:`neutral_mix`, recipe ``NEUTRAL_WORDS_P`` / ``NEUTRAL_FACE_VOICE_P``)."""
    from admc.data import split_from_samples, write_dataset

    rng = np.random.default_rng(SEED + 2)
    mix_rng = np.random.default_rng(SEED + 5)      # its own stream: the class draws stay those drawn before
    neutral = CLASSES.index("neutral")
    splits, prov = {}, []
    for split, n in PAIRS_PER_CLASS.items():
        labels, ids, samples = [], [], {"A": [], "V": [], "T": []}
        pn = src.pools(split, neutral)
        for c in range(len(CLASSES)):
            p = src.pools(split, c)
            for m in "AVT":
                if not len(p[m]):
                    raise SystemExit(f"build_starter: no {m} samples of class {CLASSES[c]} in {split}")
            draw = {m: _cycle(p[m], n, rng) for m in "AVT"}
            mixed = split != "test" and c != neutral
            kind = neutral_mix(n, mix_rng) if mixed else np.zeros(n, np.int8)
            if mixed:
                nd = {m: _cycle(pn[m], n, mix_rng) for m in "AVT"}
                draw["T"] = np.where(kind == 1, nd["T"], draw["T"])
                for m in "AV":
                    draw[m] = np.where(kind == 2, nd[m], draw[m])
            for k in range(n):
                a, v, t = int(draw["A"][k]), int(draw["V"][k]), int(draw["T"][k])
                sid = f"{split}-{CLASSES[c]}-{k:04d}"
                labels.append(c)
                ids.append(sid)
                samples["A"].append(src.speech["windows"][a])
                samples["V"].append(src.face_seq(v))
                samples["T"].append(src.text_rows(t))
                clip = int(src.speech["win_clip"][a])
                prov.append({"id": sid, "label": CLASSES[c], "A": str(src.speech["id"][clip]), "A_window": a,
                             "V": str(src.faces["ids"][v]), "T": str(src.text["id"][t]),
                             "mix": MIX_NAMES[int(kind[k])]})
        splits[split] = split_from_samples(split, labels, ids, samples)
    extra = {"feature_set": recipe.FEATURES.name,
             "source": {"kind": "starter-pairs", "script": "scripts/build_starter.py",
                        "pairs_per_class": PAIRS_PER_CLASS, "seed": SEED,
                        "neutral_words_p": NEUTRAL_WORDS_P, "neutral_face_voice_p": NEUTRAL_FACE_VOICE_P,
                        "provenance": "pairs.csv in the build's work folder"}}
    write_dataset(work / "paired", "starter-paired", recipe.FEATURES.schema(CLASSES), splits, extra_meta=extra)
    with open(work / "pairs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(prov[0]))
        w.writeheader()
        w.writerows(prov)
