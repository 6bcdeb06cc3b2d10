"""The server's sessions without the UI (app/engine.py): keys bound to logins, limits, a checkpoint
switch per session; importing it loads no Gradio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_app import fake_components, tiny_run  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]


def test_the_engine_imports_without_gradio():
    code = "import sys, app.engine; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_sessions_are_keyed_by_login_and_limited(tiny_run):  # noqa: F811
    from app.checkpoint import load_checkpoint
    from app.engine import Engine, SessionLimit, owner_of_key, session_key
    from app.session import SessionConfig

    assert session_key(SimpleNamespace(session_hash="h", username="alice")) == "alice/h"
    assert session_key(SimpleNamespace(session_hash="h", username=None)) == "h"
    assert owner_of_key("alice/h") == "alice" and owner_of_key("h") is None
    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig(face_fps=None),
                 max_sessions=3, max_per_user=2)
    try:
        a1, a2 = eng.get("alice/1"), eng.get("alice/2")
        assert eng.get("alice/1") is a1 and eng.owner("1") == "alice"
        with pytest.raises(SessionLimit, match="This login already has 2"):
            eng.get("alice/3")
        assert eng.get("bob/1") is not a1                     # the same hash, another login
        with pytest.raises(SessionLimit, match="limit of 3"):
            eng.get("carol/1")
        assert "limit of 3" in eng.admission_problem("carol/1") and eng.admission_problem("alice/1") is None
        eng.close("alice/2")
        assert a2._closed and eng.admission_problem("carol/1") is None
    finally:
        for s in list(eng.sessions.values()):
            s.close()
