"""The methods of ``admc train --method`` / ``admc bench --methods``: what each is made of, in one
registry (:data:`METHODS`), and the settings a method fixes (:func:`config_for_method`).

Light on purpose (no torch): the command line and the run.json schema check a method name and its
settings before any model code loads; :mod:`admc.pipeline` and :mod:`admc.train` build and train what
a :class:`Method` describes.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Method:
    """What a method of ``admc train --method`` / ``admc bench --methods`` is made of."""

    completer: str = "none"             # a kind of admc.completion.COMPLETERS
    late: bool = False                  # average the unimodal heads instead of a fusion network
    adn: dict = field(default_factory=dict)      # the method's ADN settings (where the config keeps the default)
    imputer: dict = field(default_factory=dict)  # the same for the autoencoder completers (config.imputer)
    # how the encoders are trained: "itfn" (each alone, shared by the methods of one bench seed) or
    # "joint" (end to end with the full-input fusion network: admc.baselines.joint)
    encoders: str = "itfn"
    # a model class of its own instead of ADMCModel, as "module:Class" (built as Class(schema, cfg),
    # trained by its classmethod fit(ds, cfg, device) -> (model, info)): no ITFN, no completion
    model: str | None = None
    about: str = ""

    @property
    def model_class(self) -> type | None:
        """The class :attr:`model` names, imported on first use (this module imports no torch)."""
        if self.model is None:
            return None
        module, _, name = self.model.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def shares_itfn(self) -> bool:
        """Whether the method's encoders are the ITFN, the same for every such method of one bench seed."""
        return self.model is None and self.encoders == "itfn"


_MMIN_AE = {"layers": [512, 450, 384, 256], "lr": 1e-3, "batch_size": 256, "epochs": 50, "grad_clip": 5.0}

METHODS: dict[str, Method] = {
    "admc": Method("diffusion", about="ADN completion (the configured variant, by default conditional "
                                      "around the linear prior) + per-condition fusion + MMER"),
    "admc_paper": Method("diffusion", adn={"variant": "paper", "stride": 10},
                         about="the paper's ADN: unconditional noise predictor, Eq. 3-4 in the paper "
                               "variant's reading (adn.reading), start step n chosen on validation; "
                               "chains respaced to every 10th step unless adn.stride says otherwise"),
    "regress_fill": Method("diffusion", adn={"variant": "regress"},
                           about="the ADN's own network and prior trained as a plain regressor of the residual "
                                 "around the ridge estimate (no noise, one timestep): the control for the diffusion"),
    "ridge_fill": Method("ridge", about="missing rows = the ridge (linear prior) estimate alone, no "
                                        "diffusion; same ITFN, fusion and MMER as admc"),
    "zero_fill": Method("zero", about="missing rows = the train mean, i.e. mean fill (there is no separate "
                                      "mean_fill); the paper's w/o ADN"),
    "late_fusion": Method("none", late=True, about="mean of the unimodal heads' probabilities"),
    "ae": Method("ae", imputer=_MMIN_AE, about="missing rows imputed by one autoencoder trained to "
                                               "reconstruct every row from randomly masked inputs"),
    "cra": Method("cra", about="missing rows imputed by a cascaded residual autoencoder (Tran et al. 2017)"),
    "mmin": Method("mmin", about="MMIN (Zhao et al. 2021) on the frozen ITFN: forward and backward CRA "
                                 "with cycle consistency and a classification loss"),
    "joint": Method("diffusion", encoders="joint",
                    about="the paper's w/o ITFN: encoders trained end to end with the full-input fusion "
                          "network (which stays the full-input classifier), then ADN completion"),
    "linear": Method(model="admc.baselines.linear:LinearModel", about="per condition, a logistic regression on the standardized "
                                              "mean/std-pooled raw features of the available modalities"),
}


def config_for_method(cfg):
    """``cfg`` (an :class:`admc.config.TrainConfig`) with its method's own ADN and autoencoder
    settings where the configuration keeps the defaults (``admc_paper``: the paper variant, stride
    10; ``ae``: MMIN's AE geometry), checked against the variant."""
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    method = METHODS[cfg.method]
    for section, own in (("adn", method.adn), ("imputer", method.imputer)):
        if own:
            current = getattr(cfg, section)
            default, values = type(current)(), asdict(current)
            values.update({k: v for k, v in own.items() if values[k] == getattr(default, k)})
            cfg = replace(cfg, **{section: type(current)(**values)})
    if method.completer == "diffusion":
        cfg.adn.check_variant(cfg.method)
    return cfg
