"""Stream health: exact switching times on synthetic streams, and a real face clip through the extractor."""

from __future__ import annotations

import numpy as np
import pytest

from extractors.live.health import (
    AudioHealth, HealthConfig, StreamHealth, TextHealth, VideoHealth, landmark_problem,
)
from extractors.types import AsrSegment, FaceResult, HealthDecision, VadResult

CHUNK = 0.05  # VAD chunk length used in these tests (s)
FPS = 15.0

# MTCNN's landmarks/box for skimage's astronaut (512x512)
LM = np.array([[204.4, 102.7], [248.3, 104.4], [226.1, 128.4], [202.4, 140.5], [247.1, 142.9]], np.float32)
BOX = np.array([178.5, 64.0, 268.0, 175.8], np.float32)
EXPR = {"angry": 0.01, "disgust": 0.0, "fear": 0.0, "happy": 0.95, "sad": 0.01, "surprise": 0.02, "neutral": 0.01}


def vad(i: int, p: float) -> VadResult:
    return VadResult(t=round(i * CHUNK, 6), duration=CHUNK, speech_prob=p)


def face(t: float, score: float = 0.999, lm=LM, expr=EXPR) -> FaceResult:
    return FaceResult(t=t, detected=True, score=score, box=BOX.copy(), landmarks=np.array(lm, np.float32),
                      feature=np.ones(128, np.float32), expression=dict(expr))


def transitions(decisions: list[HealthDecision]) -> list[tuple[float, bool, str]]:
    """(t, live, reason) wherever live or reason changes."""
    out, prev = [], None
    for d in decisions:
        key = (d.live, d.reason)
        if key != prev:
            out.append((round(d.t, 6), d.live, d.reason))
            prev = key
    return out


# ------------------------------------------------------------------------------------------ A
def test_silence_hysteresis_exact_times():
    probs = ([0.1] * 4 + [0.9] + [0.1]          # 0.00-0.30: one 50 ms speech chunk: too short
             + [0.9] * 24                        # 0.30-1.50: speech; live once 0.1 s long -> at 0.40
             + [0.2]                             # 1.50: one silent chunk: no flicker
             + [0.45] * 3                        # 1.55-1.70: between thresholds: still speech
             + [0.3] * 6                         # 1.70-2.00: below vad_off for 0.3 s -> silence at 2.00
             + [0.45] * 10)                      # between thresholds: stays silent
    a = AudioHealth(HealthConfig(a_hold_s=0.3))           # no voice hold beyond the gate
    ds = [a.update(vad(i, p)) for i, p in enumerate(probs)]
    assert transitions(ds) == [(0.05, False, "silence"), (0.40, True, "ok"), (2.00, False, "silence")]
    assert all(d.modality == "A" for d in ds)
    assert ds[10].score == pytest.approx(0.9)


def test_voice_holds_through_the_pauses_of_one_window_by_default():
    """The default voice hold: A stays live through a 2.5 s pause between sentences and goes missing
    after 3 s of silence (a window without speech), not after the 0.5 s that ends an utterance."""
    probs = [0.9] * 20 + [0.1] * 50 + [0.9] * 20 + [0.1] * 70     # 1 s speech, 2.5 s pause, 1 s, 3.5 s silence
    a = AudioHealth(HealthConfig())
    ds = [a.update(vad(i, p)) for i, p in enumerate(probs)]
    assert transitions(ds) == [(0.05, False, "silence"), (0.1, True, "ok"), (7.5, False, "silence")]


def test_silence_thresholds_come_from_config():
    cfg = HealthConfig(vad_on=0.8, vad_off=0.6, a_min_silence_s=0.1, a_min_speech_s=0.05, a_hold_s=0.1)
    a = AudioHealth(cfg)
    ds = [a.update(vad(i, p)) for i, p in enumerate([0.7, 0.85, 0.7, 0.5, 0.5])]
    assert [d.live for d in ds] == [False, True, True, True, False]


def test_bad_vad_values_never_raise():
    a = AudioHealth()
    for bad in (VadResult(0.0, 0.05, float("nan")), VadResult(float("nan"), 0.05, 0.9), object()):
        d = a.update(bad)
        assert not d.live and d.reason in ("bad vad", "silence")


