"""The shipped starter checkpoint (weights/starter, built by scripts/build_starter.py).

It must load, have exactly the live schema, and classify a few clearly expressive real held-out
recordings through the live path (`predict_window` with one modality, the other two completed).
Examples were picked by the rule in weights/starter/MODEL_CARD.md ("Test examples") and are fixed
here by id: FER2013 PublicTest faces (V only: the crop's face-network features held for 30 rows)
and speech clips of the test speakers (A only: the centred 3 s window, features as in the build).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from admc.pipeline import predict_window
from admc.run import load_run
from extractors.live_schema import feature_set_of
from tests.shared_data import SHARED_DATA

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
STARTER = REPO / "weights" / "starter"
DATA = SHARED_DATA
CLASSES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]

FACES = [  # FER2013 PublicTest path -> expected class
    ("test/angry/PublicTest_66956737.jpg", "anger"),
    ("test/disgust/PublicTest_43293519.jpg", "disgust"),
    ("test/fear/PublicTest_86498201.jpg", "fear"),
    ("test/happy/PublicTest_1895428.jpg", "happiness"),
    ("test/sad/PublicTest_60783446.jpg", "sadness"),
    ("test/surprise/PublicTest_3854174.jpg", "surprise"),
    ("test/neutral/PublicTest_11503793.jpg", "neutral"),
]
SPEECH = [  # path under shared/data (test speakers: RAVDESS actors 19-24, EmoDB 15/16) -> expected class
    ("emodb/anger/16b10Wb.wav", "anger"),
    ("ravdess_speech/disgust/03-01-07-01-01-01-19.flac", "disgust"),
    ("ravdess_speech/fearful/03-01-06-02-01-01-22.flac", "fear"),
    ("ravdess_speech/happy/03-01-03-02-02-01-21.flac", "happiness"),
    ("emodb/sadness/16a01Tb.wav", "sadness"),
    ("ravdess_speech/surprised/03-01-08-01-01-02-23.flac", "surprise"),
    ("ravdess_speech/calm/03-01-02-02-02-01-24.flac", "neutral"),    # RAVDESS calm -> neutral
]

needs_data = pytest.mark.skipif(not (DATA / "fer2013").is_dir(), reason="shared/data not present")


@pytest.fixture(scope="module")
def starter():
    model, meta = load_run(STARTER, "cpu")
    return model, meta


def test_starter_loads_with_the_live_schema(starter):
    model, meta = starter
    assert list(model.schema.classes) == CLASSES
    fs = feature_set_of(meta, model.schema)
    assert fs is not None and model.schema == fs.schema(CLASSES)
    assert meta["method"] == "admc"
    assert (STARTER / "model.safetensors").stat().st_size < 30e6
    card = (STARTER / "MODEL_CARD.md").read_text()
    for needle in ("FER2013", "RAVDESS", "EmoDB", "GoEmotions", "non-commercial", "research use only"):
        assert needle in card


def test_starter_completes_with_what_won_on_validation(starter):
    """The shipped completer is the one ``admc calibrate --sampler auto`` kept (issue 25): the trained
    ADN's own sampler only if the model classified the paired validation split better with it than with
    its ridge prior alone; the app's badges name what runs."""
    from app.checkpoint import Checkpoint

    model, meta = starter
    choice = meta["train"]["recalibrated"]["sampler"]
    ua = choice["val_ua"]
    assert choice["rule"] == "auto" and set(ua) == set(choice["val_completion_mse"]) == {choice["trained"], "prior"}
    want = choice["trained"] if ua[choice["trained"]] > ua["prior"] else "prior"
    assert choice["sampler"] == want == meta["config"]["adn"]["sampler"] == model.completer.cfg.sampler
    label = Checkpoint(STARTER, model, meta).completer_label
    assert label == ("the ridge estimate" if want == "prior" else "the ridge estimate + one ADN step")


@pytest.fixture(scope="module")
def face_extractor(starter):
    from extractors.models.face import FaceExtractor

    model, meta = starter
    return FaceExtractor(device="cpu", network=feature_set_of(meta, model.schema).face)


