#!/usr/bin/env python
"""Soak: the app's ``--no-ui`` replay of a looped one-hour recording -- is memory flat, does latency hold?

    python benchmarks/soak.py [--minutes 60] [--checkpoint RUN] [--base-seconds 60]

1. Generates its own media: a ``--base-seconds`` clip (640x480, 15 fps) where a face (scikit-image's
   astronaut, as in the app's tests) comes and goes -- centred, absent (empty room), moving, covered
   (black frames) -- over espeak-ng speech (several sentences) and silence; then loops it, by copying
   the encoded packets with shifted timestamps, into one ``--minutes`` recording (Matroska, H.264 +
   16-bit PCM, so the loop points are sample-exact).
2. Runs ``python -m app --source LONG.mkv --no-ui --out RESULTS.jsonl`` (the real extractors:
   MTCNN + mini-Xception, openSMILE, silero VAD, Whisper tiny.en, MiniLM) as fast as the machine
   allows -- the replay is not paced to the wall clock, so an hour of media takes what it takes
   (the JSON says how long) -- and samples the process's resident memory every ``--sample-s``
   seconds against the media time of the newest window written.
3. Compares the first and the last ``--span-min`` minutes of media: peak RSS, window latency p50/p95
   (each window's own compute time, ASR excluded, as the app reports it), the share of windows per
   stream state.  Writes ``benchmarks/results/speed/soak.json`` and ``soak.md``, with the machine (CPU,
   cores, load average over the run: the 2-core machine is shared).

Without ``--checkpoint`` it uses ``weights/starter/`` if present, else a tiny random live-schema run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.machine_info import cpu_name  # noqa: E402
from benchmarks.browser_path import shown_path  # noqa: E402 - results name no machine paths

FPS = 15
SIZE = (640, 480)
SR = 16000
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "I am so happy to see you here today, this is wonderful news.",
    "Why did you do that? I told you not to touch it, and now it is broken.",
    "Please sit down, the meeting will start in a few minutes.",
)


def plan(base: float) -> list[tuple[float, float, str, int | None]]:
    """(start, end, video, sentence index or None) over one base clip, scaled to ``base`` seconds.
    Video: ``face`` (centred), ``empty`` (no one there), ``moving`` (the face drifts), ``black``
    (camera covered).  Faces come and go; speech and silence alternate, also across video states."""
    unit = [(0, 12, "face", 0), (12, 18, "empty", None), (18, 30, "moving", 1), (30, 36, "black", 2),
            (36, 48, "face", None), (48, 60, "empty", 3)]
    k = base / 60.0
    return [(a * k, b * k, v, s) for a, b, v, s in unit]


def frame_at(kind: str, t: float, rng) -> np.ndarray:
    from benchmarks.fixtures import clip_frame, shifted_frame

    if kind == "black":
        return np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    if kind == "empty":
        img = np.full((SIZE[1], SIZE[0], 3), 96, np.uint8)
        return np.clip(img.astype(np.int16) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    img = clip_frame("face", SIZE, rng)
    if kind == "moving":
        return shifted_frame(img, int(60 * np.sin(2 * np.pi * t / 6.0)), int(20 * np.sin(2 * np.pi * t / 4.0)))
    return img


def make_base(path: Path, seconds: float, work: Path) -> dict:
    """The base clip (Matroska: H.264 + PCM) and its timeline."""
    import av

    from benchmarks.fixtures import espeak
    from extractors.models.audio import resample

    audio = np.zeros(int(round(seconds * SR)), np.float32)
    segments = plan(seconds)
    speech_s = 0.0
    for a, b, _v, s in segments:
        if s is None:
            continue
        x, xsr = espeak(SENTENCES[s], work / f"sentence{s}.wav")
        x = 0.8 * resample(x, xsr, SR)
        i0 = int((a + 0.5) * SR)
        n = max(0, min(len(x), int(b * SR) - i0))
        audio[i0:i0 + n] = x[:n]
        speech_s += n / SR
    rng = np.random.default_rng(0)
    n_frames = int(round(seconds * FPS))
    with av.open(str(path), "w", format="matroska") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        vs.options = {"crf": "23", "preset": "veryfast", "g": str(FPS * 2)}
        ast = c.add_stream("pcm_s16le", rate=SR)
        ast.layout = "mono"
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
        step, s = 1600, 0
        for i in range(n_frames):
            t = i / FPS
            kind = next(v for a, b, v, _ in segments if a <= t < b) if t < segments[-1][1] else segments[-1][2]
            for p in vs.encode(av.VideoFrame.from_ndarray(frame_at(kind, t, rng), format="rgb24")):
                c.mux(p)
            while s < len(pcm) and s / SR < (i + 1) / FPS:
                af = av.AudioFrame.from_ndarray(pcm[None, s:s + step], format="s16", layout="mono")
                af.sample_rate, af.pts = SR, s
                for p in ast.encode(af):
                    c.mux(p)
                s += step
        for p in vs.encode():
            c.mux(p)
        for p in ast.encode():
            c.mux(p)
    return {"seconds": seconds, "speech_seconds": round(speech_s, 1),
            "segments": [{"start": round(a, 2), "end": round(b, 2), "video": v,
                          "speech": SENTENCES[s] if s is not None else None} for a, b, v, s in segments]}


def loop_file(base: Path, out: Path, base_seconds: float, loops: int) -> None:
    """``loops`` copies of ``base`` back to back, packets copied (no re-encoding), timestamps shifted."""
    import av

    with av.open(str(base)) as src, av.open(str(out), "w", format="matroska") as dst:
        outs = {}
        for st in src.streams:
            o = dst.add_stream_from_template(st)
            outs[st.index] = o
        for k in range(loops):
            src.seek(0)
            for pkt in src.demux():
                if pkt.dts is None:
                    continue
                shift = int(round(k * base_seconds / pkt.time_base))
                pkt.pts = None if pkt.pts is None else pkt.pts + shift
                pkt.dts = pkt.dts + shift
                pkt.stream = outs[pkt.stream.index]
                dst.mux(pkt)


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    rss = hwm = float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, hwm


def _pct(a, p):
    return round(float(np.percentile(np.asarray(a, np.float64), p)), 1) if len(a) else None


def summarize(rows: list[dict], rss: list[tuple[float, float, float]], lo: float, hi: float) -> dict:
    """Windows with ``lo <= t < hi`` (media seconds) and memory samples taken meanwhile."""
    w = [r for r in rows if lo <= r["t"] < hi]
    lat = [r["latency_ms"] for r in w]
    mem = [m for _wall, t, m in rss if lo <= t < hi]
    out = {"media_from_s": round(lo, 1), "media_to_s": round(hi, 1), "windows": len(w),
           "latency_p50_ms": _pct(lat, 50), "latency_p95_ms": _pct(lat, 95),
           "latency_max_ms": round(max(lat), 1) if lat else None,
           "rss_peak_mb": round(max(mem)) if mem else None, "rss_mean_mb": round(float(np.mean(mem))) if mem else None,
           "rss_samples": len(mem), "with_prediction": sum(1 for r in w if r["probs"])}
    for m in ("A", "V", "T"):
        out[f"{m}_live_share"] = round(sum(1 for r in w if r["streams"][m] == "live") / len(w), 3) if w else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="media duration of the looped recording")
    ap.add_argument("--base-seconds", type=float, default=60.0, help="length of the generated clip that is looped")
    ap.add_argument("--span-min", type=float, default=10.0, help="first / last minutes compared")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--sample-s", type=float, default=1.0, help="memory sampling period (wall seconds)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "soak"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed" / "soak.json"))
    ap.add_argument("--md", default=None, help="markdown summary (default: --out with .md)")
    args = ap.parse_args(argv)

    from app.checkpoint import DEFAULT_CHECKPOINT
    from benchmarks.fixtures import cached_tiny_checkpoint

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        ck_path, ck_kind = Path(args.checkpoint), "given"
    elif (DEFAULT_CHECKPOINT / "run.json").is_file():
        ck_path, ck_kind = DEFAULT_CHECKPOINT, "starter"
    else:
        ck_path, ck_kind = cached_tiny_checkpoint(work.parent), "tiny random live-schema run"

    loops = max(1, int(round(args.minutes * 60 / args.base_seconds)))
    media_s = loops * args.base_seconds
    t0 = time.perf_counter()
    base = work / f"base_{int(args.base_seconds)}s.mkv"
    timeline = make_base(base, args.base_seconds, work)
    long = work / f"looped_{int(media_s)}s.mkv"
    loop_file(base, long, args.base_seconds, loops)
    gen_s = time.perf_counter() - t0
    print(f"soak: {long} ({media_s / 60:.1f} min of media, {loops} x {args.base_seconds:g} s; "
          f"generated in {gen_s:.0f} s)", flush=True)

    results = work / "results.jsonl"
    log = work / "app.log"
    cmd = [sys.executable, "-m", "app", "--source", str(long), "--no-ui", "--out", str(results),
           "--checkpoint", str(ck_path), "--threads", "1", "--quiet"]
    load0 = os.getloadavg()
    loads: list[float] = []
    rss: list[tuple[float, float, float]] = []        # (wall s, media t of newest window, RSS MB)
    rows: list[dict] = []
    start = time.perf_counter()
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=lf, stderr=subprocess.STDOUT)
        buf = ""
        last_print = 0.0
        fh = None
        hwm = float("nan")
        while True:
            done = proc.poll() is not None
            if fh is None and results.exists():
                fh = open(results, encoding="utf-8")
            if fh is not None:
                buf += fh.read()
                *lines, buf = buf.split("\n")
                rows.extend(json.loads(x) for x in lines if x.strip())
            if done:
                break
            r, h = _rss_mb(proc.pid)
            hwm = h if h == h else hwm
            now = time.perf_counter() - start
            if r == r:
                rss.append((round(now, 1), rows[-1]["t"] if rows else 0.0, round(r, 1)))
            loads.append(os.getloadavg()[0])
            if now - last_print > 60:
                last_print = now
                t_media = rows[-1]["t"] if rows else 0.0
                print(f"soak: {now / 60:.1f} min wall, media {t_media / 60:.1f} min, RSS {r:.0f} MB, "
                      f"load {loads[-1]:.2f}", flush=True)
            time.sleep(args.sample_s)
        if fh is not None:
            fh.close()
    wall = time.perf_counter() - start
    load1 = os.getloadavg()
    if proc.returncode != 0:
        print(f"soak: the app exited with {proc.returncode}; see {log}", file=sys.stderr)
        print(log.read_text()[-2000:], file=sys.stderr)
        return 1

    span = args.span_min * 60
    end_t = rows[-1]["t"] if rows else 0.0
    first = summarize(rows, rss, 0.0, min(span, end_t + 1))
    last = summarize(rows, rss, max(0.0, end_t - span), end_t + 1)
    growth = (last["rss_peak_mb"] - first["rss_peak_mb"]) if first["rss_peak_mb"] and last["rss_peak_mb"] else None
    out = {
        "benchmark": "soak: python -m app --source LOOPED --no-ui (fast replay, real extractors)",
        "media": {"seconds": media_s, "minutes": round(media_s / 60, 1), "loops": loops, "file": long.name,
                  "container": "Matroska, H.264 640x480 15 fps + PCM 16 kHz mono",
                  "base_clip": timeline, "generated_in_s": round(gen_s, 1)},
        "replay": {"paced": False,
                   "note": "the replay runs as fast as the machine allows (not real time); latency is "
                           "each window's compute time, ASR excluded, as the app reports it",
                   "wall_seconds": round(wall, 1), "media_per_wall": round(media_s / wall, 2) if wall else None,
                   "windows": len(rows),
                   "command": " ".join(["python", "-m", "app"] + [shown_path(c) if os.path.isabs(c) else c for c in cmd[3:]])},
        "checkpoint": {"path": shown_path(ck_path), "kind": ck_kind},
        "first": first,
        "last": last,
        "rss_growth_mb_last_vs_first": growth,
        "rss_peak_overall_mb": round(hwm) if hwm == hwm else None,
        "rss_trace_mb": [(round(t / 60, 2), m) for w_, t, m in rss[:: max(1, len(rss) // 120)]],
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_start": [round(x, 2) for x in load0], "loadavg_end": [round(x, 2) for x in load1],
                    "loadavg_1min_mean_during": round(float(np.mean(loads)), 2) if loads else None,
                    "loadavg_1min_max_during": round(float(np.max(loads)), 2) if loads else None,
                    "note": "cores shared with other processes; loadavg above the core count means contention"},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    md = Path(args.md) if args.md else Path(args.out).with_suffix(".md")
    md.write_text(markdown(out, args.span_min))
    print(md.read_text())
    return 0


def markdown(o: dict, span_min: float) -> str:
    f, la, m = o["first"], o["last"], o["machine"]
    rows = [("windows", "windows"), ("window latency p50 (ms)", "latency_p50_ms"),
            ("window latency p95 (ms)", "latency_p95_ms"), ("window latency max (ms)", "latency_max_ms"),
            ("RSS peak (MB)", "rss_peak_mb"), ("RSS mean (MB)", "rss_mean_mb"),
            ("windows with a prediction", "with_prediction"),
            ("A live share", "A_live_share"), ("V live share", "V_live_share"), ("T live share", "T_live_share")]
    lines = [
        "# Soak: the app's `--no-ui` replay of a looped recording",
        "",
        f"Media: {o['media']['minutes']} min ({o['media']['loops']} x a {o['media']['base_clip']['seconds']:g} s "
        f"generated clip: a face present, absent, moving, covered; espeak-ng speech and silence), "
        f"replayed as fast as possible (not paced to real time): {o['replay']['wall_seconds'] / 60:.1f} min wall, "
        f"{o['replay']['media_per_wall']} x real time, {o['replay']['windows']} windows.  "
        f"Checkpoint: {o['checkpoint']['kind']}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared), load average {m['loadavg_start'][0]} at start, "
        f"mean {m['loadavg_1min_mean_during']} (max {m['loadavg_1min_max_during']}) during, "
        f"{m['loadavg_end'][0]} at end.",
        "",
        f"| | first {span_min:g} min | last {span_min:g} min |",
        "|---|---|---|",
    ]
    for name, k in rows:
        lines.append(f"| {name} | {f.get(k)} | {la.get(k)} |")
    lines += ["", f"RSS growth, last vs first peak: {o['rss_growth_mb_last_vs_first']} MB; overall peak "
                  f"(VmHWM) {o['rss_peak_overall_mb']} MB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
