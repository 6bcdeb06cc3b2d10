"""Helpers in benchmarks/ that turn results into the published comparisons."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
