"""The face front end of the live path: every camera frame is looked at once.

::

    frame (RGB/RGBA, uint8 or float in [0, 1], any size), stream time t
      -> normalise          uint8 RGB, at most ``max_frame_width`` wide (garbage passes untouched)
      -> due(t)             at most ``face_fps`` frames/s go on (a token bucket: a late frame's
                            tick is not lost, the next frames catch it up)
      -> frame_problem      the frame verdict, once ("black frame", "bad frame: ..."); a bad frame
                            skips the extractor (the tracker forgets its box, as it would itself)
      -> FaceTracker / FaceExtractor (MTCNN or O-Net tracking, alignment, mini-Xception),
                            handed the verdict (``problem=``) instead of checking the frame again
      -> FaceFrame          result + verdict + the aligned crop the features came from + the frame's
                            digest (frozen-camera check) + the V-row feature if the face is usable

:class:`extractors.live.health.VideoHealth` reads FaceFrames (no second alignment or frame check);
the live session keeps ``FaceFrame.feature`` as the frame's V row.  Settings are read on every
frame: ``face_fps``, ``max_frame_width`` (the session's config) and ``v_min_score`` (the health
config: below it a detection gives no V row).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np

from extractors.models.face import align_face, frame_problem
from extractors.types import FaceResult

CROP = 48  # aligned crop size health judges (FER2013's; the extractor's default crop_size)
FACE_BURST = 3  # frames the face path may take back to back, catching up the ticks of late frames
FACE_EARLY = 0.25  # how early (in periods of 1/face_fps) a frame may come and still be taken
# Another person: a face whose aligned crop and expression feature are both unlike the current
# person's last face (chosen on the validation clip's consecutive face frames:
# benchmarks/person_change.py --clip val; docs/live-skew.md)
PERSON_CROP_CORR = 0.6   # correlation of the two standardized 48x48 crops below this ...
PERSON_FEATURE_COS = 0.85  # ... and cosine of the two V features below this
PERSON_MEMORY = 4        # people whose last face is kept, so one who comes back gets their number again


def standardized_face(crop, feature) -> tuple[np.ndarray, np.ndarray]:
    """A face as :class:`PersonFollower` compares it: its crop standardized, its feature of unit length."""
    c = np.asarray(crop, np.float32).ravel()
    f = np.asarray(feature, np.float32).ravel()
    return (c - c.mean()) / (c.std() + 1e-6), f / (np.linalg.norm(f) + 1e-9)


def face_likeness(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(crop correlation, feature cosine) of two standardized faces (-1 each when their sizes differ)."""
    if a[0].shape != b[0].shape or a[1].shape != b[1].shape:
        return -1.0, -1.0
    return float(np.mean(a[0] * b[0])), float(a[1] @ b[1])


class PersonFollower:
    """Which person a stream's face belongs to, from its aligned crop and its V feature.

    A face is unlike a person's when its crop correlation with their last face is below
    :data:`PERSON_CROP_CORR` *and* its feature cosine below :data:`PERSON_FEATURE_COS`.  Then it is
    a recent person's again when it is that person's (alike in crop *and* feature with their last
    face: someone who comes back, the face after a hand, the face after one odd frame), else a new
    person's.  So one odd frame (a false detection, a hand) gets a number of its own and the person
    theirs back after it, never a second one.  One stream's state: not thread-safe (the face front
    end's one consumer)."""

    def __init__(self):
        self.person = 0
        self._next = 1
        self._last: tuple[np.ndarray, np.ndarray] | None = None      # the current person's last face
        self._known: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # earlier people's last faces, newest last

    def follow(self, crop, feature) -> int:
        face = standardized_face(crop, feature)
        if self._last is not None and self._unlike(face, self._last):
            self._known.pop(self.person, None)
            self._known[self.person] = self._last
            back = [p for p, ref in self._known.items() if self._same(face, ref)]
            if back:
                self.person = back[-1]
            else:
                self.person, self._next = self._next, self._next + 1
            self._known.pop(self.person, None)
            while len(self._known) > PERSON_MEMORY:
                self._known.pop(next(iter(self._known)))
        self._last = face
        return self.person

    @staticmethod
    def _unlike(a, b) -> bool:
        corr, cos = face_likeness(a, b)
        return corr < PERSON_CROP_CORR and cos < PERSON_FEATURE_COS

    @staticmethod
    def _same(a, b) -> bool:
        corr, cos = face_likeness(a, b)
        return corr >= PERSON_CROP_CORR and cos >= PERSON_FEATURE_COS


