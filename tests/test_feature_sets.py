"""Live feature sets (``extractors.live_schema``): which extractors make A, V and T, how a run records
its set, and the stacked A rows (openSMILE next to the Whisper encoder) live and from a whole file."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from admc.data import Modality, Schema
from extractors.live_schema import DEFAULT_FEATURE_SET, FEATURE_SETS, feature_set, feature_set_of

CLASSES = ("a", "b")


def test_feature_sets_and_their_schemas():
    first, default = FEATURE_SETS["opensmile-minixception-minilm"], feature_set()
    assert default.name == DEFAULT_FEATURE_SET
    assert first.dims() == {"A": 130, "V": 128, "T": 384}
    assert default.dims() == {"A": 514, "V": 384, "T": 535}
    assert default.dims(text_model_dim=1024)["T"] == 1024 + 151           # another text model + nade
    assert [m.kind for m in default.schema(CLASSES).modalities] == ["sequence"] * 3
    with pytest.raises(ValueError, match="feature set 'nope': must be one of"):
        feature_set("nope")


def test_a_run_names_its_feature_set_or_is_recognised_by_its_dims():
    first = FEATURE_SETS["opensmile-minixception-minilm"]
    schema = first.schema(CLASSES)
    assert feature_set_of({"dataset": {"feature_set": DEFAULT_FEATURE_SET}}, schema).name == DEFAULT_FEATURE_SET
    assert feature_set_of({"dataset": {"path": "x"}}, schema) is first          # older runs: by A and V dims
    odd = Schema(tuple(Modality(n, d, "sequence", "lstm") for n, d in (("A", 7), ("V", 8), ("T", 9))), CLASSES)
    assert feature_set_of({}, odd) is None
    with pytest.raises(ValueError, match="feature set 'gone'"):
        feature_set_of({"dataset": {"feature_set": "gone"}}, schema)


@pytest.fixture(scope="module")
def speech():
    from extractors.models.audio import resample
    from tests.media import espeak

    import tempfile
    from pathlib import Path

    x, sr = espeak("the weather is fine and the train is on time", Path(tempfile.mkdtemp()) / "s.wav")
    wave = np.zeros(16000 * 4, np.float32)
    y = resample(x, sr, 16000)[: len(wave) - 8000]
    wave[8000:8000 + len(y)] = y
    return wave + (np.random.default_rng(0).standard_normal(len(wave)) * 1e-3).astype(np.float32)


def test_stacked_a_rows_live_equal_the_whole_file_and_their_parts(speech):
    from extractors.live.audio_frontend import StackedAudioFeatures, build_audio_features
    from extractors.models.audio_rows import AudioRing

    fx = build_audio_features(("opensmile", "whisper"))
    assert isinstance(fx, StackedAudioFeatures) and fx.dim == 514
    t = 3.6
    heard = speech[: int(t * 16000)]           # a live window at t has heard the audio up to t
    rows = fx.wave_source(heard).window_rows(t, 0.0, 3.0)
    assert rows.shape == (30, 514) and np.isfinite(rows).all()
    lld, enc = fx.parts[0].wave_source(heard).window_rows(t, 0.0, 3.0), fx.parts[1].wave_source(heard).window_rows(t, 0.0, 3.0)
    np.testing.assert_array_equal(rows[:, :130], lld[-30:])
    np.testing.assert_array_equal(rows[:, 130:], enc[-30:])

    # the same audio pushed live in odd chunks into a session-like ring
    ring, lock = AudioRing(6.0), threading.Lock()
    ring.reset(0.0)
    live = fx.window_source(keep_s=5.0)
    i = 0
    for n in (1103, 700, 4410, 333, 8000, 1600, 2048) * 20:
        if i >= len(heard):
            break
        ring.append(heard[i:i + n])
        i += n
        live.update(ring, lock)
    live.update(ring, lock, force=True)
    np.testing.assert_allclose(live.window_rows(t, 0.0, 3.0), rows, rtol=1e-4, atol=1e-4)


def test_a_checkpoint_loads_the_extractors_of_its_feature_set(tmp_path):
    from app.checkpoint import CheckpointError, load_checkpoint
    from benchmarks.fixtures import make_tiny_checkpoint

    run = make_tiny_checkpoint(tmp_path / "first", n=16, epochs=1, small=True)
    ck = load_checkpoint(run)
    assert ck.feature_set.name == "opensmile-minixception-minilm"
    # an intent head on other features is refused: both heads read the same windows
    other = make_tiny_checkpoint(tmp_path / "other", n=16, epochs=1, small=True, feature_set_name=DEFAULT_FEATURE_SET)
    assert load_checkpoint(other).feature_set.name == DEFAULT_FEATURE_SET
    with pytest.raises(CheckpointError, match="both heads read the same features"):
        load_checkpoint(run, intent=other)


def test_feature_set_build_makes_what_is_asked_and_reports_what_fails(tmp_path):
    """``FeatureSet.build`` is the one place a feature set's extractors are made: only the asked-for
    ones are built, and one that cannot be (a text model path that is not there) raises, or with
    ``strict=False`` is None with its reason while the others are still built."""
    from extractors.live_schema import feature_set

    fs = feature_set()
    none = fs.build(face=False, audio=False, text=False)
    assert (none.face, none.audio, none.text, none.errors) == (None, None, None, {})
    with pytest.raises(Exception):
        fs.build(face=False, audio=False, text_model=str(tmp_path / "no-model"))
    got = fs.build(face=False, text_model=str(tmp_path / "no-model"), strict=False)
    assert got.text is None and set(got.errors) == {"T"} and got.errors["T"].count("\n") == 0
    assert got.audio is not None and got.audio.dim == fs.audio_dim and got.face is None
