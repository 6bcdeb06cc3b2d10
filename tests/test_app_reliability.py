"""Issue 10, the app/extraction half: bad input and faults on the live path and in ``admc extract``.

* the page's checkpoint loader, called over plain HTTP like any client can: only the checkpoints
  the server was started with, per session, never a path, no hint whether a path exists; a warning
  when serving beyond loopback without a login;
* extraction is reproducible (no unseeded ASR temperature fallback);
* one rule for audio with NaN samples, used by the live session and by ``admc extract``;
* a still image given to ``--source`` is a one-line error, not 0 windows and exit 0.

Fixtures are tiny and generated (the tiny random live-schema run, espeak-ng speech, noise frames).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.test_app import fake_components, tiny_run  # noqa: F401 - fixture


# ------------------------------------------------------------------------------------------ HTTP helpers
def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=20) as r:
        return json.loads(r.read())


def _fn_index(base: str, button_label: str, opener=None) -> int:
    """The event id of ``button_label``'s click handler, from the page's own /config."""
    if opener is None:
        cfg = _get_json(base + "/config")
    else:
        with opener.open(base + "/config", timeout=20) as r:
            cfg = json.loads(r.read())
    btn = next(c["id"] for c in cfg["components"]
               if c.get("type") == "button" and c.get("props", {}).get("value") == button_label)
    for i, dep in enumerate(cfg["dependencies"]):
        if [btn, "click"] in [list(t) for t in dep.get("targets", [])]:
            return dep.get("id", i)
    raise AssertionError(f"no click handler for {button_label!r}")


def _call(base: str, fn_index: int, data: list, session: str) -> dict:
    """What any HTTP client can do: join the queue with raw data, read the result stream."""
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session,
                       "event_data": None, "trigger_id": None}).encode()
    req = urllib.request.Request(base + "/gradio_api/queue/join", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200
    with urllib.request.urlopen(base + f"/gradio_api/queue/data?session_hash={session}", timeout=60) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed":
                return msg
    raise AssertionError("no result")


def _message(done: dict) -> str:
    """The page's message (first output), or the error shown instead."""
    if done.get("success") and done.get("output", {}).get("data"):
        return str(done["output"]["data"][0])
    return str(done.get("output", {}).get("error") or done.get("title") or done)


# ------------------------------------------------------------------------------------------ the UI
def test_checkpoint_loader_over_http_is_limited_to_the_servers_checkpoints_per_session(tiny_run, tmp_path):  # noqa: F811
    """The loader endpoint is 'private' to the page, not to the network: call it over plain HTTP.
    An arbitrary path (a real run directory included) is never loaded, the answer is the same for
    a path that exists and one that does not, and a checkpoint offered at start (``--checkpoint-dir``)
    changes only the caller's session."""
    from app.checkpoint import checkpoint_choices, load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine
    from app.ui import launch

    offered = tmp_path / "offered"
    shutil.copytree(tiny_run, offered / "other")
    (offered / "other" / "MODEL_CARD.md").write_text("# other\n")
    elsewhere = tmp_path / "elsewhere" / "run"          # a valid run the server was not started with
    shutil.copytree(tiny_run, elsewhere)
    ck = load_checkpoint(tiny_run)
    eng = Engine(ck, fake_components(), lambda: SessionConfig(face_fps=None),
                 choices=checkpoint_choices(tiny_run, offered))
    demo = launch(eng, host="127.0.0.1", port=None, quiet=True, say=lambda m: None)
    try:
        base = demo.local_url.rstrip("/")
        fn = _fn_index(base, "Load checkpoint")
        victim = eng.get("victim")
        model0 = victim.model

        # arbitrary server paths: refused, the same answer whether the path exists or not
        answers = {}
        for p in (str(elsewhere), str(tmp_path / "elsewhere"), "/etc", str(tmp_path / "no" / "such" / "dir"),
                  "../../../../etc/passwd", ""):
            answers[p] = _message(_call(base, fn, [p], "attacker")).replace(p, "<path>") if p else \
                _message(_call(base, fn, [p], "attacker"))
            assert "Loaded" not in answers[p]
        without_empty = {a for p, a in answers.items() if p}
        assert len(without_empty) == 1, answers               # no existence oracle
        assert "does not exist" not in next(iter(without_empty))
        assert "not a directory" not in next(iter(without_empty))
        assert eng.ck is ck and victim.model is model0
        assert all(c.path != elsewhere for c in eng.loaded.values())

        # an offered checkpoint, by name: the caller's session only
        done = _call(base, fn, ["other"], "attacker")
        assert done.get("success"), done
        assert "Loaded" in _message(done)
        other = eng.loaded["other"]
        assert eng.get("attacker").model is other.model
        assert victim.model is model0                         # another user's model is untouched
        assert eng.get("newcomer").model is model0            # and new sessions get the default
        assert eng.ck is ck

        # files: the offered model cards, never the weights or run.json
        def status(path):
            try:
                with urllib.request.urlopen(f"{base}/gradio_api/file={path}", timeout=20) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        assert status(offered / "other" / "MODEL_CARD.md") == 200
        for f in (Path(tiny_run) / "model.safetensors", Path(tiny_run) / "run.json",
                  offered / "other" / "model.safetensors", elsewhere / "run.json"):
            assert status(f) in (403, 404), f
    finally:
        demo.close()
        for key in list(eng.sessions):
            eng.close(key)


