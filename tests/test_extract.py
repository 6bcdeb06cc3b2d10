"""``admc extract`` and ``admc manifest``: real extractors on generated media (no mocks).

Media: an mp4 whose first 1.5 s show a real face (scikit-image's astronaut photo) and whose last
1.5 s are black, with espeak-ng speech as its audio track; an audio-only wav; a still image; a
video with black frames and no audio; a corrupt file.  The layout helpers run on tiny copies of the
IEMOCAP, MIntRec and RAVDESS folder layouts (file names and annotation lines as released).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from app.commands import main as admc_main
from admc.data import DatasetError, load_dataset
from admc.outdir import OutputError
from extractors.dataset import builder as db
from extractors.dataset import manifests as mf
from extractors.live_schema import DEFAULT_FEATURE_SET, live_schema

torch.set_num_threads(1)

FPS = 10
SECONDS = 3.0
FACE_FRAMES = 15
SENTENCE = "I am so happy to see you today"


def espeak(text: str, path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: apt-get install -y espeak-ng (requirements/apt.txt)")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    x, sr = sf.read(str(path), dtype="float32")
    return x, sr


def write_video(path: Path, frames: list[np.ndarray], audio: np.ndarray | None = None, sr: int = 22050) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if audio is not None:
            aus = c.add_stream("aac", rate=sr)
            aus.layout = "mono"
        for fr in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio is not None:
            for s in range(0, len(audio), 1024):
                f = av.AudioFrame.from_ndarray(audio[None, s:s + 1024].astype(np.float32), format="flt",
                                               layout="mono")
                f.sample_rate, f.pts = sr, s
                for p in aus.encode(f):
                    c.mux(p)
            for p in aus.encode():
                c.mux(p)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from PIL import Image

    skdata = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("media")
    face = np.asarray(Image.fromarray(skdata.astronaut()).resize((320, 320)))
    speech, sr = espeak(SENTENCE, root / "speech.wav")
    track = np.zeros(int(SECONDS * sr), np.float32)
    track[:min(len(speech), len(track))] = speech[:len(track)]
    n = int(SECONDS * FPS)
    write_video(root / "clip.mp4", [face if i < FACE_FRAMES else np.zeros_like(face) for i in range(n)], track, sr)
    write_video(root / "dark.mp4", [np.zeros((64, 64, 3), np.uint8)] * 10)
    shutil.copy(root / "speech.wav", root / "voice.wav")
    Image.fromarray(face).save(root / "still.jpg")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad\xbe\xef" * 300)
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "transcript", "id"])
        w.writerow(["clip.mp4", "happy", "train", "", "clip"])              # transcript from ASR
        w.writerow(["broken.mp4", "sad", "train", "", "broken"])            # unreadable: skipped
        w.writerow(["dark.mp4", "sad", "train", "", "dark"])                # nothing usable: skipped
        w.writerow(["voice.wav", "happy", "val", "so happy to see you", "voice"])
        w.writerow(["still.jpg", "neutral", "test", "", "still"])           # V only
    return root


@pytest.fixture(scope="module")
def extracted(media, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "feats"
    rc = admc_main(["extract", "--manifest", str(media / "manifest.csv"), "--out", str(out),
                    "--classes", "happy,sad,neutral", "--quiet"])
    assert rc == 0
    return out


def test_extract_shapes_presence_and_loads(extracted):
    ds = load_dataset(extracted)
    assert ds.schema == live_schema(["happy", "sad", "neutral"])
    tr, va, te = ds["train"], ds["val"], ds["test"]
    assert tr.ids.tolist() == ["clip"] and va.ids.tolist() == ["voice"] and te.ids.tolist() == ["still"]
    assert [ds.classes[i] for i in (tr.labels[0], va.labels[0], te.labels[0])] == ["happy", "happy", "neutral"]

    def n_rows(split, m):
        return int(split.offsets[m][1] - split.offsets[m][0])

    # video: face rows only for the frames that show a face, 10 audio rows per second, ASR text
    assert tr.present["V"][0] and FACE_FRAMES - 3 <= n_rows(tr, "V") <= FACE_FRAMES
    assert tr.present["A"][0] and abs(n_rows(tr, "A") - SECONDS * FPS) <= 1
    assert tr.present["T"][0] and n_rows(tr, "T") >= 5
    # audio-only: V missing (one zero row), T from the given transcript
    assert va.present["A"][0] and not va.present["V"][0] and n_rows(va, "V") == 1
    assert not va.rows["V"].any()
    assert va.present["T"][0] and n_rows(va, "T") == 5       # "so happy to see you": 5 word pieces
    # still image: one face row; no audio, no transcript
    assert te.present["V"][0] and n_rows(te, "V") == 1
    assert not te.present["A"][0] and not te.present["T"][0]
    for split in (tr, va, te):
        for m in "AVT":
            assert split.rows[m].dtype == np.float32 and np.isfinite(split.rows[m]).all()


def test_extract_reports_skipped_and_records_extractors(extracted):
    meta = json.loads((extracted / "meta.json").read_text())
    ex = meta["extract"]
    skipped = {s["id"]: s["reason"] for s in ex["skipped"]}
    assert set(skipped) == {"broken", "dark"}
    assert "Invalid data" in skipped["broken"] or "Error" in skipped["broken"]
    assert "no usable modality" in skipped["dark"]
    assert ex["counts"]["train"] == {"samples": 1, "A_present": 1, "V_present": 1, "T_present": 1}
    parts = {p["extractor"].rsplit(".", 1)[-1]: p for p in ex["extractors"]["A"]["parts"]}
    assert list(parts) == ["AudioFeatureExtractor", "WhisperEncoderFeatures"] and parts["AudioFeatureExtractor"]["opensmile"]
    assert ex["extractors"]["V"]["weights_sha256"] and "ResNet" in ex["extractors"]["V"]["network"]
    assert meta["feature_set"] == ex["settings"]["feature_set"] == DEFAULT_FEATURE_SET
    assert ex["extractors"]["V"]["fps"] == 10 and ex["settings"]["asr"] is True
    texts = {json.loads(line)["id"]: json.loads(line) for line in (extracted / "transcripts.jsonl").open()}
    assert texts["clip"]["source"] == "asr" and "happy" in texts["clip"]["text"].lower()
    assert texts["voice"]["source"] == "manifest"


@pytest.mark.slow
def test_extract_with_the_first_feature_set(media, tmp_path):
    """--feature-set picks the extractors: the first starter's (openSMILE, mini-Xception, MiniLM)."""
    out = tmp_path / "v1"
    assert admc_main(["extract", "--manifest", str(media / "manifest.csv"), "--out", str(out), "--classes",
                      "happy,sad,neutral", "--feature-set", "opensmile-minixception-minilm", "--quiet"]) == 0
    ds = load_dataset(out)
    assert {m.name: m.dim for m in ds.schema.modalities} == {"A": 130, "V": 128, "T": 384}
    assert json.loads((out / "meta.json").read_text())["feature_set"] == "opensmile-minixception-minilm"
    with pytest.raises(SystemExit):
        admc_main(["extract", "--manifest", str(media / "manifest.csv"), "--out", str(tmp_path / "x"),
                   "--feature-set", "nope"])


