"""Training, stage by stage (paper 3): ITFN encoders, then the ADN on frozen embeddings, then the
fusion classifiers on completed (or zero-filled) embeddings.  Model selection uses validation only.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from admc.baselines.joint import train_joint
from admc import distributed as dp
from admc.batching import batches, modality_batch
from admc.calibration import fit_calibration
from admc.config import TrainConfig, trainable
from admc.data import FeatureDataset, Split
from admc.diagnostics import completion_errors, completion_scores
from admc.diffusion.process import clip_range  # noqa: F401 - re-exported for the benchmarks
from admc.metrics import scores
from admc.ood import fit_input_ood, fit_ood
from admc.optim import EarlyStopping, lambda_rule  # noqa: F401 - re-exported for the benchmarks
from admc.methods import METHODS
from admc.pipeline import ADMCModel
from admc.regimes import EmbeddedTraining, training_data, training_embedding
from admc.runtime import log, progress

def _ua(y, pred) -> float:
    return scores(y, pred)["ua"]


# ---- stage 1: ITFN ---------------------------------------------------------------------------------

def train_unimodal(model: ADMCModel, train: Split, val: Split, device, seed: int, what: str = "ITFN") -> dict:
    """Train each modality's encoder + head alone; early stopping on validation UA; then freeze.
    (Encoders already frozen, as after ``joint`` training: the heads alone.)"""
    cfg = model.cfg.itfn
    out = {}
    for i, mod in enumerate(model.schema.modalities):
        net = model.encoders[mod.name]
        net.fit_input_norm(train.rows[mod.name][np.repeat(train.present[mod.name], np.diff(train.offsets[mod.name]))])
        torch.manual_seed(seed * 1000 + i)
        rng = np.random.default_rng(seed * 1000 + i)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_rule(cfg.epochs))
        tr_idx = np.flatnonzero(train.present[mod.name])
        va_idx = np.flatnonzero(val.present[mod.name])
        stopper = EarlyStopping(cfg.patience)
        bar = progress(range(cfg.epochs), desc=f"{what} {mod.name}")
        step = dp.wrap(net)
        for epoch in bar:
            net.train()
            for idx in dp.batches(len(tr_idx), cfg.batch_size, rng, idx=tr_idx):
                x, lengths = modality_batch(train, mod.name, idx, cfg.max_len, device)
                y = torch.from_numpy(train.labels[idx]).to(device)
                _, logits = step(x, lengths)
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            ua = dp.agree(lambda: _ua(val.labels[va_idx],
                                      _predict_unimodal(net, val, mod.name, va_idx, cfg.max_len, device)))
            bar.set_postfix(val_ua=f"{ua:.1f}")
            if stopper.step(ua, net):
                break
        net.load_state_dict(stopper.best_state)
        dp.sync(net)
        net.requires_grad_(False)
        pred = _predict_unimodal(net, val, mod.name, va_idx, cfg.max_len, device)
        out[mod.name] = {**scores(val.labels[va_idx], pred), "epochs": epoch + 1}
        log(f"{what} {mod.name}: val UA {out[mod.name]['ua']:.1f} after {epoch + 1} epochs")
    return out


@torch.no_grad()
def _predict_unimodal(net, split: Split, modality: str, idx: np.ndarray, max_len, device) -> np.ndarray:
    net.eval()
    preds = []
    for b in batches(len(idx), 512, idx=idx):
        x, lengths = modality_batch(split, modality, b, max_len, device)
        preds.append(net(x, lengths)[1].argmax(-1).cpu().numpy())
    return np.concatenate(preds)


def embedding_scale(rows: torch.Tensor) -> torch.Tensor:
    """Per-dimension scale that standardizes one modality's train embeddings ``rows`` (N x E).

    A unit (nearly) silent on every training row has a std near 0; dividing by it turns the
    activation of a test sample that does fire into a huge standardized value (a 1e-4 floor made
    it 10^4 times larger, and completion MSE over 6 on mfeat seed 2).  Dimensions whose std is
    below 1% of the modality's median std keep their raw scale (1) instead.
    """
    std = rows.std(0)
    floor = 1e-2 * torch.nan_to_num(std.median(), nan=0.0)
    return torch.where(std > floor.clamp_min(1e-8), std, torch.ones_like(std))


def fit_standardization(model: ADMCModel, train: Split) -> None:
    """Per-modality, per-dimension mean/std of the frozen train embeddings (present rows only)."""
    model.emb_mean.zero_()
    model.emb_std.fill_(1.0)
    z, present = model.embed(train)
    for i in range(model.M):
        rows = z[present[:, i], i]
        model.emb_mean[i] = rows.mean(0)
        model.emb_std[i] = embedding_scale(rows)


# ---- stage 2: completion (ADN, ridge prior or nothing) ----------------------------------------------

def train_completer(model: ADMCModel, z_tr: torch.Tensor, p_tr: torch.Tensor, z_va: torch.Tensor,
                    p_va: torch.Tensor, y_va: np.ndarray, seed: int, y_tr: torch.Tensor | None = None) -> dict:
    """Fit the method's completer on the training samples, with the rows that are there (``present``;
    a completer treats an all-present mask as full samples) and their labels (``y_tr``, -1 where
    unlabelled), selection on full validation ones; the paper variant's start step n is then chosen
    on validation (:func:`choose_start_step`)."""
    info = model.completer.fit(z_tr, z_va[p_va.all(dim=1)], seed, present=p_tr, labels=y_tr)
    if model.uses_start_step and model.cfg.adn.start_step is None:
        info.update(choose_start_step(model, z_va, p_va, y_va, seed))
    return info


def train_adn(model: ADMCModel, z_tr, p_tr, z_va, p_va, seed: int) -> dict:
    """The ADN stage alone (no start step choice); kept for the benchmark scripts."""
    return model.completer.fit(z_tr, z_va[p_va.all(dim=1)], seed, present=p_tr)


def choose_start_step(model: ADMCModel, z_va: torch.Tensor, p_va: torch.Tensor, y_va: np.ndarray | None,
                      seed: int) -> dict:
    """Paper variant: the reverse-chain start n from ``adn.start_grid``, chosen on validation twice:
    by completion MSE (mean over missing conditions) and by UA of the frozen unimodal heads on the
    generated rows (paper Table 4).  Both choices are recorded; ``adn.start_select`` says which is used."""
    mse, ua = {}, {}
    for n in progress(model.cfg.adn.start_grid, desc="choose n"):
        with model.using_start_step(n):
            mse[str(n)], ua_n = completion_scores(model, z_va, p_va, y_va, seed)
        if ua_n is not None:
            ua[str(n)] = ua_n
    by_mse = int(min(mse, key=mse.get))
    by_ua = int(max(ua, key=ua.get)) if ua else None
    select = model.cfg.adn.start_select
    model.start_step = by_ua if select == "ua" and by_ua is not None else by_mse
    log(f"ADN start step n = {model.start_step} (by val MSE: {by_mse}, by val UA: {by_ua}; using {select})")
    return {"start_step": model.start_step, "start_step_by_mse": by_mse, "start_step_by_ua": by_ua,
            "start_selected_on": select, "val_mse_by_start_step": mse, "val_generated_ua_by_start_step": ua}


# ---- stage 3: fusion -------------------------------------------------------------------------------

class CrossFit:
    """Out-of-fold completions of the training set: fold k's rows are completed by a copy of the model
    whose completer was refitted on the full training samples of the other folds, so the fusion
    network trains on completions like the ones it meets at test time (not in-sample ones)."""

    def __init__(self, model: ADMCModel, z_tr, p_tr, z_va, p_va, folds: int, seed: int, y_tr=None):
        n = len(z_tr)
        self.fold_of = torch.from_numpy(np.random.default_rng(seed + 71).permutation(n) % folds).to(z_tr.device)
        full_va = z_va[p_va.all(dim=1)]
        self.models = []
        for k in progress(range(folds), desc="cross-fit"):
            fm = copy.deepcopy(model)
            # a fresh completer (untrained denoiser, empty prior): nothing of fold k may leak into it
            torch.manual_seed(seed + 1000 * (k + 1))
            fm.set_completer(model.new_completer())
            fm.to(z_tr.device)
            sel = self.fold_of != k
            fm.completer.fit(z_tr[sel], full_va, seed + 1000 * (k + 1), present=p_tr[sel],
                             labels=None if y_tr is None else y_tr[sel])
            fm.start_step = model.start_step  # the paper variant keeps the n chosen on the whole train set
            fm.requires_grad_(False)
            self.models.append(fm)

    @torch.no_grad()
    def _per_fold(self, fn, z, rows, avail) -> torch.Tensor:
        parts = []
        for k, fm in enumerate(self.models):
            sel = torch.nonzero(self.fold_of[rows] == k).flatten()
            if len(sel):
                parts.append((sel, fn(fm, z[sel], avail[sel])))
        out = torch.empty(len(rows), *parts[0][1].shape[1:], device=z.device)
        for sel, tok in parts:
            out[sel] = tok
        return out

    def fusion_inputs(self, z, rows, avail, gen) -> torch.Tensor:
        """Fusion tokens of training samples ``rows`` (``z`` holds their embeddings), each by its fold's model."""
        return self._per_fold(lambda fm, zz, aa: fm.fusion_inputs(zz, aa, gen), z, rows, avail)

    def fill(self, z, rows, avail, gen) -> torch.Tensor:
        return self._per_fold(lambda fm, zz, aa: fm.fill(zz, aa, gen), z, rows, avail)


