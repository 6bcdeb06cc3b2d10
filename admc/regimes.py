"""What a run trains on: the train split reduced as :class:`~admc.config.DataConfig` says.

- :func:`random_missing_mask`: the CPM-Nets protocol (Zhang et al., NeurIPS 2019): a fraction of the
  (sample, modality) entries is missing, every sample keeping at least one modality.  The evaluation
  draws test-time missing patterns with it too (``admc evaluate --missing-rates``).
- :func:`labelled_indices`: a stratified fraction of the samples keeps its label.

Both are drawn from the run's seed, so every method of one ``admc bench`` seed sees the same reduced
split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from admc.config import DataConfig
from admc.data import Split
from admc.runtime import log

if TYPE_CHECKING:
    import torch


def random_missing_mask(present: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Drop (sample, modality) entries at random so that ``rate`` of all entries are missing while
    every sample keeps at least one modality.  Entries already missing in the data count as missing."""
    n, M = present.shape
    avail = present.copy()
    target = int(round(rate * n * M))
    need = target - int((~avail).sum())
    if need <= 0:
        return avail
    order = rng.permutation(np.flatnonzero(avail.ravel()))
    counts = avail.sum(axis=1)
    for flat in order:
        if need == 0:
            break
        i, j = divmod(int(flat), M)
        if counts[i] > 1:
            avail[i, j] = False
            counts[i] -= 1
            need -= 1
    if need > 0:
        log(f"missing rate {rate}: only {target - need} of {target} entries could be dropped "
            "(every sample keeps one modality)")
    return avail


def labelled_indices(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``fraction`` of the samples, per class (at least one of every class present)."""
    if fraction >= 1:
        return np.arange(len(labels))
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(idx))))
        keep.append(rng.choice(idx, k, replace=False))
    return np.sort(np.concatenate(keep))


@dataclass
class TrainingData:
    """The train split a run learns from: modalities dropped per the protocol (``split.present``),
    and which samples keep their labels (``labelled``, indices into ``split``)."""

    split: Split
    labelled: np.ndarray

    @property
    def labelled_split(self) -> Split:
        return self.split if len(self.labelled) == len(self.split) else self.split.subset(self.labelled)


def training_data(train: Split, names: list[str], cfg: DataConfig, seed: int) -> TrainingData:
    split = train
    if cfg.train_missing_rate > 0:
        rng = np.random.default_rng([seed, 7, int(round(cfg.train_missing_rate * 1000))])
        avail = random_missing_mask(train.presence_matrix(names), cfg.train_missing_rate, rng)
        split = replace(train, present={m: avail[:, i].copy() for i, m in enumerate(names)})
        full = int(avail.all(axis=1).sum())
        log(f"train split: {cfg.train_missing_rate:g} of the modality entries missing "
            f"({full} of {len(avail)} samples keep every modality)")
    labelled = labelled_indices(train.labels, cfg.label_fraction, np.random.default_rng([seed, 11]))
    if len(labelled) < len(train):
        log(f"train split: labels kept on {len(labelled)} of {len(train)} samples")
    return TrainingData(split, labelled)


@dataclass(frozen=True)
class EmbeddedTraining:
    """The training split as a run trained on it (:func:`training_data`) and ``model.embed`` of it:
    what ``admc calibrate`` reads for both the neighbours' bank and the refitted OOD models."""

    data: TrainingData
    z: "torch.Tensor"                   # [n, M, E] standardized embeddings (missing rows 0)
    present: "torch.Tensor"             # [n, M] bool


def training_embedding(model, train: Split) -> EmbeddedTraining:
    """The split ``train`` reduced as ``model``'s run trained on it (its ``config.data``), and its
    embeddings; the encoders alone make them, whatever the completer."""
    data = training_data(train, model.schema.names, model.cfg.data, model.cfg.seed)
    z, present = model.embed(data.split)
    return EmbeddedTraining(data, z, present)
