"""Speech emotion features compared on speaker-disjoint splits: openSMILE ComParE vs Whisper encoder.

    .venv/bin/python benchmarks/speech_features.py            # writes benchmarks/results/features/speech_features.{json,md}

The clips, labels, speaker splits and 3 s windows are the starter's (``scripts/starter/``:
RAVDESS actors 1-14 train / 15-18 val / 19-24 test, EmoDB speakers by the same rule, 7 classes,
training clips as 4 random windows, val/test clips as one window centred on the voiced span).  For
each window it computes the live A features of both kinds:

* ``compare``: openSMILE ComParE_2016 LLD + deltas, 10 rows/s (``extractors.models.audio``), 30 x 130;
* ``whisper``: the bundled Whisper tiny.en encoder over the window (``extractors.models.speech_encoder``),
  averaged to 10 rows/s, 30 x 384;

and scores a logistic regression (scikit-learn; C chosen on the validation speakers by UA) on each
pooled representation (mean and standard deviation over rows) and on their concatenation.  Test
UA is reported per corpus (RAVDESS test actors, EmoDB test speakers).  Features are cached under
``benchmarks/_work/speech_features.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from scripts.starter import recipe as bs  # noqa: E402
from scripts.starter.speech import speech_items, speech_window_waves  # noqa: E402

from benchmarks.linear_probe import fit_probe, ua  # noqa: E402
from benchmarks.machine_info import cpu_name  # noqa: E402


def extract(cache: Path) -> dict[str, np.ndarray]:
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    import torch

    from extractors.models.audio import AudioFeatureExtractor
    from extractors.models.speech_encoder import WhisperEncoderFeatures

    torch.set_num_threads(1)
    fe = AudioFeatureExtractor()
    enc = WhisperEncoderFeatures(threads=1)
    rows = {"compare": [], "whisper": [], "clip": []}
    t_whisper, n_win = 0.0, 0
    items = speech_items()
    for i, it in enumerate(items):
        waves, _span = speech_window_waves(it["path"], it["id"], it["split"], codec=False)
        for seg in waves:
            x = fe.wave_source(seg).window_rows(bs.WINDOW_S, 0.0, bs.WINDOW_S)   # the live A rows
            if len(x) < bs.ROWS:
                x = np.concatenate([x, np.repeat(x[-1:], bs.ROWS - len(x), 0)])
            t = time.perf_counter()
            w = enc.rows(seg, rate=10.0)
            t_whisper += time.perf_counter() - t
            n_win += 1
            rows["compare"].append(x[: bs.ROWS])
            rows["whisper"].append(w[: bs.ROWS])
            rows["clip"].append(i)
        if i % 200 == 0:
            print(f"{i}/{len(items)} clips, whisper {1000 * t_whisper / max(n_win, 1):.1f} ms/window", flush=True)
    out = {"compare": np.stack(rows["compare"]).astype(np.float32), "whisper": np.stack(rows["whisper"]).astype(np.float32),
           "clip": np.asarray(rows["clip"]), "whisper_ms_per_window": np.float32(1000 * t_whisper / n_win)}
    for k in ("id", "source", "speaker", "label", "split"):
        out[f"item_{k}"] = np.array([it[k] for it in items])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def pooled(seq: np.ndarray) -> np.ndarray:
    return np.concatenate([seq.mean(1), seq.std(1)], axis=1)


def evaluate(feats: dict[str, np.ndarray]) -> dict:
    clip = feats["clip"]
    split = feats["item_split"][clip]
    source = feats["item_source"][clip]
    y = feats["item_label"][clip].astype(int)
    reps = {"compare": pooled(feats["compare"]), "whisper": pooled(feats["whisper"])}
    reps["compare+whisper"] = np.concatenate([reps["compare"], reps["whisper"]], axis=1)
    out = {}
    for name, X in reps.items():
        clf, C, v = fit_probe(X, y, split)
        row = {"dim": int(X.shape[1]), "C": C, "val_ua": round(v, 1)}
        te = split == "test"
        pred = clf.predict(X[te])
        for corpus in ("ravdess", "emodb"):
            m = source[te] == corpus
            row[f"test_ua_{corpus}"] = round(ua(y[te][m], pred[m]), 1)
        out[name] = row
        print(name, row, flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "_work" / "speech_features.npz")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "features" / "speech_features")
    args = ap.parse_args()
    feats = extract(args.cache)
    res = {"what": "logistic regression on pooled 3 s window features, C chosen on validation speakers (UA)",
           "whisper_ms_per_window": round(float(feats["whisper_ms_per_window"]), 1),
           "windows": int(len(feats["clip"])), "results": evaluate(feats), "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = ["# Speech features on speaker-disjoint test splits (UA %, 7 classes)", "",
             f"{res['what']}. Whisper tiny.en encoder: {res['whisper_ms_per_window']} ms per 3 s window "
             "(one core, int8, while other jobs ran).", "",
             "| features | dim | val UA | RAVDESS actors 19-24 | EmoDB speakers 15-16 |", "|---|---|---|---|---|"]
    for name, r in res["results"].items():
        lines.append(f"| {name} | {r['dim']} | {r['val_ua']} | {r['test_ua_ravdess']} | {r['test_ua_emodb']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
