"""Evaluation of a trained model on every missing-modality condition and at random missing rates.

Output layout (percentages 0-100), one method:
``{"conditions": {COND: {"wa","ua","f1"}}, "average": {...}, "pooled": {...}, "full": {...},
"calibration": {"conditions": {COND: {"ece_before","ece_after"}}, "average": {...}, "full": {...}},
"missing_rate": {"0.1": {"acc","f1"}, ...}}``.  ``calibration`` is the expected calibration error
(:func:`admc.calibration.expected_calibration_error`, 15 bins) of the raw softmax (before) and of the
probabilities the model gives, temperature-scaled per condition (after).  ``average`` is the mean of
the conditions' scores; ``pooled`` is MMIN's average (AIM3-RUC/MMIN ``train_miss.py``, its
"total"): the test samples of every missing condition pooled into one set, then WA/UA/F1 once.
"""

from __future__ import annotations

import numpy as np
import torch

from admc.calibration import expected_calibration_error
from admc.data import Split, missing_conditions
from admc.metrics import mean_scores, scores
from admc.pipeline import ADMCModel
from admc.regimes import random_missing_mask  # noqa: F401 - also imported from here
from admc.runtime import log


@torch.no_grad()
def predict(model: ADMCModel, z, avail, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return model.predict_proba(z, torch.as_tensor(avail, device=z.device), gen).argmax(-1).cpu().numpy()


@torch.no_grad()
def predict_calibrated(model: ADMCModel, z, avail, labels, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """Predictions and ECE (percent) before and after the model's temperatures, from one pass."""
    gen = torch.Generator().manual_seed(seed)
    avail = torch.as_tensor(avail, device=z.device)
    logits = model.predict_logits(z, avail, gen)
    before = torch.softmax(logits, dim=-1)
    after = torch.softmax(model.calibration(logits, avail), dim=-1)
    ece = {"ece_before": 100.0 * expected_calibration_error(before, labels),
           "ece_after": 100.0 * expected_calibration_error(after, labels)}
    return logits.argmax(-1).cpu().numpy(), ece


@torch.no_grad()
def evaluate(model: ADMCModel, split: Split, seed: int = 0, missing_rates=(), runs: int = 1,
             embedded: tuple | None = None) -> dict:
    z, present = embedded if embedded is not None else model.embed(split)
    present_np = present.cpu().numpy()
    y = split.labels
    names = model.schema.names
    result: dict = {"conditions": {}}
    calibration: dict = {"conditions": {}}
    pooled_y, pooled_pred = [], []
    for cond, mask in missing_conditions(names) + [("full", tuple(True for _ in names))]:
        avail = present_np & np.array(mask)[None]
        keep = avail.any(axis=1)
        if not keep.all():
            log(f"condition {cond}: {int((~keep).sum())} samples have none of these modalities; skipped")
        pred, ece = predict_calibrated(model, z[torch.from_numpy(keep).to(z.device)], avail[keep], y[keep], seed)
        s = scores(y[keep], pred)
        if cond == "full":
            result["full"], calibration["full"] = s, ece
        else:
            result["conditions"][cond], calibration["conditions"][cond] = s, ece
            pooled_y.append(y[keep])
            pooled_pred.append(pred)
    result["average"] = mean_scores(list(result["conditions"].values()))
    result["pooled"] = scores(np.concatenate(pooled_y), np.concatenate(pooled_pred))
    calibration["average"] = mean_scores(list(calibration["conditions"].values()))
    result["calibration"] = calibration
    if missing_rates:
        result["missing_rate"] = {}
        for rate in missing_rates:
            rows = []
            for r in range(runs):
                rng = np.random.default_rng([seed, r, int(round(rate * 1000))])
                avail = random_missing_mask(present_np, rate, rng)
                pred = predict(model, z, avail, seed + r)
                s = scores(y, pred)
                rows.append({"acc": s["wa"], "f1": s["f1"]})
            result["missing_rate"][f"{rate:g}"] = mean_scores(rows)
    return result
