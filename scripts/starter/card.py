"""Stage ``card``: ``MODEL_CARD.md``, the template ``MODEL_CARD.md.j2`` filled from a dict of numbers
(:func:`card_numbers`: everything the card states, read from the work folder, the shipped run and the
live evaluation results; formatted here, laid out there)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from scripts.starter import recipe
from scripts.starter.pairs import Sources
from scripts.starter.recipe import (CLASSES, CODEC_BIT_RATES, CODEC_P, EMODB_MAP, FACE_CAP, FER_MAP,
                                    GOEMO_MAP, KEYFRAMES, PAIRS_PER_CLASS, RAVDESS_MAP, REPO, ROWS, SEED,
                                    TEXT_CAP)

TEMPLATE = Path(__file__).with_name("MODEL_CARD.md.j2")
CONDITIONS = ["A", "V", "T", "A+V", "A+T", "V+T"]
#: benchmarks/results/live/live_eval_<tag>.json shown in the live table, oldest first
LIVE_RESULTS = {
    "starter": "previous starter (completing with the ADN step), replay, before the live-path changes of issues 28/29 (T held 1 s)",
    "starter_ridge": "previous starter (isolated training windows, completing with the ridge estimate), replay",
    "starter_ridge_browser": "previous starter (isolated training windows, completing with the ridge estimate), browser",
    "starter_live_rendered": "first live-rendered build (4 stream windows from 0.6 s, no neutral words; not shipped), replay",
    "starter_v2": "this starter (live-rendered windows, neutral-word pairs), replay",
    "starter_v2_browser": "this starter (live-rendered windows, neutral-word pairs), browser",
    "starter_v2_hold3": "this starter with the app's voice hold of 3 s (the default since; chosen on a validation clip), replay",
    "starter_v2_hold3_browser": "this starter with the app's voice hold of 3 s, browser",
    "starter_v2_asr": "this starter, the live ASR decoding over a shortened context (the default since), replay",
    "starter_v2_asr2_browser": "this starter, the live ASR decoding over a shortened context with its token budget, browser",
    "starter_v2_person": "this starter, a window pooling one person's face (the default since), replay",
    "starter_v2_person_browser": "this starter, a window pooling one person's face, browser",
}


def _wu(s: dict) -> str:
    return f"{s['wa']:.1f} / {s['ua']:.1f}"


def _completer(run: dict) -> tuple[str, str, str]:
    """(what the app's badges call the shipped completer, the same for the sampler it was trained
    with, the card's sentence about the choice)."""
    from admc.config import ADNConfig
    from admc.diffusion.variants import variant_of

    adn_cfg = ADNConfig(**run["config"]["adn"])
    label = variant_of(adn_cfg).label(adn_cfg)
    choice = ((run.get("train") or {}).get("recalibrated") or {}).get("sampler") or {}
    trained = choice.get("trained", "neighbours_marginal" if adn_cfg.marginal else adn_cfg.sampler)
    as_trained = {"sampler": "neighbours", "marginal": True} if trained == "neighbours_marginal" else \
        {"sampler": trained, "marginal": False, "neighbour_bank": 0} if trained != "neighbours" else {}
    trained_cfg = ADNConfig(**{**run["config"]["adn"], **as_trained})
    trained_label = variant_of(trained_cfg).label(trained_cfg)
    sentence = f"the app's badges call it \"{label}\""
    if choice.get("rule") == "auto":
        ua, mse = choice.get("val_ua", {}), choice.get("val_completion_mse", {})
        sentence += ("; chosen on the paired validation split by `admc calibrate --sampler auto`, which "
                     "measures the ridge estimate alone (`prior`), the trained sampler, the mean of the "
                     "nearest training samples (`neighbours`, hot-deck) and the classifier averaged over them "
                     "(`neighbours_marginal`) in that order of cost and takes a costlier one only if it "
                     "classifies validation better: UA over every "
                     "availability pattern " + ", ".join(f"`{k}` {v:.2f}" for k, v in ua.items())
                     + " (completion MSE " + ", ".join(f"`{k}` {v:.4f}" for k, v in mse.items())
                     + f"), so the run trained with `{choice['trained']}` completes with "
                     f"`{choice['sampler']}`; paired comparisons in docs/completion.md")
    return label, trained_label, sentence


def _train_env(work: Path) -> str | None:
    if not (work / "train_env.json").is_file():
        return None
    te = json.loads((work / "train_env.json").read_text())
    extra = (" plus uncommitted changes to " + ", ".join(f"`{x}`" for x in te["admc_uncommitted"])
             if te["admc_uncommitted"] else "")
    return f"Trained with the core at commit `{te['commit']}`{extra}" + (
        f"; its `zero_fill` and `late_fusion` baselines trained again at `{te['baselines_commit']}` on the same"
        " ITFN encoders (identical weights)" if te.get("baselines_commit") else "") + "."


def _silent_units(out: Path) -> dict | None:
    mf = out / "model.safetensors"
    if not mf.is_file():
        return None
    from safetensors.numpy import load_file

    scale = load_file(str(mf)).get("emb_std")
    if scale is None:
        return None
    return {"per_modality": scale.shape[1],
            "counts": ", ".join(f"{m} {int((row == 1.0).sum())}" for m, row in zip("AVT", scale))}


def _calibration(ev: dict, run: dict) -> dict | None:
    cal = ev.get("calibration")
    if not cal:
        return None
    tcal = (run.get("train") or {}).get("calibration") or {}

    def shown(b):
        return f"{100 * b['confidence']:.0f} / {100 * b['accuracy']:.0f}" if b["count"] else "—"

    ab = tcal.get("abstain") if isinstance(tcal, dict) else None
    return {
        "conditions": [{"name": name, "accuracy": f"{r['accuracy']:.1f}", "ece_before": f"{r['ece_before']:.2f}",
                        "ece_after": f"{r['ece_after']:.2f}"} for name, r in cal["conditions"].items()],
        "reliability": [{"bin": f"{b0['lower']:.2f}-{b0['upper']:.2f}", "n_before": b0["count"], "before": shown(b0),
                         "n_after": b1["count"], "after": shown(b1)}
                        for b0, b1 in zip(cal["reliability_full"]["before"], cal["reliability_full"]["after"])
                        if b0["count"] or b1["count"]],
        "abstain": ({"threshold": f"{ab['threshold']:.2f}", "keep": f"{100 * (ab.get('keep') or 0.9):.0f}"}
                    if isinstance(ab, dict) and ab.get("threshold") is not None else None),
    }


def _live_rows() -> list[dict]:
    rows = []
    for tag, name in LIVE_RESULTS.items():
        f = REPO / "benchmarks" / "results" / "live" / f"live_eval_{tag}.json"
        if not f.is_file():
            continue
        r = json.loads(f.read_text())
        sc, st = r["scores"], r.get("streams", {})

        def cell(k):
            return f"{sc[k]['wa']:.1f} / {sc[k]['ua']:.1f}" if sc.get(k, {}).get("windows") else "—"

        def ood(m):
            return f"{st[m]['ood_share_of_live']:.1f}" if "ood_share_of_live" in st.get(m, {}) else "—"

        rows.append({"name": name, "windows": sc["overall"]["windows"], "overall": cell("overall"),
                     "full": cell("full"), "face_hidden": cell("face_hidden"), "silent": cell("silent"),
                     "uncertain": f"{sc['overall']['uncertain_share']:.1f}",
                     "wa_confident": f"{sc['overall'].get('wa_confident', float('nan')):.1f}",
                     "voice_ood": ood("A"), "face_ood": ood("V")})
    return rows


def card_numbers(work: Path, out: Path, src: Sources, settings: list[str]) -> dict:
    """Everything the card states, formatted, keyed as ``MODEL_CARD.md.j2`` reads it."""
    ev = json.loads((work / "eval.json").read_text())
    run = json.loads((out / "run.json").read_text())
    ds = json.loads((work / "paired" / "meta.json").read_text())
    label, trained_label, completer_sentence = _completer(run)
    S, F, T = src.speech, src.faces, src.text
    nf, ns, nt = Counter(F["split"]), Counter(zip(S["source"], S["split"])), Counter(T["split"])

    def inv(mp, c):
        return ", ".join(k for k, v in mp.items() if v == c) or "—"

    baselines = {k: v for k, v in ev["bench"]["methods"].items() if k != "admc"}
    paired = {"admc": ev["shipped_paired"], **baselines}
    if ev.get("trained_paired"):
        paired = {f"admc (shipped: {label})": ev["shipped_paired"],
                  f"admc as trained ({trained_label})": ev["trained_paired"], **baselines}
    tr = run.get("train", {})
    vd = ev.get("v_diagnostics")
    timings = json.loads((work / "timings.json").read_text()) if (work / "timings.json").is_file() else {}
    load = json.loads((work / "load.json").read_text()) if (work / "load.json").is_file() else {}
    return {
        "fs": {"name": recipe.FEATURES.name, "audio_dim": recipe.FEATURES.audio_dim,
               "face_dim": recipe.FEATURES.face_dim, "text_dim": recipe.FEATURES.text_dim},
        "classes_md": ", ".join(f"`{c}`" for c in CLASSES),
        "run": {"admc_version": run.get("admc_version"), "method": run["method"], "fusion_mode": run["fusion_mode"]},
        "size_mb": f"{(out / 'model.safetensors').stat().st_size / 1e6:.1f}",
        "face_cap": FACE_CAP, "faces": {k: nf[k] for k in ("train", "val", "test_public", "test_private")},
        "speech": {src_: {s: ns[(src_, s)] for s in ("train", "val", "test")} for src_ in ("ravdess", "emodb")},
        "text_cap": TEXT_CAP, "text": {s: nt[s] for s in ("train", "val", "test")},
        "label_rows": [{"cls": c, "fer": inv(FER_MAP, c), "ravdess": inv(RAVDESS_MAP, c), "emodb": inv(EMODB_MAP, c),
                        "goemo": inv(GOEMO_MAP, c)} for c in CLASSES],
        "live_render": recipe.LIVE_RENDER, "stream_windows": recipe.STREAM_WINDOWS,
        "stream_onset_s": recipe.STREAM_ONSET_S, "stream_tail_s": recipe.STREAM_TAIL_S, "neutral_words_p": recipe.NEUTRAL_WORDS_P,
        "neutral_face_voice_p": recipe.NEUTRAL_FACE_VOICE_P, "keyframes": KEYFRAMES, "rows": ROWS, "codec_p": CODEC_P,
        "codec_kbits": "/".join(str(b // 1000) for b in CODEC_BIT_RATES),
        "seed": SEED, "pairs": PAIRS_PER_CLASS, "pairs_total": {k: 7 * v for k, v in PAIRS_PER_CLASS.items()},
        "settings_md": ", ".join(f"`--set {s}`" for s in settings),
        "train_env": _train_env(work),
        "itfn": (", ".join(f"{k} {v['ua']:.1f}" for k, v in tr["itfn"].items())
                 if isinstance(tr.get("itfn"), dict) else None),
        "silent_units": _silent_units(out),
        "completer_sentence": completer_sentence,
        "unimodal": [{"name": name, "n": r["n"], "admc": _wu(r["admc"]), "zero_fill": _wu(r["zero_fill"]),
                      "late_fusion": _wu(r["late_fusion"]),
                      "reference": (f"the face network's own 7-class head on the plain crop: {_wu(r['face_net_crop'])}; "
                                    "published single networks: 70-73 (WA); human ~65") if "face_net_crop" in r else ""}
                     for name, r in ev["unimodal"].items()],
        "v_diagnostics": ({"plain_public": _wu(vd["plain_public"]), "n_train_faces": vd["n_train_faces"],
                           "train_faces": _wu(vd["train_faces"]),
                           "logreg_private_test": f"{vd['logreg_private_test']['ua']:.1f}",
                           "logreg_fer_train": f"{vd['logreg_fer_train']['ua']:.1f}"} if vd else None),
        "paired": {"header": " | ".join("{" + c + "}" for c in CONDITIONS),
                   "rule": "|---" * (len(CONDITIONS) + 3) + "|",
                   "rows": [{"method": m, "cells": [_wu(r["conditions"][c]) for c in CONDITIONS],
                             "average": _wu(r["average"]), "full": _wu(r["full"])} for m, r in paired.items()]},
        "calibration": _calibration(ev, run),
        "live": _live_rows(),
        "examples": ev["examples"],
        "timings": ({"stages": ", ".join(f"{k} {v / 60:.1f} min" + (f" [{load[k]:.1f}]" if k in load else "")
                                         for k, v in timings.items() if k not in ("total", "card")),
                     "total": f"{timings.get('total', 0) / 60:.1f}"} if timings else None),
        "dataset": {"name": ds["name"], "samples": sum(7 * v for v in PAIRS_PER_CLASS.values())},
    }


def render_card(numbers: dict) -> str:
    """``MODEL_CARD.md.j2`` filled with ``numbers`` (a missing key is an error, not an empty cell)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.get_template(TEMPLATE.name).render(**numbers)


def stage_card(work: Path, out: Path, src: Sources, settings: list[str]) -> None:
    (out / "MODEL_CARD.md").write_text(render_card(card_numbers(work, out, src, settings)))