@pytest.fixture(scope="module")
def build_script(starter):
    """The build's speech stage (scripts/starter/speech.py), its workers' extractors those of the
    starter's feature set (not the build's default)."""
    from scripts.starter import recipe, speech, workers

    model, meta = starter
    default = recipe.FEATURES.name
    recipe.use_feature_set(feature_set_of(meta, model.schema).name)
    workers.EXTRACTORS.clear()
    yield speech
    recipe.use_feature_set(default)
    workers.EXTRACTORS.clear()


@needs_data
@pytest.mark.parametrize("path,label", FACES)
def test_starter_classifies_real_faces(starter, face_extractor, path, label):
    from PIL import Image

    model, _ = starter
    gray = np.asarray(Image.open(DATA / "fer2013" / path).convert("L"), np.uint8)
    feat = face_extractor.from_crop(gray).feature
    out = predict_window(model, {"V": np.repeat(feat[None], 30, axis=0), "A": None, "T": None},
                         generator=torch.Generator().manual_seed(0))
    assert out.label == label, out.probs
    assert set(out.imputed) == {"A", "T"}


@needs_data
@pytest.mark.parametrize("path,label", SPEECH)
def test_starter_classifies_real_speech(starter, build_script, path, label):
    model, _ = starter
    clip_id = ("ravdess/" if path.startswith("ravdess") else "emodb/") + Path(path).stem   # the build's clip id
    windows, _span = build_script.speech_windows(DATA / path, clip_id, "test")
    assert windows.shape == (1, 30, model.schema.modalities[0].dim)
    out = predict_window(model, {"A": windows[0], "V": None, "T": None}, generator=torch.Generator().manual_seed(0))
    assert out.label == label, out.probs
    assert set(out.imputed) == {"V", "T"}


def _card_numbers(**changes) -> dict:
    """A complete set of the card's numbers (made up), every optional part present."""
    wu = "80.0 / 79.0"
    n = {
        "fs": {"name": "fs", "audio_dim": 514, "face_dim": 384, "text_dim": 535}, "classes_md": "`a`, `b`",
        "run": {"admc_version": "0.1.0", "method": "admc", "fusion_mode": "per_condition"}, "size_mb": "9.9",
        "face_cap": 800, "faces": {"train": 1, "val": 2, "test_public": 3, "test_private": 4},
        "speech": {s: {"train": 5, "val": 6, "test": 7} for s in ("ravdess", "emodb")},
        "text_cap": {"train": 1200, "val": 250}, "text": {"train": 8, "val": 9, "test": 10},
        "label_rows": [{"cls": "a", "fer": "x", "ravdess": "y", "emodb": "z", "goemo": "w"}],
        "live_render": False, "stream_windows": 4, "stream_onset_s": 0.1, "stream_tail_s": 0.3, "neutral_words_p": 0.0,
        "neutral_face_voice_p": 0.0, "keyframes": 4, "rows": 30, "codec_p": 0.5, "codec_kbits": "24/32",
        "seed": 0, "pairs": {"train": 1000, "val": 200, "test": 300},
        "pairs_total": {"train": 7000, "val": 1400, "test": 2100}, "settings_md": "`--set fusion.ff=256`",
        "train_env": "Trained with the core at commit `abc`.", "itfn": "A 70.0", "silent_units": None,
        "completer_sentence": "the app's badges call it \"the ridge estimate\"",
        "unimodal": [{"name": "faces", "n": 10, "admc": wu, "zero_fill": wu, "late_fusion": wu, "reference": ""}],
        "v_diagnostics": {"plain_public": wu, "n_train_faces": 100, "train_faces": wu,
                          "logreg_private_test": "60.0", "logreg_fer_train": "61.0"},
        "paired": {"header": "{A} | {V}", "rule": "|---|---|---|---|---|",
                   "rows": [{"method": "admc", "cells": [wu, wu], "average": wu, "full": "90.1 / 90.2"}]},
        "calibration": {"conditions": [{"name": "A", "accuracy": "70.0", "ece_before": "5.00", "ece_after": "2.00"}],
                        "reliability": [{"bin": "0.50-0.60", "n_before": 3, "before": "55 / 50", "n_after": 4,
                                         "after": "54 / 52"}],
                        "abstain": {"threshold": "0.40", "keep": "90"}},
        "live": [{"name": "this starter, replay", "windows": 42, "overall": wu, "full": wu, "face_hidden": wu,
                  "silent": wu, "uncertain": "1.0", "wa_confident": "55.0", "voice_ood": "78.4", "face_ood": "22.8"}],
        "examples": {"faces": [{"id": "f1", "label": "a", "p": 0.9}], "speech": [{"path": "s1.wav", "label": "b", "p": 0.8}]},
        "timings": {"stages": "faces 1.0 min", "total": "40.0"}, "dataset": {"name": "starter-paired", "samples": 10500},
    }
    n.update(changes)
    return n


