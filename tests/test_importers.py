"""Importers of the MMIN IEMOCAP and MIntRec releases (tiny faithful fakes, see fixtures_importers)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from admc.data import DatasetError, load_dataset
from admc.importers.mintrec import INTENT_LABELS, import_mintrec
from admc.importers.mmin_iemocap import import_mmin_iemocap
from tests.fixtures_importers import (
    MINTREC_LABELS,
    MMIN_CLASSES,
    EmbeddedTorchBytes,
    SystemCall,
    make_mintrec_release,
    make_mmin_release,
    write_object_npy,
)

MMIN_SPLITS = {"train": "trn", "val": "val", "test": "tst"}
MINTREC_SPLITS = {"train": "train", "val": "dev", "test": "test"}


def rows(split, m, i):
    off = split.offsets[m]
    return split.rows[m][off[i]:off[i + 1]]


@pytest.fixture(scope="module")
def mmin(tmp_path_factory):
    return make_mmin_release(tmp_path_factory.mktemp("mmin"), seed=1)


@pytest.fixture(scope="module")
def mmin_fold1(mmin, tmp_path_factory):
    out = import_mmin_iemocap(mmin.root, 1, tmp_path_factory.mktemp("out") / "fold1", progress=False)
    return load_dataset(out)


@pytest.fixture
def mmin_copy(tmp_path):
    return make_mmin_release(tmp_path / "mmin", seed=2, n_folds=2)


# --- MMIN IEMOCAP ---------------------------------------------------------------------------------

def test_mmin_schema_and_meta(mmin_fold1):
    ds = mmin_fold1
    assert ds.name == "iemocap-mmin-fold1"
    assert ds.classes == MMIN_CLASSES
    assert [(m.name, m.dim, m.kind, m.encoder) for m in ds.schema.modalities] == [
        ("A", 130, "sequence", "lstm"), ("V", 342, "sequence", "lstm"), ("T", 1024, "sequence", "textcnn")]
    assert ds.meta["source"]["kind"] == "mmin-iemocap" and ds.meta["source"]["fold"] == 1


def test_mmin_values_round_trip(mmin, mmin_fold1):
    mean, std = mmin.mean_std[1]
    for ours, theirs in MMIN_SPLITS.items():
        split = mmin_fold1[ours]
        ids = mmin.folds[1][theirs]
        assert split.ids.tolist() == ids
        assert split.labels.tolist() == [mmin.label_of[u] for u in ids]
        assert all(p.all() for p in split.present.values())
        for i, u in enumerate(ids):
            raw_a = mmin.feats["A"][u]
            # manual z-score with the fold's training statistics, float32 as MMIN's torch code
            manual = (raw_a.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
            np.testing.assert_array_equal(rows(split, "A", i), manual)
            # exactly MMIN's normalize_on_trn
            mmin_a = (torch.from_numpy(raw_a).float() - torch.from_numpy(mean).unsqueeze(0).float()) \
                / torch.from_numpy(std).unsqueeze(0).float()
            np.testing.assert_array_equal(rows(split, "A", i), mmin_a.numpy())
            np.testing.assert_array_equal(rows(split, "V", i), mmin.feats["V"][u].astype(np.float32))
            np.testing.assert_array_equal(rows(split, "T", i), mmin.feats["L"][u])
    # the constant column had std 0 -> 1 in the statistics: normalised to exactly 0
    assert (mmin_fold1["train"].rows["A"][:, 7] == 0).all()
    # training audio is roughly standardised
    a = mmin_fold1["train"].rows["A"]
    assert abs(float(a[:, :7].mean())) < 1e-4 and abs(float(a[:, :7].std()) - 1) < 1e-3


def test_mmin_fold_selection(mmin, tmp_path):
    ds = load_dataset(import_mmin_iemocap(mmin.root, 4, tmp_path / "f4", progress=False))
    assert ds.name == "iemocap-mmin-fold4"
    assert ds["test"].ids.tolist() == mmin.folds[4]["tst"]
    assert ds["train"].ids.tolist() == mmin.folds[4]["trn"]
    u = mmin.folds[4]["tst"][0]
    mean, std = mmin.mean_std[4]
    np.testing.assert_array_equal(
        rows(ds["test"], "A", 0), (mmin.feats["A"][u].astype(np.float32) - mean.astype(np.float32))
        / std.astype(np.float32))
    assert not np.allclose(mmin.mean_std[4][0], mmin.mean_std[1][0])
    for bad in (0, 11):
        with pytest.raises(DatasetError, match=r"1\.\.10"):
            import_mmin_iemocap(mmin.root, bad, tmp_path / "bad", progress=False)


def test_mmin_missing_file(mmin_copy, tmp_path):
    (mmin_copy.root / "V" / "denseface.h5").unlink()
    with pytest.raises(DatasetError, match=r"denseface\.h5.*missing"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_mmin_missing_target_and_mean_std(mmin_copy, tmp_path):
    (mmin_copy.root / "target" / "2" / "val_int2name.npy").unlink()
    with pytest.raises(DatasetError, match=r"val_int2name\.npy: missing"):
        import_mmin_iemocap(mmin_copy.root, 2, tmp_path / "o", progress=False)
    with h5py.File(mmin_copy.root / "A" / "comparE_mean_std.h5", "a") as f:
        del f["1"]["std"]
    with pytest.raises(DatasetError, match=r"comparE_mean_std\.h5: key '1/std': missing"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)


def test_mmin_missing_id(mmin_copy, tmp_path):
    uid = mmin_copy.folds[1]["val"][0]
    with h5py.File(mmin_copy.root / "L" / "bert_large.h5", "a") as f:
        del f[uid]
    with pytest.raises(DatasetError, match=rf"bert_large\.h5: key '{uid}': missing.*val_int2name"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)


def test_mmin_wrong_dim(mmin_copy, tmp_path):
    uid = mmin_copy.folds[1]["trn"][1]
    with h5py.File(mmin_copy.root / "A" / "comparE.h5", "a") as f:
        del f[uid]
        f[uid] = np.zeros((3, 129))
    with pytest.raises(DatasetError, match=rf"comparE\.h5: key '{uid}': shape \(3, 129\), expected \[rows, 130\]"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)


def test_mmin_nan(mmin_copy, tmp_path):
    uid = mmin_copy.folds[1]["tst"][0]
    with h5py.File(mmin_copy.root / "V" / "denseface.h5", "a") as f:
        x = f[uid][()]
        x[0, 5] = np.nan
        del f[uid]
        f[uid] = x
    with pytest.raises(DatasetError, match=rf"denseface\.h5: key '{uid}': NaN"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)


def test_mmin_group_layout_refused(mmin_copy, tmp_path):
    uid = mmin_copy.folds[1]["trn"][0]
    with h5py.File(mmin_copy.root / "V" / "denseface.h5", "a") as f:
        x = f[uid][()]
        del f[uid]
        f.create_group(uid)["feat"] = x
    with pytest.raises(DatasetError, match=rf"denseface\.h5: key '{uid}': is a group"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)


def test_mmin_bad_labels(mmin_copy, tmp_path):
    p = mmin_copy.root / "target" / "1" / "trn_label.npy"
    lab = np.load(p)
    lab[0] = [1, 1, 0, 0]
    np.save(p, lab)
    with pytest.raises(DatasetError, match=r"trn_label\.npy: row 0 is not one-hot"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)
    lab[0] = [0, 1, 0, 0]
    np.save(p, lab[:-1])
    with pytest.raises(DatasetError, match=r"names but trn_label\.npy has"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)


def test_mmin_empty_sequence_marked_absent(mmin_copy, tmp_path):
    uid = mmin_copy.folds[1]["val"][1]
    with h5py.File(mmin_copy.root / "V" / "denseface.h5", "a") as f:
        del f[uid]
        f[uid] = np.zeros((0, 342))
    ds = load_dataset(import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False))
    i = ds["val"].ids.tolist().index(uid)
    assert not ds["val"].present["V"][i] and ds["val"].present["A"][i]
    assert ds["val"].present["V"].sum() == len(ds["val"]) - 1
    assert ds.meta["source"]["empty_sequences_marked_absent"]["V"] == 1


def test_mmin_object_int2name_loaded_safely(mmin_copy, tmp_path):
    # an int2name.npy that needs pickle (object dtype of bytes / str) loads through the restricted path
    p = mmin_copy.root / "target" / "1" / "tst_int2name.npy"
    ids = mmin_copy.folds[1]["tst"]
    obj = np.empty((len(ids), 1), dtype=object)
    for i, u in enumerate(ids):
        obj[i, 0] = u.encode() if i % 2 else u
    np.save(p, obj, allow_pickle=True)
    with pytest.raises(ValueError):
        np.load(p, allow_pickle=False)
    ds = load_dataset(import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False))
    assert ds["test"].ids.tolist() == ids


def test_mmin_malicious_npy_refused(mmin_copy, tmp_path):
    marker = tmp_path / "pwned"
    write_object_npy(mmin_copy.root / "target" / "1" / "val_int2name.npy", SystemCall(f"touch {marker}"))
    with pytest.raises(DatasetError, match=r"val_int2name\.npy: refused to unpickle global '(posix|os)\.system'"):
        import_mmin_iemocap(mmin_copy.root, 1, tmp_path / "o", progress=False)
    assert not marker.exists()


def test_mmin_progress_bar(mmin_copy, tmp_path, capsys):
    import_mmin_iemocap(mmin_copy.root, 2, tmp_path / "o", progress=True)
    assert "MMIN IEMOCAP fold 2" in capsys.readouterr().err


# --- MIntRec --------------------------------------------------------------------------------------

@pytest.fixture
def mintrec(tmp_path):
    return make_mintrec_release(tmp_path / "mintrec", seed=3)


def check_mintrec(ds, rel):
    assert ds.name == "mintrec"
    assert ds.classes == MINTREC_LABELS == list(INTENT_LABELS)
    assert [(m.name, m.dim, m.kind, m.encoder) for m in ds.schema.modalities] == [
        ("A", 768, "sequence", "lstm"), ("V", 256, "sequence", "lstm"), ("T", 768, "sequence", "textcnn")]
    for ours, theirs in MINTREC_SPLITS.items():
        split = ds[ours]
        tsv = rel.splits[theirs]
        keys = ["_".join(r[:3]) for r in tsv]
        assert split.ids.tolist() == keys
        assert [ds.classes[i] for i in split.labels] == [r[4] for r in tsv]
        for i, k in enumerate(keys):
            np.testing.assert_array_equal(rows(split, "A", i), rel.audio[k])
            np.testing.assert_array_equal(rows(split, "V", i), rel.video[k])
            np.testing.assert_array_equal(rows(split, "T", i), rel.text[k])


@pytest.mark.parametrize("audio_format", ["pickle", "numpy", "torch"])
def test_mintrec_round_trip(tmp_path, audio_format):
    rel = make_mintrec_release(tmp_path / "r", seed=4, audio_format=audio_format)
    out = import_mintrec(rel.root, tmp_path / "o", text_features=rel.text_features, progress=False)
    ds = load_dataset(out)
    check_mintrec(ds, rel)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"]["kind"] == "mintrec"


def test_mintrec_text_dim_from_file(tmp_path):
    rel = make_mintrec_release(tmp_path / "r", seed=5, text_dim=300)
    ds = load_dataset(import_mintrec(rel.root, tmp_path / "o", text_features=rel.text_features, progress=False))
    assert ds.schema.modalities[2].dim == 300


def test_mintrec_text_from_text_encoder(mintrec, tmp_path):
    """Without text_features, T is the live text extractor's features of the tsv text."""
    from extractors.models.text import TextEncoder

    enc = TextEncoder()
    ds = load_dataset(import_mintrec(mintrec.root, tmp_path / "o", progress=False, text_encoder=enc))
    assert [(m.name, m.dim) for m in ds.schema.modalities] == [("A", 768), ("V", 256), ("T", enc.dim)]
    for ours, theirs in MINTREC_SPLITS.items():
        split = ds[ours]
        assert split.present["T"].all()
        for i, r in enumerate(mintrec.splits[theirs]):
            words, _ = enc(r[3])
            np.testing.assert_allclose(rows(split, "T", i), words, rtol=1e-4, atol=1e-5)
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert "TextEncoder" in meta["source"]["files"]["T"]


