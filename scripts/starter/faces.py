"""Stage ``faces``: FER2013 faces -> 30-row V sequences."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from scripts.starter import recipe
from scripts.starter.recipe import (CLASSES, DATA, FACE_CAP, FACE_VAL_FRACTION, FER_MAP, KEYFRAMES,
                                    ROWS, SEED)
from scripts.starter.workers import crc, face_extractor, map_chunks


def jitter_crop(gray: np.ndarray, rng: np.random.Generator, flip: bool, gain: float, bias: float) -> np.ndarray:
    """One webcam-like variant of a 48x48 face crop: shift +-1.5 px, scale 0.96-1.06, rotation +-5
    degrees (what MTCNN alignment jitter and small head motion do), per-frame lighting +-3 % around
    the sequence's gain/bias, mirrored when ``flip``.  Borders are edge-padded, not black."""
    from PIL import Image

    pad = 6
    g = np.pad(gray, pad, mode="edge")
    h, w = gray.shape
    ang = np.deg2rad(rng.uniform(-5, 5))
    s = rng.uniform(0.96, 1.06)
    dx, dy = rng.uniform(-1.5, 1.5, 2)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a, b = np.cos(ang) / s, np.sin(ang) / s
    # output (x, y) -> input (padded) pixel: R(ang)/s @ (p - c) + c + d + pad
    coeffs = (a, -b, cx + pad + dx - a * cx + b * cy, b, a, cy + pad + dy - b * cx - a * cy)
    img = Image.fromarray(g).transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    x = np.asarray(img, np.float32)
    if flip:
        x = x[:, ::-1]
    x = x * gain * rng.uniform(0.97, 1.03) + bias
    return np.clip(x, 0, 255).astype(np.uint8)


def face_keyframes(gray: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    flip = bool(rng.random() < 0.5)              # webcam previews are often mirrored
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
    return [jitter_crop(gray, rng, flip, gain, bias) for _ in range(KEYFRAMES)]


def interpolate_rows(keys: np.ndarray, rows: int = ROWS) -> np.ndarray:
    """``[K, D]`` keyframe features -> ``[rows, D]`` by linear interpolation over the window."""
    pos = np.linspace(0, rows - 1, len(keys))
    t = np.arange(rows)
    return np.stack([np.interp(t, pos, keys[:, d]) for d in range(keys.shape[1])], axis=1).astype(np.float32)


def _faces_job(items: list[tuple[str, int, bool]]) -> dict:
    """Keyframe features per face: through the live face front end (the face placed into webcam-like
    frames, found, aligned and cropped by the live path: ``extractors.dataset.training_render``) for the
    training and validation faces, from jittered crops for the test faces (the test set stays as
    it was measured before); a face the live path never finds keeps its crop features."""
    from PIL import Image

    from extractors.dataset.training_render import LiveFaceRows

    fx = face_extractor()
    live = LiveFaceRows(fx, KEYFRAMES)
    crops, plain, where, found = [], [], [], []
    keys = [None] * len(items)
    for i, (path, seed, through_live) in enumerate(items):
        g = np.asarray(Image.open(DATA / "fer2013" / path).convert("L"), np.uint8)
        plain.append(g)
        n = 0
        if through_live:
            feats, n = live.sequence(g, np.random.default_rng(seed))
            if feats is not None:
                pos = np.linspace(0, KEYFRAMES - 1, len(feats)) if len(feats) > 1 else np.zeros(1)
                keys[i] = np.stack([np.interp(np.arange(KEYFRAMES), pos, feats[:, d]) if len(feats) > 1
                                    else np.repeat(feats[0, d], KEYFRAMES) for d in range(feats.shape[1])], axis=1)
        found.append(n)
        if keys[i] is None:
            where.append(i)
            crops += face_keyframes(g, seed)
    if crops:
        kf, _ = fx.classify_crops(crops)
        kf = kf.reshape(len(where), KEYFRAMES, -1)
        for j, i in enumerate(where):
            keys[i] = kf[j]
    pf, pp = fx.classify_crops(plain)
    return {"key": np.stack(keys).astype(np.float32), "plain": pf, "xprob": pp, "found": np.array(found)}


def face_net_holdout(rows: list[dict]) -> set[str]:
    """FER2013 train faces the face network never trained on: its validation holdout, drawn as
    scripts/train_face_net.py draws it (stratified 10 % of train in manifest order, the card's seed)."""
    from extractors.models import face_net
    from scripts.train_face_net import stratified_holdout

    seed = int(json.loads(face_net.DEFAULT_META.read_text())["recipe"]["seed"])
    train = [r for r in rows if r["split"] == "train"]
    y = np.array([face_net.CLASSES.index(r["label"]) for r in train])
    _, val_idx = stratified_holdout(y, 0.1, seed)
    return {train[i]["path"] for i in val_idx}


def stage_faces(work: Path, pool) -> None:
    """FACE_CAP train faces per class: validation faces from the face network's own holdout (faces
    it never saw, so model selection sees test-like features), training faces from the rest."""
    rng = np.random.default_rng(SEED)
    rows = list(csv.DictReader(open(DATA / "fer2013" / "manifest.csv")))
    unseen = face_net_holdout(rows) if recipe.FEATURES.face == "resnet" else set()
    chosen = []
    for lab in sorted(FER_MAP):
        tr = sorted(r["path"] for r in rows if r["split"] == "train" and r["label"] == lab)
        n_val = int(round(FACE_VAL_FRACTION * min(FACE_CAP, len(tr))))
        if unseen:
            held = [p for p in tr if p in unseen]
            rest = [p for p in tr if p not in unseen]
            val = [held[i] for i in sorted(rng.choice(len(held), min(n_val, len(held)), replace=False))]
            trn = [rest[i] for i in sorted(rng.choice(len(rest), min(FACE_CAP - n_val, len(rest)), replace=False))]
        else:
            tr = [tr[i] for i in sorted(rng.choice(len(tr), min(FACE_CAP, len(tr)), replace=False))]
            perm = rng.permutation(len(tr))
            val, trn = [tr[i] for i in perm[:n_val]], [tr[i] for i in perm[n_val:]]
        chosen += [(p, lab, "val") for p in val] + [(p, lab, "train") for p in trn]
        for r in sorted((r for r in rows if r["split"] == "test" and r["label"] == lab), key=lambda r: r["path"]):
            kind = "test_public" if "PublicTest" in r["path"] else "test_private"
            chosen.append((r["path"], lab, kind))
    items = [(p, crc(p) ^ SEED, recipe.LIVE_RENDER and kind in ("train", "val")) for p, _, kind in chosen]
    chunks = [items[i:i + 128] for i in range(0, len(items), 128)]
    res = map_chunks(pool, _faces_job, chunks, "faces")
    np.savez(work / "faces.npz", ids=np.array([c[0] for c in chosen]),
             labels=np.array([CLASSES.index(FER_MAP[c[1]]) for c in chosen]),
             split=np.array([c[2] for c in chosen]),
             key=np.concatenate([r["key"] for r in res]).astype(np.float32),
             plain=np.concatenate([r["plain"] for r in res]).astype(np.float32),
             xprob=np.concatenate([r["xprob"] for r in res]).astype(np.float32),
             live_found=np.concatenate([r["found"] for r in res]).astype(np.int16))
