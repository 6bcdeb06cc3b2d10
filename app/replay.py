"""Replay a recorded file (video with or without sound, or audio only) through a LiveSession.

``python -m app --source FILE --no-ui --out RESULT.jsonl [--realtime]`` writes one JSON object
per analysis window (keys: :data:`app.RESULT_KEYS`).

* as fast as possible (default): frames and audio are pushed as fast as they decode, windows are
  run in stream order as soon as every stream has reached their end, and each window waits for
  the ASR jobs queued so far -- the transcripts land at the stream times they would land at if
  the ASR kept up, so the output is reproducible;
* ``--realtime``: the file is paced to the wall clock and the session runs threaded, exactly as
  with a live camera and microphone (the ASR is fully asynchronous).

Files are decoded by :mod:`extractors.media`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from extractors import media

if TYPE_CHECKING:
    from app.window import WindowResult


class SourceError(ValueError):
    """A file that cannot be replayed as a stream; the message names the file, for a person."""


def iter_media(path: str | Path) -> Iterator[tuple[str, float, object, int]]:
    """``("V", t, rgb_frame, 0)`` and ``("A", t, mono_float32_chunk, sr)`` in time order (the two
    streams are decoded separately and merged, whatever the file's interleaving)."""
    media_streams(path)
    return media.iter_media(path)


def media_streams(path: str | Path) -> set[str]:
    """The file's streams (``{"V", "A"}`` or a part).  Raises :class:`SourceError` for a file with
    neither, or a still image (an image demuxer, or one video frame and no audio): one frame is
    not a stream -- replayed it gives no window, looped it would spin."""
    p = media.probe(path)
    kinds = ({"V"} if p.video else set()) | ({"A"} if p.audio else set())
    if not kinds:
        raise SourceError(f"{path}: no video or audio stream")
    fmt = p.format
    if kinds == {"V"} and (fmt.endswith("_pipe") or fmt.startswith("image2") or p.video_frames == 1):
        raise SourceError(f"{path}: a still image ({fmt}), not a recording; "
                          "give a video or audio file")
    return kinds


def push_in_real_time(session, path: str | Path, *, offset: float = 0.0, stop=None,
                      on_frame: Callable | None = None) -> float:
    """Push ``path``'s frames and audio into ``session`` at the file's own pace, each stamped with
    stream time ``offset`` + its time in the file (the one real-time file push: ``--realtime``
    replay, and the UI's ``--source FILE``, which loops with a new offset).  ``stop``: an event
    that ends the push early; ``on_frame(frame) -> frame`` sees each video frame before the
    session.  Returns the stream time of the end of what was pushed."""
    start = time.perf_counter()
    end_t = offset
    for kind, t, data, sr in iter_media(path):
        if stop is not None and stop.is_set():
            break
        delay = start + t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if kind == "V":
            if on_frame is not None:
                data = on_frame(data)
            session.push_video(data, offset + t)
            end_t = max(end_t, offset + t)
        else:
            session.push_audio(data, sr, offset + t)
            end_t = max(end_t, offset + t + data.size / sr)
    return end_t


def replay(session, path: str | Path, *, realtime: bool = False,
           on_result: Callable[[WindowResult], None] | None = None, keep: bool = True) -> list[WindowResult]:
    """Push the file through ``session``; every window's result goes to ``on_result`` (and, with
    ``keep``, into the returned list).  ``session`` must be threaded for ``realtime`` and not
    threaded otherwise."""
    results: list[WindowResult] = []

    def emit(r: WindowResult) -> None:
        if keep:
            results.append(r)
        if on_result is not None:
            on_result(r)

    kinds = media_streams(path)
    if realtime:
        session.on_result = emit
        start = time.perf_counter()
        end_t = push_in_real_time(session, path)
        # let the last windows run (the ticker follows the wall clock)
        while time.perf_counter() - start < end_t + session.cfg.hop_s:
            time.sleep(0.02)
        session.on_result = None
        return results

    last = {k: 0.0 for k in kinds}
    end_t = 0.0
    for kind, t, data, sr in iter_media(path):
        if kind == "V":
            session.push_video(data, t)
            last["V"] = t
            end_t = max(end_t, t)
        else:
            session.push_audio(data, sr, t)
            last["A"] = t + data.size / sr
            end_t = max(end_t, last["A"])
        for r in session.advance(min(last.values())):
            emit(r)
    session.finish()
    for r in session.advance(end_t + 1e-6):
        emit(r)
    return results


def replay_to_jsonl(session, path: str | Path, out: str | Path | None, *, realtime: bool = False,
                    progress: Callable[[WindowResult], None] | None = None) -> int:
    """Replay ``path`` and write one JSON object per window to ``out`` (``-``/None: stdout)."""
    from app.window import results_file

    n = 0
    with results_file(out) as fh:          # renamed into place at the end, interrupted included
        def write(r: WindowResult) -> None:
            nonlocal n
            fh.write(r.to_json() + "\n")         # the one JSONL line (app.window.WindowResult)
            fh.flush()
            n += 1
            if progress is not None:
                progress(r)

        replay(session, path, realtime=realtime, on_result=write, keep=False)
    return n