class CountingEncoder:
    """A stand-in text encoder: one row per word, the word's length (what the importer is given)."""

    dim = 2
    path = Path("counting-encoder")

    def encode_batch(self, texts):
        return [(np.array([[len(w), 1.0] for w in t.split()], np.float32), None) if t.split() else None
                for t in texts]


def test_mintrec_text_encoder_is_passed_in_or_built_by_a_factory_after_the_checks(mintrec, tmp_path):
    """The core importer takes its text encoder from the caller (admc never imports extractors)."""
    built = []

    def factory():
        built.append(1)
        return CountingEncoder()

    with pytest.raises(ValueError, match="pass text_features .* or a text_encoder"):
        import_mintrec(mintrec.root, tmp_path / "o", progress=False)
    (mintrec.root / "audio_data" / "audio_feats.pkl").rename(tmp_path / "a.pkl")
    with pytest.raises(DatasetError, match="audio_feats.pkl: missing"):
        import_mintrec(mintrec.root, tmp_path / "o", progress=False, text_encoder=factory)
    assert not built  # a bad input is reported before the (slow) encoder is built
    (tmp_path / "a.pkl").rename(mintrec.root / "audio_data" / "audio_feats.pkl")
    ds = load_dataset(import_mintrec(mintrec.root, tmp_path / "o", progress=False, text_encoder=factory))
    assert built == [1] and ds.schema.modalities[2].dim == 2
    r = mintrec.splits["train"][0]
    np.testing.assert_array_equal(rows(ds["train"], "T", 0)[:, 0], [len(w) for w in r[3].split()])
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["source"]["files"]["T"].endswith("CountingEncoder (counting-encoder)")


