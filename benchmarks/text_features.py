"""Text emotion features compared on GoEmotions test: MiniLM alone vs MiniLM + nade.

    .venv/bin/python benchmarks/text_features.py             # writes benchmarks/results/features/text_features.{json,md}

Comments, labels and splits are the starter's (``scripts/starter/``: GoEmotions Ekman,
single-label comments rewritten as a transcript would read, 7 classes, train capped at 1200 per
class, dev as validation capped at 250, all of test).  Representations:

* ``minilm``: mean of the bundled MiniLM's word-piece features (``extractors.models.text``, 384-d);
* ``nade8``: nade's eight Plutchik emotion scores (``extractors.models.text_affect``);
* ``nade_emoji``: nade's emoji distribution (its fastText stage, one probability per emoji);
* concatenations of MiniLM with each.

Each is scored by a class-balanced logistic regression (scikit-learn, C chosen on validation UA).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from scripts.starter.text import text_items  # noqa: E402
from benchmarks.linear_probe import fit_probe, ua  # noqa: E402
from benchmarks.machine_info import cpu_name  # noqa: E402


def extract(cache: Path) -> dict[str, np.ndarray]:
    if cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    import torch

    from extractors.models.text import TextEncoder
    from extractors.models.text_affect import TextAffect

    torch.set_num_threads(1)
    items = text_items()
    texts = [it["text"] for it in items]
    enc = TextEncoder(device="cpu")
    minilm = np.zeros((len(items), enc.dim), np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), 64):
        idx = order[s:s + 64]
        for i, o in zip(idx, enc.encode_batch([texts[i] for i in idx])):
            if o is not None:
                minilm[i] = o[0].mean(0)
    affect = TextAffect()
    t = time.perf_counter()
    nade8 = affect.scores(texts)
    emoji = affect.emoji_distribution(texts)
    ms = 1000 * (time.perf_counter() - t) / len(texts)
    out = {"minilm": minilm, "nade8": nade8, "nade_emoji": emoji, "nade_ms_per_text": np.float32(ms),
           "label": np.array([it["label"] for it in items]), "split": np.array([it["split"] for it in items])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def evaluate(f: dict[str, np.ndarray]) -> dict:
    y, split = f["label"].astype(int), f["split"]
    reps = {"minilm": f["minilm"], "nade8": f["nade8"], "nade_emoji": f["nade_emoji"],
            "minilm+nade8": np.concatenate([f["minilm"], f["nade8"]], 1),
            "minilm+nade_emoji": np.concatenate([f["minilm"], f["nade_emoji"]], 1)}
    out = {}
    for name, X in reps.items():
        clf, C, v = fit_probe(X, y, split)
        te = split == "test"
        pred = clf.predict(X[te])
        out[name] = {"dim": int(X.shape[1]), "C": C, "val_ua": round(v, 1), "test_ua": round(ua(y[te], pred), 1),
                     "test_wa": round(100 * float((pred == y[te]).mean()), 1)}
        print(name, out[name], flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "_work" / "text_features.npz")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "features" / "text_features")
    args = ap.parse_args()
    f = extract(args.cache)
    res = {"what": "class-balanced logistic regression, C chosen on validation UA; GoEmotions test single-label",
           "n": {s: int((f["split"] == s).sum()) for s in ("train", "val", "test")},
           "nade_ms_per_text": round(float(f["nade_ms_per_text"]), 3), "results": evaluate(f),
           "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = ["# Text features on GoEmotions test (7 classes, %)", "",
             f"{res['what']}; n = {res['n']}. nade: {res['nade_ms_per_text']} ms per text (batched, one core).", "",
             "| features | dim | val UA | test WA | test UA |", "|---|---|---|---|---|"]
    for name, r in res["results"].items():
        lines.append(f"| {name} | {r['dim']} | {r['val_ua']} | {r['test_wa']} | {r['test_ua']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
