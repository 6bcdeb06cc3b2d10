"""Helpers in benchmarks/ that turn results into the published comparisons."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.compare_cpm_nets import main, read_anchors, table

ANCHORS = """# Source: a figure
method,eta0.0,eta0.1,eta0.5
CPM-Nets,94.9,94.6,91.0
FeatConcat,97.7,96.9,88.0
"""


def test_missing_rate_table_next_to_published_curves(tmp_path, capsys):
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(ANCHORS)
    assert read_anchors(anchors)["CPM-Nets"] == {"0.0": 94.9, "0.1": 94.6, "0.5": 91.0}
    results = {"methods": {"admc": {"missing_rate": {"0.5": {"acc": 90.04, "f1": 89.0}, "0": {"acc": 97.96, "f1": 98.0}}}}}
    md = table(results, read_anchors(anchors), ["CPM-Nets"])
    lines = md.splitlines()
    assert lines[0] == "| Method | eta 0.0 | eta 0.5 |"
    assert lines[2] == "| admc (this repo) | 98.0 | 90.0 |"
    assert lines[3] == "| CPM-Nets (CPM-Nets paper) | 94.9 | 91.0 |"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert main(["--results", str(path), "--anchors", str(anchors), "--methods", "FeatConcat"]) == 0
    assert "| FeatConcat (CPM-Nets paper) | 97.7 | 88.0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not in the anchors"):
        main(["--results", str(path), "--anchors", str(anchors), "--methods", "Nope"])
    path.write_text(json.dumps({"methods": {"admc": {}}}))
    with pytest.raises(SystemExit, match="no missing_rate"):
        main(["--results", str(path), "--anchors", str(anchors)])


def test_live_eval_comparison_bootstraps_over_segments_not_windows():
    from benchmarks.live_eval import compare

    segments = [{"start": 6.0 * i, "end": 6.0 * (i + 1), "label": "anger" if i % 2 else "neutral"} for i in range(20)]
    times = [round(0.2 * k, 1) for k in range(1, 600)]

    def run(right_in):              # right on every window of the segments in ``right_in``, wrong elsewhere
        rows = []
        for t in times:
            i = int((t - 1e-9) // 6.0)
            label = segments[i]["label"] if i in right_in else "fear"
            rows.append({"t": t, "label": label})
        return rows

    same = compare(run(set(range(10))), run(set(range(10))), segments)
    assert same["wa_difference"] == 0 and same["ci95"] == [0.0, 0.0]
    # one segment more right: +5 points on 20 equal segments; its interval is wide because one segment decides it
    one = compare(run(set(range(11))), run(set(range(10))), segments)
    assert one["segments"] == 20 and one["wa_difference"] == pytest.approx(5.0, abs=0.1)
    assert one["ci95"][0] == 0.0 and one["ci95"][1] >= 10.0
    # every segment right against none: the interval collapses onto the difference
    full = compare(run(set(range(20))), run(set()), segments)
    assert full["wa_difference"] == 100.0 and full["ci95"] == [100.0, 100.0]


def test_browser_windows_are_placed_on_both_devices_clocks_and_scored_like_replay():
    """live_eval --browser: a page window ending at session time t ends at wall t0 + t; it is scored
    when the camera's and the microphone's clocks both put its 3 s inside one segment; an uncertain
    window (label null) is scored by its most probable class."""
    from benchmarks.live_eval import place_browser_windows, score, stream_summary

    segs = [{"start": 0.0, "end": 6.0, "label": "happiness", "state": "full"},
            {"start": 6.0, "end": 12.0, "label": "anger", "state": "full"}]
    t0, video, audio = 1000.0, 1001.0, 1001.5          # the camera opened 1 s after t = 0, the microphone 0.5 s later

    def win(t, label, uncertain=False):
        probs = {"happiness": 0.2, "anger": 0.8} if label == "anger" else {"happiness": 0.8, "anger": 0.2}
        return {"t": t, "label": None if uncertain else label, "probs": probs, "uncertain": uncertain,
                "streams": {"A": "live", "V": "live", "T": "missing"}, "reasons": {"A": "ok", "V": "ok", "T": "no speech"},
                "ood": {"A": {"out": uncertain}, "V": {"out": False}, "T": None}}

    rows = [win(4.6, "happiness"), win(5.0, "happiness"), win(7.2, "happiness"), win(10.0, "anger"),
            win(12.0, "anger", uncertain=True)]
    placed = place_browser_windows(rows, t0, video, audio, segs)
    # camera clock t - 1, microphone clock t - 1.5: 4.6 -> (3.6, 3.1) in segment 0; 5.0 -> (4.0, 3.5);
    # 7.2 -> (6.2, 5.7): both clocks' 3 s straddle the segments: dropped; 10.0 -> (9.0, 8.5): the
    # microphone's straddle: dropped; 12.0 -> (11.0, 10.5): segment 1
    assert [r["t"] for r in placed] == [3.6, 4.0, 11.0]
    assert [r["session_t"] for r in placed] == [4.6, 5.0, 12.0]
    sc = score(placed, segs, ["happiness", "anger"])
    assert sc["overall"]["windows"] == 3 and sc["overall"]["wa"] == 100.0     # the uncertain one by its argmax
    assert sc["overall"]["uncertain_share"] == 33.3
    st = stream_summary(rows)
    assert st["A"]["live_share"] == 100.0 and st["A"]["ood_share_of_live"] == 20.0
    assert st["T"]["live_share"] == 0.0 and st["T"]["missing_reasons"] == {"no speech": 100.0}


def test_out_of_distribution_share_is_split_by_where_the_window_lies():
    """live_eval: a 3 s window inside one segment, across two states of one take (the face going), or
    across two takes (two people's faces in one window) -- each with its own flagged share."""
    from benchmarks.live_eval import ood_by_span, window_span

    segs = [{"start": 0.0, "end": 6.0, "label": "anger", "take": 0, "state": "full"},
            {"start": 6.0, "end": 12.0, "label": "anger", "take": 0, "state": "face_hidden"},
            {"start": 12.0, "end": 18.0, "label": "anger", "take": 1, "state": "full"}]
    assert window_span(5.0, segs) == "one segment" and window_span(6.0, segs) == "one segment"
    assert window_span(1.0, segs) == "one segment"                       # the clip's first seconds
    assert window_span(7.5, segs) == "two states of one take"
    assert window_span(13.0, segs) == "two takes"
    assert window_span(40.0, segs) is None

    def win(t, flagged, v="live"):
        return {"t": t, "streams": {"A": "missing", "V": v, "T": "missing"},
                "ood": {"A": None, "V": {"out": flagged}, "T": None}}

    rows = [win(4.0, False), win(5.0, True), win(13.0, True), win(14.0, True), win(15.0, False), win(9.0, True, "missing")]
    v = ood_by_span(rows, segs)["V"]
    assert v["one segment"] == {"live": 3, "ood_share_of_live": 33.3}
    assert v["two takes"] == {"live": 2, "ood_share_of_live": 100.0}
    assert v["two states of one take"] == {"live": 0, "ood_share_of_live": None}
    # placed on another clock (the browser's camera): every window 2 s earlier on the clip
    v = ood_by_span(rows, segs, lambda r, m: float(r["t"]) - 2.0)["V"]
    assert v["two takes"]["live"] == 1


def test_paired_bootstrap_is_zero_for_equal_methods_and_positive_for_a_better_one():
    import numpy as np

    from benchmarks.completion_paired import bootstrap_ua_diff

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    a = rng.random((2, 3, 300)) < 0.7                      # seeds x conditions x samples
    same = bootstrap_ua_diff(a, a.copy(), y)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]
    better = a | (rng.random(a.shape) < 0.3)               # right wherever a is, and more
    d = bootstrap_ua_diff(better, a, y)
    assert d["diff"] > 0 and d["ci95"][0] > 0 and d["share_above_zero"] == 1.0