def test_mintrec_missing_file(mintrec, tmp_path):
    (mintrec.root / "video_data" / "video_feats.pkl").unlink()
    with pytest.raises(DatasetError, match=r"video_feats\.pkl: missing"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)
    (mintrec.root / "dev.tsv").unlink()
    with pytest.raises(DatasetError, match=r"dev\.tsv: missing"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)


def test_mintrec_missing_id(mintrec, tmp_path):
    key = "_".join(mintrec.splits["test"][2][:3])
    p = mintrec.root / "video_data" / "video_feats.pkl"
    video = {k: [r[None, :] for r in v] for k, v in mintrec.video.items() if k != key}
    p.write_bytes(pickle.dumps(video))
    with pytest.raises(DatasetError, match=rf"video_feats\.pkl: key '{key}': missing"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)
    text = dict(mintrec.text)
    del text[key]
    np.savez(mintrec.text_features, **text)
    (mintrec.root / "video_data" / "video_feats.pkl").write_bytes(
        pickle.dumps({k: [r[None, :] for r in v] for k, v in mintrec.video.items()}))
    with pytest.raises(DatasetError, match=rf"text_feats\.npz: key '{key}': missing"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)


def test_mintrec_wrong_dim(mintrec, tmp_path):
    key = "_".join(mintrec.splits["train"][0][:3])
    audio = {k: torch.from_numpy(v) for k, v in mintrec.audio.items()}
    audio[key] = torch.zeros(4, 512)
    (mintrec.root / "audio_data" / "audio_feats.pkl").write_bytes(pickle.dumps(audio))
    with pytest.raises(DatasetError, match=rf"audio_feats\.pkl: key '{key}': shape \(4, 512\), expected \[frames, 768\]"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)


