"""The analysis window's typed result and the pipeline boundary of the live path.

* :class:`WindowResult` -- what one 200 ms analysis window gives; :meth:`WindowResult.to_json`
  is the ``--no-ui`` JSONL line (keys :data:`app.RESULT_KEYS`, in that order) and
  :meth:`WindowResult.to_dict` the same as a dict (what ``LiveSession.results``, ``on_result``
  and the UI hold).
* :class:`WindowAssembler` -- pure: the features of the window ending at ``t`` from the rows the
  streams have delivered, the health decisions and the extractor faults.
* :func:`predict` -- ``admc.pipeline.predict_window`` for the live session: features the core
  rejects for one modality raise :class:`ModalityError` (``modality``, ``reason``; defined in
  :mod:`admc.errors`, raised by ``admc.pipeline.embed_features``), so no message is parsed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from admc.errors import ModalityError  # noqa: F401 - re-exported: the core raises it
from app import RESULT_KEYS


@dataclass
class FaceRow:
    t: float
    feature: np.ndarray | None     # None: no usable face in this frame


#: why a live modality still has no features in a window
NO_ROWS = {"A": "no audio rows", "V": "no face rows", "T": "waiting for transcript"}


@dataclass
class WindowAssembler:
    """The features of one analysis window (no state, no locks, no clocks).

    ``window(t, decisions, rows, faults)``: for each modality, its rows when health says it is
    live, no fault holds it and rows are there; else None, with the reason.  ``v_rows(faces, t)``
    samples face rows at ``video_rate`` over the last ``window_s`` (for each slot the newest frame
    at or before it; sample-and-hold over at most two slots, 0.25 s at least).
    """

    names: Sequence[str]
    window_s: float = 3.0
    video_rate: float = 10.0

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

    def v_rows(self, faces: Iterable[FaceRow], t: float) -> np.ndarray | None:
        rate, W = self.video_rate, self.window_s
        rows = [r for r in faces if t - W - 1e-6 < r.t <= t + 1e-6]
        if not rows:
            return None
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


def predict(model, features: dict, **kwargs) -> dict:
    """``admc.pipeline.predict_window``; a modality the core rejects raises
    :class:`admc.errors.ModalityError` (re-exported here), straight from the core."""
    from admc.pipeline import predict_window

    return predict_window(model, features, **kwargs)


@dataclass
class WindowResult:
    """One analysis window (stream seconds ``t`` = its end)."""

    t: float                                   # window end, stream s (rounded to ms)
    streams: dict[str, str]                    # modality -> "live" | "missing"
    reasons: dict[str, str]                    # modality -> "ok" or why it is missing
    imputed: list[str] = field(default_factory=list)   # modalities the ADN completed
    probs: dict[str, float] = field(default_factory=dict)  # class -> probability ({}: no prediction)
    label: str | None = None                   # argmax class (None: no prediction)
    transcript: str | None = None              # the text the T features came from
    latency_ms: float = 0.0                    # from the window being due to this result

    def to_dict(self) -> dict:
        """The contract's dict (keys in RESULT_KEYS order)."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def to_json(self) -> str:
        """The JSONL line (no newline)."""
        return result_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "WindowResult":
        return cls(**{k: d[k] for k in RESULT_KEYS})


def result_json(result: "dict | WindowResult") -> str:
    """One window as its JSONL line: ``json.dumps`` of the contract's dict, NaN refused."""
    d = result.to_dict() if isinstance(result, WindowResult) else result
    return json.dumps(d, allow_nan=False)


assert tuple(f.name for f in fields(WindowResult)) == RESULT_KEYS, "WindowResult must follow RESULT_KEYS"
