"""The starter's pairing (scripts/starter/pairs.py) on tiny generated unimodal features: training and
validation pairs of a class other than neutral take neutral words, or a neutral face and voice, in the
recipe's shares; test pairs and the neutral class stay one class throughout."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from scripts.starter import pairs
from scripts.starter.recipe import CLASSES, FEATURES

SPLITS = ("train", "val", "test")


def _items(splits, per_class: int, shape, rng):
    """(split, class, features) per generated item; the first value of every row names its class,
    so a pair's parts can be told apart."""
    for s in splits:
        for c in range(len(CLASSES)):
            for _k in range(per_class):
                x = rng.standard_normal(shape).astype(np.float32)
                x[..., 0] = c
                yield s, c, x


def _write_sources(work, per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    f = list(_items(("train", "val", "test_private"), per_class, (4, FEATURES.face_dim), rng))
    np.savez(work / "faces.npz", ids=np.array([f"{s}/{c}/{i}.jpg" for i, (s, c, _) in enumerate(f)]),
             labels=np.array([c for _, c, _ in f]), split=np.array([s for s, _, _ in f]),
             key=np.stack([x for _, _, x in f]))
    a = list(_items(SPLITS, per_class, (1, 30, FEATURES.audio_dim), rng))
    np.savez(work / "speech.npz", id=np.array([f"clip-{i}" for i in range(len(a))]),
             label=np.array([c for _, c, _ in a]), split=np.array([s for s, _, _ in a]),
             windows=np.concatenate([x for _, _, x in a]), win_clip=np.arange(len(a)))
    t = list(_items(SPLITS, per_class, (5, FEATURES.text_dim), rng))
    np.savez(work / "text.npz", id=np.array([f"t-{i}" for i in range(len(t))]),
             label=np.array([c for _, c, _ in t]), split=np.array([s for s, _, _ in t]),
             rows=np.concatenate([x for _, _, x in t]), offsets=np.arange(len(t) + 1) * 5)


def test_training_pairs_carry_neutral_words_and_test_pairs_stay_one_class(tmp_path, monkeypatch):
    from admc.data import load_dataset

    n = 40
    monkeypatch.setattr(pairs, "PAIRS_PER_CLASS", {"train": n, "val": n, "test": n})
    _write_sources(tmp_path)
    pairs.stage_pairs(tmp_path, pairs.Sources(tmp_path))
    ds = load_dataset(tmp_path / "paired")
    neutral = CLASSES.index("neutral")
    prov = list(csv.DictReader(open(tmp_path / "pairs.csv")))
    for s in SPLITS:
        sp = ds[s]
        # the class each part came from (the first value of its features)
        part = {m: np.array([sp.rows[m][sp.offsets[m][i], 0] for i in range(len(sp))]).round().astype(int)
                for m in "AVT"}
        y = sp.labels
        words_neutral = (part["T"] == neutral) & (y != neutral)
        face_voice_neutral = (part["V"] == neutral) & (part["A"] == neutral) & (y != neutral)
        assert ((part["A"] == neutral) == (part["V"] == neutral))[y != neutral].all()   # face and voice go together
        mix = Counter(r["mix"] for r in prov if r["id"].startswith(s + "-"))
        if s == "test":
            assert (part["T"] == y).all() and (part["V"] == y).all() and (part["A"] == y).all()
            assert mix == {"class": 7 * n}
            continue
        others = int((y != neutral).sum())
        assert words_neutral.sum() == round(pairs.NEUTRAL_WORDS_P * n) * (len(CLASSES) - 1) > 0
        assert face_voice_neutral.sum() == round(pairs.NEUTRAL_FACE_VOICE_P * n) * (len(CLASSES) - 1) > 0
        assert not (words_neutral & face_voice_neutral).any()
        # every other part carries the label
        plain = ~words_neutral & ~face_voice_neutral
        assert (part["T"][plain] == y[plain]).all() and (part["V"][plain] == y[plain]).all()
        assert (part["T"][face_voice_neutral] == y[face_voice_neutral]).all()
        assert (part["V"][words_neutral] == y[words_neutral]).all()
        assert mix["neutral words"] == words_neutral.sum() and mix["neutral face and voice"] == face_voice_neutral.sum()
        assert others == 6 * n


@pytest.mark.parametrize("n", [1, 7, 100])
def test_neutral_mix_shares(n):
    kind = pairs.neutral_mix(n, np.random.default_rng(n), 0.3, 0.1)
    assert (kind == 1).sum() == round(0.3 * n) and (kind == 2).sum() == round(0.1 * n)


def _feature_set_in_worker(_):
    from scripts.starter import recipe

    return recipe.FEATURES.name


def test_the_builds_feature_set_reaches_its_worker_processes():
    """Workers are spawned (a fresh interpreter): a feature set chosen with --feature-set must be
    theirs too, or they would extract features of another set than the one the pairs record."""
    import multiprocessing as mp

    from extractors.live_schema import DEFAULT_FEATURE_SET
    from scripts.starter import recipe
    from scripts.starter.workers import init_worker

    other = "opensmile-whisper1s-resnet-minilm-nade"
    assert other != DEFAULT_FEATURE_SET
    with mp.get_context("spawn").Pool(1, initializer=init_worker, initargs=(other,)) as pool:
        assert pool.map(_feature_set_in_worker, [0]) == [other]
    assert recipe.FEATURES.name == DEFAULT_FEATURE_SET            # the parent's own stays as it was
    with mp.get_context("spawn").Pool(1, initializer=init_worker) as pool:
        assert pool.map(_feature_set_in_worker, [0]) == [DEFAULT_FEATURE_SET]