@pytest.mark.slow
def test_completion_study_pairs_every_fill_on_one_classifier(tmp_path):
    """An admc bench in the full-input-only regime, then the paired study: the classifier is the same
    for every method of a seed (paired construction), so a completer's own run and its fill on the
    reference's classifier score the same; the marginal, the hot-deck and the multi-step fills are
    there with per-seed numbers."""
    from admc.cli import main as admc_main
    from benchmarks.completion_paired import main as study
    from tests.synthetic import FAST, make_dataset

    data = make_dataset(tmp_path / "ds", n_per_split=(120, 45, 45), kinds=("vector", "vector"), dims=(10, 8))
    bench = tmp_path / "bench"
    assert admc_main(["bench", "--data", str(data), "--out", str(bench), "--methods",
                      "admc,regress_fill,ridge_fill,zero_fill", "--fusion", "shared", "--set",
                      "fusion.shared_patterns=full", "--seeds", "0,1", "--device", "cpu", "--quiet", *FAST]) == 0
    out = tmp_path / "study"
    assert study(["--bench", str(bench), "--data", str(data), "--out", str(out), "--samples", "3",
                  "--steps", "2,4", "--threads", "1"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    own, one = res["own_models"], res["one_classifier"]
    assert set(own["methods"]) == {"admc", "regress_fill", "ridge_fill", "zero_fill"}
    assert len(own["methods"]["admc"]["test_average_ua"]["per_seed"]) == 2
    for method in ("ridge_fill", "zero_fill", "regress_fill"):
        assert one["fills"][method]["average_ua"]["per_seed"] == \
            own["methods"][method]["test_average_ua"]["per_seed"], method
    names = list(one["fills"])
    assert any(n.startswith("admc marginal over 3 DDPM") for n in names)
    assert any(n.startswith("hot-deck marginal over 3") for n in names)
    assert any(n.startswith("admc DDIM") for n in names)
    assert "aurc_agreement" in one["fills"][next(n for n in names if "marginal" in n)]
    assert set(one["chosen_steps"]) == {"0", "1"}
    assert "ridge_fill - admc (shipped: mean)" in one["paired"]
    assert "| fill |" in out.with_suffix(".md").read_text()
    # part 2 seed by seed in separate invocations (--parts), then one over both seeds reusing them:
    # the same numbers as the study in one go
    parts = tmp_path / "parts"
    for seed in ("0", "1"):
        assert study(["--bench", str(bench), "--data", str(data), "--out", str(tmp_path / f"s{seed}"), "--samples",
                      "3", "--steps", "2,4", "--threads", "1", "--seeds", seed, "--parts", str(parts)]) == 0
    assert sorted(p.name for p in parts.iterdir()) == ["seed0.json", "seed0.npz", "seed1.json", "seed1.npz"]
    joined = tmp_path / "joined"
    assert study(["--bench", str(bench), "--data", str(data), "--out", str(joined), "--samples", "3",
                  "--steps", "2,4", "--threads", "1", "--parts", str(parts)]) == 0
    assert json.loads(joined.with_suffix(".json").read_text())["one_classifier"] == one
    # a part made under other settings is not reused (4 samples: the fills are named and computed anew)
    other = tmp_path / "other"
    assert study(["--bench", str(bench), "--data", str(data), "--out", str(other), "--samples", "4",
                  "--steps", "2", "--threads", "1", "--seeds", "0", "--parts", str(parts)]) == 0
    names4 = list(json.loads(other.with_suffix(".json").read_text())["one_classifier"]["fills"])
    assert any(n.startswith("hot-deck marginal over 4") for n in names4)
    # a part whose arrays were replaced behind its JSON's back is recomputed, not paired with them
    import numpy as np

    with np.load(parts / "seed1.npz") as arrays:
        flipped = {k: ~arrays[k] for k in arrays.files}
    np.savez(parts / "seed1.npz", **flipped)
    again = tmp_path / "again"
    assert study(["--bench", str(bench), "--data", str(data), "--out", str(again), "--samples", "3",
                  "--steps", "2,4", "--threads", "1", "--parts", str(parts)]) == 0
    assert json.loads(again.with_suffix(".json").read_text())["one_classifier"] == one
    # one run instead of a bench (how the shipped starter is studied)
    single = tmp_path / "single"
    assert study(["--run", str(bench / "runs" / "ridge_fill-seed1"), "--data", str(data), "--out", str(single),
                  "--no-one-classifier"]) == 0
    got = json.loads(single.with_suffix(".json").read_text())["own_models"]["methods"]
    assert list(got) == ["ridge_fill"] and got["ridge_fill"]["seeds"] == [1]
    assert got["ridge_fill"]["test_average_ua"]["per_seed"] == own["methods"]["ridge_fill"]["test_average_ua"]["per_seed"][1:]


def test_completion_study_refuses_files_it_did_not_write(tmp_path, capsys):
    from benchmarks.completion_paired import main as study

    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": true}\n')
    with pytest.raises(SystemExit) as e:
        study(["--render", "--out", str(tmp_path / "notes")])
    assert e.value.code == 2 and foreign.read_text() == '{"mine": true}\n'
    with pytest.raises(SystemExit) as e:
        study(["--run", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "notes")])
    assert e.value.code == 2 and foreign.read_text() == '{"mine": true}\n'
    # --parts naming a file: a one-line error, the file kept
    with pytest.raises(SystemExit) as e:
        study(["--bench", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "study"),
               "--parts", str(foreign)])
    assert e.value.code == 2 and foreign.read_text() == '{"mine": true}\n'
    assert f"--parts {foreign}: exists and is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("script,kind,names,ours", [
    ("browser_path", "browser-path", ["--name", "bp"], ("bp", "benchmarks/results/browser/browser_path")),
    ("live_eval", "live-eval", ["--name", "x"], ("live_eval_x", "benchmarks/results/live/live_eval_starter")),
    ("live_eval", "live-eval", ["--name", "x", "--browser"],
     ("live_eval_x_browser", "benchmarks/results/live/live_eval_starter_browser")),
    ("face_path_profile", "face-path-profile", ["--name", "fp"], ("fp", "benchmarks/results/speed/face_path_profile")),
    ("camera_transport", "camera-transport", ["--name", "ct"], ("ct", "benchmarks/results/browser/camera_transport")),
    ("person_change", "person-change", ["--name", "pc"], ("pc", "benchmarks/results/live/person_change")),
])
def test_live_benchmarks_keep_result_files_they_did_not_write(tmp_path, monkeypatch, capsys, script, kind, names,
                                                             ours):
    """browser_path.py, live_eval.py, face_path_profile.py, camera_transport.py and person_change.py refuse, at once and in one line, to replace a result file in
    --out that they did not write (before minutes of running); their own earlier results are replaced."""
    import importlib
    import shutil

    from admc.outdir import check_out_file

    mod = importlib.import_module(f"benchmarks.{script}")
    stem, committed = ours
    for suffix in (".json", ".md"):
        foreign = tmp_path / f"{stem}{suffix}"
        foreign.write_text('{"mine": true}\n' if suffix == ".json" else "my notes\n")
        monkeypatch.setattr(sys, "argv", [script, "--out", str(tmp_path), *names])
        with pytest.raises(SystemExit) as e:
            mod.main()
        assert e.value.code == 2 and foreign.read_text() in ('{"mine": true}\n', "my notes\n")
        err = capsys.readouterr().err.strip()
        assert str(foreign) in err and "--overwrite" in err and len(err.splitlines()) == 1, err
        foreign.unlink()
        # a result this script wrote is its own to replace
        shutil.copy(Path(__file__).resolve().parents[1] / f"{committed}{suffix}", foreign)
        assert check_out_file(foreign, kind, overwrite=False) == foreign
        foreign.unlink()


