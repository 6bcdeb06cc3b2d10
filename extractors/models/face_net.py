"""The project's own facial-expression network (FER2013-trained ResNet), sized for one CPU core.

``scripts/train_face_net.py`` trains it reproducibly and writes ``weights/face_resnet_fer2013.*``
(safetensors + a JSON card); :func:`load_face_net` loads them.

Input: ``[B, 1, 48, 48]`` float, a grey face crop like the FER2013 images scaled to ``[0, 1]``
and normalised with the training mean/std stored in the card (:meth:`FaceNet.preprocess` does it).
Output of :meth:`FaceNet.forward`: logits ``[B, 7]`` in the order :data:`CLASSES`;
:meth:`FaceNet.features` also returns the ``feature_dim``-d penultimate feature (global average of
the last residual stage), which is the live V feature.

Architecture: a ResNet-18 layout (four stages of two basic blocks) whose stem keeps 48x48 but whose
first stage already works at 24x24 (stride-2 first block), so the compute is about a quarter of a
full-resolution ResNet-18 on 48x48 inputs while the widths (64-128-256-512 by default) stay those of
ResNet-18.  Dropout before the classifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 48

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "face_resnet_fer2013.safetensors"
DEFAULT_META = WEIGHTS_DIR / "face_resnet_fer2013.json"


@dataclass(frozen=True)
class FaceNetShape:
    """What determines the network's parameter shapes (stored in the weights card)."""

    stem: int = 32
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: int = 2
    dropout: float = 0.3

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class FaceNet(nn.Module):
    def __init__(self, shape: FaceNetShape = FaceNetShape(), mean: float = 0.5, std: float = 0.25):
        super().__init__()
        self.shape = shape
        self.register_buffer("norm", torch.tensor([mean, std], dtype=torch.float32))
        self.stem = nn.Sequential(nn.Conv2d(1, shape.stem, 3, 1, 1, bias=False), nn.BatchNorm2d(shape.stem), nn.ReLU())
        stages, c = [], shape.stem
        for w in shape.widths:
            blocks = [BasicBlock(c, w, 2)] + [BasicBlock(w, w, 1) for _ in range(shape.blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c = w
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(shape.dropout)
        self.head = nn.Linear(c, len(CLASSES))

    @property
    def feature_dim(self) -> int:
        return self.shape.feature_dim

    def preprocess(self, grey_uint8: torch.Tensor) -> torch.Tensor:
        """``[B, 48, 48]`` or ``[B, 1, 48, 48]`` grey crops (uint8, or float in 0..255) -> normalised input."""
        x = grey_uint8.float().div(255.0)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return (x - self.norm[0]) / self.norm[1]

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised input -> (penultimate feature ``[B, feature_dim]``, logits ``[B, 7]``)."""
        f = self.stages(self.stem(x)).mean(dim=(2, 3))
        return f, self.head(self.dropout(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def save_face_net(net: FaceNet, weights: Path, meta: dict) -> None:
    """Weights as safetensors, shape + provenance as the JSON card next to them."""
    from safetensors.torch import save_file

    weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(weights))
    weights.chmod(0o644)                       # safetensors writes the file private
    card = dict(meta)
    card["shape"] = {"stem": net.shape.stem, "widths": list(net.shape.widths), "blocks": net.shape.blocks,
                     "dropout": net.shape.dropout}
    card["classes"] = list(CLASSES)
    card["input_size"] = INPUT_SIZE
    weights.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load_face_net(weights: Path = DEFAULT_WEIGHTS, meta: Path | None = None) -> FaceNet:
    """The trained network in eval mode; a missing or mismatched file fails in one line naming it."""
    from safetensors.torch import load_file

    weights = Path(weights)
    meta = Path(meta) if meta is not None else weights.with_suffix(".json")
    for p in (weights, meta):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: face network file not found")
    card = json.loads(meta.read_text())
    s = card["shape"]
    net = FaceNet(FaceNetShape(stem=int(s["stem"]), widths=tuple(int(w) for w in s["widths"]),
                               blocks=int(s["blocks"]), dropout=float(s["dropout"])))
    state = load_file(str(weights))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: does not match {meta} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net.eval()


class OnnxFaceNet:
    """The same network run by onnxruntime on the CPU: exported from the loaded torch module at load
    time (so it can never be stale against the weights), one CPU inference session.  On the shipped
    ResNet, one 48x48 crop on one idle thread: 3.1 ms against 6.5 ms in eager torch with channels-last,
    equal to 1e-4 or better (tests/test_face_net.py checks it on real faces).

    ``__call__(x)``: preprocessed ``[B, 1, 48, 48]`` float32 -> (features ``[B, feature_dim]``,
    probabilities ``[B, 7]``)."""

    def __init__(self, net: FaceNet, threads: int):
        import io
        import warnings

        from extractors.models.ort_session import cpu_session

        class _Features(nn.Module):
            def __init__(self, m: FaceNet):
                super().__init__()
                self.m = m

            def forward(self, x):
                f, logits = self.m.features(x)
                return f, logits.softmax(-1)

        buf = io.BytesIO()
        x = torch.zeros(1, 1, INPUT_SIZE, INPUT_SIZE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Features(net).float().eval(), (x,), buf, input_names=["x"], output_names=["f", "p"],
                              dynamic_axes={"x": {0: "n"}, "f": {0: "n"}, "p": {0: "n"}}, opset_version=17,
                              dynamo=False)
        self.session = cpu_session(buf.getvalue(), threads)
        self.feature_dim = net.feature_dim

    def __call__(self, x) -> tuple:
        f, p = self.session.run(None, {"x": x.astype("float32", copy=False)})
        return f, p

