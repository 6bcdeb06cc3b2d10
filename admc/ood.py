"""Out-of-distribution score per modality in the ITFN embedding space (docs/calibration.md).

A modality's score is the Mahalanobis distance of its ITFN embedding (the encoder's output, before
the per-dimension standardization) to the nearest class mean, under one covariance shared by the
classes (tied) and shrunk by Ledoit-Wolf (Lee et al., NeurIPS 2018, use the same tied-covariance
distance on a classifier's features).  Means and covariance come from the training embeddings of
that modality; the threshold is a quantile (``calibration.ood_quantile``, default 0.99) of the
distances of the validation embeddings, so about 1% of in-distribution validation rows score above it.

Why not the standardized embeddings the ADN works in: a unit that almost never fires on the
training set has a tiny standard deviation, so a validation row where it fires lands hundreds of
units away after standardizing (measured on the synthetic test data: validation maxima up to 2400
against medians of 13, and 17% of one modality's in-distribution test rows above the 0.99
threshold); in the raw embedding space the same rows stay within 2x the median and 0-3% are flagged.

* :class:`MahalanobisOOD` -- the fitted values, buffers of the model (``ood.*`` in
  ``model.safetensors``; a run saved without them has no OOD model: nothing is flagged).
* :func:`fit_ood` -- fits it on a trained model's embeddings and says what it did (:class:`OODReport`).

The embedding score only sees what the encoder was trained to tell apart: an encoder that learnt
emotion from acted speech maps a flat synthetic voice close to a class mean (espeak-ng reading
neutral sentences: median score 25.7 against a threshold of 25.2 for the starter's A).  A second
score, on the window's *input* features, catches such a covariate shift:

* :class:`InputOOD` -- per modality, two statistics of the standardized pooled input (mean and std
  over the rows; a vector modality as it is) against the top ``k`` principal axes of the training
  samples: the whitened distance inside that subspace and the error outside it, the larger of the
  two in units of its validation quantile; threshold the same quantile of the validation scores.
  On the starter's speech windows (k = 32) the error outside alone passes 96.6% of the test
  speakers' windows and flags every espeak window (median 1.6x its threshold).  ``ood_input.*``.
* :func:`fit_input_ood` -- fits it on the training and validation splits.

The policy (an out-of-distribution modality is treated as missing; a window whose present
modalities are all out of distribution is uncertain) is :func:`admc.pipeline.predict_window`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from torch import nn

from admc.data import Schema, Split
from admc.pooling import pool_rows, pooled_dim, pooled_inputs


class MahalanobisOOD(nn.Module):
    """Per modality: class means ``[C, E]``, the shrunk tied precision matrix ``[E, E]``, the
    threshold and whether it was fitted (buffers; ``fitted`` False scores NaN and flags nothing)."""

    def __init__(self, n_modalities: int, n_classes: int, dim: int):
        super().__init__()
        self.register_buffer("means", torch.zeros(n_modalities, n_classes, dim))
        self.register_buffer("precision", torch.eye(dim).repeat(n_modalities, 1, 1))
        self.register_buffer("threshold", torch.zeros(n_modalities))
        self.register_buffer("fitted", torch.zeros(n_modalities, dtype=torch.bool))

    @torch.no_grad()
    def distance(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance ``[n]`` of rows ``x [n, E]`` of modality ``i`` to its nearest class mean."""
        p = self.precision[i].double()
        mu = self.means[i].double()
        x = x.double()
        xp = x @ p
        d2 = (xp * x).sum(dim=1, keepdim=True) - 2.0 * xp @ mu.T + ((mu @ p) * mu).sum(dim=1)[None]
        return d2.clamp_min(0).min(dim=1).values.sqrt()

    @torch.no_grad()
    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """Scores ``[n, M]`` of ITFN embeddings ``z [n, M, E]`` (NaN: no OOD model for that modality)."""
        out = torch.full(z.shape[:2], float("nan"), dtype=torch.float64, device=z.device)
        for i in range(z.shape[1]):
            if bool(self.fitted[i]):
                out[:, i] = self.distance(i, z[:, i])
        return out

    @torch.no_grad()
    def out_of_distribution(self, scores: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """``[n, M]``: present (``avail``), fitted and scoring above its modality's threshold."""
        return avail.bool() & self.fitted[None] & (scores > self.threshold.double()[None])


@dataclass(frozen=True)
class ModalityOODFit:
    """One modality's OOD model: what it was fitted on and where its threshold lies."""

    train_samples: int
    val_samples: int
    shrinkage: float            # Ledoit-Wolf's weight of the scaled identity in the covariance
    quantile: float
    threshold: float
    train_median: float         # median distance of the training rows (they shaped the means)
    val_median: float
    val_out: float              # fraction of validation rows above the threshold (about 1 - quantile)


@dataclass(frozen=True)
class OODReport:
    """What :func:`fit_ood` fitted; ``to_json`` is run.json's ``train.ood``."""

    quantile: float | None
    modalities: dict[str, ModalityOODFit | None]   # None: no OOD model (switched off or too few rows)

    def to_json(self) -> dict:
        return {"quantile": self.quantile,
                "modalities": {k: (asdict(v) if v is not None else None) for k, v in self.modalities.items()}}


@torch.no_grad()
def fit_modality(ood: MahalanobisOOD, i: int, train_rows: torch.Tensor, train_labels: np.ndarray,
                 val_rows: torch.Tensor, quantile: float) -> ModalityOODFit | None:
    """Fit modality ``i``: class means and Ledoit-Wolf tied covariance of ``train_rows [n, E]``
    (``train_labels``), threshold = ``quantile`` of the distances of ``val_rows``.  None (and not
    fitted) with fewer than 2 training or 1 validation rows."""
    ood.fitted[i] = False
    if len(train_rows) < 2 or len(val_rows) < 1:
        return None
    x = train_rows.detach().cpu().double().numpy()
    y = np.asarray(train_labels)
    C = ood.means.shape[1]
    seen = [c for c in range(C) if (y == c).any()]
    means = np.zeros((C, x.shape[1]))
    for c in seen:
        means[c] = x[y == c].mean(axis=0)
    for c in set(range(C)) - set(seen):   # a class without training rows repeats a seen one: the minimum is unchanged
        means[c] = means[seen[0]]
    lw = LedoitWolf(assume_centered=True).fit(x - means[y])
    ood.means[i] = torch.from_numpy(means).to(ood.means)
    ood.precision[i] = torch.from_numpy(lw.precision_).to(ood.precision)
    d_val = ood.distance(i, val_rows).cpu().numpy()
    d_tr = ood.distance(i, train_rows).cpu().numpy()
    threshold = float(np.quantile(d_val, quantile))
    ood.threshold[i] = threshold
    ood.fitted[i] = True
    return ModalityOODFit(train_samples=len(x), val_samples=len(d_val), shrinkage=round(float(lw.shrinkage_), 6),
                          quantile=quantile, threshold=round(threshold, 6),
                          train_median=round(float(np.median(d_tr)), 4), val_median=round(float(np.median(d_val)), 4),
                          val_out=round(float((d_val > threshold).mean()), 4))


@torch.no_grad()
def fit_ood(ood: MahalanobisOOD, names: list[str], z_tr: torch.Tensor, p_tr: torch.Tensor, y_tr: np.ndarray,
            z_va: torch.Tensor, p_va: torch.Tensor, quantile: float | None) -> OODReport:
    """Fit every modality of ``ood`` on the training ITFN embeddings ``z_tr [n, M, E]`` where present
    (``p_tr``, labels ``y_tr``) with thresholds from the validation ones; ``quantile`` None: none fitted."""
    ood.fitted.fill_(False)
    fits: dict[str, ModalityOODFit | None] = {}
    for i, name in enumerate(names):
        if quantile is None:
            fits[name] = None
            continue
        tr = p_tr[:, i].cpu().numpy().astype(bool)
        va = p_va[:, i].bool()
        fits[name] = fit_modality(ood, i, z_tr[torch.from_numpy(tr).to(z_tr.device), i], np.asarray(y_tr)[tr],
                                  z_va[va, i], quantile)
    return OODReport(quantile, fits)


# ---- input features ---------------------------------------------------------------------------------

class InputSubspace(nn.Module):
    """One modality's input model (buffers): standardization, ``k`` principal axes with their
    variances, the two statistics' validation scales and the threshold.

    The score is the larger of two statistics of the standardized pooled input (the T^2 and Q pair
    of PCA process monitoring), each divided by its validation quantile: the distance inside the
    principal subspace (whitened: a stream far along a usual direction, e.g. rows that do not vary
    at all) and the error outside it (a direction the training samples never took)."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        # float32 like the rest of the weights (the starter's size budget); the statistics run in float64
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("components", torch.zeros(k, dim))
        self.register_buffer("variances", torch.ones(k))
        self.register_buffer("statistic_scales", torch.ones(2))
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def statistics(self, pooled) -> np.ndarray:
        """``[n, 2]``: root mean square of the whitened coordinates inside the subspace, and of the
        residual outside it, for pooled inputs ``[n, dim]``."""
        x = (torch.as_tensor(np.asarray(pooled), dtype=torch.float64) - self.mean.double()) / self.scale.double()
        v = self.components.double()
        coords = x @ v.T
        inside = (coords.pow(2) / self.variances.double()).mean(dim=1).sqrt()
        outside = (x - coords @ v).pow(2).mean(dim=1).sqrt()
        return torch.stack([inside, outside], dim=1).numpy()

    def score(self, pooled) -> np.ndarray:
        """``[n]``: the larger statistic, each in units of its validation quantile."""
        return (self.statistics(pooled) / self.statistic_scales.double().numpy()).max(axis=1)


class InputOOD(nn.Module):
    """Per modality an :class:`InputSubspace` (``ood_input.<name>.*``); unfitted ones flag nothing."""

    def __init__(self, schema: Schema, k: int = 32):
        super().__init__()
        self.kinds = {m.name: m.kind for m in schema.modalities}
        self.spaces = nn.ModuleDict({m.name: InputSubspace(pooled_dim(m.kind, m.dim), min(k, pooled_dim(m.kind, m.dim)))
                                     for m in schema.modalities})

    @torch.no_grad()
    def score(self, name: str, x: np.ndarray) -> float | None:
        """Input score of one window's rows ``x [rows, dim]`` of modality ``name`` (None: not fitted)."""
        space = self.spaces[name]
        if not bool(space.fitted):
            return None
        return float(space.score(pool_rows(x, self.kinds[name])[None])[0])

    def out(self, name: str, score: float | None) -> bool:
        return score is not None and score > float(self.spaces[name].threshold)


@dataclass(frozen=True)
class InputOODFit:
    """One modality's input model: principal axes kept and where its threshold lies."""

    components: int
    explained: float            # fraction of the standardized training variance inside the subspace
    quantile: float
    threshold: float
    val_median: float
    val_out: float


@torch.no_grad()
def fit_input_ood(ood: InputOOD, train: Split, val: Split, quantile: float | None) -> dict[str, InputOODFit | None]:
    """Fit each modality's subspace on the training samples' pooled inputs (PCA of the standardized
    values), threshold = ``quantile`` of the validation errors; None where switched off or too few rows."""
    fits: dict[str, InputOODFit | None] = {}
    for name, space in ood.spaces.items():
        space.fitted.fill_(False)
        kind = ood.kinds[name]
        x_tr, _ = pooled_inputs(train, name, kind)
        x_va, _ = pooled_inputs(val, name, kind)
        k = space.components.shape[0]
        if quantile is None or len(x_tr) <= k or len(x_va) < 1:
            fits[name] = None
            continue
        mean, scale = x_tr.mean(axis=0), x_tr.std(axis=0)
        scale = np.where(scale > 1e-8 * max(float(scale.max()), 1e-30), scale, 1.0)  # constant dims: left as they are
        pca = PCA(k, svd_solver="full").fit((x_tr - mean) / scale)
        space.mean.copy_(torch.from_numpy(mean))
        space.scale.copy_(torch.from_numpy(scale))
        space.components.copy_(torch.from_numpy(pca.components_))
        space.variances.copy_(torch.from_numpy(np.maximum(pca.explained_variance_, 1e-12)))
        space.statistic_scales.copy_(torch.from_numpy(np.quantile(space.statistics(x_va), quantile, axis=0)).clamp_min(1e-12))
        err = space.score(x_va)
        space.threshold.fill_(float(np.quantile(err, quantile)))
        space.fitted.fill_(True)
        fits[name] = InputOODFit(components=k, explained=round(float(pca.explained_variance_ratio_.sum()), 4),
                                 quantile=quantile, threshold=round(float(space.threshold), 6),
                                 val_median=round(float(np.median(err)), 4),
                                 val_out=round(float((err > float(space.threshold)).mean()), 4))
    return fits