@torch.no_grad()
def _pattern_set(model: ADMCModel, z, present, labels, masks, seed: int, cross_fit: CrossFit | None = None,
                 incomplete: str = "drop"):
    """Fusion inputs for each availability pattern over the samples that have those modalities.

    ``incomplete="fill"``: a sample that has only some of the pattern's modalities is used too, the
    others first completed by the method's completer (a training set with missing modalities)."""
    out = []
    for k, mask in enumerate(masks):
        m = torch.tensor(mask, device=z.device)
        has_all = (present | ~m).all(dim=1)
        usable = has_all | ((present & m).any(dim=1) if incomplete == "fill" else has_all)
        rows = torch.nonzero(usable).flatten()
        if len(rows) == 0:
            continue
        avail = m.expand(len(rows), -1)
        gen = torch.Generator().manual_seed(seed * 7919 + k)
        zr = z[rows]
        part = torch.nonzero(~has_all[rows]).flatten()
        if len(part):  # complete the pattern's rows these samples lack
            pr = present[rows[part]] & m
            zr = zr.clone()
            zr[part] = (cross_fit.fill(zr[part], rows[part], pr, gen) if cross_fit is not None
                        else model.fill(zr[part], pr, gen))
        if cross_fit is not None:
            tokens = cross_fit.fusion_inputs(zr, rows, avail, gen)
        else:
            tokens = model.fusion_inputs(zr, avail, gen)
        out.append((mask, tokens, avail.clone(), torch.from_numpy(labels[rows.cpu().numpy()]).to(z.device)))
    return out


