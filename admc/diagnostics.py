"""How good are completions? Error of generated rows against the truth, next to simple references.

Per missing condition, on samples with every modality present:
- ``mse``/``cos``: generated rows vs true rows (standardized embedding space),
- ``mse_zero``: zero fill (= the train mean in that space),
- ``mse_ridge``: ridge regression from the available rows (the linear conditional mean, fitted on train),
- ``ua_generated``: UA of the frozen unimodal heads on the generated rows (paper Table 4),
  averaged over the missing modalities.

:func:`generated_features` breaks these down per generated modality (paper Table 4: WA/UA of the
head, MSE and cosine) for one start step n.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from admc.data import missing_conditions
from admc.metrics import scores
from admc.pipeline import ADMCModel


class RidgeCompleter:
    """Per condition, a ridge regression from the concatenated available rows to the missing ones."""

    def __init__(self, z_train: np.ndarray):
        self.z = z_train  # [n, M, E], full samples only
        self.models: dict[tuple, RidgeCV] = {}

    def complete(self, z: np.ndarray, mask: tuple[bool, ...]) -> np.ndarray:
        mask_arr = np.array(mask)
        if mask not in self.models:
            X = self.z[:, mask_arr].reshape(len(self.z), -1)
            Y = self.z[:, ~mask_arr].reshape(len(self.z), -1)
            self.models[mask] = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(X, Y)
        out = z.copy()
        pred = self.models[mask].predict(z[:, mask_arr].reshape(len(z), -1))
        out[:, ~mask_arr] = pred.reshape(len(z), int((~mask_arr).sum()), -1)
        return out


def _full_rows(z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    return present.all(dim=1)


@torch.no_grad()
def completions(model: ADMCModel, z: torch.Tensor, present: torch.Tensor, seed: int):
    """For every missing condition: (name, mask, availability [n, M], completed rows [n, M, E], true rows)
    over the samples that have every modality (so the truth is known); the completer as it is set
    (another start step n: :meth:`ADMCModel.using_start_step`)."""
    zf = z[_full_rows(z, present)]
    for cond, mask in missing_conditions(model.schema.names):
        avail = torch.tensor(mask, device=z.device).expand(len(zf), -1)
        filled = model.fill(zf, avail, torch.Generator().manual_seed(seed + 5))
        yield cond, mask, avail, filled, zf


def _errors(filled: torch.Tensor, truth: torch.Tensor, avail: torch.Tensor) -> dict[str, float]:
    a, b = filled[~avail], truth[~avail]
    return {"mse": float(((a - b) ** 2).mean()),
            "cos": float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())}


def completion_errors(model: ADMCModel, z: torch.Tensor, present: torch.Tensor, seed: int) -> dict[str, dict[str, float]]:
    """Per missing condition: MSE and cosine of the generated rows against the true rows."""
    return {cond: _errors(filled, zf, avail) for cond, _, avail, filled, zf in
            completions(model, z, present, seed)}


@torch.no_grad()
def head_scores(model: ADMCModel, rows: torch.Tensor, i: int, y: np.ndarray) -> dict[str, float]:
    """WA/UA/F1 of modality ``i``'s frozen unimodal head on standardized rows ``[n, E]``."""
    head = model.encoders[model.schema.modalities[i].name].head.eval()
    logits = head(rows * model.emb_std[i] + model.emb_mean[i])
    return scores(y, logits.argmax(-1).cpu().numpy())


@torch.no_grad()
def head_ua(model: ADMCModel, filled: torch.Tensor, mask, y: np.ndarray) -> float:
    """UA of the frozen unimodal heads on the generated rows, averaged over the missing modalities."""
    return float(np.mean([head_scores(model, filled[:, i], i, y)["ua"] for i in range(model.M) if not mask[i]]))


def generated_features(model: ADMCModel, z: torch.Tensor, present: torch.Tensor, labels: np.ndarray,
                       seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Paper Table 4, per missing condition and per generated modality (``{cond: {modality: {"wa",
    "ua", "mse", "cos"}}}``): the frozen unimodal head of that modality classifying its generated rows,
    beside their error against the true rows; samples with every modality, completed as the model's
    completer is set (:meth:`ADMCModel.using_start_step`)."""
    y = labels[_full_rows(z, present).cpu().numpy()]
    out: dict = {}
    for cond, mask, avail, filled, zf in completions(model, z, present, seed):
        out[cond] = {}
        for i, name in enumerate(model.schema.names):
            if not mask[i]:
                s = head_scores(model, filled[:, i], i, y)
                err = _errors(filled[:, i : i + 1], zf[:, i : i + 1], avail[:, i : i + 1])
                out[cond][name] = {"wa": s["wa"], "ua": s["ua"], **err}
    return out


def real_features(model: ADMCModel, z: torch.Tensor, present: torch.Tensor, labels: np.ndarray) -> dict:
    """The reference of :func:`generated_features`: each head on the true rows of the same samples."""
    full = _full_rows(z, present)
    y = labels[full.cpu().numpy()]
    out = {}
    for i, name in enumerate(model.schema.names):
        s = head_scores(model, z[full][:, i], i, y)
        out[name] = {"wa": s["wa"], "ua": s["ua"]}
    return out


def completion_scores(model: ADMCModel, z: torch.Tensor, present: torch.Tensor, labels: np.ndarray | None,
                      seed: int) -> tuple[float, float | None]:
    """Means over the missing conditions of the completion MSE and (given labels) of the UA of the
    frozen unimodal heads on the generated rows (paper Table 4's measure), from one completion pass."""
    y = None if labels is None else labels[_full_rows(z, present).cpu().numpy()]
    mse, ua = [], []
    for _, mask, avail, filled, zf in completions(model, z, present, seed):
        mse.append(_errors(filled, zf, avail)["mse"])
        if y is not None:
            ua.append(head_ua(model, filled, mask, y))
    return float(np.mean(mse)), (float(np.mean(ua)) if ua else None)


def completion_report(model: ADMCModel, z: torch.Tensor, present: torch.Tensor, labels: np.ndarray,
                      ridge: RidgeCompleter | None, seed: int) -> dict[str, dict[str, float]]:
    y = labels[_full_rows(z, present).cpu().numpy()]
    out = {}
    for cond, mask, avail, filled, zf in completions(model, z, present, seed):
        out[cond] = {**_errors(filled, zf, avail), "mse_zero": float((zf[~avail] ** 2).mean())}
        if ridge is not None:
            ridge_filled = torch.from_numpy(ridge.complete(zf.cpu().numpy(), mask)).to(z.device)
            out[cond]["mse_ridge"] = float(((ridge_filled[~avail] - zf[~avail]) ** 2).mean())
        out[cond]["ua_generated"] = head_ua(model, filled, mask, y)
    return out