# ------------------------------------------------------------------------------------------ T
def _speech_stream(sh: StreamHealth, events: list, until: float, speech: list[tuple[float, float]]):
    """Feed VAD chunks (0.9 inside the speech intervals, 0.05 outside) up to ``until`` and the
    segments at their end times; returns T's decision after every input."""
    out = []
    events = sorted(events, key=lambda s: s.end)
    n = int(round(until / CHUNK))
    for i in range(n):
        t = i * CHUNK
        while events and events[0].end <= t + 1e-9:
            out.append(sh.update_text(events.pop(0))["T"])
        p = 0.9 if any(s <= t < e for s, e in speech) else 0.05
        out.append(sh.update_audio(vad(i, p))["T"])
    return out


def test_text_follows_speech_with_hold():
    sh = StreamHealth()
    seg = AsrSegment(0.2, 1.5, "I am really happy today", avg_logprob=-0.3)
    ds = _speech_stream(sh, [seg], 8.0, [(0.0, 3.0)])
    # speech 0-3 s; transcript at 1.5; A silent at 3.3; T held for t_hold_s = 3 s (one window) -> 6.3
    assert transitions(ds)[1:] == [(1.5, True, "ok"), (6.3, False, "no speech")]
    live = [d for d in ds if d.live]
    assert live[0].score == pytest.approx(np.exp(-0.3))


def test_speech_without_transcript_is_asr_failure():
    sh = StreamHealth()
    late = AsrSegment(15.5, 16.0, "sorry, I was saying", avg_logprob=-0.2)
    ds = _speech_stream(sh, [late], 25.0, [(10.0, 20.0)])
    # onset 10.0, t_asr_timeout_s 5 -> 15.0; transcript at 16.0; A silent 20.3 -> T off at 23.3
    assert transitions(ds) == [(0.05, False, "no speech"), (15.0, False, "asr failure: no transcript"),
                               (16.0, True, "ok"), (23.3, False, "no speech")]


def test_whisper_failure_signals_during_speech():
    sh = StreamHealth()
    segs = [
        AsrSegment(0.5, 2.0, "hello there", avg_logprob=-1.2, no_speech_prob=0.7),
        AsrSegment(2.0, 4.0, "good good good good good good good", compression_ratio=2.6),
        AsrSegment(4.0, 5.0, "maybe", avg_logprob=-1.5, final=False),   # failing partial: no evidence
        AsrSegment(4.0, 6.0, "Subtitles by the Amara.org community"),
        AsrSegment(6.0, 7.0, "Thank you."),                              # said while speaking: fine
        AsrSegment(7.0, 8.0, "  ...  "),
        AsrSegment(8.0, 9.0, "what did you mean", avg_logprob=-1.3, no_speech_prob=0.1),
        AsrSegment(9.0, 9.5, "all right then", avg_logprob=-0.1, no_speech_prob=0.7),
    ]
    ds = _speech_stream(sh, segs, 10.0, [(0.0, 12.0)])
    assert transitions(ds) == [
        (0.05, False, "no speech"),
        (2.0, False, "asr failure: no_speech"),
        (4.0, False, "asr failure: repetition"),
        (6.0, False, "asr failure: hallucination"),
        (7.0, True, "ok"),
        (8.0, False, "asr failure: empty"),
        (9.0, False, "asr failure: low confidence"),
        (9.5, True, "ok"),
    ]
    rep = next(d for d in ds if d.reason == "asr failure: repetition")
    assert rep.score == pytest.approx(2.6)


def test_hallucinations_in_silence():
    sh = StreamHealth()
    segs = [AsrSegment(3.0, 5.0, "Thanks for watching!"), AsrSegment(9.0, 10.0, "you")]
    ds = _speech_stream(sh, segs, 14.0, [])
    # each failure holds t_hold_s = 3 s after its segment, then "no speech"
    assert transitions(ds) == [
        (0.05, False, "no speech"), (5.0, False, "asr failure: hallucination"), (8.0, False, "no speech"),
        (10.0, False, "asr failure: hallucination"), (13.0, False, "no speech"),
    ]
    th = TextHealth()
    assert th.segment_problem(AsrSegment(0, 1, "Thank you.")) == ("asr failure: hallucination", 0.0)
    assert th.segment_problem(AsrSegment(0, 1, "Thank you for the flowers.")) is None
    assert th.segment_problem(AsrSegment(0, 1, "♪ ♪")) == ("asr failure: empty", 0.0)


