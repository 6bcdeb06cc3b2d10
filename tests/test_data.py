import json

import numpy as np
import pytest

from admc.data import DatasetError, condition_mask, condition_name, load_dataset, missing_conditions
from tests.synthetic import make_dataset


@pytest.fixture()
def ds_dir(tmp_path):
    return make_dataset(tmp_path / "ds")


def _rewrite(ds_dir, split, **changes):
    f = ds_dir / f"{split}.npz"
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(f, **arrays)
    return f


def test_roundtrip(ds_dir):
    ds = load_dataset(ds_dir)
    assert ds.names == ["A", "B", "C"]
    assert [m.kind for m in ds.schema.modalities] == ["vector", "vector", "sequence"]
    tr = ds["train"]
    assert len(tr) == 90 and tr.rows["C"].shape[1] == 6
    assert (np.diff(tr.offsets["A"]) == 1).all()
    assert tr.presence_matrix(ds.names).all()


@pytest.mark.parametrize(
    "change, key",
    [
        ({"labels": None}, "labels"),
        ({"A": None}, "'A'"),
        ({"A_offsets": np.array([0, 1, 2])}, "A_offsets"),
        ({"B": np.zeros((90, 5), np.float32)}, "differs from meta.json"),
        ({"labels": np.full(90, 7)}, "labels"),
        ({"ids": np.array(["x"] * 90)}, "not unique"),
    ],
)
def test_bad_split_is_refused_naming_file_and_key(ds_dir, change, key):
    f = _rewrite(ds_dir, "train", **change)
    with pytest.raises(DatasetError) as e:
        load_dataset(ds_dir)
    assert str(f) in str(e.value) and key in str(e.value)


def test_nan_and_offsets_out_of_range(ds_dir):
    with np.load(ds_dir / "val.npz") as z:
        a = z["A"].copy()
        off = z["C_offsets"].copy()
    a[3, 2] = np.nan
    _rewrite(ds_dir, "val", A=a)
    with pytest.raises(DatasetError, match=r"val.npz: key 'A': NaN"):
        load_dataset(ds_dir)
    a[3, 2] = 0
    off[-1] += 5
    _rewrite(ds_dir, "val", A=a, C_offsets=off)
    with pytest.raises(DatasetError, match=r"C_offsets.*out of range"):
        load_dataset(ds_dir)


def test_nan_in_rows_of_a_missing_modality_is_ignored(ds_dir):
    with np.load(ds_dir / "val.npz") as z:
        a = z["A"].copy()
    a[3] = np.nan
    pres = np.ones(30, bool)
    pres[3] = False
    _rewrite(ds_dir, "val", A=a, A_present=pres)
    ds = load_dataset(ds_dir)
    assert not ds["val"].present["A"][3]


def test_object_arrays_are_not_unpickled(ds_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    arr = np.empty(1, dtype=object)
    arr[0] = Evil()
    with np.load(ds_dir / "test.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["ids"] = arr
    np.savez(ds_dir / "test.npz", **arrays)
    with pytest.raises(DatasetError, match="test.npz"):
        load_dataset(ds_dir)
    assert not marker.exists()


def test_bad_meta(ds_dir):
    meta = json.loads((ds_dir / "meta.json").read_text())
    meta["modalities"]["A"]["kind"] = "image"
    (ds_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"meta.json: key 'modalities.A.kind'"):
        load_dataset(ds_dir)
    (ds_dir / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(ds_dir)


def test_conditions_are_named_in_meta_order():
    names = ["A", "V", "T"]
    conds = [c for c, _ in missing_conditions(names)]
    assert conds == ["A", "V", "T", "A+V", "A+T", "V+T"]
    assert condition_name(names, (True, True, True)) == "full"
    assert condition_mask(names, "A+T") == (True, False, True)
    assert len(missing_conditions(list("ABCDEF"))) == 2**6 - 2