def test_mintrec_text_dim_mismatch_and_nan(mintrec, tmp_path):
    keys = ["_".join(r[:3]) for r in mintrec.splits["train"]]
    text = dict(mintrec.text)
    text[keys[1]] = np.zeros((2, 100), np.float32)
    np.savez(mintrec.text_features, **text)
    with pytest.raises(DatasetError, match=rf"key '{keys[1]}': dim 100 differs"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)
    text[keys[1]] = np.full((2, 768), np.nan, np.float32)
    np.savez(mintrec.text_features, **text)
    with pytest.raises(DatasetError, match=rf"text_feats\.npz: key '{keys[1]}': NaN"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)


def test_mintrec_unknown_label(mintrec, tmp_path):
    p = mintrec.root / "train.tsv"
    lines = p.read_text().splitlines()
    cols = lines[2].split("\t")
    lines[2] = "\t".join(cols[:4] + [cols[4].lower()])  # labels are case-sensitive, as in MIntRec
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"train\.tsv: line 3: unknown intent label"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)


def test_mintrec_malicious_pickle_refused(mintrec, tmp_path):
    marker = tmp_path / "pwned"
    p = mintrec.root / "audio_data" / "audio_feats.pkl"
    p.write_bytes(pickle.dumps({"S04_E01_1": SystemCall(f"touch {marker}")}))
    with pytest.raises(DatasetError, match=r"audio_feats\.pkl: refused to unpickle global '(posix|os)\.system'"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)
    assert not marker.exists()
    assert not (tmp_path / "o").exists()


def test_mintrec_malicious_embedded_torch_bytes_refused(mintrec, tmp_path):
    # a tensor's data is carried as torch.storage._load_from_bytes(bytes); torch's own version
    # would torch.load(weights_only=False) them: ours must refuse code inside
    marker = tmp_path / "pwned2"
    evil = pickle.dumps(SystemCall(f"touch {marker}"), protocol=2)
    p = mintrec.root / "video_data" / "video_feats.pkl"
    p.write_bytes(pickle.dumps({"S04_E01_1": EmbeddedTorchBytes(evil)}))
    with pytest.raises(DatasetError, match=r"video_feats\.pkl: refused to unpickle.*weights_only"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)
    assert not marker.exists()


def test_mintrec_malicious_torch_zip_refused(mintrec, tmp_path):
    marker = tmp_path / "pwned3"
    torch.save({"x": SystemCall(f"touch {marker}")}, mintrec.root / "audio_data" / "audio_feats.pkl")
    with pytest.raises(DatasetError, match=r"audio_feats\.pkl: refused or unreadable by torch\.load"):
        import_mintrec(mintrec.root, tmp_path / "o", text_features=mintrec.text_features, progress=False)
    assert not marker.exists()
