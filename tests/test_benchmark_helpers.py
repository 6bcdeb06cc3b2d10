"""Helpers in benchmarks/ that turn results into the published comparisons."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from compare_cpm_nets import main, read_anchors, table  # noqa: E402

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