# ------------------------------------------------------------------------------------------ V
def test_landmark_geometry():
    assert landmark_problem(LM, BOX) is None
    swapped = LM.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    assert landmark_problem(swapped, BOX) == "mouth corners swapped"
    upside = LM.copy()
    upside[:, 1] = 2 * LM[2, 1] - LM[:, 1]   # mouth above the eyes (not a rotation: a mirror)
    assert landmark_problem(upside, BOX) is not None
    assert landmark_problem(LM + 200, BOX) == "landmarks outside the box"
    assert landmark_problem(np.full((5, 2), np.nan), BOX) == "landmarks not finite"


def test_video_hysteresis_exact_frames():
    vh = VideoHealth(HealthConfig())
    plan = (["good"] * 5 + ["none"] + ["good"] * 4            # single bad frame: no flicker
            + ["none"] * 5                                   # 10-14: missing at the 5th (frame 14)
            + ["good"] * 2 + ["none"] + ["good"] * 3         # 15-20: recovery needs 3 in a row -> 20
            + ["lowscore"] * 5 + ["good"] * 3                # occlusion at 25; live at 28
            + ["mouth"] * 5 + ["good"] * 3                   # geometry: missing at 33
            + ["unsure"] * 5)                                # low expression confidence: 41
    ds = []
    for i, kind in enumerate(plan):
        t = i / FPS
        r = {"good": face(t), "none": FaceResult(t, False, 0.0), "lowscore": face(t, score=0.85),
             "mouth": face(t, lm=LM[[0, 1, 2, 4, 3]]),
             "unsure": face(t, expr={k: (0.18 if k in ("happy", "sad") else 0.128) for k in EXPR})}[kind]
        ds.append(vh.update(r))
    live_at = [i for i in range(1, len(ds)) if ds[i].live != ds[i - 1].live]
    assert ds[0].live is False and live_at == [2, 14, 20, 25, 28, 33, 36, 41]
    assert [ds[i].reason for i in (14, 25, 33, 41)] == [
        "no face", "occlusion: low score", "occlusion: landmarks", "occlusion: low expression confidence"]
    assert ds[14].t == pytest.approx(14 / FPS)


def test_video_garbage_and_frozen_frames():
    vh = VideoHealth(HealthConfig(v_off_frames=2, v_on_frames=1))
    rng = np.random.default_rng(0)
    ok_frame = lambda: rng.integers(60, 200, (512, 512, 3), dtype=np.uint8)  # noqa: E731
    assert vh.update(face(0.0), ok_frame()).live
    # the face's lower half lies outside a small frame
    vh.update(face(0.1), ok_frame()[:130])
    d = vh.update(face(0.2), ok_frame()[:130])
    assert not d.live and d.reason == "occlusion: out of frame"
    assert vh.update(face(0.25), ok_frame()).live
    for i, (res, frame) in enumerate([(None, None), ("garbage", None)], start=1):
        d = vh.update(res, frame)
    assert not d.live and d.reason == "bad frame: no result"
    assert vh.update(face(0.3), ok_frame()).live
    vh.update(face(0.4), np.zeros((48, 64), np.uint8))
    d = vh.update(face(0.5), np.zeros((48, 64, 3), np.float32))
    assert not d.live and d.reason.startswith("bad frame: ")
    vh.update(face(0.6), ok_frame())
    vh.update(face(0.7), np.zeros((48, 64, 3), np.uint8))
    d = vh.update(face(0.8), np.zeros((48, 64, 3), np.uint8))
    assert not d.live and d.reason == "black frame"
    black = [vh.update(face(0.8 + i / FPS), np.zeros((48, 64, 3), np.uint8)) for i in range(40)]
    assert {(d.live, d.reason) for d in black} == {(False, "black frame")}  # alike, but not "frozen"
    # a frozen camera: the same frame for v_frozen_s = 2 s
    frozen = ok_frame()
    ds = [vh.update(face(4.0 + i / FPS), frozen) for i in range(40)]
    assert [d.live for d in ds].index(False) == 30 and ds[30].reason == "frozen"
    assert vh.update(face(7.0), ok_frame()).live


