"""The shipped starter checkpoint (weights/starter, built by scripts/build_starter.py).

It must load, have exactly the live schema, and classify a few clearly expressive real held-out
recordings through the live path (`predict_window` with one modality, the other two completed).
Examples were picked by the rule in weights/starter/MODEL_CARD.md ("Test examples") and are fixed
here by id: FER2013 PublicTest faces (V only: the crop's face-network features held for 30 rows)
and speech clips of the test speakers (A only: the centred 3 s window, features as in the build).
"""

from __future__ import annotations

import importlib.util
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
    spec = importlib.util.spec_from_file_location("build_starter", REPO / "scripts" / "build_starter.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, meta = starter
    mod.FEATURES = feature_set_of(meta, model.schema)      # the starter's extractors, not the script's default
    return mod


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
