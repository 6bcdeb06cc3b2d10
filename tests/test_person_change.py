"""A window pools one person's face: when the face in front of the camera becomes another person's,
the live face front end counts a new person and the window's V rows follow the one with most rows
(as every training window holds one face).  Real face front end of the starter's feature set on
FER2013 test faces placed into webcam-like frames."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA

FER = SHARED_DATA / "fer2013"


def _frames(paths, rng, n):
    """``n`` 640x480 frames of each face, moving a little, with sensor noise and light changes (the
    person-change benchmark's steady stream)."""
    from PIL import Image

    from benchmarks.person_change import frames_of

    return [f for path in paths for f in frames_of(Image.open(FER / path).convert("L"), "steady", n, rng)]


@pytest.mark.slow
def test_a_new_persons_face_starts_a_new_person_and_a_window_pools_one_person():
    if not (FER / "manifest.csv").is_file():
        pytest.skip("FER2013 is not in the shared data")
    import torch

    from app.checkpoint import load_checkpoint
    from app.session import Components, SessionConfig
    from extractors.live.face_frontend import FaceFrontEnd
    from extractors.live.health import HealthConfig
    from extractors.live.window import FaceRow, WindowAssembler

    torch.set_num_threads(1)
    ck = load_checkpoint(None, "cpu")
    comp = Components.load("cpu", feature_set=ck.feature_set, asr=False)
    rows = [r for r in csv.DictReader(open(FER / "manifest.csv")) if "PrivateTest" in r["path"]]
    rng = np.random.default_rng(0)
    people = [rows[i]["path"] for i in rng.choice(len(rows), 4, replace=False)]
    fe = FaceFrontEnd(comp.face, SessionConfig(face_fps=None), HealthConfig())
    faces, persons = [], []
    for i, frame in enumerate(_frames(people, rng, 20)):          # 2 s of each person at 10 frames/s
        ff = fe.process(fe.normalise(frame), i / 10)
        assert ff.feature is not None, f"no face in frame {i} ({people[i // 20]})"
        faces.append(FaceRow(i / 10, ff.feature, ff.person))
        persons.append(ff.person)
    # one person per face, counted where the face changes, never within one person's frames
    assert persons == [k for k in range(4) for _ in range(20)], persons
    asm = WindowAssembler(list(ck.model.schema.names))
    # the window (t - 3, t] at 10 rows/s: the person with most rows, the newer one on a tie
    for t_end, who in ((2.5, 0), (3.0, 0), (3.45, 1), (4.0, 1), (5.9, 2)):
        got = asm.v_rows(faces, t_end)
        mine = [r.feature for r in faces if r.person == who and t_end - 3.0 < r.t <= t_end + 1e-6]
        assert got is not None and len(got) >= len(mine) >= 15, (t_end, who, None if got is None else len(got))
        assert all(any(np.array_equal(g, m) for m in mine) for g in got), (t_end, who)


def _person(rng, n=64):
    return rng.standard_normal((48, 48)), rng.standard_normal(n)


def _face(rng, who, noise=0.3):
    crop, feat = who
    c = crop + noise * rng.standard_normal(crop.shape)
    return np.clip(120 + 40 * c, 0, 255).astype(np.uint8), (feat + noise * rng.standard_normal(feat.shape)).astype(np.float32)


def test_person_follower_counts_a_change_only_when_crop_and_feature_both_change_and_knows_who_returns():
    """Fast, synthetic: one odd frame gets a number of its own and does not split a person; a new
    person is counted at their first face; the crop alone or the feature alone changing is the same
    person; someone who comes back (or the face after a hand) gets their number again."""
    from extractors.live.face_frontend import PersonFollower

    rng = np.random.default_rng(0)
    a, b, c, hand = (_person(rng) for _ in range(4))

    def run(seq):
        pf = PersonFollower()
        return [pf.follow(*face) for face in seq]

    odd = _person(rng)
    assert run([_face(rng, a) for _ in range(5)] + [_face(rng, odd)] + [_face(rng, a) for _ in range(5)]) \
        == [0] * 5 + [1] + [0] * 5
    assert run([_face(rng, a) for _ in range(5)] + [_face(rng, b) for _ in range(5)]) == [0] * 5 + [1] * 5
    # only the crop, or only the feature, unlike the person's: the same person (both must change)
    other_crop, other_feat = rng.standard_normal((48, 48)), rng.standard_normal(64)
    crop_only = [_face(rng, (other_crop, a[1])) for _ in range(4)]      # alike each other, unlike a's crop
    feat_only = [_face(rng, (a[0], other_feat)) for _ in range(4)]
    assert run([_face(rng, a) for _ in range(3)] + crop_only) == [0] * 7
    assert run([_face(rng, a) for _ in range(3)] + feat_only) == [0] * 7
    # a hand for four frames: its own number while it lasts, the person's again after it
    assert run([_face(rng, a) for _ in range(5)] + [_face(rng, hand) for _ in range(4)]
               + [_face(rng, a) for _ in range(4)]) == [0] * 5 + [1] * 4 + [0] * 4
    # a, b, a again, then c: a gets 0 back, c is new
    seq = [_face(rng, p) for p in (a, b, a, c) for _ in range(4)]
    assert run(seq) == [0] * 4 + [1] * 4 + [0] * 4 + [2] * 4


def test_window_person_takes_the_person_with_most_rows_the_newer_on_a_tie():
    from extractors.live.window import FaceRow, window_person

    f = np.zeros(4, np.float32)
    rows = [FaceRow(0.1 * i, f, 5) for i in range(4)] + [FaceRow(0.4 + 0.1 * i, f, 2) for i in range(3)]
    assert window_person(rows) == 5                                   # 4 rows against 3
    assert window_person(rows + [FaceRow(0.8, f, 2)]) == 2            # 4 against 4: the newer
    assert window_person(rows + [FaceRow(0.9, None, 7)]) == 5         # a row without a face does not count
    assert window_person([FaceRow(0.1, None, 3), FaceRow(0.2, None, 4)]) == 4
    with pytest.raises(ValueError):
        window_person([])
