"""Generated inputs for tests and benchmarks (not part of the app): a tiny live-schema checkpoint
and synthetic media.

* :func:`make_tiny_checkpoint` (random features, a few epochs): it predicts nothing meaningful; it
  has exactly the shape of a real live checkpoint (A/V/T sequences of the live extractors' dims, 3 s
  windows), so the app's whole path can be exercised while the real starter checkpoint is not
  available.  :func:`cached_tiny_checkpoint` keeps one per cache folder.
* Media: a drawn face (:func:`clip_frame`, :func:`shifted_frame`), espeak-ng speech (:func:`espeak`),
  the app tests' labelled clip (:func:`make_test_clip`), small extraction manifests
  (:func:`make_clip_manifest`), and writers for MP4 and Chromium's fake-camera Y4M.

    python -m benchmarks.fixtures OUT_DIR        # writes OUT_DIR/data and the run OUT_DIR/run
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

CLASSES = ("neutral", "happy", "sad", "angry")


#: the tiny checkpoint's feature set: the first one (openSMILE, mini-Xception, MiniLM), whose
#: extractors the app tests' stand-ins imitate
TINY_FEATURE_SET = "opensmile-minixception-minilm"


def make_live_dataset(path: Path, n: int = 60, classes=CLASSES, seed: int = 0,
                      feature_set_name: str = TINY_FEATURE_SET) -> Path:
    from admc.data import split_from_samples, write_dataset
    from extractors.live_schema import feature_set

    rng = np.random.default_rng(seed)
    fs = feature_set(feature_set_name)
    schema = fs.schema(list(classes))
    C = len(classes)
    dims = fs.dims()
    centers = {m: rng.normal(0, 1.0, (C, d)).astype(np.float32) for m, d in dims.items()}
    splits = {}
    sizes = {"train": n, "val": max(C * 3, n // 3)}
    k = 0
    for split, size in sizes.items():
        y = np.arange(size) % C
        rng.shuffle(y)
        samples = {m: [] for m in dims}
        for c in y:
            for m, d in dims.items():
                rows = int(rng.integers(20, 31)) if m != "T" else int(rng.integers(3, 12))
                samples[m].append(centers[m][c] + rng.normal(0, 1.0, (rows, d)).astype(np.float32))
        ids = [f"w{k + i:05d}" for i in range(size)]
        k += size
        splits[split] = split_from_samples(split, y, ids, samples)
    return write_dataset(path, "tiny-live-random", schema, splits, extra_meta={"feature_set": fs.name})


def make_tiny_checkpoint(out: Path, n: int = 60, classes=CLASSES, seed: int = 0, epochs: int = 2,
                         small: bool = False, feature_set_name: str = TINY_FEATURE_SET) -> Path:
    """Train and save a tiny run at ``out`` on random features of ``feature_set_name``; returns ``out``.

    ``small``: narrow networks (seconds to train; for tests).  Otherwise the default architecture
    (the inference cost of a real checkpoint; for benchmarks), trained for ``epochs`` only.
    """
    import torch

    from admc.config import TrainConfig
    from admc.data import load_dataset
    from admc.run import save_run
    from admc.runtime import seed_everything, set_quiet
    from admc.train import train

    out = Path(out)
    data = make_live_dataset(out.parent / f"{out.name}-data", n, classes, seed, feature_set_name)
    ds = load_dataset(data, splits=("train", "val"))
    cfg = TrainConfig()
    cfg.itfn.epochs = epochs
    cfg.adn.epochs = epochs
    cfg.fusion.epochs = epochs
    if small:
        cfg.itfn.emb_dim = 64
        cfg.adn.d_model, cfg.adn.ff, cfg.adn.layers, cfg.adn.heads = 64, 128, 2, 4
        cfg.fusion.d_model, cfg.fusion.ff, cfg.fusion.hidden = 32, 64, 32
    cfg.seed = seed
    set_quiet(True)
    seed_everything(seed)
    torch.use_deterministic_algorithms(False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny ops: more threads only spin (and fight other processes)
    try:
        model, info = train(ds, cfg, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    save_run(model, out, info, ["benchmarks.fixtures.make_tiny_checkpoint", str(out)],
             {"path": str(data), "name": ds.name, "feature_set": ds.meta["feature_set"],
              "note": "random features: for tests only"})
    return out


# ------------------------------------------------------------------------------------------ test clip
SPEECH = ("The quick brown fox jumps over the lazy dog. "
          "I am so happy to see you here today, this is wonderful news.")


@functools.lru_cache(maxsize=4)
def _face_image(w: int, h: int) -> np.ndarray:
    from PIL import Image
    from skimage import data as skdata

    face = np.asarray(Image.fromarray(skdata.astronaut()).resize((h, h), Image.Resampling.BILINEAR))
    img = np.full((h, w, 3), 96, np.uint8)
    x0 = (w - h) // 2
    img[:, x0:x0 + h] = face
    return img


def clip_frame(kind: str, size=(640, 480), rng=None) -> np.ndarray:
    """One frame of the test clip: ``"face"`` (scikit-image's astronaut, letterboxed, with sensor
    noise) or ``"black"``."""
    w, h = size
    if kind == "black":
        return np.zeros((h, w, 3), np.uint8)
    img = _face_image(w, h)
    rng = rng if rng is not None else np.random.default_rng(0)
    return np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


def shifted_frame(img: np.ndarray, dx: int, dy: int, fill: int = 96) -> np.ndarray:
    """``img`` moved by (dx, dy) pixels on a ``fill`` background, same size (a face moving in view)."""
    out = np.full_like(img, fill)
    h, w = img.shape[:2]
    src = img[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out


def espeak(text: str, path: Path, speed: int = 140) -> tuple[np.ndarray, int]:
    import shutil
    import subprocess

    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng; requirements/apt.txt)")
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    x, sr = sf.read(str(path), dtype="float32")
    return x, sr


def clip_plan(duration: float = 14.0, face_off=(4.0, 7.0), speech_start: float = 0.3):
    """(kind of frame at time t) for the test clip: face, black during ``face_off``, face."""
    def kind(t: float) -> str:
        return "black" if face_off[0] <= t < face_off[1] else "face"
    return kind


def make_test_clip(out_dir: Path, duration: float = 14.0, fps: float = 15.0, size=(640, 480),
                   face_off=(4.0, 7.0), speech_start: float = 0.3, sr: int = 16000,
                   y4m: bool = False, y4m_size=(320, 240), y4m_fps: float = 10.0) -> dict:
    """A clip where the face disappears and the speech stops.

    Video: the astronaut's face, black frames during ``face_off``, the face again.  Audio:
    espeak-ng speech from ``speech_start`` (about 8 s), then silence.  Writes ``clip.mp4``
    (H.264 + AAC, with PyAV), ``clip.wav`` and, with ``y4m``, ``clip.y4m`` (raw frames for
    Chromium's fake camera).  Returns paths and the timeline.
    """
    import soundfile as sf

    from extractors.models.audio import resample

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, xsr = espeak(SPEECH, out_dir / "speech.wav")
    x = resample(x, xsr, sr)
    audio = np.zeros(int(duration * sr), np.float32)
    a = int(speech_start * sr)
    n = min(len(x), len(audio) - a)
    audio[a:a + n] = 0.8 * x[:n]
    voiced = np.flatnonzero(np.abs(audio) > 0.02)
    speech_end = float(voiced[-1] / sr) if voiced.size else speech_start
    sf.write(str(out_dir / "clip.wav"), audio, sr, subtype="PCM_16")
    kind = clip_plan(duration, face_off, speech_start)
    rng = np.random.default_rng(0)
    path = write_mp4(out_dir / "clip.mp4", (clip_frame(kind(i / fps), size, rng)
                                             for i in range(int(round(duration * fps)))), audio, fps, sr)
    info = {"mp4": path, "wav": out_dir / "clip.wav", "duration": duration, "fps": fps,
            "face_off": tuple(face_off), "speech_start": speech_start, "speech_end": speech_end}
    if y4m:
        info["y4m"] = write_y4m(out_dir / "clip.y4m", [clip_frame(kind(i / y4m_fps), y4m_size, rng)
                                                        for i in range(int(round(duration * y4m_fps)))],
                                y4m_fps)
    return info


MANIFEST_SENTENCES = ("I am so happy to see you", "this is terrible news", "we will meet at noon",
                      "what a wonderful day")


def make_clip_manifest(out_dir: Path, n: int, seconds: float = 3.0, fps: float = 10.0, size=(320, 240),
                       broken: bool = True) -> Path:
    """``n`` short clips for ``admc extract`` and their manifest ``out_dir/manifest.csv``: the
    astronaut's face for the first 60% of each clip then black frames, espeak-ng speech of one of
    :data:`MANIFEST_SENTENCES` (also the row's transcript); labels happy/sad, splits train/val/test in
    turn; with ``broken`` one more row whose file is not a video (skipped by the extractors)."""
    import csv

    from extractors.models.audio import resample

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    frames = int(round(seconds * fps))
    for i in range(n):
        text = MANIFEST_SENTENCES[i % len(MANIFEST_SENTENCES)]
        x, sr = espeak(text, out_dir / f"speech{i}.wav")
        audio = np.zeros(int(seconds * 16000), np.float32)
        x = resample(x, sr, 16000)[:len(audio)]
        audio[:len(x)] = 0.8 * x
        rng = np.random.default_rng(i)
        write_mp4(out_dir / f"clip{i}.mp4", (clip_frame("face" if j < 0.6 * frames else "black", size, rng)
                                             for j in range(frames)), audio, fps)
        (out_dir / f"speech{i}.wav").unlink()
        rows.append([f"clip{i}.mp4", ("happy", "sad")[i % 2], ("train", "val", "test")[i % 3], text, f"clip{i}"])
    if broken:
        (out_dir / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad\xbe\xef" * 300)
        rows.append(["broken.mp4", "sad", "train", "", "broken"])
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "transcript", "id"])
        w.writerows(rows)
    return out_dir / "manifest.csv"


def write_mp4(path: Path, frames, audio: np.ndarray, fps: float, sr: int = 16000) -> Path:
    """RGB frames (uint8, all the same even size) at ``fps`` and mono float ``audio`` at ``sr`` as an
    H.264 + AAC mp4 (PyAV), audio interleaved up to each frame's time."""
    import av

    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=int(fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "23", "preset": "veryfast"}
        ast = c.add_stream("aac", rate=sr)
        ast.layout = "mono"
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        step, s = 1024, 0

        def audio_until(t_end: float) -> None:     # interleave: audio up to the video time
            nonlocal s
            while s < len(pcm) and s / sr < t_end:
                af = av.AudioFrame.from_ndarray(pcm[None, s:s + step], format="s16", layout="mono")
                af.sample_rate = sr
                af.pts = s
                for p in ast.encode(af):
                    c.mux(p)
                s += step

        i = 0
        for frame in _chain(first, frames):
            fr = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for p in vs.encode(fr):
                c.mux(p)
            i += 1
            audio_until(i / fps)
        for p in vs.encode():
            c.mux(p)
        audio_until(len(audio) / sr + 1.0)
        for p in ast.encode():
            c.mux(p)
    return path


def _chain(first, rest):
    yield first
    yield from rest


def write_y4m(path: Path, frames, fps: float) -> Path:
    """Frames (uint8 RGB, even sizes) as a YUV4MPEG2 4:2:0 file (Chromium's fake camera input)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{int(round(fps))}:1 Ip A1:1 C420jpeg\n".encode())
        for fr in frames:
            rgb = fr.astype(np.float32)
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
            v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
            u = u.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            v = v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
            f.write(b"FRAME\n")
            for plane in (y, u, v):
                f.write(np.clip(plane.round(), 0, 255).astype(np.uint8).tobytes())
    return path


def cached_tiny_checkpoint(cache_dir: Path, small: bool = False) -> Path:
    """:func:`make_tiny_checkpoint` once per ``cache_dir`` (e.g. a pytest session's base temp)."""
    out = Path(cache_dir) / ("app-tiny-run-small" if small else "app-tiny-run")
    if not (out / "run.json").is_file():
        make_tiny_checkpoint(out, small=small)
    return out


def cached_test_clip(cache_dir: Path, **kw) -> dict:
    """:func:`make_test_clip` once per ``cache_dir`` (with the y4m for the browser test)."""
    import json

    d = Path(cache_dir) / "app-test-clip"
    info_file = d / "info.json"
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        return {k: (Path(v) if k in ("mp4", "wav", "y4m") else v) for k, v in info.items()}
    info = make_test_clip(d, y4m=True, **kw)
    info_file.write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}))
    return info


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m benchmarks.fixtures OUT_DIR")
    import torch

    torch.set_num_threads(1)
    print(make_tiny_checkpoint(Path(sys.argv[1]) / "run"))