def fit_fusion(net: nn.Module, train_sets, val_sets, cfg, seed: int) -> dict:
    """Train one fusion network on the union of ``train_sets``; keep the epoch with the best mean
    validation UA over ``val_sets`` (one entry per availability pattern)."""
    X = torch.cat([s[1] for s in train_sets])
    A = torch.cat([s[2] for s in train_sets])
    Y = torch.cat([s[3] for s in train_sets])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_rule(cfg.epochs))
    stopper = EarlyStopping(cfg.patience)
    step = dp.wrap(net)
    for epoch in range(cfg.epochs):
        net.train()
        for idx in dp.batches(len(Y), cfg.batch_size, rng):
            i = torch.from_numpy(idx).to(X.device)
            logits = step(X[i], A[i]) if net.mask_aware else step(X[i])
            loss = nn.functional.cross_entropy(logits, Y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if stopper.step(dp.agree(lambda: _fusion_val_ua(net, val_sets)), net):
            break
    net.load_state_dict(stopper.best_state)
    dp.sync(net)
    net.requires_grad_(False)
    return {"val_ua": stopper.best, "epochs": epoch + 1}


@torch.no_grad()
def _fusion_val_ua(net, val_sets) -> float:
    net.eval()
    uas = []
    for _, X, A, Y in val_sets:
        pred = (net(X, A) if net.mask_aware else net(X)).argmax(-1)
        uas.append(_ua(Y.cpu().numpy(), pred.cpu().numpy()))
    return float(np.mean(uas))


def train_fusion(model: ADMCModel, z_tr, p_tr, y_tr, z_va, p_va, y_va, seed: int) -> dict:
    cfg = model.cfg.fusion
    rng = np.random.default_rng(seed + 3)
    info = {}
    xfit = None
    if cfg.cross_fit and cfg.cross_fit > 1 and model.completes:
        xfit = CrossFit(model, z_tr, p_tr, z_va, p_va, int(cfg.cross_fit), seed,
                        torch.from_numpy(np.asarray(y_tr)).to(z_tr.device))
        info["cross_fit_folds"] = int(cfg.cross_fit)
    for task in progress(model.fusion_layout.training_tasks(model, cfg, rng), desc="fusion"):
        tr = _pattern_set(model, z_tr, p_tr, y_tr, task.masks, seed + task.seeds[0], xfit, cfg.incomplete)
        va = _pattern_set(model, z_va, p_va, y_va, task.masks, seed + task.seeds[1])
        info[task.key] = fit_fusion(task.network, tr, va, cfg, seed + task.seeds[2])
        if task.report_patterns:
            info[task.key]["patterns"] = [model.condition_name(m) for m in task.masks]
    return info


# ---- stage 4: calibration and out-of-distribution scores --------------------------------------------

def fit_trust(model: ADMCModel, z_tr, p_tr, y_tr, z_va, p_va, y_va, seed: int,
              train_split: Split | None = None, val_split: Split | None = None) -> dict:
    """The OOD models of each modality (labelled training ITFN embeddings; and, given the splits, the
    inputs of every training sample: :class:`admc.ood.InputOOD`; thresholds from validation), then one
    temperature per availability condition and the abstain threshold on validation
    (``model.cfg.calibration``); run.json's ``train.ood`` and ``train.calibration``."""
    cfg = model.cfg.calibration
    ood = fit_ood(model.ood, model.schema.names, model.unstandardize(z_tr), p_tr, y_tr, model.unstandardize(z_va),
                  p_va, cfg.ood_quantile).to_json()
    if train_split is not None and val_split is not None:
        q = cfg.ood_quantile if cfg.ood_input_components > 0 else None
        ood["input"] = {k: (asdict(v) if v is not None else None)
                        for k, v in fit_input_ood(model.ood_input, train_split, val_split, q).items()}
    cal = fit_calibration(model, z_va, p_va, y_va, cfg, seed)
    worst = max(cal.conditions.values(), key=lambda c: c.ece_before, default=None)
    if worst is not None:
        log(f"calibration: val ECE {worst.ece_before:.1f}% -> {worst.ece_after:.1f}% at worst before "
            f"(T {worst.temperature:g}); uncertain below max probability {cal.abstain.threshold:.3f} "
            f"({100 * (1 - cal.abstain.confident_fraction):.0f}% of val windows)")
    return {"ood": ood, "calibration": cal.to_json()}


def refit_trust(model: ADMCModel, ds: FeatureDataset, embedded: EmbeddedTraining | None = None) -> dict:
    """Fit a trained model's OOD models, temperatures and abstain threshold again on ``ds`` (its
    train split reduced as the run's ``config.data`` says, and its val split) without touching the
    encoders, completer or fusion: ``admc calibrate``.  ``embedded``: that reduced train split and its
    embeddings (:func:`admc.regimes.training_embedding`) when the caller has them.  Returns run.json's
    new ``ood`` and ``calibration``."""
    cfg = model.cfg
    embedded = embedded if embedded is not None else training_embedding(model, ds["train"])
    data, z_tr, p_tr = embedded.data, embedded.z, embedded.present
    labelled = torch.from_numpy(data.labelled)
    z_va, p_va = model.embed(ds["val"])
    dev = z_tr.device
    labelled = labelled.to(dev)
    return fit_trust(model, z_tr[labelled], p_tr[labelled], data.split.labels[data.labelled], z_va, p_va,
                     ds["val"].labels, cfg.seed, data.split, ds["val"])


# ---- everything ------------------------------------------------------------------------------------

def train(ds: FeatureDataset, cfg: TrainConfig, device: torch.device, encoders_from: ADMCModel | None = None) -> tuple[ADMCModel, dict]:
    """Train a full model on ``ds['train']`` (reduced as ``cfg.data`` says: :mod:`admc.regimes`)
    with selection on ``ds['val']``.

    ``encoders_from`` reuses another model's frozen ITFN (the paper's ablation shares it; ignored by a
    method whose encoders are not the ITFN).  A method with a model of its own (``linear``) is
    trained by that model's ``fit``.
    """
    method = METHODS[cfg.method]
    trainable(cfg)
    if method.model is not None:
        return method.model_class.fit(ds, cfg, device)
    t0 = time.time()
    model = ADMCModel(ds.schema, cfg).to(device)
    data = training_data(ds["train"], ds.schema.names, cfg.data, cfg.seed)
    train_split, val_split = data.split, ds["val"]
    labelled = torch.from_numpy(data.labelled).to(device)
    info: dict = {}
    if cfg.data.train_missing_rate > 0 or len(data.labelled) < len(train_split):
        pm = train_split.presence_matrix(ds.schema.names)
        info["train_data"] = {"samples": len(train_split), "labelled": len(data.labelled),
                              "full_samples": int(pm.all(axis=1).sum()),
                              "missing_entries": round(float((~pm).mean()), 4)}
    if encoders_from is not None and method.shares_itfn and METHODS[encoders_from.cfg.method].shares_itfn:
        model.encoders.load_state_dict(encoders_from.encoders.state_dict())
        model.encoders.requires_grad_(False)
        model.emb_mean.copy_(encoders_from.emb_mean)
        model.emb_std.copy_(encoders_from.emb_std)
        info["itfn"] = "shared with another run"
    elif method.encoders == "joint":
        info["joint"] = train_joint(model, data.labelled_split, val_split, device, cfg.seed)
        # the unimodal heads on the frozen joint embeddings (what the Table 4 diagnostics read)
        info["joint"]["heads"] = train_unimodal(model, data.labelled_split, val_split, device, cfg.seed,
                                                what="head on joint encoder")
        fit_standardization(model, train_split)
    else:
        info["itfn"] = train_unimodal(model, data.labelled_split, val_split, device, cfg.seed)
        fit_standardization(model, train_split)
    z_tr, p_tr = model.embed(train_split)
    z_va, p_va = model.embed(val_split)
    if model.completes:
        key = "adn" if model.uses_adn else "completion"
        y_tr = np.full(len(train_split), -1, dtype=np.int64)
        y_tr[data.labelled] = train_split.labels[data.labelled]
        info[key] = train_completer(model, z_tr, p_tr, z_va, p_va, val_split.labels, cfg.seed,
                                    torch.from_numpy(y_tr).to(device))
        info[key]["val_completion"] = completion_errors(model, z_va, p_va, cfg.seed)
    if model.fusion_layout.trains:
        info["fusion"] = train_fusion(model, z_tr[labelled], p_tr[labelled], train_split.labels[data.labelled],
                                      z_va, p_va, val_split.labels, cfg.seed)
    info.update(fit_trust(model, z_tr[labelled], p_tr[labelled], train_split.labels[data.labelled],
                          z_va, p_va, val_split.labels, cfg.seed, train_split, val_split))
    info["train_seconds"] = round(time.time() - t0, 1)
    return model, info
