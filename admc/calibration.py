"""Calibrated class probabilities and when to abstain (docs/calibration.md).

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): the fusion
output's logits are divided by one temperature ``T`` per availability condition, fitted on the
validation split by minimising the negative log-likelihood.  One scalar per condition leaves every
argmax as it is and changes only how confident the probabilities are.  A window is *uncertain* when
its calibrated max probability is below ``abstain_below`` (chosen on validation:
:func:`choose_abstain_threshold`).

* :class:`TemperatureScaling` -- the fitted values, buffers of the model (``calibration.*`` in
  ``model.safetensors``; a run saved without them loads with T = 1 and never abstains).
* :func:`fit_temperature`, :func:`expected_calibration_error`, :func:`reliability_diagram` -- on
  plain arrays.
* :func:`fit_calibration` -- fits a trained model's temperatures and abstain threshold on its
  validation embeddings (the end of ``admc train``) and says what it did (:class:`CalibrationReport`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from admc.config import CalibrationConfig


class CalibratedClassifier(Protocol):
    """What :func:`fit_calibration` needs of a model (an :class:`admc.pipeline.ADMCModel`): its
    calibration module, its modality count, its fused logits and its conditions' names."""

    calibration: "TemperatureScaling"
    M: int

    def predict_logits(self, z: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None,
                       **kw) -> torch.Tensor: ...

    def condition_name(self, mask) -> str: ...

T_MIN, T_MAX = 0.1, 10.0   # the temperatures a fit may choose
MIN_SAMPLES = 10           # a condition with fewer validation samples keeps T = 1
ECE_BINS = 15


# ---- on arrays -------------------------------------------------------------------------------------

def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _nll(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    s = logits / t
    s = s - s.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(labels)), labels]))


def minimise_temperature(nll) -> float:
    """The temperature in [T_MIN, T_MAX] minimising ``nll(T)`` (bounded scalar search on log T; the
    NLL of softmax(logits / T) is unimodal in it); 1 unless the fit is really better (the bounded
    search never evaluates T = 1 itself)."""
    res = minimize_scalar(lambda lt: nll(math.exp(lt)), bounds=(math.log(T_MIN), math.log(T_MAX)),
                          method="bounded", options={"xatol": 1e-4})
    t = float(math.exp(res.x))
    return t if nll(t) < nll(1.0) else 1.0


def fit_temperature(logits, labels) -> float:
    """The temperature in [T_MIN, T_MAX] minimising the NLL of ``softmax(logits / T)``."""
    z = _np(logits).astype(np.float64)
    y = _np(labels).astype(np.int64)
    if len(y) == 0:
        return 1.0
    return minimise_temperature(lambda t: _nll(z, y, t))


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of a reliability diagram: ``[lower, upper)`` (the last bin includes 1)."""

    lower: float
    upper: float
    count: int
    confidence: float | None   # mean max probability of its samples (None: empty bin)
    accuracy: float | None     # fraction of its samples whose argmax is right (None: empty bin)


def reliability_diagram(probs, labels, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Per equal-width confidence bin: count, mean confidence and accuracy of the argmax."""
    p = _np(probs).astype(np.float64)
    y = _np(labels).astype(np.int64)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        out.append(ReliabilityBin(b / bins, (b + 1) / bins, n, float(conf[sel].mean()) if n else None,
                                  float(correct[sel].mean()) if n else None))
    return out


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """ECE (fraction, 0..1): the count-weighted mean |accuracy - confidence| over equal-width bins."""
    diagram = reliability_diagram(probs, labels, bins)
    n = sum(b.count for b in diagram)
    if n == 0:
        return 0.0
    return float(sum(b.count / n * abs(b.accuracy - b.confidence) for b in diagram if b.count))


def negative_log_likelihood(probs, labels) -> float:
    """Mean -log p(true class) of probabilities ``[n, C]`` (clipped at 1e-12)."""
    p = _np(probs).astype(np.float64)
    y = _np(labels).astype(np.int64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean()) if len(y) else 0.0


def risk_coverage(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve of selective classification (Geifman and El-Yaniv 2017): keeping the
    ``k`` most confident predictions, k = 1..n, the coverage ``k / n`` and the error rate among them.
    Ties in confidence are broken against the classifier (errors first), so a constant confidence
    earns nothing."""
    c = _np(confidence).astype(np.float64)
    ok = _np(correct).astype(bool)
    order = np.lexsort((ok, -c))          # most confident first; among equals, errors first
    errors = np.cumsum(~ok[order])
    k = np.arange(1, len(c) + 1)
    return k / len(c), errors / k


def area_under_risk_coverage(confidence, correct) -> float:
    """AURC (fraction, 0..1; lower is better): the mean error rate over the coverages 1/n .. 1 of
    :func:`risk_coverage`.  A confidence that orders every error after every correct prediction gets
    the least possible AURC for its accuracy."""
    if len(_np(correct)) == 0:
        return 0.0
    return float(risk_coverage(confidence, correct)[1].mean())


def choose_abstain_threshold(confidence, correct, keep: float) -> float:
    """The highest threshold ``t`` such that at least ``keep`` of the correct predictions have
    confidence >= ``t`` (so abstaining below ``t`` gives up at most ``1 - keep`` of them)."""
    c = np.sort(_np(confidence)[_np(correct).astype(bool)])
    if len(c) == 0:
        return 0.0
    return float(c[min(len(c) - 1, int(math.floor((1.0 - keep) * len(c) + 1e-9)))])


# ---- the model's part ------------------------------------------------------------------------------

def pattern_index(avail: torch.Tensor) -> torch.Tensor:
    """Row of each availability mask ``[n, M]`` in a per-pattern table: mask bits - 1."""
    bits = 2 ** torch.arange(avail.shape[1], device=avail.device)
    return (avail.long() * bits).sum(dim=1) - 1


class TemperatureScaling(nn.Module):
    """One temperature per availability pattern and the abstain threshold (buffers).

    ``temperature[pattern_index(mask)]`` scales that pattern's logits; all ones (the default, and
    what a run saved before calibration existed gets) is the uncalibrated model.  ``abstain_below``
    0 (the default) never abstains."""

    def __init__(self, n_modalities: int):
        super().__init__()
        self.register_buffer("temperature", torch.ones(2 ** n_modalities - 1))
        self.register_buffer("abstain_below", torch.zeros(()))

    def temperature_of(self, mask) -> float:
        return float(self.temperature[int(pattern_index(torch.tensor([list(mask)], dtype=torch.bool))[0])])

    def set_temperature(self, mask, value: float) -> None:
        self.temperature[int(pattern_index(torch.tensor([list(mask)], dtype=torch.bool))[0])] = float(value)

    def forward(self, logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """``logits [n, C]`` of samples with availability ``avail [n, M]``, divided by their pattern's T."""
        return logits / self.temperature[pattern_index(avail.bool())].to(logits.dtype)[:, None]


