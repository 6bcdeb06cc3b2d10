"""The real-time app: live emotion recognition that keeps going when a stream drops out.

* :mod:`app.session`    -- :class:`~app.session.LiveSession`: timestamped frames and audio in, one
  result per 200 ms analysis window out (the library; everything else is a thin driver).
* :mod:`app.checkpoint` -- loading an ``admc train`` run and checking it against the live schema.
* :mod:`app.replay`     -- ``python -m app --source FILE --no-ui --out RESULT.jsonl``.
* :mod:`app.local`      -- ``--source local``: the machine's own camera (OpenCV) and microphone
  (sounddevice).
* :mod:`app.ui`         -- the Gradio Blocks UI (``python -m app``).
* :mod:`app.commands`   -- the ``admc`` console script, composed at the top of the layers.
"""

RESULT_KEYS = ("t", "streams", "reasons", "imputed", "probs", "label", "transcript", "latency_ms", "uncertain", "ood")