@dataclass
class FaceFrame:
    """One frame through the face front end."""

    t: float
    result: object                     # FaceResult (anything else: garbage, judged as such)
    problem: str | None = None         # frame verdict (None: the frame looks fine)
    crop: np.ndarray | None = None     # [48, 48] uint8 aligned grey face, None without landmarks
    shape: tuple[int, int] | None = None  # the frame's (H, W)
    digest: int | None = None          # adler32 of the subsampled frame (a good frame only)
    feature: np.ndarray | None = None  # the V row: detected, score >= v_min_score, finite
    ms: float | None = None            # time in the extractor
    error: BaseException | None = None  # the extractor raised (result is then "no face")
    person: int = 0                    # which person's face this stream shows (PersonFollower)


def usable_feature(result, min_score: float) -> np.ndarray | None:
    """The face feature as a V row, or None (no face, score below ``min_score``, not finite)."""
    if not isinstance(result, FaceResult) or not result.detected or result.feature is None:
        return None
    try:
        if float(result.score) < float(min_score):
            return None
        feat = np.asarray(result.feature, np.float32)
    except (TypeError, ValueError):
        return None
    return feat if np.isfinite(feat).all() else None


def describe_frame(result, frame=None, settings=None, *, crop: np.ndarray | None = None,
                   problem: str | None | bool = False, ms: float | None = None,
                   error: BaseException | None = None) -> FaceFrame:
    """The FaceFrame of a face result and its frame (``frame`` None: the result alone).  ``crop``
    and ``problem`` when already known (the front end's), else made here; ``settings`` (with
    ``v_min_score``) None: no V-row feature."""
    t = getattr(result, "t", 0.0)
    if frame is not None and problem is False:
        problem = frame_problem(frame)
    problem = None if problem is False else problem
    shape = tuple(frame.shape[:2]) if isinstance(frame, np.ndarray) and frame.ndim >= 2 else None
    digest = None
    if frame is not None and problem is None:
        digest = zlib.adler32(np.ascontiguousarray(frame[::4, ::4]).tobytes())
        lms = getattr(result, "landmarks", None)
        if crop is None and lms is not None:
            try:
                from PIL import Image

                crop = align_face(Image.fromarray(frame).convert("L"), lms, CROP)
            except Exception:  # noqa: BLE001 - garbage landmarks: no crop, judged without it
                crop = None
    if crop is not None and np.shape(crop) != (CROP, CROP):
        crop = None
    feat = usable_feature(result, settings.v_min_score) if settings is not None else None
    return FaceFrame(t, result, problem, crop, shape, digest, feat, ms, error)


class _CropTap:
    """The extractor seen through a tap that keeps the aligned crop it describes, so the crop the
    features were computed from is handed on instead of being made again (per stream: a tracker's
    extractor; the networks are the shared extractor's)."""

    def __init__(self, fx):
        self.fx = fx
        self.last_crop: np.ndarray | None = None

    def __getattr__(self, name):
        return getattr(self.fx, name)

    def _describe(self, results, crops) -> None:
        self.fx._describe(results, crops)
        self.last_crop = crops[-1] if len(crops) else None

    def __call__(self, frame, t, problem=False):
        return type(self.fx).extract_batch(self, [frame], [t], None if problem is False else [problem])[0]