def test_engine_refuses_any_path_even_past_the_dropdown(tiny_run, tmp_path):  # noqa: F811
    """The page's dropdown already rejects values outside its choices; the engine does not rely
    on it: a path (existing run, existing directory, missing one) gets one message, loads nothing."""
    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import NOT_LOADED, Engine

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ck = load_checkpoint(tiny_run)
    eng = Engine(ck, fake_components(), lambda: SessionConfig(face_fps=None))
    s = eng.get("me")
    for p in (str(run), str(tmp_path), str(tmp_path / "missing"), "/etc", None, 3, ""):
        msg, shown = eng.load(p, "me")
        assert msg == NOT_LOADED and shown is ck
    assert s.model is ck.model and list(eng.loaded) == [eng.default_name]
    msg, shown = eng.load(eng.default_name, "me")
    assert "Loaded" in msg and shown is ck
    eng.close("me")


def test_checkpoint_choices_are_fixed_at_start(tiny_run, tmp_path):  # noqa: F811
    from app.checkpoint import CheckpointError, checkpoint_choices

    d = tmp_path / "runs"
    shutil.copytree(tiny_run, d / "a")
    (d / "not-a-run").mkdir()
    (d / "notes.txt").write_text("x")
    choices = checkpoint_choices(tiny_run, d)
    assert list(choices) == [Path(tiny_run).name, "a"]
    with pytest.raises(CheckpointError, match="--checkpoint-dir .*not a directory"):
        checkpoint_choices(tiny_run, tmp_path / "missing")


def test_cli_checkpoint_dir_that_is_not_a_directory_is_one_line(tiny_run, tmp_path, capsys):  # noqa: F811
    from app.cli import main

    rc = main(["--checkpoint", str(tiny_run), "--checkpoint-dir", str(tmp_path / "missing"), "--no-asr"])
    err = capsys.readouterr().err
    assert rc == 2 and "--checkpoint-dir" in err and str(tmp_path / "missing") in err
    assert "Traceback" not in err


@pytest.mark.parametrize("host,auth,share,warns", [
    ("127.0.0.1", None, False, False), ("localhost", None, False, False), ("::1", None, False, False),
    ("127.0.1.1", None, False, False), ("0.0.0.0", None, False, True), ("::", None, False, True),
    ("192.168.1.20", None, False, True), ("myhost.example", None, False, True),
    ("0.0.0.0", ("u", "p"), False, False), ("127.0.0.1", None, True, True), ("127.0.0.1", ("u", "p"), True, False),
])
def test_serving_beyond_loopback_without_auth_warns(host, auth, share, warns):
    from app.ui import exposure_warning

    w = exposure_warning(host, auth, share)
    assert (w is not None) == warns
    if warns:
        assert "--auth" in w and "\n" not in w


