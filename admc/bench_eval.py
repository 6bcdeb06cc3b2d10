"""What ``admc bench`` measures of one trained model on one fold and seed: one cell's result.

``{"eval": admc.evaluate.evaluate(...) (conditions, average, pooled, full, calibration, missing_rate),
"completion": {...}, "completion_val": {...}, "generated": {...}, "traits": {...}}``; the last three
only for a model that completes missing rows (``completion*``: :func:`admc.diagnostics.completion_report`;
``generated``: paper Table 4, :func:`generated_quality`).  ``traits`` say what the model is made of
(fusion mode, MMER, whether it completes, its start step), read by the full-modality study (Table 5).
"""

from __future__ import annotations

import torch

from admc.data import FeatureDataset, Split
from admc.diagnostics import RidgeCompleter, completion_report, generated_features, real_features
from admc.evaluate import evaluate
from admc.pipeline import ADMCModel
from admc.runtime import progress


def start_steps(model: ADMCModel) -> list[int]:
    """The start steps n of Table 4 and Figure 3: ``adn.start_grid`` for a completer that has one
    (the paper variant), else none (the completer has no n)."""
    return [int(n) for n in model.cfg.adn.start_grid] if model.uses_start_step else []


def generated_quality(model: ADMCModel, emb: tuple[torch.Tensor, torch.Tensor], labels, seed: int) -> dict:
    """Paper Table 4 for one model: ``{"own": {cond: {modality: {"wa","ua","mse","cos"}}},
    "by_start_step": {"n": {...}}, "real": {modality: {"wa","ua"}}}``: the generated rows at the
    model's own n (or with no n), at every n of :func:`start_steps`, and the heads on the true rows."""
    z, present = emb
    out = {"own": generated_features(model, z, present, labels, seed), "by_start_step": {},
           "real": real_features(model, z, present, labels)}
    for n in progress(start_steps(model), desc="Table 4: start steps n"):
        with model.using_start_step(n):
            out["by_start_step"][str(n)] = generated_features(model, z, present, labels, seed)
    return out


def traits(model: ADMCModel) -> dict:
    return {"fusion": model.fusion_mode, "mmer": bool(model.mmer), "completes": bool(model.completes),
            "start_step": getattr(model, "start_step", None)}


def evaluate_cell(model: ADMCModel, ds: FeatureDataset, split: str, train_split: Split, seed: int,
                  missing_rates=(), runs: int = 1) -> dict:
    """One cell's result (module docstring); ``train_split`` is what the method trained on (the
    reference ridge of the completion report is fitted on its full samples)."""
    emb = model.embed(ds[split])
    out = {"eval": evaluate(model, ds[split], seed, missing_rates, runs, embedded=emb), "traits": traits(model)}
    if model.completes:
        z_tr, p_tr = model.embed(train_split)
        full = z_tr[p_tr.all(dim=1)]
        ridge = RidgeCompleter(full.cpu().numpy()) if len(full) >= 10 else None
        for key, sp, e in (("completion_val", "val", model.embed(ds["val"])), ("completion", split, emb)):
            out[key] = completion_report(model, e[0], e[1], ds[sp].labels, ridge, seed)
        out["generated"] = generated_quality(model, emb, ds[split].labels, seed)
    return out