class FaceFrontEnd:
    """One camera stream in, FaceFrames out.

    ``face``: a :class:`~extractors.models.face.FaceExtractor` (followed with a per-stream
    :class:`~extractors.models.face.FaceTracker` when ``config.face_tracking``), any callable
    ``(frame, t) -> FaceResult``, or None.  ``config``: ``face_fps``, ``max_frame_width``,
    ``face_tracking`` (the live session's SessionConfig); ``settings``: ``v_min_score`` (its
    HealthConfig).  ``lock`` guards the shared extractor.
    """

    def __init__(self, face, config, settings, lock=None):
        import threading

        self.config = config
        self.settings = settings
        self.lock = lock if lock is not None else threading.Lock()
        self._tap = None
        fn = face
        if face is not None and hasattr(face, "_describe") and hasattr(type(face), "extract_batch"):
            self._tap = _CropTap(face)
            tracking = getattr(config, "face_tracking", True) and hasattr(type(face), "tracker")
            fn = type(face).tracker(self._tap) if tracking else self._tap
        elif face is not None and getattr(config, "face_tracking", True) and hasattr(face, "tracker"):
            fn = face.tracker()
        self.fn = fn
        self.people = PersonFollower()   # whose face this stream shows (:meth:`follow_person`)
        self._tokens = 1.0               # frames due now (the token bucket of :meth:`due`)
        self._last_t: float | None = None

    def normalise(self, frame):
        """RGB uint8 at most ``max_frame_width`` wide (garbage passes through untouched)."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] not in (3, 4):
            return frame
        if frame.shape[2] == 4:
            frame = frame[..., :3]
        if frame.dtype != np.uint8:
            if np.issubdtype(frame.dtype, np.floating) and frame.size and np.isfinite(frame).all() \
                    and float(frame.max()) <= 1.0:
                frame = (frame * 255).round().astype(np.uint8)
            else:
                return frame                          # garbage: frame_problem names it
        w = frame.shape[1]
        cap = self.config.max_frame_width
        if cap and w > cap:
            from PIL import Image

            h = max(1, round(frame.shape[0] * cap / w))
            frame = np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(
                (cap, h), Image.Resampling.BILINEAR))
        return np.ascontiguousarray(frame)

    def due(self, t: float) -> bool:
        """Whether the frame at ``t`` goes through the extractor: at most ``face_fps`` a second over
        any stretch of stream time, up to :data:`FACE_BURST` back to back (a token bucket: a frame is
        due when 1/face_fps of stream time has accrued since the frames taken before it, less a
        quarter of that for a frame a little early; a stream starts with one).  A frame that arrives
        late leaves its tick to the next one: the page sends about as many frames as the face path
        takes, with jitter, and the rule this replaces (the first frame at or after each tick) lost a
        tick at every late frame: 13.8 of 15.1 frames/s in the browser.  A 30 fps camera gives every
        other frame (jittered by up to about 15 ms; with more jitter some gaps are shorter, the rate
        stays).  Over a stretch of T seconds at most ``face_fps * T`` + FACE_BURST frames go on.  Time
        going back (a new stream) starts the bucket again, as does turning the cap off and on."""
        fps = self.config.face_fps
        if not fps:
            self._tokens, self._last_t = 1.0, None
            return True
        if self._last_t is not None and t >= self._last_t:
            self._tokens = min(float(FACE_BURST), self._tokens + (t - self._last_t) * fps)
        elif self._last_t is not None:
            self._tokens = 1.0
        self._last_t = t
        if self._tokens >= 1.0 - FACE_EARLY - 1e-6:
            self._tokens -= 1.0
            return True
        return False

    def process(self, frame, t: float) -> FaceFrame:
        """The frame through the extractor (never raises: an exception is ``FaceFrame.error``)."""
        problem = frame_problem(frame)
        res, crop, ms, error = None, None, None, None
        if self.fn is not None:
            t0 = time.perf_counter()
            if problem is not None:
                if hasattr(self.fn, "reset"):
                    self.fn.reset()                   # what the tracker does with a bad frame
            else:
                try:
                    with self.lock:
                        if self._tap is not None:
                            self._tap.last_crop = None
                        if self._tap is not None:     # ours (tap or tracker): the verdict goes in
                            res = self.fn(frame, t, problem=problem)
                        else:
                            res = self.fn(frame, t)
                        if self._tap is not None and getattr(res, "detected", False):
                            crop = self._tap.last_crop
                except Exception as e:  # noqa: BLE001 - an extractor failure must not stop the stream
                    res, error = None, e
            ms = (time.perf_counter() - t0) * 1000
        if res is None:
            res = FaceResult(t=t, detected=False, score=0.0)
        ff = describe_frame(res, frame, self.settings, crop=crop, problem=problem, ms=ms, error=error)
        ff.person = self.follow_person(ff)
        return ff

    def follow_person(self, ff: FaceFrame) -> int:
        """The person number of a frame (:class:`PersonFollower`); a frame without a usable face keeps
        the current one.  A window pools one person's rows (:func:`extractors.live.window.window_person`),
        as every training window holds one face."""
        if ff.crop is None or ff.feature is None:
            return self.people.person
        return self.people.follow(ff.crop, ff.feature)