@dataclass(frozen=True)
class ConditionCalibration:
    """One availability condition on the validation split; ECE in percent (``ECE_BINS`` bins)."""

    samples: int
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


@dataclass(frozen=True)
class AbstainChoice:
    """The abstain threshold and what it does on the validation windows (every condition pooled;
    accuracies in percent, None where there is no window)."""

    threshold: float
    chosen: str                       # "validation" (from keep) or "config" (calibration.abstain_below)
    keep: float | None                # the fraction of correct windows kept, when chosen on validation
    windows: int
    confident_fraction: float         # share of validation windows not uncertain
    accuracy_all: float | None
    accuracy_confident: float | None
    accuracy_uncertain: float | None


@dataclass(frozen=True)
class CalibrationReport:
    """What :func:`fit_calibration` fitted; ``to_json`` is run.json's ``train.calibration``."""

    conditions: dict[str, ConditionCalibration]
    abstain: AbstainChoice

    def to_json(self) -> dict:
        return {"conditions": {k: asdict(v) for k, v in self.conditions.items()}, "abstain": asdict(self.abstain)}


def _pct(x) -> float | None:
    return None if x is None else round(100.0 * float(x), 2)


def _accuracy(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if len(correct) else None


@torch.no_grad()
def fit_calibration(model: CalibratedClassifier, z: torch.Tensor, present: torch.Tensor, labels: np.ndarray,
                    cfg: "CalibrationConfig", seed: int) -> CalibrationReport:
    """Fit ``model.calibration`` on validation embeddings ``z [n, M, E]`` / ``present [n, M]``:
    for every availability pattern, the samples that have its modalities, the fusion output's
    logits, one temperature (``cfg.temperature``; at least ``MIN_SAMPLES`` samples); then the
    abstain threshold on the calibrated max probabilities of all those windows."""
    from admc.masks import all_masks

    y_all = torch.as_tensor(labels, device=z.device).long()
    conditions: dict[str, ConditionCalibration] = {}
    conf_parts, correct_parts = [], []
    model.calibration.temperature.fill_(1.0)
    for k, mask in enumerate(all_masks(model.M)):
        m = torch.tensor(mask, device=z.device)
        rows = torch.nonzero((present | ~m).all(dim=1)).flatten()
        if len(rows) == 0:
            continue
        avail = m.expand(len(rows), -1)
        gen = torch.Generator().manual_seed(seed * 7919 + 104729 + k)
        logits = model.predict_logits(z[rows], avail, gen).double()
        y = y_all[rows]
        t = fit_temperature(logits, y) if cfg.temperature and len(rows) >= MIN_SAMPLES else 1.0
        model.calibration.set_temperature(mask, t)
        before, after = torch.softmax(logits, -1), torch.softmax(logits / t, -1)
        nll = nn.functional.cross_entropy
        conditions[model.condition_name(mask)] = ConditionCalibration(
            samples=len(rows), temperature=round(t, 4),
            ece_before=_pct(expected_calibration_error(before, y)),
            ece_after=_pct(expected_calibration_error(after, y)),
            nll_before=round(float(nll(logits, y)), 4), nll_after=round(float(nll(logits / t, y)), 4))
        conf_parts.append(_np(after.max(dim=1).values))
        correct_parts.append(_np(after.argmax(dim=1) == y))
    conf = np.concatenate(conf_parts) if conf_parts else np.zeros(0)
    correct = np.concatenate(correct_parts) if correct_parts else np.zeros(0, bool)
    if cfg.abstain_below is None:
        threshold, chosen, keep = (choose_abstain_threshold(conf, correct, cfg.abstain_keep), "validation",
                                   cfg.abstain_keep)
    else:
        threshold, chosen, keep = float(cfg.abstain_below), "config", None
    model.calibration.abstain_below.fill_(threshold)
    sure = conf >= threshold
    abstain = AbstainChoice(
        threshold=round(threshold, 6), chosen=chosen, keep=keep, windows=len(conf),
        confident_fraction=round(float(sure.mean()), 4) if len(conf) else 0.0,
        accuracy_all=_pct(_accuracy(correct)), accuracy_confident=_pct(_accuracy(correct[sure])),
        accuracy_uncertain=_pct(_accuracy(correct[~sure])))
    return CalibrationReport(conditions, abstain)
