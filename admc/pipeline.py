"""The ADMC pipeline: ITFN encoders -> ADN completion (or zero fill) -> fusion classifier.

:class:`ADMCModel` holds every trained part and runs inference on a batch of samples with any
availability pattern.  Embeddings are standardized per modality and dimension with the training
set's statistics, so "zero fill" means "fill with the training mean".  Its probabilities are
calibrated (one temperature per availability pattern, :mod:`admc.calibration`) and each modality
has an out-of-distribution score (:mod:`admc.ood`); :func:`predict_window` applies the policy
(an out-of-distribution modality is treated as missing; :class:`WindowPrediction` says when a
window is uncertain).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from admc.batching import batches, modality_batch
from admc.calibration import TemperatureScaling
from admc.completion import build_completer
from admc.config import ADNConfig, TrainConfig, resolve_fusion_mode
from admc.data import Schema, Split, condition_name
from admc.errors import ModalityError
from admc.fusion_layouts import FUSION_LAYOUTS
from admc.methods import METHODS, config_for_method
from admc.models.encoders import UnimodalNet
from admc.ood import InputOOD, MahalanobisOOD


def build_model(schema: Schema, cfg: TrainConfig) -> "ADMCModel | LinearModel":
    """The untrained model of ``cfg.method`` (the same shapes a saved run of it has)."""
    cls = METHODS[cfg.method].model_class if cfg.method in METHODS else None
    return (cls or ADMCModel)(schema, cfg)


COMPLETER_STREAM, FUSION_STREAM = 1, 2


@contextlib.contextmanager
def own_random_stream(seed: int, stream: int):
    """A block whose torch random draws come from a stream of its own (``seed``, ``stream``), leaving
    the global one as it was before the block."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed((int(seed) * 1_000_003 + 7919 * int(stream)) % (2**63 - 1))
        yield


