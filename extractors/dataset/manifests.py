"""Manifests (``path,label,split,transcript,id[,start,end]``) for raw releases, for ``admc extract``.

``admc manifest {iemocap,mintrec,ravdess} --root DIR --out FILE.csv``.  Paths are written absolute.

* IEMOCAP (``IEMOCAP_full_release``): ``Session{1..5}/sentences/wav/<dialog>/<utt>.wav``, labels from
  ``Session*/dialog/EmoEvaluation/<dialog>.txt`` (lines ``[start - end]\\t<utt>\\t<label>\\t[v, a, d]``),
  transcripts from ``Session*/dialog/transcriptions/<dialog>.txt`` (``<utt> [start-end]: text``).
  Leave one session out: ``test_session`` is the test split, ``val_session`` (default: the session
  before it) validation, the other three train.  ``labels="4"`` keeps the usual four classes
  (ang, hap = hap + exc, neu, sad); ``"all"`` keeps every label but ``xxx`` (no majority).
  ``video=True`` points at the dialogue video ``Session*/dialog/avi/DivX/<dialog>.avi`` with the
  sentence's ``start``/``end`` instead of the sentence wav (IEMOCAP videos show both actors: the
  face extractor takes the largest face, which is not always the speaker's).
* MIntRec (thuiar/MIntRec): ``{train,dev,test}.tsv`` (season, episode, clip, text, label; one header
  row) and ``raw_data/<season>/<episode>/<clip>.mp4``; the tsv text is the transcript, ids
  ``<season>_<episode>_<clip>`` as in MIntRec, splits as released.  Classes: pass
  ``--classes`` with :data:`MINTREC_CLASSES` to keep MIntRec's label order.
* RAVDESS: file names ``MM-VC-EE-II-SS-RR-AA.ext`` (modality 01 audio-video / 02 video-only /
  03 audio-only; vocal channel 01 speech / 02 song; emotion 01..08; intensity; statement 01 "Kids
  are talking by the door" / 02 "Dogs are sitting by the door"; repetition; actor 01..24, odd =
  male), in any folder layout (``Actor_01/...wav``, ``Video_Speech_Actor_01/Actor_01/...mp4``...).
  One file per recording: the audio-video mp4 when present, else the audio-only file.  Split by
  actor (no actor in two splits); the spoken statement is the transcript by default.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from pathlib import Path

from admc.data import DatasetError
from admc.outdir import AtomicFile

COLUMNS = ("path", "label", "split", "transcript", "id", "start", "end")


def write_manifest(rows: list[dict], out: str | os.PathLike) -> Path:
    out = Path(out)
    if not rows:
        raise DatasetError(f"{out}: no samples found, nothing written")
    cols = [c for c in COLUMNS if c in ("path", "label", "split") or any(r.get(c) not in (None, "") for r in rows)]
    with AtomicFile(out) as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return out


def summary(rows: list[dict]) -> dict:
    out = {"samples": len(rows)}
    for s in ("train", "val", "test"):
        out[s] = dict(sorted(Counter(r["label"] for r in rows if r["split"] == s).items()))
    return out


# ---------------------------------------------------------------------------------------------
# IEMOCAP
# ---------------------------------------------------------------------------------------------

IEMOCAP_FOUR = {"ang": "ang", "hap": "hap", "exc": "hap", "neu": "neu", "sad": "sad"}
_EVAL_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)")
_TRANS_RE = re.compile(r"^(Ses\S+)\s+\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s*:\s*(.*)$")


def _iemocap_root(root: Path) -> Path:
    if (root / "Session1").is_dir():
        return root
    for sub in ("IEMOCAP_full_release", "IEMOCAP"):
        if (root / sub / "Session1").is_dir():
            return root / sub
    raise DatasetError(f"{root}: no Session1..Session5 folders (expected the IEMOCAP_full_release layout)")


def _txt_files(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*.txt") if not p.name.startswith("."))


def iemocap_rows(root: str | os.PathLike, test_session: int = 5, val_session: int | None = None,
                 labels: str = "4", video: bool = False) -> list[dict]:
    root = _iemocap_root(Path(root))
    if test_session not in range(1, 6):
        raise DatasetError(f"test session must be 1..5, got {test_session}")
    if val_session is None:
        val_session = test_session - 1 if test_session > 1 else 2
    if val_session not in range(1, 6) or val_session == test_session:
        raise DatasetError(f"validation session must be 1..5 and differ from the test session, got {val_session}")
    if labels not in ("4", "all"):
        raise DatasetError(f"labels must be '4' or 'all', got {labels!r}")
    rows = []
    for s in range(1, 6):
        sess = root / f"Session{s}"
        if not sess.is_dir():
            raise DatasetError(f"{sess}: missing")
        eval_dir = sess / "dialog" / "EmoEvaluation"
        if not eval_dir.is_dir():
            raise DatasetError(f"{eval_dir}: missing")
        texts: dict[str, str] = {}
        for tf in _txt_files(sess / "dialog" / "transcriptions"):
            for line in tf.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _TRANS_RE.match(line.strip())
                if m:
                    texts[m.group(1)] = m.group(4).strip()
        split = "test" if s == test_session else "val" if s == val_session else "train"
        for ef in _txt_files(eval_dir):
            for line in ef.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _EVAL_RE.match(line.strip())
                if not m:
                    continue
                start, end, utt, lab = float(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
                if labels == "4":
                    if lab not in IEMOCAP_FOUR:
                        continue
                    lab = IEMOCAP_FOUR[lab]
                elif lab == "xxx":
                    continue
                dialog = utt.rsplit("_", 1)[0]
                row = {"label": lab, "split": split, "transcript": texts.get(utt, ""), "id": utt}
                if video:
                    row.update(path=str((sess / "dialog" / "avi" / "DivX" / f"{dialog}.avi").resolve()),
                               start=f"{start:.4f}", end=f"{end:.4f}")
                else:
                    row["path"] = str((sess / "sentences" / "wav" / dialog / f"{utt}.wav").resolve())
                rows.append(row)
    rows.sort(key=lambda r: r["id"])
    return rows


# ---------------------------------------------------------------------------------------------
# MIntRec
# ---------------------------------------------------------------------------------------------

MINTREC_CLASSES = (
    "Complain", "Praise", "Apologise", "Thank", "Criticize", "Agree", "Taunt", "Flaunt", "Joke", "Oppose",
    "Comfort", "Care", "Inform", "Advise", "Arrange", "Introduce", "Leave", "Prevent", "Greet", "Ask for help",
)
MINTREC_SPLITS = {"train": "train", "dev": "val", "test": "test"}


def mintrec_rows(root: str | os.PathLike, raw_dir: str | None = None) -> tuple[list[dict], list[str]]:
    """(rows, ids whose video file is missing: left out)."""
    root = Path(root)
    if raw_dir is None:
        raw = next((root / d for d in ("raw_data", "raw_video") if (root / d).is_dir()), None)
        if raw is None:
            raise DatasetError(f"{root}: no raw_data/ folder (MIntRec's raw_data/<season>/<episode>/<clip>.mp4)")
    else:
        raw = root / raw_dir
    rows, missing = [], []
    for theirs, ours in MINTREC_SPLITS.items():
        tsv = root / f"{theirs}.tsv"
        if not tsv.is_file():
            raise DatasetError(f"{tsv}: missing split file")
        with open(tsv, newline="", encoding="utf-8") as f:
            for i, line in enumerate(csv.reader(f, delimiter="\t")):
                if i == 0 or not line:
                    continue
                if len(line) < 5:
                    raise DatasetError(f"{tsv}: line {i + 1}: {len(line)} columns, expected season, episode, "
                                       "clip, text, label")
                season, episode, clip, text, label = (c.strip() for c in line[:5])
                video = raw / season / episode / f"{clip}.mp4"
                sid = "_".join([season, episode, clip])
                if not video.is_file():
                    missing.append(sid)
                    continue
                rows.append({"path": str(video.resolve()), "label": label, "split": ours, "transcript": text,
                             "id": sid})
    return rows, missing


# ---------------------------------------------------------------------------------------------
# RAVDESS
# ---------------------------------------------------------------------------------------------

RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                    "07": "disgust", "08": "surprised"}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_TEST_ACTORS = tuple(range(19, 25))   # 3 male (19, 21, 23) + 3 female
RAVDESS_VAL_ACTORS = tuple(range(15, 19))    # 2 male + 2 female


def parse_ravdess_name(name: str) -> dict | None:
    m = _RAVDESS_RE.match(Path(name).stem)
    if not m:
        return None
    mod, ch, emo, inten, stmt, rep, actor = m.groups()
    if emo not in RAVDESS_EMOTIONS or stmt not in RAVDESS_STATEMENTS:
        return None
    return {"modality": mod, "channel": ch, "emotion": RAVDESS_EMOTIONS[emo], "intensity": inten,
            "statement": stmt, "repetition": rep, "actor": int(actor)}


def ravdess_rows(root: str | os.PathLike, test_actors=RAVDESS_TEST_ACTORS, val_actors=RAVDESS_VAL_ACTORS,
                 channel: str = "speech", calm: str = "keep", transcript: str = "statement",
                 media: str = "auto") -> list[dict]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    test_actors, val_actors = set(test_actors), set(val_actors)
    if test_actors & val_actors:
        raise DatasetError(f"actors {sorted(test_actors & val_actors)} are in both test and val")
    if channel not in ("speech", "song", "all") or calm not in ("keep", "neutral", "drop") or \
            transcript not in ("statement", "asr") or media not in ("auto", "av", "audio"):
        raise DatasetError("bad option: channel speech|song|all, calm keep|neutral|drop, "
                           "transcript statement|asr, media auto|av|audio")
    want_ch = {"speech": {"01"}, "song": {"02"}, "all": {"01", "02"}}[channel]
    best: dict[str, tuple[int, Path, dict]] = {}
    rank = {"auto": {"01": 0, "03": 1}, "av": {"01": 0}, "audio": {"03": 0}}[media]
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            if fn.startswith("."):
                continue
            info = parse_ravdess_name(fn)
            if info is None or info["channel"] not in want_ch or info["modality"] not in rank:
                continue
            key = "-".join(Path(fn).stem.split("-")[1:])   # the recording, whatever the modality
            r = rank[info["modality"]]
            if key not in best or r < best[key][0]:
                best[key] = (r, Path(dirpath) / fn, info)
    rows = []
    for key, (_, path, info) in sorted(best.items()):
        label = info["emotion"]
        if label == "calm" and calm != "keep":
            if calm == "drop":
                continue
            label = "neutral"
        a = info["actor"]
        split = "test" if a in test_actors else "val" if a in val_actors else "train"
        rows.append({"path": str(path.resolve()), "label": label, "split": split,
                     "transcript": RAVDESS_STATEMENTS[info["statement"]] if transcript == "statement" else "",
                     "id": path.stem})
    return rows


def actors(spec: str) -> tuple[int, ...]:
    """``"19-24"`` or ``"1,3,5"`` or ``"15-16,18"`` -> actor numbers."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return tuple(out)