def test_extract_resumes_from_cache(extracted, media, monkeypatch):
    before = load_dataset(extracted)
    calls = []
    real = db.SampleExtractor.__call__

    def counting(self, row):
        calls.append(row.id)
        return real(self, row)

    monkeypatch.setattr(db.SampleExtractor, "__call__", counting)
    # as after an interruption: one finished sample's cache file is gone
    cache = sorted((extracted / ".cache").glob("*.npz"))
    assert len(cache) == 4                                   # every sample but the unreadable one
    victim = db.cache_key(db.read_manifest(media / "manifest.csv")[3], db.ExtractSettings())
    (extracted / ".cache" / f"{victim}.npz").unlink()
    db.extract_manifest(media / "manifest.csv", extracted, classes=["happy", "sad", "neutral"], progress=False)
    assert sorted(calls) == ["broken", "voice"]              # the failed file is retried, the rest reused
    after = load_dataset(extracted)
    for s in ("train", "val", "test"):
        for m in "AVT":
            np.testing.assert_array_equal(before[s].rows[m], after[s].rows[m])


def test_extract_worker_pool_gives_the_same_features(extracted, media, tmp_path):
    rows = list(csv.DictReader(open(media / "manifest.csv")))
    man = tmp_path / "m.csv"
    with open(man, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            if r["id"] in ("voice", "still", "broken"):
                w.writerow({**r, "path": str(media / r["path"]),
                            "split": {"voice": "train", "still": "val", "broken": "test"}[r["id"]]})
        w.writerow({**rows[3], "path": str(media / "voice.wav"), "id": "voice2", "split": "test"})
    out = db.extract_manifest(man, tmp_path / "pool", workers=2, progress=False, classes=["happy", "sad", "neutral"])
    ds, ref = load_dataset(out), load_dataset(extracted)
    np.testing.assert_allclose(ds["train"].rows["A"], ref["val"].rows["A"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds["val"].rows["V"], ref["test"].rows["V"], rtol=1e-5, atol=1e-5)
    assert [s["id"] for s in json.loads((out / "meta.json").read_text())["extract"]["skipped"]] == ["broken"]


def test_manifest_errors(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_text("path,label\nx.wav,happy\n")
    with pytest.raises(DatasetError, match=r"lacks column.*split"):
        db.read_manifest(bad)
    bad.write_text("path,label,split\nx.wav,happy,train\nx.wav,sad,val\n")
    with pytest.raises(DatasetError, match=r"line 3: sample id 'x' already used on line 2"):
        db.read_manifest(bad)
    bad.write_text("path,label,split\nx.wav,happy,holdout\n")
    with pytest.raises(DatasetError, match=r"line 2: column 'split'"):
        db.read_manifest(bad)
    bad.write_text("path,label,split\nx.wav,happy,train\ny.wav,sad,dev\nz.wav,sad,test\n")
    assert [r.split for r in db.read_manifest(bad)] == ["train", "val", "test"]
    with pytest.raises(DatasetError, match=r"labels \['happy'\] are not in the class list"):
        db.extract_manifest(bad, tmp_path / "o", classes=["sad"], progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"refusing to replace"):
        db.extract_manifest(bad, tmp_path / "busy", progress=False)


# ---------------------------------------------------------------------------------------------
# layout helpers on tiny copies of the real release layouts
# ---------------------------------------------------------------------------------------------

def make_iemocap(root: Path) -> None:
    """Session1..5 with one improvised dialogue each (2 sentences per actor), as released."""
    emo = ["neu", "exc", "ang", "xxx"]
    for s in range(1, 6):
        sess = root / "IEMOCAP_full_release" / f"Session{s}"
        dialog = f"Ses0{s}F_impro01"
        for d in ("dialog/EmoEvaluation/Categorical", "dialog/transcriptions", f"sentences/wav/{dialog}",
                  "dialog/avi/DivX"):
            (sess / d).mkdir(parents=True, exist_ok=True)
        ev = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        tr = []
        for i, utt in enumerate([f"{dialog}_F000", f"{dialog}_M000", f"{dialog}_F001", f"{dialog}_M001"]):
            a, b = 2.0 * i + 0.5, 2.0 * i + 2.1
            ev += [f"[{a:.4f} - {b:.4f}]\t{utt}\t{emo[i]}\t[2.5000, 2.5000, 2.5000]",
                   f"C-E2:\tNeutral;\t()", f"A-E3:\tval 3; act 2; dom  3;\t()", ""]
            tr.append(f"{utt} [{a:08.4f}-{b:08.4f}]: Sentence {i} of session {s}.")
            (sess / "sentences" / "wav" / dialog / f"{utt}.wav").write_bytes(b"")
        tr.insert(1, "M: [LAUGHTER]")                              # lines without an utterance id
        (sess / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(ev) + "\n")
        (sess / "dialog" / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(b"\x00\x05")  # macOS debris
        (sess / "dialog" / "EmoEvaluation" / "Categorical" / f"{dialog}_e2_cat.txt").write_text("x\n")
        (sess / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(tr) + "\n")


def test_iemocap_manifest(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    make_iemocap(root)
    rows = mf.iemocap_rows(root, test_session=5)
    assert len(rows) == 15                                    # xxx dropped
    by_id = {r["id"]: r for r in rows}
    r = by_id["Ses02F_impro01_M000"]
    assert r["label"] == "hap" and r["split"] == "train" and r["transcript"] == "Sentence 1 of session 2."
    assert r["path"].endswith("Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_M000.wav")
    assert {r["split"] for r in rows if r["id"].startswith("Ses05")} == {"test"}
    assert {r["split"] for r in rows if r["id"].startswith("Ses04")} == {"val"}
    assert {r["label"] for r in rows} == {"neu", "hap", "ang"}
    v = {r["id"]: r for r in mf.iemocap_rows(root, test_session=1, labels="all", video=True)}
    assert v["Ses01F_impro01_F001"]["path"].endswith("Session1/dialog/avi/DivX/Ses01F_impro01.avi")
    assert (v["Ses01F_impro01_F001"]["start"], v["Ses01F_impro01_F001"]["end"]) == ("4.5000", "6.1000")
    assert v["Ses02F_impro01_F000"]["split"] == "val" and v["Ses01F_impro01_M000"]["label"] == "exc"
    out = tmp_path / "m.csv"
    assert admc_main(["manifest", "iemocap", "--root", str(root), "--out", str(out), "--quiet"]) == 0
    assert len(db.read_manifest(out)) == 15


def test_mintrec_manifest(tmp_path):
    root = tmp_path / "MIntRec"
    rows_in = {"train": [("S04", "E01", "1", "Thank you so much!", "Thank")],
               "dev": [("S05", "E02", "99", "I'm sorry.", "Apologise")],
               "test": [("S06", "E10", "7", "Where is the manager?", "Ask for help"),
                        ("S06", "E10", "8", "gone", "Leave")]}
    root.mkdir()
    for split, rows in rows_in.items():
        with open(root / f"{split}.tsv", "w") as f:
            f.write("season\tepisode\tclip\ttext\tlabel\n")
            for r in rows:
                f.write("\t".join(r) + "\n")
                if r[2] != "8":                                  # one clip missing from raw_data
                    p = root / "raw_data" / r[0] / r[1] / f"{r[2]}.mp4"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(b"")
    rows, missing = mf.mintrec_rows(root)
    assert missing == ["S06_E10_8"]
    assert [(r["id"], r["split"], r["label"], r["transcript"]) for r in rows] == [
        ("S04_E01_1", "train", "Thank", "Thank you so much!"), ("S05_E02_99", "val", "Apologise", "I'm sorry."),
        ("S06_E10_7", "test", "Ask for help", "Where is the manager?")]
    assert rows[0]["path"].endswith("raw_data/S04/E01/1.mp4")
    assert set(r["label"] for r in rows) <= set(mf.MINTREC_CLASSES)


def test_ravdess_manifest(tmp_path):
    root = tmp_path / "ravdess"
    names = []
    for actor in (1, 2, 15, 20):
        for emo in ("01", "02", "05"):
            names.append(f"Actor_{actor:02d}/03-01-{emo}-01-01-01-{actor:02d}.wav")
            names.append(f"Video_Speech_Actor_{actor:02d}/Actor_{actor:02d}/02-01-{emo}-01-01-01-{actor:02d}.mp4")
        names.append(f"Video_Speech_Actor_{actor:02d}/Actor_{actor:02d}/01-01-08-02-02-01-{actor:02d}.mp4")
        names.append(f"Actor_{actor:02d}/03-01-08-02-02-01-{actor:02d}.wav")
        names.append(f"Song_Actor_{actor:02d}/03-02-03-01-01-01-{actor:02d}.wav")
    names.append("Actor_01/README.txt")
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")
    rows = mf.ravdess_rows(root)
    assert len(rows) == 4 * 4                                  # speech only, one file per recording
    by_id = {r["id"]: r for r in rows}
    assert "01-01-08-02-02-01-20" in by_id and "03-01-08-02-02-01-20" not in by_id   # A+V file preferred
    assert by_id["03-01-05-01-01-01-15"] == {
        "path": str((root / "Actor_15/03-01-05-01-01-01-15.wav").resolve()), "label": "angry", "split": "val",
        "transcript": "Kids are talking by the door", "id": "03-01-05-01-01-01-15"}
    assert by_id["01-01-08-02-02-01-02"]["transcript"] == "Dogs are sitting by the door"
    assert {r["split"] for r in rows if r["id"].endswith("-20")} == {"test"}
    assert {r["split"] for r in rows if r["id"][-2:] in ("01", "02")} == {"train"}
    assert {r["label"] for r in mf.ravdess_rows(root, calm="neutral")} == {"neutral", "angry", "surprised"}
    assert "calm" not in {r["label"] for r in mf.ravdess_rows(root, calm="drop")}
    assert len(mf.ravdess_rows(root, channel="song")) == 4
    with pytest.raises(DatasetError, match="both test and val"):
        mf.ravdess_rows(root, test_actors=(1, 2), val_actors=(2,))
    assert mf.actors("15-16,18") == (15, 16, 18)
    out = tmp_path / "r.csv"
    assert admc_main(["manifest", "ravdess", "--root", str(root), "--out", str(out), "--calm", "neutral",
                      "--quiet"]) == 0
    assert {r.label for r in db.read_manifest(out)} == {"neutral", "angry", "surprised"}