class ADMCModel(nn.Module):
    def __init__(self, schema: Schema, cfg: TrainConfig):
        super().__init__()
        cfg = config_for_method(cfg)
        self.schema = schema
        self.cfg = cfg
        M, E, C = len(schema.modalities), cfg.itfn.emb_dim, len(schema.classes)
        self.M, self.E, self.C = M, E, C
        self.encoders = nn.ModuleDict(
            {m.name: UnimodalNet(m.encoder, m.dim, C, E, cfg.itfn.head_hidden, cfg.itfn.head_dropout, cfg.itfn.dropout)
             for m in schema.modalities}
        )
        self.register_buffer("emb_mean", torch.zeros(M, E))
        self.register_buffer("emb_std", torch.ones(M, E))
        method = METHODS[cfg.method]
        if method.model is not None:
            raise ValueError(f"method {cfg.method} is not an ADMCModel (build it with admc.pipeline.build_model)")
        # the completer and the fusion networks draw their initial weights from streams of their own
        # (from the run's seed), so every method of one seed starts its fusion from the same weights
        # and the global stream after construction is the same whatever the completer
        with own_random_stream(cfg.seed, COMPLETER_STREAM):
            self.set_completer(self.new_completer())
        self.uses_adn = method.completer == "diffusion"
        self.completes = self.completer.completes  # missing rows are estimated (not the train mean)
        self.fusion_mode = "late" if method.late else resolve_fusion_mode(cfg.fusion.mode, M)
        self.fusion_layout = FUSION_LAYOUTS[self.fusion_mode]    # chosen once: it owns the fusion networks
        # joint: the full-input fusion network is the one trained end to end with the encoders, on
        # their raw (unstandardized) embeddings, without MMER (admc.baselines.joint)
        self.joint_full = method.encoders == "joint" and self.fusion_layout.full_input_network
        self.mmer = self.completes and cfg.fusion.mmer and not self.joint_full
        self.fusion = nn.ModuleDict()
        with own_random_stream(cfg.seed, FUSION_STREAM):
            self.fusion_layout.build(self, cfg.fusion)
        # fitted after the fusion (admc.calibration.fit_calibration, admc.ood.fit_ood); a run saved
        # before they existed has none of their buffers and loads with these defaults: T = 1, no
        # abstention, no OOD model (OPTIONAL_STATE)
        self.calibration = TemperatureScaling(M)
        self.ood = MahalanobisOOD(M, C, E)
        self.ood_input = InputOOD(schema, cfg.calibration.ood_input_components)

    def new_completer(self):
        """A fresh, untrained completer of this model's method."""
        return build_completer(METHODS[self.cfg.method].completer, self.cfg, self.M, self.E, self.C)

    def set_completer(self, completer) -> None:
        """Use ``completer``; its modules are registered here so that a run's weights keep their names
        (``denoiser``, ``prior``: the ADN and the ridge prior; ``neighbour_bank``: the training samples
        of its ``neighbours`` sampler; ``imputer``: an autoencoder's)."""
        self.completer = completer
        self.denoiser = getattr(completer, "denoiser", None)
        self.prior = getattr(completer, "prior", None)
        self.neighbour_bank = getattr(completer, "bank", None)
        self.imputer = getattr(completer, "net", None)

    # set at train time, saved in the run's JSON
    @property
    def clip_range(self) -> float | None:
        return self.completer.clip_range

    @clip_range.setter
    def clip_range(self, value: float | None) -> None:
        self.completer.clip_range = value

    @property
    def start_step(self) -> int | None:
        """The completer's start step n (:meth:`admc.diffusion.process.Diffusion.set_start_step`);
        None for completers without one."""
        return getattr(self.completer, "start_step", None)

    @start_step.setter
    def start_step(self, value: int | None) -> None:
        if hasattr(self.completer, "set_start_step"):
            self.completer.set_start_step(value)
        elif value is not None:
            raise ValueError(f"start step {value}: the {self.cfg.method} completer has none")

    @property
    def uses_start_step(self) -> bool:
        """Whether the completer's result depends on a start step n (the paper variant)."""
        return bool(getattr(self.completer, "uses_start_step", False))

    @contextlib.contextmanager
    def using_start_step(self, n: int | None):
        """Inside the block the completer starts at ``n`` (``None``, or a completer that takes no
        start step: unchanged); the model's own n is restored after it, an error included.  It sets the
        model's state: a model shared between threads is used under one lock held around the whole
        block (the app's sessions: ``_CORE_LOCK`` in app/session.py)."""
        if n is None or not self.uses_start_step:
            yield self
            return
        own = self.start_step
        self.start_step = n
        try:
            yield self
        finally:
            self.start_step = own

    def ensure_eval(self) -> None:
        """Every submodule in eval mode.  Reading the flags is a fifth of what ``eval()`` costs (it sets
        them on ~300 modules through ``nn.Module.__setattr__``), and a live window asked for it three
        times; a submodule left in training mode is still found and switched."""
        if any(m.training for m in self.modules()):
            self.eval()

    # ---- embeddings ------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, split: Split, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized embeddings ``z [n, M, E]`` and presence ``[n, M]`` (missing rows are 0)."""
        self.ensure_eval()
        dev = self.emb_mean.device
        n = len(split)
        z = torch.zeros(n, self.M, self.E, device=dev)
        present = torch.from_numpy(split.presence_matrix(self.schema.names)).to(dev)
        for i, mod in enumerate(self.schema.modalities):
            enc = self.encoders[mod.name]
            idx_all = np.flatnonzero(split.present[mod.name])
            for idx in batches(len(idx_all), batch_size, idx=idx_all):
                x, lengths = modality_batch(split, mod.name, idx, self.cfg.itfn.max_len, dev)
                emb, _ = enc(x, lengths)
                z[torch.from_numpy(idx).to(dev), i] = (emb - self.emb_mean[i]) / self.emb_std[i]
        return z, present

    def unstandardize(self, z: torch.Tensor) -> torch.Tensor:
        """The ITFN embeddings (encoder outputs) of standardized ``z [n, M, E]``: what the OOD model reads."""
        return z * self.emb_std + self.emb_mean

    # ---- completion ------------------------------------------------------------------------------
    @torch.no_grad()
    def fill(self, z: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Rows where ``avail`` is False filled by the method's completer (ADN, ridge or train mean),
        as it is set (:meth:`using_start_step`)."""
        avail = avail.bool()
        return self.completer.complete(z * avail[..., None], avail, generator)

    @torch.no_grad()
    def cross_generate(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """MMER (paper Eq. 5): for each modality m, F'_m generated from all the others.

        The M leave-one-out completions run as one batch of M * B rows."""
        B, M = z.shape[0], self.M
        avail = torch.ones(M, B, M, dtype=torch.bool, device=z.device)
        for i in range(M):
            avail[i, :, i] = False
        filled = self.fill(z.repeat(M, 1, 1), avail.view(M * B, M), generator).view(M, B, M, -1)
        return torch.stack([filled[i, :, i] for i in range(M)], dim=1)

    def fusion_inputs(self, z: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None,
                      mmer: bool = True) -> torch.Tensor:
        """Tokens for the fusion network of one availability pattern (all rows share ``avail``).

        ``mmer=False`` switches the enhancement off at inference for a model trained with it: the
        full-input tokens become cat(F, F) instead of cat(F, F')."""
        filled = self.fill(z, avail, generator)
        if self.joint_full and bool(avail.all()):
            return self.unstandardize(filled)
        if self.fusion_layout.full_input_network and self.mmer and bool(avail.all()):
            return torch.cat([filled, self.cross_generate(z, generator) if mmer else filled], dim=-1)
        return filled

    # ---- classification --------------------------------------------------------------------------
    @torch.no_grad()
    def predict_logits(self, z: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None,
                       batch_size: int = 1024, mmer: bool = True) -> torch.Tensor:
        """Uncalibrated logits ``[n, C]`` for standardized embeddings with availability ``[n, M]``
        (late fusion: the log of the heads' mean probabilities)."""
        self.ensure_eval()
        avail = avail.bool()
        if (~avail.any(dim=1)).any():
            raise ValueError("every sample needs at least one available modality")
        if not self.fusion_layout.trains:          # late fusion: the mean of the unimodal heads
            return self.late_fusion_proba(z, avail).clamp_min(1e-12).log()
        logits = torch.zeros(z.shape[0], self.C, device=z.device)
        patterns = torch.unique(avail, dim=0)
        for pat in patterns:
            rows = torch.nonzero((avail == pat).all(dim=1)).flatten()
            marginal = getattr(self.completer, "marginal", False) and not bool(pat.all())
            for s in range(0, len(rows), batch_size):
                r = rows[s : s + batch_size]
                logits[r] = self.marginal_logits(z[r], avail[r]) if marginal else \
                    self.fusion_logits(self.fusion_inputs(z[r], avail[r], generator, mmer), avail[r])
        return logits

    @torch.no_grad()
    def marginal_logits(self, z: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """The log of the fusion's probabilities averaged over the completer's draws of the missing rows
        of ``z`` (one availability pattern ``avail [n, M]``): ``log mean_k softmax(logits_k)``, which a
        softmax reads as logits (``adn.marginal``; the study's version is :mod:`admc.marginal`).  The
        pattern's temperature then scales these log-probabilities (``p^(1/T)``, renormalized), not each
        member's logits as :func:`admc.marginal.fit_marginal_temperature` does: the same argmax."""
        draws = self.completer.draw(z * avail[..., None], avail, self.completer.cfg.neighbours)
        member = torch.stack([torch.log_softmax(self.fusion_logits(d, avail), dim=-1) for d in draws])
        return torch.logsumexp(member, dim=0) - math.log(len(draws))

    @torch.no_grad()
    def fusion_logits(self, tokens: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits of the fusion network for tokens ``[n, M, .]`` (:meth:`fusion_inputs`)
        of samples that share one availability pattern ``avail [n, M]``."""
        net = self.fusion_layout.network(self, avail[0].tolist())
        return net(tokens, avail) if net.mask_aware else net(tokens)

    @torch.no_grad()
    def predict_proba(self, z: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None,
                      batch_size: int = 1024, mmer: bool = True, calibrated: bool = True) -> torch.Tensor:
        """Class probabilities ``[n, C]`` for standardized embeddings with availability ``[n, M]``:
        calibrated by the temperature of each row's pattern (``calibrated=False``: the raw softmax;
        the argmax is the same)."""
        logits = self.predict_logits(z, avail, generator, batch_size, mmer)
        if calibrated:
            logits = self.calibration(logits, avail)
        return torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def late_fusion_proba(self, z: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """Mean of the unimodal heads' class probabilities over the available modalities."""
        total = torch.zeros(z.shape[0], self.C, device=z.device)
        for i, mod in enumerate(self.schema.modalities):
            head = self.encoders[mod.name].head.eval()
            p = torch.softmax(head(z[:, i] * self.emb_std[i] + self.emb_mean[i]), dim=-1)
            total += p * avail[:, i : i + 1]
        return total / avail.sum(dim=1, keepdim=True)

    def condition_name(self, mask) -> str:
        return condition_name(self.schema.names, mask)


OPTIONAL_STATE = ("calibration.", "ood.", "ood_input.")
"""Prefixes of the buffer groups a run may lack (saved before they existed): each group is all there
or absent, and an absent one keeps :class:`ADMCModel`'s defaults."""


@torch.no_grad()
def embed_features(model: ADMCModel, features: dict[str, "np.ndarray | None"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardized embeddings ``[1, M, E]`` and availability ``[1, M]`` for one analysis window.

    ``features[m]`` is ``[rows, dim]`` (a ``vector`` modality: ``[dim]`` or ``[1, dim]``) or ``None``
    when modality ``m`` is missing.  Wrong dims or non-finite values of one modality raise
    :class:`admc.errors.ModalityError` (a ValueError: ``modality X: reason``).
    """
    model.ensure_eval()
    dev = model.emb_mean.device
    z = torch.zeros(1, model.M, model.E, device=dev)
    avail = torch.zeros(1, model.M, dtype=torch.bool, device=dev)
    unknown = set(features) - set(model.schema.names)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)} (model has {model.schema.names})")
    for i, mod in enumerate(model.schema.modalities):
        x = features.get(mod.name)
        if x is None:
            continue
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != mod.dim or len(x) == 0:
            raise ModalityError(mod.name, f"expected [rows, {mod.dim}], got {list(x.shape)}")
        if not np.isfinite(x).all():
            raise ModalityError(mod.name, "NaN or inf in the features")
        if mod.kind == "vector":
            x = x[-1:]
        if model.cfg.itfn.max_len is not None:
            x = x[-model.cfg.itfn.max_len:]
        xt = torch.from_numpy(x)[None].to(dev)
        emb, _ = model.encoders[mod.name](xt, torch.tensor([len(x)], device=dev))
        z[0, i] = (emb[0] - model.emb_mean[i]) / model.emb_std[i]
        avail[0, i] = True
    return z, avail


@dataclass(frozen=True)
class ModalityOOD:
    """A present modality's out-of-distribution scores (:mod:`admc.ood`): the Mahalanobis distance of
    its embedding and the error of its input outside the training subspace (None: no input model),
    and whether either is above the checkpoint's threshold for it."""

    score: float
    out: bool
    input_score: float | None = None

    def to_json(self) -> dict:
        return {"score": self.score, "out": self.out, "input_score": self.input_score}


@dataclass(frozen=True)
class WindowPrediction:
    """What :func:`predict_window` gives for one analysis window."""

    probs: dict[str, float]               # class -> calibrated probability
    label: str                            # argmax class
    imputed: list[str]                    # modalities the completer filled: absent, or present but out of distribution
    ood: dict[str, ModalityOOD | None]    # per modality; None: absent, or no OOD model for it in the checkpoint
    # every present modality out of distribution, or the max probability below the abstain threshold
    uncertain: bool

    def __getitem__(self, key: str):
        """``result["probs"]`` for callers written when this was a dict (attributes preferred)."""
        if key not in ("probs", "label", "imputed", "ood", "uncertain"):
            raise KeyError(key)
        return getattr(self, key)


@torch.no_grad()
def predict_window(model: ADMCModel, features: dict[str, "np.ndarray | None"],
                   generator: torch.Generator | None = None, mmer: bool = True) -> WindowPrediction:
    """One analysis window -> :class:`WindowPrediction`.

    Missing modalities (``None``) are completed by the ADN (or zero-filled for a zero_fill run).  A
    present modality whose embedding is out of distribution is treated as missing too, so it is
    completed from the others; when every present modality is out of distribution there is nothing
    to complete from: the window is predicted from them as they are and marked ``uncertain``, as it
    is when the calibrated max probability is below the checkpoint's abstain threshold.  At least
    one modality must be present.
    """
    z, avail = embed_features(model, features)
    if not bool(avail.any()):
        raise ValueError("no modality available in this window")
    scores = model.ood.scores(model.unstandardize(z))
    out = model.ood.out_of_distribution(scores, avail)
    names = model.schema.names
    input_scores: dict[str, float | None] = {}
    for i, m in enumerate(names):
        if bool(avail[0, i]):
            x = np.asarray(features[m], dtype=np.float32)
            input_scores[m] = model.ood_input.score(m, x[None] if x.ndim == 1 else x)
            out[0, i] |= model.ood_input.out(m, input_scores[m])
    used = avail & ~out
    all_out = not bool(used.any())
    if all_out:
        used = avail
    probs = model.predict_proba(z, used, generator, mmer=mmer)[0].cpu().numpy()
    classes = list(model.schema.classes)
    ood = {m: (ModalityOOD(round(float(scores[0, i]), 4), bool(out[0, i]),
                           None if input_scores[m] is None else round(input_scores[m], 4))
               if bool(avail[0, i]) and not bool(torch.isnan(scores[0, i])) else None)
           for i, m in enumerate(names)}
    return WindowPrediction(
        probs={c: float(p) for c, p in zip(classes, probs)},
        label=classes[int(probs.argmax())],
        imputed=[m for m, a in zip(names, used[0].tolist()) if not a] if model.completes else [],
        ood=ood,
        uncertain=all_out or float(probs.max()) < float(model.calibration.abstain_below),
    )
