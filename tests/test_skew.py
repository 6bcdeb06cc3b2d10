"""``python -m app.skew``: a recording's voice and face through the live path step by step, each step
judged by the checkpoint's own out-of-distribution rule (here the shipped starter on the generated
test clip: a face that comes and goes, speech then silence)."""

from __future__ import annotations

import json

import pytest

from tests.test_app import clip  # noqa: F401 - fixture


@pytest.mark.slow
def test_skew_report_of_a_recording(clip, tmp_path, capsys):  # noqa: F811
    from app.skew import main

    out = tmp_path / "skew.json"
    assert main(["--source", str(clip["mp4"]), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["format"] == "admc-skew/1"
    assert list(rep["stages"]["voice"]) == ["file", "codec", "browser capture"]
    assert list(rep["stages"]["face"]) == ["file", "browser capture"]
    for mod in ("voice", "face"):
        for v in rep["stages"][mod].values():
            assert v["windows"] > 0 and 0.0 <= v["ood_share"] <= 100.0, (mod, v)
    printed = capsys.readouterr().out
    assert "browser capture" in printed and "OOD %" in printed
    # its own report is replaced; anything else only with --overwrite, and never an input
    assert main(["--source", str(clip["mp4"]), "--json", str(out), "--seconds", "4"]) == 0
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert main(["--source", str(clip["mp4"]), "--json", str(notes)]) == 2
    assert main(["--source", str(clip["mp4"]), "--json", str(clip["mp4"]), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--json" in err and "Traceback" not in err
    assert notes.read_text() == '{"mine": 1}'
    assert main(["--source", str(tmp_path / "nothing.mp4")]) == 2
