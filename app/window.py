"""The analysis window's typed result and the pipeline boundary of the live path.

* :class:`WindowResult` -- what one 200 ms analysis window gives.  It stays typed from the
  session to the edges (``LiveSession.step``/``advance``/``results``/``on_result``, replay, the
  UI's renderers); only there :meth:`WindowResult.to_json` makes the ``--no-ui`` JSONL line
  (keys :data:`app.RESULT_KEYS`, in that order) and :meth:`WindowResult.to_dict` the same as a
  dict (the UI's JSON/CSV export).
* :class:`WindowAssembler` -- pure: the features of the window ending at ``t`` from the rows the
  streams have delivered, the health decisions and the extractor faults (defined in
  :mod:`extractors.live.window`, shared with ``admc extract`` and the starter build; re-exported here).
* :func:`predict` -- ``admc.pipeline.predict_window`` for the live session: features the core
  rejects for one modality raise :class:`ModalityError` (``modality``, ``reason``; defined in
  :mod:`admc.errors`, raised by ``admc.pipeline.embed_features``), so no message is parsed;
  :func:`predict_available` drops such a modality and predicts from the others.
* :class:`FaultTable` -- which streams an extractor fault keeps missing, and until when.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from admc.errors import ModalityError  # noqa: F401 - re-exported: the core raises it
from app import RESULT_KEYS
from extractors.live.window import NO_ROWS, FaceRow, WindowAssembler  # noqa: F401 - re-exported

if TYPE_CHECKING:  # admc.pipeline loads torch: imported where a result is read back
    from admc.pipeline import ModalityOOD


def predict(model, features: dict, **kwargs):
    """``admc.pipeline.predict_window`` (an ``admc.pipeline.WindowPrediction``); a modality the core
    rejects raises :class:`admc.errors.ModalityError` (re-exported here), straight from the core."""
    from admc.pipeline import predict_window

    return predict_window(model, features, **kwargs)


def predict_available(model, features: dict, streams: dict[str, str], reasons: dict[str, str],
                      make_generator, **kwargs):
    """:func:`predict` on the modalities the core accepts: one it rejects (:class:`ModalityError`) is
    dropped, marked missing in ``streams`` with the reason in ``reasons``, and the window predicted
    from the others (a fresh ``make_generator()`` per try, so the draws do not depend on the retries).
    None, every stream marked missing, when nothing is left."""
    feats = {m: features.get(m) for m in model.schema.names}
    while any(v is not None for v in feats.values()):
        try:
            return predict(model, feats, generator=make_generator(), **kwargs)
        except ModalityError as e:
            feats[e.modality] = None
            streams[e.modality] = "missing"
            reasons[e.modality] = f"bad features: {e.reason}"
    for m in streams:
        streams[m] = "missing"
    return None


class FaultTable:
    """Extractor faults per modality: :meth:`record` keeps a stream missing with its reason for
    ``hold_s`` seconds of stream time; ``permanent`` (modality -> reason: an extractor that could not
    be loaded) holds for good.  Thread-safe under ``lock``."""

    def __init__(self, hold_s: float, permanent: dict[str, str] | None = None, lock=None):
        self.hold_s = float(hold_s)
        self.permanent = dict(permanent or {})
        self._until: dict[str, tuple[str, float]] = {}
        self._lock = lock if lock is not None else threading.Lock()

    def record(self, modality: str, reason: str, t: float, hold: float | None = None) -> None:
        until = t + (self.hold_s if hold is None else hold)
        with self._lock:
            self._until[modality] = (reason, until)

    def active(self, modality: str, t: float) -> str | None:
        """Why ``modality`` is faulted at stream time ``t``, or None."""
        if modality in self.permanent:
            return self.permanent[modality]
        f = self._until.get(modality)
        return f[0] if f is not None and t <= f[1] + 1e-9 else None


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
    uncertain: bool = False                    # the prediction is not to be shown as an emotion
    # modality -> its out-of-distribution scores (admc.pipeline.ModalityOOD: "score" the Mahalanobis
    # distance, "out" out of distribution, then completed like a missing one, "input_score" the input
    # features' score, None without an input model), or None when the modality is absent (or the
    # checkpoint has no OOD model)
    ood: dict[str, ModalityOOD | None] = field(default_factory=dict)

    @property
    def predicted(self) -> bool:
        """The window has a prediction (``probs`` not empty)."""
        return bool(self.probs)

    def out_of_distribution(self, modality: str) -> bool:
        """``modality`` was delivered but flagged out of distribution (then completed)."""
        o = self.ood.get(modality)
        return bool(o is not None and o.out)

    def to_dict(self) -> dict:
        """The contract's dict (keys in RESULT_KEYS order; ``ood`` entries as their JSON dicts)."""
        d = {k: getattr(self, k) for k in RESULT_KEYS}
        d["ood"] = {m: (None if o is None else o.to_json()) for m, o in self.ood.items()}
        return d

    def to_json(self) -> str:
        """The JSONL line (no newline): ``json.dumps`` of :meth:`to_dict`, NaN refused."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> "WindowResult":
        """The inverse of :meth:`to_dict` (a JSONL line read back)."""
        from admc.pipeline import ModalityOOD

        kw = {k: d[k] for k in RESULT_KEYS}
        kw["ood"] = {m: (None if o is None else ModalityOOD(float(o["score"]), bool(o["out"]),
                                                           None if o.get("input_score") is None
                                                           else float(o["input_score"])))
                     for m, o in (d["ood"] or {}).items()}
        return cls(**kw)


def results_file(out):
    """Where the JSONL lines go: stdout for ``out`` None or ``-``, else a file written beside ``out``
    and renamed over it when the block ends, interrupted included (what was finished is kept;
    :class:`admc.outdir.AtomicFile`).  A context manager giving the open text stream; the object
    itself takes ``discard = True`` (nothing installed)."""
    import contextlib
    import sys

    from admc.outdir import AtomicFile

    return contextlib.nullcontext(sys.stdout) if out in (None, "-") else AtomicFile(out, install_partial=True)


assert tuple(f.name for f in fields(WindowResult)) == RESULT_KEYS, "WindowResult must follow RESULT_KEYS"