def test_launch_prints_the_warning(tiny_run, monkeypatch):  # noqa: F811
    """launch() says it before serving (Gradio's own launch is stubbed: nothing binds 0.0.0.0)."""
    import gradio as gr

    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine
    from app.ui import launch

    seen = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    said = []
    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig())
    launch(eng, host="0.0.0.0", port=None, quiet=True, say=said.append)
    assert seen["server_name"] == "0.0.0.0"
    assert any("WARNING" in m and "0.0.0.0" in m and "--auth" in m for m in said)
    said.clear()
    launch(eng, host="0.0.0.0", port=None, auth=("u", "p"), quiet=True, say=said.append)
    assert not said


# ------------------------------------------------------------------------------------------ reproducible extraction
GIBBERISH = "blorf zint kapoo mesh trundle vim oxo plat grenk spoo dar wix"   # Whisper doubts it: fallback


def _manifest(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "transcript"])
        w.writerows(rows)
    return path


def test_extraction_of_the_same_clip_gives_identical_features(tmp_path):
    """Four copies of one generated clip (espeak-ng gibberish, where Whisper's greedy decoding
    fails its own checks and the old temperature fallback sampled) go through ``admc extract``'s
    extractor: identical transcripts and T features, and meta.json records the ASR temperature."""
    from admc.data import load_dataset
    from benchmarks.fixtures import espeak
    from extractors.dataset.builder import ExtractSettings, extract_manifest

    espeak(GIBBERISH, tmp_path / "g0.wav")
    for i in (1, 2, 3):
        shutil.copy(tmp_path / "g0.wav", tmp_path / f"g{i}.wav")
    man = _manifest(tmp_path / "m.csv", [("g0.wav", "a", "train", ""), ("g1.wav", "a", "train", ""),
                                         ("g2.wav", "a", "val", ""), ("g3.wav", "a", "test", "")])
    out = extract_manifest(man, tmp_path / "ds", progress=False, settings=ExtractSettings(), threads=1)
    texts = [json.loads(line)["text"] for line in (out / "transcripts.jsonl").read_text().splitlines()]
    assert len(texts) == 4 and texts[0] and len(set(texts)) == 1, texts
    ds = load_dataset(out)
    ts = []
    for split in ("train", "val", "test"):
        sp = ds.splits[split]
        off = sp.offsets["T"]
        ts += [sp.rows["T"][off[i]:off[i + 1]] for i in range(len(sp))]
    assert len(ts) == 4 and all(np.array_equal(ts[0], t) for t in ts[1:])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["extract"]["extractors"]["ASR"]["options"]["temperature"] == [0.0]


