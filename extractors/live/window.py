"""The analysis window, assembled one way for training and for live use.

:class:`WindowAssembler` is pure (no state, no locks, no clocks): from what the streams delivered
-- face rows (:class:`FaceRow`: a frame's time, its V feature or None and whose face it is), the 100 fps openSMILE
LLD frames (``(frame index, row)``, :class:`extractors.models.audio_rows.LldStream`) and the text
features of the latest transcript -- it makes the rows per modality of the window ending at ``t``
(:meth:`WindowAssembler.rows`), then applies the health decisions and extractor faults
(:meth:`WindowAssembler.window`).

Used by the live session (app/session.py, every 200 ms, 3 s windows), by ``admc extract``
(extractors/dataset/builder.py: one window per manifest row, the clip or its ``start``/``end``
segment) and by the starter build (scripts/starter/speech.py: its A windows).  What a model is
trained on and what it sees live therefore come from the same rules:

* ``V``: ``video_rate`` slots over the window, each the newest frame at or before it
  (sample-and-hold over at most two slots, 0.25 s at least); a frame gives a row when a face was
  found with score >= ``v_min_score`` and finite features (:func:`extractors.live.face_frontend.usable_feature`);
  only the frames of one person count (:func:`window_person`: the one with most rows; ``FaceRow.person``:
  the face front end counts a change to another person's face, :meth:`~extractors.live.face_frontend.FaceFrontEnd.follow_person`);
* ``A``: the LLD frames of the window downsampled to 10 rows/s (``pre_frames`` earlier frames feed
  the downsampling filter); the frames come from :class:`~extractors.models.audio_rows.LldStream`,
  whose blocks depend only on the audio, not on how it was chunked;
* ``T``: the text features as given (the live session: its latest transcript; extract: the clip's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from extractors.models.audio_rows import LLD_RATE, a_rows   # the A rows' rule, beside the LLD frames it reads


@dataclass
class FaceRow:
    t: float
    feature: np.ndarray | None     # None: no usable face in this frame
    person: int = 0                # which person's face (FaceFrame.person): a window pools one person's rows


def window_person(rows: Sequence[FaceRow]) -> int:
    """The person a window's V rows describe: the one whose face gave the most rows with a feature
    (the newer on a tie, and the newest when no row has one), so a window holds one person's face,
    as every training window does, and follows a new person once they fill half of it."""
    if not rows:
        raise ValueError("window_person: no rows")
    counts: dict[int, int] = {}
    for r in rows:
        if r.feature is not None:
            counts[r.person] = counts.get(r.person, 0) + 1
    if not counts:
        return rows[-1].person
    order = {r.person: i for i, r in enumerate(rows)}          # the last row of each person
    return max(counts, key=lambda p: (counts[p], order[p]))


#: why a live modality still has no features in a window
NO_ROWS = {"A": "no audio rows", "V": "no face rows", "T": "waiting for transcript"}


@dataclass
class WindowAssembler:
    """The features of one analysis window (no state, no locks, no clocks).

    ``rows(t, ...)``: the rows per modality of the window ending at ``t`` (None where a stream
    gave none).  ``window(t, decisions, rows, faults)``: for each modality, its rows when health
    says it is live, no fault holds it and rows are there; else None, with the reason.
    """

    names: Sequence[str]
    window_s: float = 3.0
    video_rate: float = 10.0

    def rows(self, t: float, *, faces: Iterable[FaceRow] = (), audio=None, audio_t0: float = 0.0,
             text: np.ndarray | None = None, audio_t: float | None = None) -> dict[str, np.ndarray | None]:
        """Rows per modality of the window ending at stream time ``t``.  ``audio``: the A row
        source of the feature set (``window_rows(t, t0, window_s)``: the openSMILE
        :class:`~extractors.models.audio_rows.LldStream` or the Whisper
        :class:`~extractors.models.speech_encoder.EncoderWindowRows`) whose run started at ``audio_t0``,
        or None.  ``audio_t``: where the A window ends when the audio runs behind ``t`` (a live
        stream whose chunks arrive late; default ``t``)."""
        out = {"A": None, "V": self.v_rows(faces, t), "T": text}
        if audio is not None:
            out["A"] = audio.window_rows(t if audio_t is None else audio_t, audio_t0, self.window_s)
        return out

    def a_rows(self, frames, t: float, t0: float, downsample) -> np.ndarray | None:
        g_end = int(np.floor((t - t0) * LLD_RATE + 1e-6))
        return a_rows(frames, g_end, int(round(self.window_s * LLD_RATE)), downsample)

    def v_rows(self, faces: Iterable[FaceRow], t: float) -> np.ndarray | None:
        """For each ``1/video_rate`` slot of the window, the newest face row at or before it
        (held at most two slots, 0.25 s at least), of the rows of one person (:func:`window_person`);
        slots whose frame had no usable face give none."""
        rate, W = self.video_rate, self.window_s
        rows = [r for r in faces if t - W - 1e-6 < r.t <= t + 1e-6]
        if not rows:
            return None
        who = window_person(rows)
        rows = [r for r in rows if r.person == who]
        hold = max(2.0 / rate, 0.25)
        out, j, last = [], 0, None
        for k in range(int(round(W * rate))):
            slot = t - W + (k + 1) / rate
            while j < len(rows) and rows[j].t <= slot + 1e-6:
                last = rows[j]
                j += 1
            if last is not None and last.feature is not None and slot - last.t <= hold + 1e-6:
                out.append(last.feature)
        return np.stack(out) if out else None

    def window(self, t: float, decisions: dict[str, tuple[bool, str]], rows: dict[str, np.ndarray | None],
               faults: dict[str, str | None] | None = None
               ) -> tuple[dict[str, np.ndarray | None], dict[str, str], dict[str, str]]:
        """(features per modality or None, streams ``live``/``missing``, reasons)."""
        feats, streams, reasons = {}, {}, {}
        for m in self.names:
            live, reason = decisions.get(m, (False, "unknown modality"))
            fault = (faults or {}).get(m)
            if fault is not None:
                live, reason = False, fault
            x = rows.get(m) if live else None
            if live and x is None:
                reason = NO_ROWS.get(m, reason)
            streams[m] = "live" if x is not None else "missing"
            reasons[m] = "ok" if x is not None else reason
            feats[m] = x
        return feats, streams, reasons
