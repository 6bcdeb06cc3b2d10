"""The analysis window's typed result and the pipeline boundary of the live path.

* :class:`WindowResult` -- what one 200 ms analysis window gives; :meth:`WindowResult.to_json`
  is the ``--no-ui`` JSONL line (keys :data:`app.RESULT_KEYS`, in that order) and
  :meth:`WindowResult.to_dict` the same as a dict (what ``LiveSession.results``, ``on_result``
  and the UI hold).
* :class:`WindowAssembler` -- pure: the features of the window ending at ``t`` from the rows the
  streams have delivered, the health decisions and the extractor faults (defined in
  :mod:`extractors.window`, shared with ``admc extract`` and the starter build; re-exported here).
* :func:`predict` -- ``admc.pipeline.predict_window`` for the live session: features the core
  rejects for one modality raise :class:`ModalityError` (``modality``, ``reason``; defined in
  :mod:`admc.errors`, raised by ``admc.pipeline.embed_features``), so no message is parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from admc.errors import ModalityError  # noqa: F401 - re-exported: the core raises it
from app import RESULT_KEYS
from extractors.window import NO_ROWS, FaceRow, WindowAssembler  # noqa: F401 - re-exported


def predict(model, features: dict, **kwargs):
    """``admc.pipeline.predict_window`` (an ``admc.pipeline.WindowPrediction``); a modality the core
    rejects raises :class:`admc.errors.ModalityError` (re-exported here), straight from the core."""
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
    uncertain: bool = False                    # the prediction is not to be shown as an emotion
    # modality -> {"score": Mahalanobis distance, "out": out of distribution (then completed like a
    # missing one), "input_score": the input features' score (None: no input model)}, or None when
    # the modality is absent (or the checkpoint has no OOD model)
    ood: dict[str, dict | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The contract's dict (keys in RESULT_KEYS order)."""
        return {k: getattr(self, k) for k in RESULT_KEYS}

    def to_json(self) -> str:
        """The JSONL line (no newline)."""
        return result_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "WindowResult":
        return cls(**{k: d[k] for k in RESULT_KEYS})


def results_file(out):
    """Where the JSONL lines go: stdout for ``out`` None or ``-``, else a file written beside ``out``
    and renamed over it when the block ends, interrupted included (what was finished is kept;
    :class:`admc.outdir.AtomicFile`).  A context manager giving the open text stream; the object
    itself takes ``discard = True`` (nothing installed)."""
    import contextlib
    import sys

    from admc.outdir import AtomicFile

    return contextlib.nullcontext(sys.stdout) if out in (None, "-") else AtomicFile(out, install_partial=True)


def result_json(result: "dict | WindowResult") -> str:
    """One window as its JSONL line: ``json.dumps`` of the contract's dict, NaN refused."""
    d = result.to_dict() if isinstance(result, WindowResult) else result
    return json.dumps(d, allow_nan=False)


assert tuple(f.name for f in fields(WindowResult)) == RESULT_KEYS, "WindowResult must follow RESULT_KEYS"
