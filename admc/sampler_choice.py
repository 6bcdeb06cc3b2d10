"""Choose, on validation, how a trained ADN completes: with its own sampler or with its linear prior's
estimate alone (``adn.sampler=prior``), and switch a trained model to it (``admc calibrate --sampler``).

The rule (issue 25, "wins on validation, or ties at lower cost"): the run's own sampler only if the
model classifies the validation split better with it, by UA averaged over every availability pattern
(what the app shows; full input included, where MMER's cross-generated rows come from the completer);
otherwise, a tie included, the prior alone, which needs no denoiser call.  The completion error of
each (:func:`admc.diffusion.training.val_completion_mse`) is recorded beside it: it is what the ADN was
selected on, and a lower one need not classify better (the fusion learnt from the ADN's completions).
Only the completer changes: the caller refits the temperatures and the abstain threshold for it
(:func:`admc.train.refit_trust`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from admc.diffusion.process import Diffusion
from admc.diffusion.training import val_completion_mse
from admc.evaluate import evaluate

AUTO = "auto"


class SamplerChoiceError(ValueError):
    """A run whose completer cannot switch samplers; the message names the run's method."""


@dataclass(frozen=True)
class SamplerChoice:
    sampler: str                        # what the model completes with from now on
    trained: str                        # the sampler it was trained and saved with
    rule: str                           # "auto" (validation) or "given" (--sampler NAME)
    val_ua: dict[str, float]            # sampler -> validation UA, mean over the patterns (auto only)
    val_mse: dict[str, float]           # sampler -> validation completion MSE (auto only)

    def to_json(self) -> dict:
        return {"sampler": self.sampler, "trained": self.trained, "rule": self.rule,
                "val_ua": {k: round(v, 4) for k, v in self.val_ua.items()},
                "val_completion_mse": {k: round(v, 6) for k, v in self.val_mse.items()}}


def switchable(model) -> Diffusion:
    """The model's ADN if its sampler can be switched (the conditional or regress variant with the
    linear prior), else :class:`SamplerChoiceError`."""
    completer = getattr(model, "completer", None)
    cfg = getattr(completer, "cfg", None)
    if not isinstance(completer, Diffusion) or cfg.variant == "paper" or cfg.prior != "linear":
        method = getattr(getattr(model, "cfg", None), "method", type(model).__name__)
        raise SamplerChoiceError(f"--sampler applies to a run completed by the conditional ADN with its linear "
                                 f"prior (method admc or regress_fill); this run is method {method}")
    return completer


def keep_trained(val_ua: dict[str, float], trained: str) -> bool:
    """The rule: the trained sampler stays only if it classifies validation strictly better than the prior."""
    return trained != "prior" and val_ua[trained] > val_ua["prior"]


def validation_ua(model, split, embedded: tuple[torch.Tensor, torch.Tensor]) -> float:
    """UA of ``model`` on ``split`` (``embedded``: its ``model.embed``), averaged over every availability
    pattern, full input included, as ``admc eval`` scores each (:func:`admc.evaluate.evaluate`)."""
    res = evaluate(model, split, model.cfg.seed, embedded=embedded)
    return float(np.mean([s["ua"] for s in res["conditions"].values()] + [res["full"]["ua"]]))


def choose_sampler(model, val, sampler: str = AUTO) -> SamplerChoice:
    """The sampler ``model`` should complete with: ``sampler`` itself, or with ``auto`` the rule above
    on the validation split ``val`` (completion errors on its samples with every modality).  The model
    is left as it was."""
    adn = switchable(model)
    trained = adn.cfg.sampler
    if sampler != AUTO:
        return SamplerChoice(sampler, trained, "given", {}, {})
    cfg = model.cfg
    z, present = model.embed(val)
    ua, mse = {}, {}
    for s in dict.fromkeys([trained, "prior"]):
        use_sampler(model, s)
        ua[s] = validation_ua(model, val, (z, present))
        mse[s] = val_completion_mse(model.completer, z[present.all(dim=1)], cfg.seed)
    model.cfg = cfg
    model.set_completer(adn)
    return SamplerChoice(trained if keep_trained(ua, trained) else "prior", trained, AUTO, ua, mse)


def use_sampler(model, sampler: str) -> None:
    """Make ``model`` complete with ``sampler`` (its config too, so a saved run says what it runs)."""
    adn = switchable(model)
    adn_cfg = replace(model.cfg.adn, sampler=sampler)       # checks the name
    model.cfg = replace(model.cfg, adn=adn_cfg)
    view = adn.with_sampler(sampler)
    view.cfg = adn_cfg
    model.set_completer(view)
