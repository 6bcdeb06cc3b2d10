"""Stage ``evaluate``: per-source unimodal test accuracy, the paired conditions, calibration, examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scripts.starter import recipe
from scripts.starter.pairs import Sources
from scripts.starter.recipe import CLASSES, DATA, FER_MAP, ROWS, SEED


def _split_one(mod: str, seqs: list[np.ndarray], labels, ids):
    """A Split where only ``mod`` is present (the others: one zero row, absent)."""
    from admc.data import split_from_samples

    dims = recipe.FEATURES.dims()
    n = len(seqs)
    samples = {m: (seqs if m == mod else [np.zeros((1, dims[m]), np.float32)] * n) for m in "AVT"}
    present = {m: np.full(n, m == mod) for m in "AVT"}
    return split_from_samples("eval", labels, ids, samples, present)


def model_probs(model, split, mask=None, seed: int = 0) -> np.ndarray:
    import torch

    z, present = model.embed(split)
    avail = present if mask is None else present & torch.tensor(mask)[None]
    return model.predict_proba(z, avail, torch.Generator().manual_seed(seed)).cpu().numpy()


def paired_calibration(model, work: Path) -> dict:
    """ECE before/after temperature scaling on the paired test set, per condition and full input, and
    the reliability diagram of full input (15 bins)."""
    import torch

    from admc.calibration import expected_calibration_error, reliability_diagram
    from admc.data import load_dataset

    ds = load_dataset(work / "paired", splits=("test",))
    te = ds["test"]
    z, present = model.embed(te)
    y = np.asarray(te.labels)
    names = list(model.schema.names)
    out = {"conditions": {}}
    for bits in range(1, 2 ** len(names)):
        mask = [bool(bits >> (len(names) - 1 - i) & 1) for i in range(len(names))]
        avail = present & torch.tensor(mask)[None]
        g = lambda: torch.Generator().manual_seed(SEED)  # noqa: E731
        raw = model.predict_proba(z, avail, g(), calibrated=False).cpu().numpy()
        cal = model.predict_proba(z, avail, g()).cpu().numpy()
        name = "full" if all(mask) else "+".join(n for n, m in zip(names, mask) if m)
        out["conditions"][name] = {"ece_before": round(100 * expected_calibration_error(raw, y), 2),
                                   "ece_after": round(100 * expected_calibration_error(cal, y), 2),
                                   "accuracy": round(100 * float((cal.argmax(1) == y).mean()), 2)}
        if name == "full":
            from dataclasses import asdict

            out["reliability_full"] = {"before": [asdict(b) for b in reliability_diagram(raw, y)],
                                       "after": [asdict(b) for b in reliability_diagram(cal, y)]}
    return out


def stage_evaluate(work: Path, out: Path, src: Sources) -> dict:
    import torch

    from admc.metrics import scores
    from admc.run import load_run

    torch.set_num_threads(1)
    runs = {"admc": load_run(out)[0]}
    for meth in ("zero_fill", "late_fusion"):
        runs[meth] = load_run(work / "bench" / "runs" / f"{meth}-seed{SEED}")[0]
    res: dict = {"unimodal": {}, "examples": {}}
    F = src.faces
    from extractors.models.face import CLASSES as xcls   # the face network's own head's class order
    x2ours = np.array([CLASSES.index(FER_MAP[c]) for c in xcls])

    def unimodal(name, mod, seqs, y, ids, extra=None):
        split = _split_one(mod, seqs, y, ids)
        row = {"n": len(y)}
        for meth, model in runs.items():
            row[meth] = scores(y, model_probs(model, split).argmax(1))
        row.update(extra or {})
        res["unimodal"][name] = row
        print(name, json.dumps({k: (v if not isinstance(v, dict) else {a: round(b, 1) for a, b in v.items()})
                                 for k, v in row.items()}), flush=True)
        return split

    for kind, name in (("test_public", "FER2013 PublicTest (V)"), ("test_private", "FER2013 PrivateTest (V)")):
        idx = np.flatnonzero(F["split"] == kind)
        y = F["labels"][idx]
        mx = scores(y, x2ours[F["xprob"][idx].argmax(1)])
        unimodal(name, "V", [src.face_seq(i) for i in idx], y, F["ids"][idx], {"face_net_crop": mx})
    # how separable the face features are where the face network was trained (FER2013 train) vs test
    pub = np.flatnonzero(F["split"] == "test_public")
    trs = np.flatnonzero(F["split"] == "train")[::3]
    res["v_diagnostics"] = {
        "plain_public": scores(F["labels"][pub], model_probs(runs["admc"], _split_one(
            "V", [np.repeat(F["plain"][i][None], ROWS, 0) for i in pub], F["labels"][pub], F["ids"][pub])).argmax(1)),
        "train_faces": scores(F["labels"][trs], model_probs(runs["admc"], _split_one(
            "V", [src.face_seq(i) for i in trs], F["labels"][trs], F["ids"][trs])).argmax(1)),
        "n_train_faces": int(len(trs)),
    }
    # would a head trained on faces the network never saw do better? (logistic regression, plain crops)
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    for name, pool in (("logreg_fer_train", np.isin(F["split"], ["train", "val"])),
                       ("logreg_private_test", F["split"] == "test_private")):
        sc = StandardScaler().fit(F["plain"][pool])
        clf = LogisticRegression(max_iter=3000, class_weight="balanced").fit(sc.transform(F["plain"][pool]),
                                                                              F["labels"][pool])
        res["v_diagnostics"][name] = scores(F["labels"][pub], clf.predict(sc.transform(F["plain"][pub])))
    S = src.speech
    first_win = {}
    for w, c in enumerate(S["win_clip"]):
        first_win.setdefault(int(c), w)
    for source, name in (("ravdess", "RAVDESS actors 19-24 (A)"), ("emodb", "EmoDB speakers 15, 16 (A)")):
        clips = np.flatnonzero((S["split"] == "test") & (S["source"] == source))
        unimodal(name, "A", [S["windows"][first_win[int(c)]] for c in clips], S["label"][clips], S["id"][clips])
    T = src.text
    tidx = np.flatnonzero(T["split"] == "test")
    unimodal("GoEmotions test, single-label (T)", "T", [src.text_rows(i) for i in tidx], T["label"][tidx], T["id"][tidx])

    res["bench"] = json.loads((work / "bench" / "results.json").read_text())
    from admc.data import load_dataset
    from admc.evaluate import evaluate

    # the shipped run on the paired test set, and where stage_sampler switched its completer, the same run
    # completing as it was trained (argmax and UA do not depend on the temperatures)
    from admc.sampler_choice import use_sampler

    paired_test = load_dataset(work / "paired", splits=("test",))["test"]
    res["shipped_paired"] = evaluate(runs["admc"], paired_test, SEED)
    choice = ((json.loads((out / "run.json").read_text()).get("train") or {}).get("recalibrated") or {}).get("sampler")
    if choice and choice["sampler"] != choice["trained"]:
        as_trained = load_run(out)[0]
        use_sampler(as_trained, choice["trained"])
        res["trained_paired"] = evaluate(as_trained, paired_test, SEED)
    res["calibration"] = paired_calibration(runs["admc"], work)

    # fixed test examples: plain (unjittered) face repeated 30x, centred speech window; chosen among
    # the held-out test items that the face network / the admc model get right with high confidence
    from admc.pipeline import predict_window

    model = runs["admc"]
    faces = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero((F["split"] == "test_public") & (F["labels"] == c))
        conf = F["xprob"][idx][:, list(x2ours).index(c)]
        for i in idx[np.argsort(-conf)][:20]:
            out = predict_window(model, {"V": np.repeat(F["plain"][i][None], ROWS, 0), "A": None, "T": None},
                                 generator=torch.Generator().manual_seed(0))
            if out.label == CLASSES[c] and out.probs[CLASSES[c]] >= 0.8:
                faces.append({"id": str(F["ids"][i]), "label": CLASSES[c], "p": round(out.probs[CLASSES[c]], 3),
                              "face_net_p": round(float(F["xprob"][i].max()), 3)})
                break
    speech = []
    for c in range(len(CLASSES)):
        clips = np.flatnonzero((S["split"] == "test") & (S["label"] == c))
        best = None
        for k in clips:
            out = predict_window(model, {"A": S["windows"][first_win[int(k)]], "V": None, "T": None},
                                 generator=torch.Generator().manual_seed(0))
            p = out.probs[CLASSES[c]]
            if out.label == CLASSES[c] and p >= 0.8 and (best is None or p > best["p"]):
                best = {"id": str(S["id"][k]), "path": str(Path(S["path"][k]).relative_to(DATA)), "label": CLASSES[c],
                        "p": round(p, 3)}
        if best:
            speech.append(best)
    res["examples"] = {"faces": faces, "speech": speech}
    (work / "eval.json").write_text(json.dumps(res, indent=1) + "\n")
    return res
