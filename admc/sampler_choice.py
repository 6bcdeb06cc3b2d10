"""Choose, on validation, how a trained ADN completes: with its own sampler, with its linear prior's
estimate alone (``adn.sampler=prior``) or with the training samples nearest in the available rows
(``adn.sampler=neighbours``, hot-deck; ``neighbours_marginal``: the classifier run on each of them and
its probabilities averaged, ``adn.marginal``), and switch a trained model to it (``admc calibrate
--sampler``).

The rule (issue 25, "wins on validation, or ties at lower cost"): the candidates in order of cost, the
prior (no denoiser call), the run's own sampler (one or more denoiser calls), the neighbours (a search
of the training samples stored with the run, 1.5 KB each), their marginal (as many fusion passes as
neighbours); a candidate replaces the cheaper one chosen so far only if the model classifies the
validation split strictly better with it, by UA averaged over
every availability pattern (what the app shows; full input included, where MMER's cross-generated rows
come from the completer).  The completion error of each (:func:`admc.diffusion.training.val_completion_mse`)
is recorded beside it: it is what the ADN was selected on, and a lower one need not classify better
(the fusion learnt from the ADN's completions).  Only the completer changes: the caller refits the
temperatures and the abstain threshold for it (:func:`admc.train.refit_trust`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from admc.diffusion.process import Diffusion
from admc.diffusion.training import val_completion_mse
from admc.evaluate import evaluate
from admc.regimes import EmbeddedTraining, training_embedding

AUTO = "auto"
MARGINAL = "neighbours_marginal"      # adn.sampler=neighbours with adn.marginal


class SamplerChoiceError(ValueError):
    """A run whose completer cannot switch samplers; the message names the run's method."""


@dataclass(frozen=True)
class SamplerChoice:
    sampler: str                        # what the model completes with from now on
    trained: str                        # the sampler it was trained and saved with
    rule: str                           # "auto" (validation) or "given" (--sampler NAME)
    val_ua: dict[str, float]            # sampler -> validation UA, mean over the patterns (auto only)
    val_mse: dict[str, float]           # sampler -> validation completion MSE (auto only)
    bank: torch.Tensor | None = field(default=None, repr=False, compare=False)   # the neighbours' bank searched

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


COST_ORDER = ("prior", "mean", "ddim", "ddpm", "neighbours", MARGINAL)
"""Every sampler the rule may measure, cheapest first: the prior (no denoiser call), the ADN's own
samplers (one or more denoiser calls), the neighbours (a search of the stored training samples), their
marginal (a fusion pass per neighbour)."""


def candidates(trained: str, neighbours: bool) -> list[str]:
    """The samplers the rule measures, cheapest first: the prior, the run's own, and the two neighbour
    samplers where ``neighbours`` (a training split with full samples is given)."""
    wanted = {"prior", trained} | ({"neighbours", MARGINAL} if neighbours else set())
    return [s for s in COST_ORDER if s in wanted]


def chosen(val_ua: dict[str, float]) -> str:
    """The rule: of the measured samplers in order of cost, each replaces the cheaper one chosen so far
    only if it classifies validation strictly better (a tie keeps the cheaper)."""
    order = [s for s in COST_ORDER if s in val_ua]
    best = order[0]
    for s in order[1:]:
        if val_ua[s] > val_ua[best]:
            best = s
    return best


def validation_ua(model, split, embedded: tuple[torch.Tensor, torch.Tensor]) -> float:
    """UA of ``model`` on ``split`` (``embedded``: its ``model.embed``), averaged over every availability
    pattern, full input included, as ``admc eval`` scores each (:func:`admc.evaluate.evaluate`)."""
    res = evaluate(model, split, model.cfg.seed, embedded=embedded)
    return float(np.mean([s["ua"] for s in res["conditions"].values()] + [res["full"]["ua"]]))


def choose_sampler(model, val, sampler: str = AUTO, train=None,
                   train_embedded: EmbeddedTraining | None = None) -> SamplerChoice:
    """The sampler ``model`` should complete with: ``sampler`` itself, or with ``auto`` the rule above
    on the validation split ``val`` (completion errors on its samples with every modality); the two
    neighbour samplers are candidates when the training split ``train`` has samples with every
    modality (``train_embedded``: :func:`training_embedding`, when the caller has it).  The model is
    left as it was; the choice carries the bank it searched, for :func:`use_sampler`."""
    adn = switchable(model)
    trained = MARGINAL if adn.marginal else adn.cfg.sampler
    if sampler != AUTO:
        return SamplerChoice(sampler, trained, "given", {}, {})
    cfg = model.cfg
    bank = training_bank(model, train, train_embedded) if train is not None else None
    z, present = model.embed(val)
    ua, mse = {}, {}
    try:
        for s in candidates(trained, bank is not None):
            use_sampler(model, s, bank=bank)
            ua[s] = validation_ua(model, val, (z, present))
            mse[s] = val_completion_mse(model.completer, z[present.all(dim=1)], cfg.seed)
    finally:
        model.cfg = cfg
        model.set_completer(adn)
    return SamplerChoice(chosen(ua), trained, AUTO, ua, mse, bank)


def training_bank(model, train, embedded: EmbeddedTraining | None = None) -> torch.Tensor | None:
    """The bank of the ``neighbours`` samplers: the standardized embeddings of the samples of the
    split ``train`` with every modality, as the run trained on it (modalities a training regime
    withheld are not lent; ``embedded``: its :func:`training_embedding`, made here when not given);
    None if there are none."""
    e = embedded if embedded is not None else training_embedding(model, train)
    full = e.present.all(dim=1)
    return e.z[full] if bool(full.any()) else None


def use_sampler(model, sampler: str, train=None, bank: torch.Tensor | None = None,
                embedded: EmbeddedTraining | None = None) -> None:
    """Make ``model`` complete with ``sampler`` (its config too, so a saved run says what it runs);
    ``neighbours`` and ``neighbours_marginal`` search ``bank`` (:func:`training_bank`), else one made
    of the split ``train`` (``embedded``: its :func:`training_embedding`, when the caller has it), else
    the run's own."""
    adn = switchable(model)
    if sampler in ("neighbours", MARGINAL):
        if bank is None and train is not None:
            bank = training_bank(model, train, embedded)
            if bank is None:
                raise SamplerChoiceError(f"--sampler {sampler}: no sample of {train.name} has every modality to lend")
        if bank is None and adn.bank is None:
            raise SamplerChoiceError(f"--sampler {sampler} needs the training split to search (admc calibrate --data)")
        view = adn.with_bank(bank if bank is not None else adn.bank.rows.float(), marginal=sampler == MARGINAL)
    else:
        view = adn.with_sampler(sampler)
    adn_cfg = replace(view.cfg, sample_steps=model.cfg.adn.sample_steps, num_samples=model.cfg.adn.num_samples)
    model.cfg = replace(model.cfg, adn=adn_cfg)
    view.cfg = adn_cfg
    model.set_completer(view)
