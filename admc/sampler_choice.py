"""Choose, on validation, how a trained ADN completes: with its own sampler or with its linear prior's
estimate alone (``adn.sampler=prior``), and switch a trained model to it (``admc calibrate --sampler``).

The rule (issue 25, "wins on validation, or ties at lower cost"): the prior alone unless the ADN's own
sampler completes the validation split's missing rows with a lower mean squared error (the number
``admc train`` selects the denoiser on, :func:`admc.diffusion.training.val_completion_mse`); a tie goes
to the prior, which needs no denoiser call.  Only the completer changes: the caller refits the
temperatures and the abstain threshold for it (:func:`admc.train.refit_trust`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from admc.diffusion.process import Diffusion
from admc.diffusion.training import val_completion_mse

AUTO = "auto"


class SamplerChoiceError(ValueError):
    """A run whose completer cannot switch samplers; the message names the run's method."""


@dataclass(frozen=True)
class SamplerChoice:
    sampler: str                        # what the model completes with from now on
    trained: str                        # the sampler it was trained and saved with
    rule: str                           # "auto" (validation) or "given" (--sampler NAME)
    val_mse: dict[str, float]           # sampler -> validation completion MSE (auto only)

    def to_json(self) -> dict:
        return {"sampler": self.sampler, "trained": self.trained, "rule": self.rule,
                "val_completion_mse": {k: round(v, 6) for k, v in self.val_mse.items()}}


def switchable(model) -> Diffusion:
    """The model's ADN if its sampler can be switched (the conditional or regress variant with the
    linear prior), else :class:`SamplerChoiceError`."""
    completer = getattr(model, "completer", None)
    cfg = getattr(completer, "cfg", None)
    if not isinstance(completer, Diffusion) or cfg.variant == "paper" or cfg.prior != "linear":
        raise SamplerChoiceError(f"--sampler applies to a run completed by the conditional ADN with its linear "
                                 f"prior (method admc or regress_fill); this run is method {model.cfg.method}")
    return completer


def choose_sampler(model, full_val: torch.Tensor, sampler: str = AUTO) -> SamplerChoice:
    """The sampler ``model`` should complete with: ``sampler`` itself, or with ``auto`` the rule above
    on ``full_val`` (standardized embeddings ``[n, M, E]`` of validation samples with every modality)."""
    adn = switchable(model)
    trained = adn.cfg.sampler
    if sampler != AUTO:
        return SamplerChoice(sampler, trained, "given", {})
    candidates = [trained] if trained == "prior" else [trained, "prior"]
    mse = {s: val_completion_mse(adn.with_sampler(s), full_val, model.cfg.seed) for s in candidates}
    best = "prior" if mse["prior"] <= mse[trained] else trained
    return SamplerChoice(best, trained, AUTO, mse)


def use_sampler(model, sampler: str) -> None:
    """Make ``model`` complete with ``sampler`` (its config too, so a saved run says what it runs)."""
    adn = switchable(model)
    adn_cfg = replace(model.cfg.adn, sampler=sampler)       # checks the name
    model.cfg = replace(model.cfg, adn=adn_cfg)
    view = adn.with_sampler(sampler)
    view.cfg = adn_cfg
    model.set_completer(view)