def test_stalled_and_no_frames():
    sh = StreamHealth()
    assert sh.poll(0.0)["V"].reason == "no frames"
    d = sh.poll(1.0)
    assert d["V"] == HealthDecision("V", False, "no frames", 0.0, 1.0)
    for i in range(15, 31):  # frames from 1.0 to 2.0 s
        d = sh.update_video(face(i / FPS))
    assert d["V"].live
    assert sh.poll(2.9)["V"].live
    d = sh.poll(3.05)
    assert not d["V"].live and d["V"].reason == "stalled" and d["V"].score == pytest.approx(1.05)
    # audio: speaking, then the microphone stops delivering -> A and T stalled
    for i in range(60, 70):
        sh.update_audio(vad(i, 0.9))
    sh.update_text(AsrSegment(3.0, 3.4, "hello there"))
    assert sh.decisions["A"].live and sh.decisions["T"].live
    d = sh.poll(3.5 + 1.5 + 0.01)
    assert (d["A"].reason, d["T"].reason) == ("stalled", "stalled") and not d["A"].live and not d["T"].live
    # the other modalities' updates move the shared clock on too
    sh2 = StreamHealth()
    for i in range(40):
        d = sh2.update_video(face(i / FPS))
    assert d["A"].reason == "no frames" and d["V"].live


# ------------------------------------------------------------------------------------------ real clip
@pytest.fixture(scope="module")
def clip():
    skdata = pytest.importorskip("skimage.data")
    import torch
    from PIL import Image

    from extractors.models.face import FaceExtractor

    torch.set_num_threads(1)
    fx = FaceExtractor("cpu")
    img = np.asarray(Image.fromarray(skdata.astronaut()).resize((640, 480)))
    x1, y1, x2, y2 = fx(img, 0).box.astype(int)
    hand = img.copy()  # a skin-coloured "hand" over the lower half of the face
    hand[int(y1 + 0.5 * (y2 - y1)):y2 + 10, x1 - 10:x2 + 10] = (200, 160, 140)
    scarf = img.copy()  # lower 40 %: MTCNN still finds the face, the occluder is a flat patch
    scarf[int(y1 + 0.6 * (y2 - y1)):y2 + 10, x1 - 10:x2 + 10] = (90, 60, 50)
    return fx, {"face": img, "hand": hand, "scarf": scarf, "black": np.zeros_like(img)}


def test_real_clip_switches_v_at_the_right_frames(clip):
    fx, imgs = clip
    plan = (["face"] * 10 + ["black"] + ["face"] * 4     # single black frame: no flicker
            + ["hand"] * 8                                # 15-22: missing at frame 19
            + ["face"] * 4                                # 23-26: live again at frame 25
            + ["black"] * 6                               # 27-32: missing at frame 31
            + ["face"] * 4                                # 33-36: live at 35
            + ["scarf"] * 6)                              # 37-42: missing at 41
    rng = np.random.default_rng(1)
    vh = VideoHealth(HealthConfig())
    ds, res = [], []
    for i, kind in enumerate(plan):
        frame = imgs[kind]
        if kind != "black":  # sensor noise (also keeps the frozen-camera check quiet)
            frame = np.clip(frame.astype(np.int16) + rng.integers(-3, 4, frame.shape), 0, 255).astype(np.uint8)
        r = fx(frame, i / FPS)
        res.append(r)
        ds.append(vh.update(r, frame))
    assert [r.detected for r in res[15:23]] == [False] * 8  # the hand hides the face from MTCNN
    assert res[40].detected
    switches = [i for i in range(1, len(ds)) if ds[i].live != ds[i - 1].live]
    assert ds[0].live is False
    assert switches == [2, 19, 25, 31, 35, 41]
    assert ds[19].reason == "no face" and ds[31].reason == "black frame"
    assert ds[41].reason.startswith("occlusion")
    assert all(d.modality == "V" for d in ds)


def test_late_audio_is_stalled_on_the_video_clock_and_live_again_on_its_own():
    """A live microphone stream running 3 s behind the camera: polled at the camera's time A is
    "stalled" (the shared clock moved on), polled at the audio's own time it is what the audio says
    (speech), even right after another stream's update flagged it (the stall is not sticky)."""
    sh = StreamHealth()
    for i in range(int(2.0 / CHUNK)):                  # 2 s of speech
        sh.update_audio(vad(i, 0.95))
    a_end = 2.0
    sh.update_video(face(5.0))                          # the camera is at 5 s
    assert sh.poll(5.0)["A"].reason == "stalled"        # judged on the camera's clock
    d = sh.poll(5.0, audio_now=a_end)["A"]              # judged on its own
    assert d.live and d.reason == "ok", d
    sh.update_video(face(5.1))                          # the camera's update flags it again ...
    assert sh.poll(5.1, audio_now=a_end)["A"].live      # ... and the window still sees the audio
    assert not sh.poll(5.1)["A"].live                   # a stream that stopped: stalled