def test_camera_transport_frame_numbers_survive_compression_and_are_not_imagined():
    """The browser benchmarks match a frame at the server with its capture in the page by the number
    the camera file carries (over WebRTC): it is read back after heavy JPEG compression and downscaled-then-upscaled blur (what a
    video codec at a low bit rate does), and None for frames without one or with a damaged strip."""
    import io

    from PIL import Image

    from app.trace import FILE_MARK_CELL as MARK_CELL, file_mark as read_mark
    from benchmarks.browser_path import draw_file_mark as draw_mark

    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (480, 640, 3), dtype=np.uint8)
    for n in (0, 1, 0x5A5A, 0xFFFF, 12345):
        img = Image.fromarray(draw_mark(base, n))
        img = img.resize((320, 240), Image.Resampling.BILINEAR).resize((640, 480), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=20)
        gray = np.asarray(Image.open(buf).convert("L"))
        assert read_mark(gray) == n
    assert read_mark(np.asarray(Image.fromarray(base).convert("L"))) is None
    damaged = np.asarray(Image.fromarray(draw_mark(base, 7)).convert("L")).copy()
    damaged[:MARK_CELL, 3 * MARK_CELL:4 * MARK_CELL] = 128      # one bit neither black nor white
    assert read_mark(damaged) is None
