"""Stream health: is each modality (A audio, V video, T text) usable right now, and why not.

One small state machine per modality, each with ``update(result) -> HealthDecision`` and
``poll(now) -> HealthDecision`` (time-outs: a stream that stopped delivering), and
:class:`StreamHealth`, which holds all three and returns ``{"A": ..., "V": ..., "T": ...}``.
All thresholds live in :class:`HealthConfig`.  Times are seconds since stream start, the clock of
the results (``VadResult.t``, ``FaceResult.t``, ``AsrSegment.start/end``).

Reasons (``HealthDecision.reason``; the part before ``":"`` is the category):

* live: ``"ok"``
* A: ``"silence"``, ``"bad vad"``
* V: ``"no face"``, ``"occlusion: <cue>"``, ``"black frame"``, ``"bad frame: <what>"``, ``"frozen"``
* T: ``"no speech"``, ``"asr failure: <what>"`` (``no transcript``, ``empty``, ``no_speech``,
  ``low confidence``, ``repetition``, ``hallucination``)
* all: ``"no frames"`` (nothing ever arrived), ``"stalled"`` (nothing arrived for too long)

Nothing here raises on bad input: garbage results or frames become "missing" decisions.
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from extractors.live.audio_frontend import AudioSettings, GateStep, SpeechGate
from extractors.live.face_frontend import FaceFrame, describe_frame
from extractors.types import AsrSegment, FaceResult, HealthDecision, VadResult, is_finite_number

EPS = 1e-6  # time comparisons


@dataclass
class HealthConfig(AudioSettings):
    """Every threshold of the stream-health detectors, with its default and why.

    The audio fields (``vad_on``, ``vad_off``, ``a_min_speech_s``, ``a_min_silence_s`` and the
    utterance settings) are inherited from :class:`extractors.live.audio_frontend.AudioSettings` and
    documented there: the audio front end's speech gate decides when A is live; AudioHealth only
    reads its steps.  One object serves both, so a threshold changed live (the UI) reaches the
    gate, the ASR's utterance cutter and health at once.
    """

    # ---- A: a stream that stops delivering ----
    a_stall_s: float = 1.5         # no VadResult for this long -> "stalled" ("no frames" if none ever)

    # ---- V: face absence / occlusion ----
    v_min_score: float = 0.80      # detection score below this counts as "no face" (MTCNN's own cut is 0.7)
    v_partial_score: float = 0.90  # detected but below this: partial occlusion (clear faces score > 0.99)
    v_min_expression_conf: float = 0.20  # max expression probability below this: the network sees no face
    #                                      (1st percentile on FER2013 test faces is 0.30)
    v_max_flat_fraction: float = 0.35    # fraction of the lower aligned face without texture (a hand,
    #                                      a sheet, a painted box); FER2013 faces: 99.5th percentile 0.21.
    #                                      Needs the frame: VideoHealth.update(result, frame=frame)
    v_off_frames: int = 5          # this many bad frames in a row -> V missing (0.25 s at the live 20 fps)
    v_on_frames: int = 3           # this many good frames in a row -> V live again (0.15 s at 20 fps)
    v_stall_s: float = 1.0         # no frame for this long -> "stalled" / "no frames"
    v_frozen_s: float | None = 2.0  # identical frames (no sensor noise at all) this long -> "frozen";
    #                                 None disables (e.g. a still image used as a virtual camera)

    # ---- T: ASR failure ----
    t_no_speech_prob: float = 0.6      # Whisper skips a segment if no_speech_prob > this ...
    t_logprob: float = -1.0            # ... and avg_logprob < this; avg_logprob < this alone is
    #                                    Whisper's "decoding failed" (temperature fallback) signal
    t_compression_ratio: float = 2.4   # Whisper: gzip compression ratio above this = repetition loop
    t_asr_timeout_s: float = 5.0       # speech (per VAD) this long without any transcript -> failure;
    #                                    must exceed the ASR's latency
    t_hold_s: float = 3.0              # after speech ends, T stays as it was this long, then "no speech":
    #                                    one window (3 s), so every window that holds part of an
    #                                    utterance has its words, even when the final transcript
    #                                    comes a second or two after the speech
    t_hallucination_max_speech: float = 0.5  # a known noise hallucination ("thank you.") counts as
    #                                    one when VAD speech covered less than this fraction of it
    t_hallucinations: tuple[str, ...] = (
        "thank you", "thank you very much", "thanks", "thanks for watching", "thank you for watching",
        "thank you so much for watching", "thanks for listening", "you", "bye", "bye bye", "okay", "so",
        "oh", "uh", "um", "hmm", "music", "applause", "silence", "blank audio", "no audio",
        "please subscribe", "subscribe", "like and subscribe",
    )
    # always a failure, whatever the VAD says (subtitle credits and the like, which Whisper learnt
    # from subtitle files)
    t_hallucination_patterns: tuple[str, ...] = (
        r"subtit(le|ulo)s?\b.*\b(by|made|provided|created|por)\b", r"amara\.org", r"\bcaption(s|ed|ing)? by\b",
        r"transcri(bed|ption) by", r"translated by", r"untertitel", r"sous-titr", r"please (like and )?subscribe",
        r"thanks? (you )?for watching", r"www\.\w+\.(com|org|net)",
    )


class _Monitor:
    modality = "?"

    def __init__(self, cfg: HealthConfig, stall_s: float):
        self.cfg = cfg
        self.stall_s = stall_s
        self.start_t: float | None = None    # clock at the first poll/update
        self.last_t: float | None = None     # time of the last result
        self.decision = HealthDecision(self.modality, False, "no frames", 0.0, 0.0)

    def _set(self, live: bool, reason: str, score: float, t: float) -> HealthDecision:
        self.decision = HealthDecision(self.modality, bool(live), reason, float(score), float(t))
        return self.decision

    def _stalled(self, now: float) -> HealthDecision | None:
        if self.start_t is None:
            self.start_t = now
        if self.last_t is None:
            if now - self.start_t >= self.stall_s - EPS:
                return self._set(False, "no frames", 0.0, now)
            return None
        if now - self.last_t > self.stall_s + EPS:
            return self._set(False, "stalled", now - self.last_t, now)
        return None


# --------------------------------------------------------------------------------------- audio
class AudioHealth(_Monitor):
    """A is missing while the speech gate says silence (rule "activity" of
    :class:`extractors.live.audio_frontend.SpeechGate`: hysteresis vad_on/vad_off, ``a_min_speech_s``
    of unbroken speech to go live, ``a_min_silence_s`` of unbroken silence to turn off) and
    ``a_hold_s`` has passed since the end of speech (the voice hold: A stays live through the pauses
    of a window).  :attr:`speaking` is the gate's own state (the text stream's speech timing).

    In the live path the audio front end runs the gate and :meth:`read` takes its steps; given
    plain VadResults (:meth:`update`, offline use and tests) this monitor runs a gate of its own.
    Initially A is missing ("no frames", then "silence").
    """

    modality = "A"

    def __init__(self, cfg: HealthConfig | None = None):
        cfg = cfg or HealthConfig()
        super().__init__(cfg, cfg.a_stall_s)
        self.speaking = False
        self.speech_start: float | None = None    # onset of the speech that made A live
        self.speech_end: float | None = None      # the gate's end of the last speech (for the hold)
        self._gate: SpeechGate | None = None
        self._heard: HealthDecision | None = None  # the decision of the newest audio (not of a stall)
        self._heard_speaking = False                # and the gate's state then

    def update(self, vad: VadResult) -> HealthDecision:
        """A VAD result: through this monitor's own speech gate."""
        if self._gate is None:
            self._gate = SpeechGate(self.cfg, "activity")
        return self.read(self._gate.step(vad))

    def read(self, step: GateStep) -> HealthDecision:
        """A speech-gate step (the audio front end's)."""
        if self.start_t is None:
            self.start_t = step.t
        self.last_t = step.end
        self.speaking = bool(step.speaking)
        self.speech_start = step.onset
        if step.bad or self.speaking:
            self.speech_end = None
        elif step.changed:                          # the gate just turned off: speech ended here
            self.speech_end = step.silence_start if step.silence_start is not None else step.end
        held = (self.speech_end is not None
                and step.end - self.speech_end < float(self.cfg.a_hold_s) - EPS)
        if step.bad:
            self._heard = self._set(False, "bad vad", 0.0, step.end)
        else:
            live = self.speaking or held
            self._heard = self._set(live, "ok" if live else "silence", step.prob, step.end)
        self._heard_speaking = self.speaking
        return self._heard

    def poll(self, now: float) -> HealthDecision:
        stalled = self._stalled(now)
        if stalled is not None:
            self.speaking, self.speech_end = False, None
            if self._gate is not None:
                self._gate.reset()
            return stalled
        if self.decision.reason == "stalled" and self._heard is not None:
            # judged at a time the audio has reached (a live stream running late): its own state
            # again, not the stall another stream's clock saw
            self.decision = self._heard
            self.speaking = self._heard_speaking
        return self.decision


