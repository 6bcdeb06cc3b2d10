"""Stage ``speech``: RAVDESS and EmoDB clips -> 3 s A windows of 30 rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from scripts.starter import recipe
from scripts.starter.recipe import (CLASSES, CODEC_BIT_RATES, CODEC_P, DATA, EMODB_MAP, EMODB_TEST, EMODB_VAL,
                                    EVAL_NOISE_DBFS, RAVDESS_MAP, RAVDESS_TEST, RAVDESS_VAL, ROWS,
                                    SR, TRAIN_WINDOWS, WINDOW_S)
from scripts.starter.workers import EXTRACTORS, audio_extractor, crc, map_chunks


def noise_floor(n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(n) * 10 ** (dbfs / 20)).astype(np.float32)


def speech_span(wave: np.ndarray, vad) -> tuple[float, float]:
    """First voiced start .. last voiced end (s) per the live VAD (silero + hysteresis)."""
    from extractors.live.audio_frontend import speech_regions

    regions = speech_regions(vad.detect(wave, SR), threshold=0.5)
    if regions:
        return regions[0][0], regions[-1][1]
    # no VAD speech (rare: whispered/very short): fall back to the frames above 10 % of the peak rms
    hop = SR // 100
    rms = np.sqrt(np.convolve(wave ** 2, np.ones(hop) / hop, mode="same")[::hop] + 1e-12)
    on = np.flatnonzero(rms > 0.1 * rms.max())
    return (on[0] / 100, (on[-1] + 1) / 100) if len(on) else (0.0, len(wave) / SR)


def window_starts(span: tuple[float, float], n: int, rng: np.random.Generator | None) -> list[float]:
    """Window starts (s): centred on the voiced span (``rng`` None) or ``n`` random placements that
    cover as much of it as possible."""
    a, b = span
    if rng is None:
        return [(a + b) / 2 - WINDOW_S / 2]
    lo, hi = sorted((b - WINDOW_S, a))            # speech shorter than the window: it fits anywhere inside
    return [float(rng.uniform(lo, hi)) for _ in range(n)]


def speech_window_waves(path: str | Path, clip_id: str, split: str,
                        codec: bool = True) -> tuple[np.ndarray, tuple[float, float]]:
    """``[n, 3 s * SR]`` waveforms of the 3 s windows of one clip, and the voiced span.

    Digital silence is dithered and windows reaching past the clip are padded with a noise floor
    (live microphones never give exact zeros).  ``split`` "train": 4 random placements, noise floor
    -75..-55 dBFS, gain +-6 dB; else one centred window at -65 dBFS.  With ``codec``, training and
    validation windows then go through an AAC encoder and back with probability :data:`CODEC_P` (a
    bit rate from :data:`CODEC_BIT_RATES`), as the voice in a recorded video does (test windows stay
    as recorded).  Deterministic per clip id.
    """
    from extractors.models.audio import load_audio
    from extractors.media import codec_roundtrip

    _rows_of, vad = audio_extractor()
    wave = load_audio(path, SR)
    span = speech_span(wave, vad)
    rng = np.random.default_rng(crc(clip_id) + 7)
    train = split == "train"
    starts = window_starts(span, TRAIN_WINDOWS, rng if train else None)
    # its own generator: the placements, floors and gains are those drawn without the codec
    codec_rng = np.random.default_rng(crc(clip_id) + 13) if codec and split in ("train", "val") else None
    W = int(WINDOW_S * SR)
    out = []
    for s in starts:
        dbfs = rng.uniform(-75, -55) if train else EVAL_NOISE_DBFS
        gain = 10 ** (rng.uniform(-6, 6) / 20) if train else 1.0
        a = int(round(s * SR))
        seg = np.zeros(W, np.float32)
        lo, hi = max(a, 0), min(a + W, len(wave))
        if hi > lo:
            seg[lo - a:hi - a] = wave[lo:hi] * gain
        seg = np.clip(seg + noise_floor(W, dbfs, rng), -1.0, 1.0)
        if codec_rng is not None and codec_rng.random() < CODEC_P:
            seg = codec_roundtrip(seg, SR, int(codec_rng.choice(CODEC_BIT_RATES)))
        out.append(seg)
    return np.stack(out).astype(np.float32), span


def speech_windows(path: str | Path, clip_id: str, split: str) -> tuple[np.ndarray, tuple[float, float]]:
    """``[n, 30, A dim]`` features of 3 s windows of one clip (live extractors), and the voiced span.

    The windows are :func:`speech_window_waves`; their rows are the feature set's A rows of the
    window as the live session makes them (openSMILE: the streamed LLD frames assembled by
    :class:`extractors.live.window.WindowAssembler`; Whisper: the encoder over the 3 s window).
    """
    rows_of, _vad = audio_extractor()
    waves, span = speech_window_waves(path, clip_id, split)
    out = []
    for seg in waves:
        x = rows_of(seg)
        if len(x) < ROWS:
            x = np.concatenate([x, np.repeat(x[-1:], ROWS - len(x), 0)])
        out.append(x[:ROWS])
    return np.stack(out).astype(np.float32), span


def _live_audio():
    """The live audio path for rendering training windows (its own VAD: it keeps stream state)."""
    if "live_audio" not in EXTRACTORS:
        from extractors.models.audio import VoiceActivityDetector
        from extractors.dataset.training_render import LiveAudioWindows

        audio = recipe.FEATURES.build("cpu", face=False, text=False, threads=1).audio
        EXTRACTORS["live_audio"] = LiveAudioWindows(audio, VoiceActivityDetector(num_threads=1), window_s=WINDOW_S)
    return EXTRACTORS["live_audio"]


def trimmed_utterance(path: str | Path, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """A clip cut to its voiced span (live VAD) with 0.1-0.6 s kept on each side, and that span
    relative to the cut."""
    from extractors.models.audio import load_audio

    _rows_of, vad = audio_extractor()
    wave = load_audio(path, SR)
    a, b = speech_span(wave, vad)
    lo = max(0.0, a - rng.uniform(0.1, 0.6))
    hi = min(len(wave) / SR, b + rng.uniform(0.1, 0.6))
    return wave[int(lo * SR):int(hi * SR)], (a - lo, b - lo)


def stream_window_ends(onset: float, end: float, hop: float = 0.2, tail: float | None = None) -> list[float]:
    """The window ends (stream s, on the hop grid) a training clip voiced from ``onset`` to ``end``
    may give: from :data:`recipe.STREAM_ONSET_S` after the onset (A is live from 0.1 s after it) to
    ``tail`` (default :data:`recipe.STREAM_TAIL_S`) after the end.  The windows at an utterance's
    start hold mostly the pause before it, those after its end the pause and, with a long tail, the
    next utterance's start, as live."""
    tail = recipe.STREAM_TAIL_S if tail is None else float(tail)
    ends = [round(float(e), 6) for e in np.arange(np.ceil((onset + recipe.STREAM_ONSET_S) / hop) * hop,
                                                  end + tail + 1e-6, hop)]
    return ends or [round(float(np.ceil(end / hop) * hop), 6)]