# ------------------------------------------------------------------------------------------ one rule for NaN audio
def _nan_wav(path: Path, sr: int = 16000) -> Path:
    import soundfile as sf

    x = (0.2 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype(np.float32)
    x[4000:4100] = np.nan
    sf.write(str(path), x, sr, subtype="FLOAT")
    return path


def test_live_session_rejects_nan_audio_by_the_shared_rule(tiny_run):  # noqa: F811
    from app.checkpoint import load_checkpoint
    from app.session import LiveSession, SessionConfig
    from extractors.models.audio import audio_problem

    chunk = np.full(1600, 0.1, np.float32)
    chunk[10] = np.nan
    s = LiveSession(load_checkpoint(tiny_run).model, fake_components(), SessionConfig(face_fps=None))
    s.push_audio(chunk, 16000, 0.0)
    r = s.step(0.2)
    assert r.streams["A"] == "missing"
    assert r.reasons["A"] == f"bad audio: ValueError: {audio_problem(chunk)}"
    assert audio_problem(chunk) == "non-finite samples (1 of 1600 are NaN or infinite)"
    assert audio_problem(np.zeros(5, np.float32)) is None
    s.close()


def test_extract_refuses_nan_audio_by_the_same_rule(tmp_path):
    """A float WAV with NaN samples is reported and skipped by ``admc extract`` (it was extracted
    into finite-looking features), with the live app's reason."""
    import soundfile as sf

    from extractors.dataset.builder import ExtractSettings, extract_manifest

    _nan_wav(tmp_path / "nan.wav")
    x, _ = sf.read(str(tmp_path / "nan.wav"), dtype="float32")
    assert np.isnan(x).sum() == 100
    good = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    sf.write(str(tmp_path / "good.wav"), good, 16000)
    for n in (1, 2):
        shutil.copy(tmp_path / "good.wav", tmp_path / f"good{n}.wav")
    man = _manifest(tmp_path / "m.csv", [("nan.wav", "a", "train", "hello"), ("good.wav", "a", "train", "hello"),
                                         ("good1.wav", "a", "val", "hello"), ("good2.wav", "a", "test", "hello")])
    out = extract_manifest(man, tmp_path / "ds", progress=False, settings=ExtractSettings(asr=False), threads=1)
    skipped = json.loads((out / "meta.json").read_text())["extract"]["skipped"]
    assert [s["id"] for s in skipped] == ["nan"]
    assert "non-finite" in skipped[0]["reason"]
    from extractors.models.audio import audio_problem                       # the live app's words

    assert audio_problem(x) in skipped[0]["reason"]


# ------------------------------------------------------------------------------------------ still image as --source
def test_still_image_source_is_a_one_line_error(tiny_run, tmp_path, capsys):  # noqa: F811
    from PIL import Image

    from app.cli import main
    from benchmarks.fixtures import clip_frame

    for name in ("photo.jpg", "photo.png", "photo.gif"):
        img = tmp_path / name
        Image.fromarray(clip_frame("face", size=(160, 120))).save(img)
        out = tmp_path / "o.jsonl"
        rc = main(["--source", str(img), "--no-ui", "--checkpoint", str(tiny_run), "--no-asr", "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and str(img) in err and "still image" in err, err
        assert "\n" not in err and "Traceback" not in err


def test_source_shorter_than_one_window_is_an_error(tiny_run, tmp_path, capsys):  # noqa: F811
    import soundfile as sf

    from app.cli import main

    wav = tmp_path / "blip.wav"
    sf.write(str(wav), np.zeros(800, np.float32), 16000)              # 50 ms
    rc = main(["--source", str(wav), "--no-ui", "--checkpoint", str(tiny_run), "--no-asr", "--quiet",
               "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and str(wav) in err and "no analysis window" in err and "Traceback" not in err


def test_still_image_is_not_looped_by_the_ui_file_source(tmp_path):
    """With the UI, ``--source photo.jpg`` would loop one frame without pause (a busy loop):
    the capture reports it instead and the browser capture is served."""
    from PIL import Image

    from benchmarks.fixtures import clip_frame
    from app.local import FileCapture

    img = tmp_path / "photo.jpg"
    Image.fromarray(clip_frame("face", size=(160, 120))).save(img)
    cap = FileCapture(img)
    assert not cap.available and "still image" in cap.problem and str(img) in cap.problem


# ------------------------------------------------------------------------------------------ the server
def _login(base: str, user: str, password: str):
    """An HTTP client logged in as ``user`` (the page's own login form; its cookie kept)."""
    import http.cookiejar
    import urllib.parse

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    with opener.open(urllib.request.Request(base + "/login", data=body), timeout=20) as r:
        assert r.status == 200
    return opener


def _click(opener, base: str, fn_index: int, session: str) -> str:
    body = json.dumps({"data": [], "fn_index": fn_index, "session_hash": session, "event_data": None,
                       "trigger_id": None}).encode()
    req = urllib.request.Request(base + "/gradio_api/queue/join", data=body,
                                 headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=20) as r:
        assert r.status == 200
    with opener.open(base + f"/gradio_api/queue/data?session_hash={session}", timeout=60) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return _message(msg)
    raise AssertionError("no result")


def _heartbeat_status(opener, base: str, session: str) -> int:
    try:
        with opener.open(base + f"/gradio_api/heartbeat/{session}", timeout=20) as r:
            r.readline()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sessions_are_bound_to_their_login_and_capped(tiny_run):  # noqa: F811
    """With --auth: a heartbeat (whose end closes a session) from no login or another login is refused
    and closes nothing; one login holds at most max_per_user sessions and the server max_sessions,
    each refusal a clear message on the page."""
    from app.checkpoint import load_checkpoint
    from app.session import SessionConfig
    from app.engine import Engine
    from app.ui import launch

    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig(face_fps=None),
                 max_sessions=3, max_per_user=2)
    demo = launch(eng, host="127.0.0.1", port=None, quiet=True, say=lambda m: None,
                  auth=[("alice", "a-pass"), ("bob", "b-pass")])
    try:
        base = demo.local_url.rstrip("/")
        alice, bob = _login(base, "alice", "a-pass"), _login(base, "bob", "b-pass")
        start = _fn_index(base, "Start recording", alice)
        assert _click(alice, base, start, "h1").startswith("Recording")
        assert set(eng.sessions) == {"alice/h1"}
        victim = eng.sessions["alice/h1"]
        anonymous = urllib.request.build_opener()
        assert _heartbeat_status(anonymous, base, "h1") == 401
        assert _heartbeat_status(bob, base, "h1") == 403
        import time
        time.sleep(1.0)                                    # an unload, had one run, would have closed it
        assert eng.sessions.get("alice/h1") is victim and not victim._closed
        # the same session hash sent by bob is bob's own session, never alice's
        assert _click(bob, base, start, "h1").startswith("Recording")
        assert eng.sessions["alice/h1"] is victim and "bob/h1" in eng.sessions
        # caps: alice may hold 2; the server 3
        assert _click(alice, base, start, "h2").startswith("Recording")
        msg = _click(alice, base, start, "h3")
        assert "This login already has 2 live sessions" in msg, msg
        msg = _click(bob, base, start, "h4")
        assert "limit of 3 live sessions" in msg, msg
        assert len(eng.sessions) == 3
        # the page's panel says so for a page that has no session
        assert "limit of 3" in eng.admission_problem("bob/h5")
        # the owner's own heartbeat is served
        assert _heartbeat_status(alice, base, "h2") == 200
    finally:
        for s in list(eng.sessions.values()):
            s.close()
        demo.close()


def test_twenty_sessions_at_once_each_get_an_answer(tiny_run):  # noqa: F811
    """20 pages opening sessions at once: the server admits its limit, every other page is told it is
    full, and every one of them gets its answer within seconds (before: 4 of 20 got nothing back for
    30-120 s)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from app.checkpoint import load_checkpoint
    from app.engine import Engine
    from app.session import SessionConfig
    from app.ui import launch

    eng = Engine(load_checkpoint(tiny_run), fake_components(), lambda: SessionConfig(face_fps=None))
    demo = launch(eng, host="127.0.0.1", port=None, quiet=True, say=lambda m: None)
    try:
        base = demo.local_url.rstrip("/")
        start = _fn_index(base, "Start recording")
        opener = urllib.request.build_opener()

        def open_page(i):
            t0 = time.monotonic()
            msg = _click(opener, base, start, f"page{i}")
            return msg, time.monotonic() - t0

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(open_page, range(20)))
        admitted = [m for m, _ in answers if m.startswith("Recording")]
        full = [m for m, _ in answers if "limit of 8 live sessions" in m]
        assert len(admitted) == 8 and len(full) == 12, [m for m, _ in answers]
        assert max(s for _, s in answers) < 20, sorted(s for _, s in answers)
        assert len(eng.sessions) == 8
    finally:
        for s in list(eng.sessions.values()):
            s.close()
        demo.close()