# --------------------------------------------------------------------------------------- video
def landmark_problem(landmarks, box) -> str | None:
    """Why 5 MTCNN landmarks cannot belong to an unoccluded face in ``box``, or None.

    Loose bounds (all 552 MTCNN detections on sampled FER2013 training faces pass): eye distance
    0.2-0.9 of the box width, in-plane roll <= 60 deg, eyes above nose above mouth, mouth width
    0.35-1.7 and eye-to-mouth distance 0.5-2.2 eye distances, points inside the box (+25 %).
    """
    try:
        lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
        b = np.asarray(box, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        return "landmarks malformed"
    if not (np.isfinite(lm).all() and np.isfinite(b).all()):
        return "landmarks not finite"
    bw, bh = b[2] - b[0], b[3] - b[1]
    if bw <= 1 or bh <= 1:
        return "empty box"
    lo = b[:2] - 0.25 * np.array([bw, bh])
    hi = b[2:] + 0.25 * np.array([bw, bh])
    if (lm < lo).any() or (lm > hi).any():
        return "landmarks outside the box"
    le, re_, nose, ml, mr = lm
    ed = float(np.linalg.norm(re_ - le))
    if not 0.2 * bw <= ed <= 0.9 * bw:
        return "eye distance"
    ang = math.atan2(re_[1] - le[1], re_[0] - le[0])
    if abs(ang) > math.radians(60):
        return "roll"
    # into the face frame: x along the eye line, y down the face
    c, s = math.cos(-ang), math.sin(-ang)
    R = np.array([[c, -s], [s, c]])
    p = (lm - (le + re_) / 2) @ R.T / ed
    eye_y, nose_y, mouth_y = 0.0, p[2, 1], (p[3, 1] + p[4, 1]) / 2
    if p[3, 0] >= p[4, 0]:
        return "mouth corners swapped"
    mw = float(p[4, 0] - p[3, 0])
    if not 0.35 <= mw <= 1.7:
        return "mouth width"
    if not 0.5 <= mouth_y - eye_y <= 2.2:
        return "eye-mouth distance"
    if not eye_y < nose_y < mouth_y + 0.1:
        return "nose position"
    if not -1.0 <= p[2, 0] <= 1.0:
        return "nose position"
    return None


def _lower_face(a: np.ndarray) -> np.ndarray:
    S = a.shape[0]
    return a[int(0.55 * S):int(0.95 * S), int(0.2 * S):int(0.8 * S)]


def flat_fraction(crop: np.ndarray, inside: np.ndarray | None = None, grad_thr: float = 2.0) -> float:
    """Fraction of the lower-central aligned face (mouth/chin) with no texture (|grad| < 2 grey
    levels), among its pixels that lie inside the frame (``inside`` mask, default all)."""
    r = _lower_face(np.asarray(crop, dtype=np.float32))
    g = np.maximum(np.abs(np.diff(r, axis=1))[:-1, :], np.abs(np.diff(r, axis=0))[:, :-1])
    m = np.ones_like(g, dtype=bool) if inside is None else _lower_face(np.asarray(inside, bool))
    m = m[:-1, :-1] & m[1:, :-1] & m[:-1, 1:]  # both pixels of each difference inside
    return float((g[m] < grad_thr).mean()) if m.any() else 0.0


class VideoHealth(_Monitor):
    """V is missing after ``v_off_frames`` bad frames in a row, live after ``v_on_frames`` good ones.

    A frame is bad when: no face / score < v_min_score ("no face"); partial occlusion ("occlusion:
    low score" below v_partial_score, "occlusion: landmarks" implausible geometry, "occlusion: low
    expression confidence"; given the frame also "occlusion: flat lower face" and "occlusion: out
    of frame" when most of the mouth/chin region lies outside the image); the frame itself is
    unusable ("black frame", "bad frame: ...", given the frame); or the result is garbage.
    Identical frames for ``v_frozen_s`` make V missing at once ("frozen").  The reason given when
    V goes missing is the commonest one in the bad run (ties: the latest).
    """

    modality = "V"

    def __init__(self, cfg: HealthConfig | None = None):
        cfg = cfg or HealthConfig()
        super().__init__(cfg, cfg.v_stall_s)
        self.live = False
        self.bad_run: deque[str] = deque(maxlen=max(cfg.v_off_frames, 1))  # reasons of the current bad run
        self.bad_count = 0                                                   # its length
        self.good_run = 0
        self._last_hash: int | None = None
        self._same_since: float | None = None

    def assess(self, result: FaceResult | None, frame: np.ndarray | None = None,
               frame_prob: str | None = None) -> tuple[str | None, float]:
        """Per-frame evidence: (None if good else the reason, score)."""
        known = frame_prob is not None and frame is not None
        return self.judge(describe_frame(result, frame, problem=frame_prob if known else False))

    def judge(self, ff: FaceFrame) -> tuple[str | None, float]:
        """Per-frame evidence of a face front-end frame: (None if good else the reason, score)."""
        c = self.cfg
        if ff.problem is not None:
            return ff.problem, 0.0
        result = ff.result
        if not isinstance(result, FaceResult):
            return "bad frame: no result", 0.0
        score = float(result.score) if is_finite_number(result.score) else 0.0
        if not result.detected or score < c.v_min_score:
            return "no face", score
        if result.feature is not None and not np.isfinite(np.asarray(result.feature, dtype=np.float64)).all():
            return "bad frame: features not finite", score
        if score < c.v_partial_score:
            return "occlusion: low score", score
        if result.landmarks is not None and result.box is not None:
            why = landmark_problem(result.landmarks, result.box)
            if why is not None:
                return "occlusion: landmarks", score
        if result.expression:
            m = max(result.expression.values())
            if is_finite_number(m) and m < c.v_min_expression_conf:
                return "occlusion: low expression confidence", float(m)
        if ff.shape is not None and result.landmarks is not None and c.v_max_flat_fraction < 1.0:
            from extractors.models.face import crop_inside_frame

            try:
                if ff.crop is None:
                    raise ValueError("no aligned crop")
                inside = crop_inside_frame(result.landmarks, ff.shape, ff.crop.shape[0])
                out = 1.0 - float(_lower_face(inside).mean())
                flat = flat_fraction(ff.crop, inside)
            except Exception:  # noqa: BLE001
                out, flat = 0.0, 0.0
            if out > 0.5:
                return "occlusion: out of frame", out
            if flat > c.v_max_flat_fraction:
                return "occlusion: flat lower face", flat
        return None, score

    def update(self, result: FaceResult | None, frame: np.ndarray | None = None) -> HealthDecision:
        """A face result and (optionally) its frame: the evidence is made here (offline use and
        tests; the live path hands :meth:`read` the face front end's FaceFrames)."""
        return self.read(describe_frame(result, frame))

    def read(self, ff: FaceFrame) -> HealthDecision:
        """A face front-end frame (verdict, aligned crop and digest already made)."""
        c = self.cfg
        t = getattr(ff.result, "t", None)
        t = float(t) if is_finite_number(t) else (self.last_t if self.last_t is not None else 0.0)
        if self.start_t is None:
            self.start_t = t
        self.last_t = t

        if c.v_frozen_s is not None and ff.digest is not None:
            h = ff.digest
            if h != self._last_hash:
                self._last_hash, self._same_since = h, t
            elif t - self._same_since >= c.v_frozen_s - EPS:
                self.live, self.good_run = False, 0
                self.bad_run.append("frozen")
                self.bad_count += 1
                return self._set(False, "frozen", t - self._same_since, t)
        else:  # black or broken frames are alike for good reasons: not a frozen camera
            self._last_hash = None

        reason, score = self.judge(ff)
        if reason is None:
            self.good_run += 1
            self.bad_run.clear()
            self.bad_count = 0
            if not self.live and self.good_run >= c.v_on_frames:
                self.live = True
        else:
            self.good_run = 0
            self.bad_run.append(reason)
            self.bad_count += 1
            if self.live and self.bad_count >= c.v_off_frames:
                self.live = False
        if self.live:
            return self._set(True, "ok", score, t)
        if reason is None:  # recovering: fewer than v_on_frames good frames so far
            prev = self.decision.reason
            return self._set(False, "no face" if prev in ("ok", "no frames", "stalled") else prev, score, t)
        counts = Counter(self.bad_run)
        top = max(counts.values())
        why = next(r for r in reversed(self.bad_run) if counts[r] == top)
        return self._set(False, why, score, t)

    def poll(self, now: float) -> HealthDecision:
        stalled = self._stalled(now)
        if stalled is not None:
            self.live, self.good_run, self.bad_count = False, 0, 0
            self.bad_run.clear()
            return stalled
        return self.decision


# --------------------------------------------------------------------------------------- text
def _normalise(text: str) -> str:
    t = text.lower().replace("’", "'")
    t = re.sub(r"[\[\]\(\)♪♫*#~_\-–—.,!?;:\"“”…]+", " ", t)
    return re.sub(r"\s+", " ", t).strip()


class TextHealth(_Monitor):
    """T follows the ASR; its decision at time ``now`` is, in this order:

    1. speech (A live) without any segment (partial or final) for ``t_asr_timeout_s`` since the
       speech onset (start of the VAD speech run) or the end of the last segment -> "asr failure:
       no transcript";
    2. the last segment event, if it belongs to the current activity (during speech: it came at
       most ``t_hold_s`` before the onset; in silence: the speech end or the event itself is less
       than ``t_hold_s`` ago): a good segment (partial or final) -> live "ok", score
       exp(avg_logprob); a failed *final* segment -> "asr failure: <what>" (see
       :meth:`segment_problem`) at once: segments are seconds long, so one is enough evidence and
       there is no flicker at that rate;  failed partials are no evidence either way;
    3. otherwise "no speech".

    :class:`StreamHealth` makes T "stalled"/"no frames" while the audio stream is.
    """

    modality = "T"

    def __init__(self, cfg: HealthConfig | None = None):
        cfg = cfg or HealthConfig()
        super().__init__(cfg, float("inf"))
        self.speaking = False
        self.speech_start: float | None = None
        self.speech_end: float | None = None      # when A went silent after the last speech
        self.last_text_t: float | None = None     # end time of the last segment (any)
        self.event: tuple[bool, str, float, float] | None = None  # (live, reason, score, t)
        self.vad: deque[tuple[float, float, bool]] = deque(maxlen=4000)  # (t, end, speaking)
        self.now = 0.0
        self.decision = HealthDecision("T", False, "no speech", 0.0, 0.0)

    # -- inputs
    def on_vad(self, t: float, end: float, speaking: bool, onset: float | None = None) -> HealthDecision:
        """Feed the A state for one VAD chunk ``[t, end)`` (StreamHealth does this for every
        VadResult); ``onset``: where the speech run that made A live began (default ``t``)."""
        self.vad.append((float(t), float(end), bool(speaking)))
        if speaking and not self.speaking:
            self.speech_start = float(onset) if onset is not None and is_finite_number(onset) else float(t)
            self.speech_end = None
        elif not speaking and self.speaking:
            self.speech_end = float(end)
        self.speaking = bool(speaking)
        return self.poll(end)

    def speech_fraction(self, start: float, end: float) -> float:
        """Fraction of [start, end] covered by VAD chunks in the speaking state (0 without VAD)."""
        if end <= start:
            return 0.0
        cov = 0.0
        for t0, t1, sp in self.vad:
            if sp:
                cov += max(0.0, min(t1, end) - max(t0, start))
        return min(1.0, cov / (end - start))

    def segment_problem(self, seg: AsrSegment) -> tuple[str, float] | None:
        """(reason, score) if this segment is a recognition failure, else None."""
        c = self.cfg
        text = seg.text if isinstance(seg.text, str) else ""
        norm = _normalise(text)
        if not norm:
            return "asr failure: empty", 0.0
        nsp = float(seg.no_speech_prob) if is_finite_number(seg.no_speech_prob) else 0.0
        lp = float(seg.avg_logprob) if is_finite_number(seg.avg_logprob) else 0.0
        cr = float(seg.compression_ratio) if is_finite_number(seg.compression_ratio) else 1.0
        if nsp > c.t_no_speech_prob and lp < c.t_logprob:
            return "asr failure: no_speech", nsp
        if cr > c.t_compression_ratio:
            return "asr failure: repetition", cr
        low = text.lower()
        for pat in c.t_hallucination_patterns:
            if re.search(pat, low):
                return "asr failure: hallucination", 1.0
        if norm in c.t_hallucinations:
            frac = self.speech_fraction(float(seg.start), float(seg.end))
            if frac < c.t_hallucination_max_speech:
                return "asr failure: hallucination", frac
        if lp < c.t_logprob:
            return "asr failure: low confidence", lp
        return None

    def update(self, seg: AsrSegment) -> HealthDecision:
        try:
            end = float(seg.end)
            if not is_finite_number(end):
                raise ValueError
        except (AttributeError, TypeError, ValueError):
            return self.decision
        self.last_text_t = end if self.last_text_t is None else max(self.last_text_t, end)
        prob = self.segment_problem(seg)
        if prob is None:
            lp = float(seg.avg_logprob) if is_finite_number(seg.avg_logprob) else 0.0
            self.event = (True, "ok", math.exp(min(lp, 0.0)), end)
        elif getattr(seg, "final", True):
            self.event = (False, prob[0], prob[1], end)
        return self.poll(end)

    def poll(self, now: float) -> HealthDecision:
        c = self.cfg
        if is_finite_number(now):
            self.now = max(self.now, float(now))
        now = self.now
        ev = self.event
        if self.speaking:
            onset = self.speech_start if self.speech_start is not None else now
            since = max(onset, self.last_text_t) if self.last_text_t is not None else onset
            if now - since >= c.t_asr_timeout_s - EPS:
                return self._set(False, "asr failure: no transcript", now - since, now)
            if ev is not None and ev[3] >= onset - c.t_hold_s - EPS:
                return self._set(ev[0], ev[1], ev[2], now)
            return self._set(False, "no speech", 0.0, now)
        if ev is not None:
            recent = max(self.speech_end if self.speech_end is not None else -math.inf, ev[3])
            current = self.speech_start is None or ev[3] >= self.speech_start - c.t_hold_s - EPS
            if current and now - recent < c.t_hold_s - EPS:
                return self._set(ev[0], ev[1], ev[2], now)
        return self._set(False, "no speech", 0.0, now)

    def stalled(self, now: float, reason: str) -> HealthDecision:
        self.speaking = False
        return self._set(False, reason, 0.0, now)


# --------------------------------------------------------------------------------------- all
@dataclass
class StreamHealth:
    """The three monitors together; every call returns ``{"A": ..., "V": ..., "T": ...}``.

    Any update advances a shared clock (the newest time seen), so a modality that stops delivering
    is flagged ("stalled") as soon as another one moves on; call :meth:`poll` with the wall clock
    (stream seconds) to catch the case where everything stops.
    """

    config: HealthConfig = field(default_factory=HealthConfig)

    def __post_init__(self):
        self.audio = AudioHealth(self.config)
        self.video = VideoHealth(self.config)
        self.text = TextHealth(self.config)
        self.now = 0.0

    @property
    def decisions(self) -> dict[str, HealthDecision]:
        return {"A": self.audio.decision, "V": self.video.decision, "T": self.text.decision}

    def update_audio(self, vad: VadResult | GateStep) -> dict[str, HealthDecision]:
        """A speech-gate step of the audio front end (or a plain VadResult: gated here)."""
        d = self.audio.read(vad) if isinstance(vad, GateStep) else self.audio.update(vad)
        t0 = getattr(vad, "t", None)
        self.text.on_vad(float(t0) if is_finite_number(t0) else d.t, d.t, self.audio.speaking, self.audio.speech_start)
        return self.poll(d.t, audio_now=d.t)      # audio just arrived: judged at its own time, not stale

    def update_video(self, result: FaceResult | FaceFrame | None,
                     frame: np.ndarray | None = None) -> dict[str, HealthDecision]:
        """A face front-end frame (or a plain FaceResult and its frame: described here)."""
        d = self.video.read(result) if isinstance(result, FaceFrame) else self.video.update(result, frame)
        return self.poll(d.t)

    def update_text(self, seg: AsrSegment) -> dict[str, HealthDecision]:
        d = self.text.update(seg)
        return self.poll(d.t, audio_now=d.t)      # a segment's times are the audio's

    def update(self, result, frame: np.ndarray | None = None) -> dict[str, HealthDecision]:
        """Dispatch on the result type (VadResult, FaceResult, AsrSegment); anything else -> V garbage."""
        if isinstance(result, VadResult):
            return self.update_audio(result)
        if isinstance(result, AsrSegment):
            return self.update_text(result)
        return self.update_video(result, frame)

    def poll(self, now: float, audio_now: float | None = None) -> dict[str, HealthDecision]:
        """Every decision at stream time ``now``; A and T (the ASR hears the audio) at ``audio_now``
        when given: a live audio stream running a little behind the video (its chunks arrive
        late) is judged on its own clock, so its lag is not taken for a stall."""
        if is_finite_number(now):
            self.now = max(self.now, float(now))
        now = self.now
        an = min(now, float(audio_now)) if is_finite_number(audio_now) else now
        a = self.audio.poll(an)
        self.video.poll(now)
        if a.reason in ("stalled", "no frames"):
            self.text.stalled(an, a.reason)  # the ASR hears the same (dead) audio stream
        else:
            self.text.poll(an)
        return self.decisions
