"""The project's FER2013 network: the training script (resume, export, card) on a generated FER-style
folder, the exported weights loaded into the live face extractor, and the shipped weights."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from extractors.models.face import CLASSES, FaceExtractor
from extractors.models.face_net import DEFAULT_WEIGHTS, FaceNet, FaceNetShape, load_face_net

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_face_net.py"
TINY = ["--widths", "8,8,16,16", "--stem", "8", "--batch", "32", "--threads", "1"]


def _fer_folder(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """A FER2013-shaped folder: 48x48 grey JPEGs whose brightness pattern depends on the class."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", per_class), ("test", 4)):
        for ci, c in enumerate(CLASSES):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                img = rng.integers(0, 60, (48, 48)).astype(np.uint8)
                img[:, ci * 6:ci * 6 + 6] += 150
                prefix = "" if split == "train" else ("PublicTest_" if k % 2 else "PrivateTest_")
                rel = f"{split}/{c}/{prefix}{ci}_{k}.jpg"
                Image.fromarray(img).save(root / rel)
                rows.append({"path": rel, "label": c, "split": split, "speaker_or_subject": ""})
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _train(data: Path, work: Path, out: Path, epochs: int, extra: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--work", str(work), "--out", str(out),
                           "--epochs", str(epochs), "--warmup", "1", *TINY, *extra],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def _history(card: dict) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in card["history"]]


@pytest.mark.slow
def test_training_resumes_where_it_stopped_and_exports_a_loadable_network(tmp_path):
    import torch

    data = _fer_folder(tmp_path / "fer")
    straight = tmp_path / "straight" / "face"
    r = _train(data, tmp_path / "work_a", straight, epochs=3)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads(straight.with_suffix(".json").read_text())
    assert [h["epoch"] for h in card["history"]] == [1, 2, 3]
    for split in ("val", "PublicTest", "PrivateTest"):
        assert set(card["scores"][split]) == {"single", "flip"}
    assert card["latency_one_core"]["p50_ms"] > 0 and card["normalisation"]["std"] > 0
    md = straight.with_suffix(".md").read_text()
    assert "PrivateTest" in md and f"{card['scores']['PrivateTest']['single']['accuracy']:.2f}" in md

    # the same training stopped after one epoch, then continued: the same epochs, the same network
    resumed = tmp_path / "resumed" / "face"
    r1 = _train(data, tmp_path / "work_b", resumed, epochs=3, extra=["--stop-after", "1"])
    assert r1.returncode == 0 and "stopped after epoch 1" in r1.stdout and not resumed.with_suffix(".json").exists()
    r2 = _train(data, tmp_path / "work_b", resumed, epochs=3)
    assert r2.returncode == 0 and "resuming" in r2.stdout, r2.stderr[-2000:]
    assert _history(json.loads(resumed.with_suffix(".json").read_text())) == _history(card)

    # another recipe in the same work folder is refused, not mixed in
    r3 = _train(data, tmp_path / "work_b", resumed, epochs=3, extra=["--lr", "0.05"])
    assert r3.returncode != 0 and "another recipe" in (r3.stderr + r3.stdout)

    net = load_face_net(straight.with_suffix(".safetensors"))
    feat, logits = net.features(net.preprocess(torch.zeros(3, 48, 48, dtype=torch.uint8)))
    assert feat.shape == (3, 16) and logits.shape == (3, len(CLASSES))


def test_a_mismatched_card_is_refused_in_one_line(tmp_path):
    from extractors.models.face_net import save_face_net

    net = FaceNet(FaceNetShape(stem=8, widths=(8, 8, 16, 16)))
    path = tmp_path / "n.safetensors"
    save_face_net(net, path, {"name": "t"})
    card = json.loads(path.with_suffix(".json").read_text())
    card["shape"]["widths"] = [8, 8, 16, 32]
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(Exception) as e:
        load_face_net(path)
    assert str(path) in str(e.value) or "size mismatch" in str(e.value)


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="weights/face_resnet_fer2013 not trained yet")
def test_shipped_network_in_the_face_extractor(tmp_path):
    from tests.shared_data import SHARED_DATA

    fx = FaceExtractor(device="cpu", network="resnet")
    assert fx.feature_dim == load_face_net().feature_dim
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    faces = sorted((SHARED_DATA / "fer2013" / "test" / "happy").glob("PrivateTest_*.jpg"))[:20]
    if not faces:
        pytest.skip("the shared data (FER2013) is not here")
    crops = np.stack([np.asarray(Image.open(p).convert("L")) for p in faces])
    feat, prob = fx.classify_crops(crops)
    assert feat.shape == (len(faces), fx.feature_dim) and np.allclose(prob.sum(1), 1, atol=1e-5)
    # the network the card describes: most of these happy test faces read as happy
    assert (prob.argmax(1) == CLASSES.index("happy")).mean() >= 0.7, card["scores"]["PrivateTest"]


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="weights/face_resnet_fer2013 not trained yet")
def test_the_face_network_runs_in_onnxruntime_with_the_eager_networks_numbers():
    """On the CPU the expression network runs in onnxruntime (exported from the loaded weights at load
    time); its features and probabilities equal eager torch's on real faces, one crop and a batch."""
    import torch

    from extractors.models.face import ExpressionNetwork
    from tests.shared_data import SHARED_DATA

    net = ExpressionNetwork.load("resnet", None, torch.device("cpu"))
    assert net.backend == "onnxruntime"
    faces = sorted((SHARED_DATA / "fer2013" / "test" / "sad").glob("PrivateTest_*.jpg"))[:12]
    if not faces:
        pytest.skip("the shared data (FER2013) is not here")
    crops = [np.asarray(Image.open(p).convert("L"), np.float32) for p in faces]
    crops[0] = np.asarray(Image.fromarray(crops[0].astype(np.uint8)).resize((64, 64)), np.float32)  # resized on the way
    for batch in (crops[:1], crops):
        f_ort, p_ort = net(batch)
        runtime, net.runtime = net.runtime, None
        try:
            f_eager, p_eager = net(batch)
        finally:
            net.runtime = runtime
        assert f_ort.shape == f_eager.shape and p_ort.shape == p_eager.shape
        assert np.abs(f_ort - f_eager).max() < 1e-4 and np.abs(p_ort - p_eager).max() < 1e-5
