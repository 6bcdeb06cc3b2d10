"""One onnxruntime CPU session, set up the same way for every ONNX model the extractors run (the
silero VAD, the face expression network)."""

from __future__ import annotations

from pathlib import Path


def cpu_session(model: "bytes | str | Path", threads: int):
    """An ``onnxruntime.InferenceSession`` on the CPU for ``model`` (a path or serialized bytes):
    ``threads`` intra-op threads (at least 1), one inter-op thread, warnings and below not logged."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=opts,
                                providers=["CPUExecutionProvider"])