def stream_windows(it: dict) -> tuple[np.ndarray, tuple[float, float]] | None:
    """``[n, 30, A dim]`` windows of one clip as the live app sees it in a conversation: the clip
    between two other utterances of the same speaker and class (``it["neighbours"]``), gaps,
    levels, room noise and the browser's 48 kHz capture (``extractors.dataset.training_render.speech_stream``),
    through the live audio path (front end, speech gate, A row source, window assembler); windows
    ending on the 200 ms hop while the clip is the utterance being heard and A is live.  Training
    clips give up to :data:`TRAIN_WINDOWS` windows, validation clips one.  None when A is never
    live there (the caller falls back to the centred window)."""
    from extractors.media import codec_roundtrip
    from extractors.dataset.training_render import speech_stream

    rng = np.random.default_rng(crc(it["id"]) + 29)
    nb = list(it.get("neighbours") or [])
    utts, spans = [], []
    for p in ([nb[0]] if nb else []) + [it["path"]] + (nb[1:2] if len(nb) > 1 else []):
        u, sp = trimmed_utterance(p, rng)
        utts.append(u)
        spans.append(sp)
    me = 1 if nb else 0
    stream = speech_stream(utts, rng)
    if it["split"] in ("train", "val") and rng.random() < CODEC_P:
        stream.wave = codec_roundtrip(stream.wave, stream.sr, int(rng.choice(CODEC_BIT_RATES)))
    start = stream.spans[me][0]
    hop = 0.2
    ends = stream_window_ends(start + spans[me][0], start + spans[me][1], hop, it.get("stream_tail_s"))
    want = int(it.get("stream_windows", recipe.STREAM_WINDOWS)) if it["split"] == "train" else 1
    if want == 0:
        return None
    picks = [ends[i] for i in rng.permutation(len(ends))[: 2 * want]]
    got = _live_audio().windows(stream, picks)
    rows = [r for e in picks for live, r in [got.get(round(round(e / hop) * hop, 6), (False, None))]
            if live and r is not None][:want]
    if not rows:
        return None
    out = []
    for x in rows:
        if len(x) < ROWS:
            x = np.concatenate([x, np.repeat(x[-1:], ROWS - len(x), 0)])
        out.append(x[:ROWS])
    return np.stack(out).astype(np.float32), spans[me]


