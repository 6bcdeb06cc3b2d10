"""Marginalize over completions: classify K sampled completions of the missing rows and average the
probabilities, instead of classifying one point estimate of them (the plug-in).

A generative completer draws from p(missing | available); a regression gives one point, its mean.
When that conditional is multi-modal (two plausible faces for one voice) the mean can be a point no
real sample is near, and the classifier's answer there says nothing about either mode. Averaging the
classifier over samples estimates p(y | available) = E[p(y | available, missing)] instead. The K
member predictions also give an uncertainty signal: how much they disagree.

- :func:`sampled_logits`: the fusion logits of K completions ``[K, n, C]`` (one availability
  pattern at a time, any completer with ``complete``); :func:`completion_logits` the same for K
  completions drawn elsewhere.
- :class:`MarginalPrediction`: their average probabilities (at a temperature) and the uncertainty
  readings (max probability, agreement of the members' votes, mutual information).
- :func:`fit_marginal_temperature`: one temperature for the members' logits, fitted on the NLL of
  the averaged probabilities (as :func:`admc.calibration.fit_temperature` is for one logit set).

The study that measures it is ``benchmarks/completion_paired.py`` (docs/completion.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from admc.calibration import minimise_temperature, negative_log_likelihood


@torch.no_grad()
def sampled_logits(model, completer, z: torch.Tensor, avail: torch.Tensor, samples: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``[K, n, C]`` uncalibrated fusion logits of ``samples`` completions by ``completer`` of
    ``z [n, M, E]`` where ``avail [n, M]`` (one pattern, at least one row missing) is False, classified
    by ``model``'s fusion network for that pattern."""
    avail = avail.bool()
    if bool(avail.all(dim=1).any()) or len(torch.unique(avail, dim=0)) != 1:
        raise ValueError("sampled_logits needs one availability pattern with a missing modality")
    return torch.stack([model.fusion_logits(completer.complete(z * avail[..., None], avail, generator), avail)
                        for _ in range(int(samples))])


@torch.no_grad()
def completion_logits(model, completions: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """``[K, n, C]`` uncalibrated fusion logits of K given completions ``[K, n, M, E]`` of samples that
    share the availability pattern ``avail [n, M]`` (drawn by any sampler, e.g. training neighbours)."""
    return torch.stack([model.fusion_logits(c, avail.bool()) for c in completions])


def _array(logits) -> np.ndarray:
    return np.asarray(logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits, dtype=np.float64)


def fit_marginal_temperature(logits, labels) -> float:
    """The temperature in [T_MIN, T_MAX] minimising the NLL of the mean over K of
    ``softmax(logits_k / T)`` (``logits [K, n, C]``); 1 unless the fit is really better."""
    z = _array(logits)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    return minimise_temperature(lambda t: negative_log_likelihood(MarginalPrediction.from_logits(z, t).probs, y))


@dataclass(frozen=True)
class MarginalPrediction:
    """K member predictions of the same samples and their average."""

    member_probs: np.ndarray   # [K, n, C], each member's softmax at the temperature

    @classmethod
    def from_logits(cls, logits, temperature: float = 1.0) -> "MarginalPrediction":
        s = _array(logits) / float(temperature)
        s = s - s.max(axis=-1, keepdims=True)
        p = np.exp(s)
        return cls(p / p.sum(axis=-1, keepdims=True))

    @property
    def probs(self) -> np.ndarray:
        """[n, C] the marginal: the members' mean probabilities."""
        return self.member_probs.mean(axis=0)

    @property
    def confidence(self) -> np.ndarray:
        """[n] max of the marginal probabilities."""
        return self.probs.max(axis=1)

    @property
    def agreement(self) -> np.ndarray:
        """[n] share of the members whose own argmax is the marginal's argmax."""
        votes = self.member_probs.argmax(axis=2)
        return (votes == self.probs.argmax(axis=1)[None]).mean(axis=0)

    @property
    def agreement_then_confidence(self) -> np.ndarray:
        """[n] an abstention order by :attr:`agreement`, ties (K + 1 possible values) broken by
        :attr:`confidence`."""
        return self.agreement + 1e-3 * self.confidence

    @property
    def mutual_information(self) -> np.ndarray:
        """[n] entropy of the mean minus the mean entropy of the members (nats): the part of the
        predictive uncertainty that comes from not knowing the missing rows."""
        def entropy(p):
            return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)
        return entropy(self.probs) - entropy(self.member_probs).mean(axis=0)
