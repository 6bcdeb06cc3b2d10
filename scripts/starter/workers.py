"""Worker processes: the feature set's extractors built once per process (1 torch thread each), and the
map over chunks (a process pool or inline)."""

from __future__ import annotations

import zlib

from scripts.starter import recipe
from scripts.starter.recipe import WINDOW_S

EXTRACTORS: dict = {}


def init_worker(feature_set: str | None = None) -> None:
    """A worker process: one torch thread, the build's feature set (``recipe.use_feature_set``)."""
    import torch

    torch.set_num_threads(1)
    recipe.use_feature_set(feature_set)


def face_extractor():
    if "face" not in EXTRACTORS:
        EXTRACTORS["face"] = recipe.FEATURES.build("cpu", audio=False, text=False).face
    return EXTRACTORS["face"]


def audio_extractor():
    """(the feature set's A row maker: ``wave -> [rows, dim]`` for one 3 s window, the live VAD)."""
    if "audio" not in EXTRACTORS:
        from extractors.models.audio import VoiceActivityDetector

        EXTRACTORS["vad"] = VoiceActivityDetector(num_threads=1)
        fx = recipe.FEATURES.build("cpu", face=False, text=False, threads=1).audio
        # the window's A rows as the live session and admc extract make them
        EXTRACTORS["audio"] = lambda seg: fx.wave_source(seg).window_rows(WINDOW_S, 0.0, WINDOW_S)
    return EXTRACTORS["audio"], EXTRACTORS["vad"]


def text_encoder():
    if "text" not in EXTRACTORS:
        EXTRACTORS["text"] = recipe.FEATURES.build("cpu", face=False, audio=False).text
    return EXTRACTORS["text"]


def crc(s: str) -> int:
    return zlib.crc32(s.encode())


def map_chunks(pool, fn, chunks, desc):
    from tqdm.auto import tqdm

    if pool is None:
        init_worker()
        return [fn(c) for c in tqdm(chunks, desc=desc, dynamic_ncols=True)]
    return list(tqdm(pool.imap(fn, chunks), total=len(chunks), desc=desc, dynamic_ncols=True))