def test_the_model_card_is_its_template_filled_with_the_numbers():
    """Every number lands in the card where the template puts it, both feature recipes render, an
    optional part left out disappears with its heading, and a missing number is an error, not a blank."""
    import jinja2

    from scripts.starter.card import render_card

    card = render_card(_card_numbers())
    assert card.startswith("# Starter checkpoint") and card.endswith("stay in the work folder.\n")
    assert "| admc | 80.0 / 79.0 | 80.0 / 79.0 | 80.0 / 79.0 | 90.1 / 90.2 |" in card
    assert "| this starter, replay | 42 |" in card and "| 78.4 | 22.8 |" in card
    assert "below 0.40 (chosen on\nvalidation to keep 90 %" in card and "- face `f1`: a (p = 0.9)" in card
    assert "jittered crops (shift" in card and "conversation-like stream" not in card
    assert "\n\n\n" not in card                                   # no empty lines left by the blocks
    assert "Neutral words" not in card
    live = render_card(_card_numbers(live_render=True))
    assert "conversation-like stream" in live and "-> `FaceExtractor.classify_crops` (ResNet" not in live
    assert "(train: 4 per clip" in live and "placed on the clip alone" not in live
    mixed = render_card(_card_numbers(live_render=True, stream_windows=2, neutral_words_p=0.3, neutral_face_voice_p=0.1))
    assert "(train: 2 per clip" in mixed and "the other\n  2 training windows" in mixed
    assert "neutral, 30 % take their words from the neutral comments" in mixed and "10 % their face and voice" in mixed
    assert "\n\n\n" not in mixed and "\n\n\n" not in live
    bare = render_card(_card_numbers(calibration=None, live=[], v_diagnostics=None, timings=None, train_env=None))
    assert "## Calibration" not in bare and "## Live evaluation" not in bare and "V diagnostics" not in bare
    assert "\n\n\n" not in bare
    numbers = _card_numbers()
    del numbers["seed"]
    with pytest.raises(jinja2.UndefinedError):
        render_card(numbers)


def test_stream_training_windows_span_the_utterance_and_its_tail():
    """The live-rendered training windows of a clip end from just after its voiced onset to the
    recipe's tail after its end, on the 200 ms hop; ``--stream-tail`` reaches the app's voice hold."""
    from extractors.live.health import HealthConfig
    from scripts.starter import recipe
    from scripts.starter.speech import stream_window_ends

    ends = stream_window_ends(1.03, 2.5)
    assert ends[0] == pytest.approx(1.2) and ends[-1] == pytest.approx(2.4 + recipe.STREAM_TAIL_S, abs=0.2 + 1e-6)
    assert ends[-1] <= 2.5 + recipe.STREAM_TAIL_S + 1e-6 and np.allclose(np.diff(ends), 0.2)
    hold = HealthConfig().a_hold_s
    held = stream_window_ends(1.03, 2.5, tail=hold)
    assert held[0] == ends[0] and held[-1] == pytest.approx(2.4 + hold)
    assert stream_window_ends(1.0, 1.0, tail=hold)[-1] >= 1.0 + hold - 0.2     # a very short clip too