def _speech_job(items: list[dict]) -> list[dict]:
    """Training clips: :data:`recipe.STREAM_WINDOWS` windows from the live-rendered stream and the rest of
    :data:`TRAIN_WINDOWS` placed on the clip alone (both kinds of window a person's voice gives the
    app: mid-conversation, and one sentence alone); validation clips: one live-rendered window (the
    OOD rule and model selection see live-like windows); test clips: one centred window, as before."""
    out = []
    for it in items:
        got = stream_windows(it) if it.get("live_render") and it["split"] in ("train", "val") else None
        if got is None:
            w, span = speech_windows(it["path"], it["id"], it["split"])
            rendered = "centred"
        else:
            w, span = got
            rendered = "live-stream"
            if it["split"] == "train" and TRAIN_WINDOWS > len(w):
                alone, _ = speech_windows(it["path"], it["id"], it["split"])
                w = np.concatenate([w, alone[: TRAIN_WINDOWS - len(w)]])
                rendered = "live-stream+alone"
        out.append({**it, "windows": w, "span": span, "rendered": rendered})
    return out


def speech_items() -> list[dict]:
    items = []
    for r in csv.DictReader(open(DATA / "ravdess_speech" / "manifest.csv")):
        actor = int(r["speaker_or_subject"])
        split = "test" if actor in RAVDESS_TEST else "val" if actor in RAVDESS_VAL else "train"
        items.append({"id": "ravdess/" + Path(r["path"]).stem, "path": str(DATA / "ravdess_speech" / r["path"]),
                      "source": "ravdess", "speaker": f"{actor:02d}", "label": CLASSES.index(RAVDESS_MAP[r["label"]]),
                      "orig": r["label"], "split": split})
    for r in csv.DictReader(open(DATA / "emodb" / "manifest.csv")):
        if EMODB_MAP[r["label"]] is None:
            continue
        spk = r["speaker_or_subject"]
        split = "test" if spk in EMODB_TEST else "val" if spk in EMODB_VAL else "train"
        items.append({"id": "emodb/" + Path(r["path"]).stem, "path": str(DATA / "emodb" / r["path"]),
                      "source": "emodb", "speaker": spk, "label": CLASSES.index(EMODB_MAP[r["label"]]),
                      "orig": r["label"], "split": split})
    return items


def speech_neighbours(items: list[dict]) -> None:
    """Each training and validation clip's two neighbours in its rendered stream: other clips of the
    same source, speaker, class and split (deterministic per clip)."""
    groups: dict[tuple, list[str]] = {}
    for it in items:
        groups.setdefault((it["source"], it["speaker"], it["label"], it["split"]), []).append(it["path"])
    for it in items:
        if it["split"] not in ("train", "val"):
            continue
        others = [p for p in groups[(it["source"], it["speaker"], it["label"], it["split"])] if p != it["path"]]
        rng = np.random.default_rng(crc(it["id"]) + 31)
        it["neighbours"] = [others[i] for i in rng.permutation(len(others))[:2]] if others else []


def stage_speech(work: Path, pool) -> None:
    items = speech_items()
    speech_neighbours(items)
    for it in items:             # the workers are fresh processes: the recipe travels with each item
        it["live_render"], it["stream_windows"] = recipe.LIVE_RENDER, recipe.STREAM_WINDOWS
        it["stream_tail_s"] = recipe.STREAM_TAIL_S
    chunks = [items[i:i + 32] for i in range(0, len(items), 32)]
    res = [x for r in map_chunks(pool, _speech_job, chunks, "speech") for x in r]
    win_clip = np.concatenate([np.full(len(r["windows"]), i) for i, r in enumerate(res)])
    np.savez(work / "speech.npz", **{k: np.array([r[k] for r in res]) for k in
                                     ("id", "path", "source", "speaker", "label", "orig", "split", "rendered")},
             span=np.array([r["span"] for r in res], np.float32),
             windows=np.concatenate([r["windows"] for r in res]), win_clip=win_clip)
