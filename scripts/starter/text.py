"""Stage ``text``: GoEmotions comments written "as transcribed" -> T rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from scripts.starter.recipe import CLASSES, DATA, GOEMO_MAP, SEED, TEXT_CAP
from scripts.starter.workers import crc, map_chunks, text_encoder


NAMES = ("Alex", "Sam", "Chris", "Jamie", "Taylor", "Jordan", "Morgan", "Casey")
_URL = re.compile(r"(https?://\S+|www\.\S+|/?\b[ru]/\w+)")
_EMOTICON = re.compile(r"(?<!\w)([:;=8xX][-']?[()\[\]dDpPoO/\\|*3]+|<3+|\^_*\^|[tT]_[tT]|[oO]_[oO])(?!\w)")
_KEEP = re.compile(r"[^A-Za-z0-9À-ÿ .,!?'%$&-]")


def as_transcribed(text: str, key: str = "") -> str:
    """A Reddit comment as faster-whisper would return it had someone said it: placeholders become
    words ([NAME] -> a first name), links/subreddits, emoji, emoticons and markup go, repeated
    punctuation collapses ("!!!" -> "!"), curly quotes become straight, whitespace is normalised.
    Sentence punctuation stays (Whisper writes it and the live path feeds Whisper's raw text to the
    encoder); case does not matter (MiniLM is uncased)."""
    t = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').replace("…", "...")
    t = t.replace("[NAME]", NAMES[crc(key) % len(NAMES)]).replace("[RELIGION]", "religion")
    t = _URL.sub(" ", t)
    t = _EMOTICON.sub(" ", t)
    t = t.replace('"', " ").replace("&", " and ")
    t = _KEEP.sub(" ", t)
    t = re.sub(r"([!?])[!?]+", r"\1", t)
    t = re.sub(r"\.{4,}", "...", t)
    t = re.sub(r"\s+([.,!?])", r"\1", t)
    t = re.sub(r"\s+", " ", t).strip(" -")
    return t


def text_items() -> list[dict]:
    labels = (DATA / "goemotions" / "ekman" / "labels.txt").read_text().split()
    rng = np.random.default_rng(SEED + 1)
    items = []
    for theirs, ours in (("train", "train"), ("dev", "val"), ("test", "test")):
        per = {c: [] for c in CLASSES}
        with open(DATA / "goemotions" / "ekman" / f"{theirs}.tsv", encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 3 or "," in parts[1]:
                    continue                              # multi-label: dropped
                text = as_transcribed(parts[0], parts[2])
                if not re.search(r"[A-Za-z]", text):
                    continue
                c = GOEMO_MAP[labels[int(parts[1])]]
                per[c].append({"id": parts[2], "text": text, "raw": parts[0], "label": CLASSES.index(c),
                               "split": ours})
        cap = TEXT_CAP[ours]
        for c in CLASSES:
            lst = per[c]
            if cap is not None and len(lst) > cap:
                lst = [lst[i] for i in sorted(rng.choice(len(lst), cap, replace=False))]
            items += lst
    return items


def _text_job(items: list[dict]) -> list[np.ndarray]:
    enc = text_encoder()
    out = enc.encode_batch([it["text"] for it in items])
    return [o[0] if o is not None else np.zeros((0, enc.dim), np.float32) for o in out]


def stage_text(work: Path, pool) -> None:
    items = text_items()
    order = sorted(range(len(items)), key=lambda i: len(items[i]["text"]))   # less padding per batch
    chunks = [[items[i] for i in order[s:s + 64]] for s in range(0, len(order), 64)]
    res = map_chunks(pool, _text_job, chunks, "text")
    feats = [None] * len(items)
    for ch_idx, arrs in zip(range(0, len(order), 64), res):
        for k, a in enumerate(arrs):
            feats[order[ch_idx + k]] = a
    keep = [i for i in range(len(items)) if len(feats[i])]
    lens = np.array([len(feats[i]) for i in keep])
    np.savez(work / "text.npz", **{k: np.array([items[i][k] for i in keep]) for k in ("id", "text", "raw", "label", "split")},
             rows=np.concatenate([feats[i] for i in keep]).astype(np.float32),
             offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64))
