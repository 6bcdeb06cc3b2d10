"""Training, stage by stage (paper 3): ITFN encoders, then the ADN on frozen embeddings, then the
fusion classifiers on completed (or zero-filled) embeddings.  Model selection uses validation only.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from admc.batching import batches, modality_batch
from admc.config import TrainConfig
from admc.data import FeatureDataset, Split, missing_conditions
from admc.diagnostics import completion_errors
from admc.diffusion import schedule
from admc.metrics import scores
from admc.pipeline import ADMCModel, all_masks, mask_key
from admc.runtime import log, progress

NOISE_BINS = 10


def lambda_rule(epochs: int):
    """Constant learning rate for the first half, then linear decay (MMIN's LambdaLR rule)."""
    keep = max(1, epochs // 2)

    def f(epoch: int) -> float:
        return 1.0 - max(0, epoch - keep) / float(epochs - keep + 1)

    return f


class EarlyStopping:
    """Keeps the state of the best epoch; says stop after ``patience`` epochs without improvement."""

    def __init__(self, patience: int, mode: str = "max"):
        self.patience, self.sign = patience, 1.0 if mode == "max" else -1.0
        self.best, self.best_state, self.bad = None, None, 0

    def step(self, score: float, module: nn.Module) -> bool:
        if self.best is None or self.sign * (score - self.best) > 1e-9:
            self.best, self.best_state, self.bad = score, copy.deepcopy(module.state_dict()), 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    @property
    def improved(self) -> bool:
        return self.bad == 0


def _ua(y, pred) -> float:
    return scores(y, pred)["ua"]


# ---- stage 1: ITFN ---------------------------------------------------------------------------------

def train_unimodal(model: ADMCModel, train: Split, val: Split, device, seed: int) -> dict:
    """Train each modality's encoder + head alone; early stopping on validation UA; then freeze."""
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
        bar = progress(range(cfg.epochs), desc=f"ITFN {mod.name}")
        for epoch in bar:
            net.train()
            for idx in batches(len(tr_idx), cfg.batch_size, rng, idx=tr_idx):
                x, lengths = modality_batch(train, mod.name, idx, cfg.max_len, device)
                y = torch.from_numpy(train.labels[idx]).to(device)
                _, logits = net(x, lengths)
                loss = nn.functional.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            ua = _ua(val.labels[va_idx], _predict_unimodal(net, val, mod.name, va_idx, cfg.max_len, device))
            bar.set_postfix(val_ua=f"{ua:.1f}")
            if stopper.step(ua, net):
                break
        net.load_state_dict(stopper.best_state)
        net.requires_grad_(False)
        pred = _predict_unimodal(net, val, mod.name, va_idx, cfg.max_len, device)
        out[mod.name] = {**scores(val.labels[va_idx], pred), "epochs": epoch + 1}
        log(f"ITFN {mod.name}: val UA {out[mod.name]['ua']:.1f} after {epoch + 1} epochs")
    return out


@torch.no_grad()
def _predict_unimodal(net, split: Split, modality: str, idx: np.ndarray, max_len, device) -> np.ndarray:
    net.eval()
    preds = []
    for b in batches(len(idx), 512, idx=idx):
        x, lengths = modality_batch(split, modality, b, max_len, device)
        preds.append(net(x, lengths)[1].argmax(-1).cpu().numpy())
    return np.concatenate(preds)


def fit_standardization(model: ADMCModel, train: Split) -> None:
    """Per-modality, per-dimension mean/std of the frozen train embeddings (present rows only)."""
    model.emb_mean.zero_()
    model.emb_std.fill_(1.0)
    z, present = model.embed(train)
    for i in range(model.M):
        rows = z[present[:, i], i]
        model.emb_mean[i] = rows.mean(0)
        model.emb_std[i] = rows.std(0).clamp_min(1e-4)


# ---- stage 2: ADN ----------------------------------------------------------------------------------

def random_proper_masks(n: int, M: int, gen: torch.Generator, device) -> torch.Tensor:
    """[n, M] availability masks drawn uniformly from the non-empty proper subsets."""
    codes = torch.randint(1, 2**M - 1, (n,), generator=gen).to(device)
    return (codes[:, None] >> torch.arange(M, device=device)[None]) & 1 == 1


def adn_loss(model: ADMCModel, sch, x0: torch.Tensor, gen: torch.Generator, per_bin: np.ndarray | None = None):
    """One denoising loss. Paper variant: epsilon (or x0/v) MSE on all rows of full samples.
    Conditional variant: available rows clean, loss on the rows to generate."""
    cfg = model.cfg.adn
    B, M, _ = x0.shape
    dev = x0.device
    t = torch.randint(0, cfg.num_train_timesteps, (B,), generator=gen).to(dev)
    noise = torch.randn(x0.shape, generator=gen).to(dev)
    if cfg.variant == "conditional":
        # diffusion on the residual y = x - mu around the prior mean mu of the missing rows (zero
        # without a prior); the denoiser sees the available rows clean and mu + y_t on the others
        avail = random_proper_masks(B, M, gen, dev)
        keep = avail[..., None].float()
        mu = (1 - keep) * model.prior(keep * x0, avail) if model.prior is not None else torch.zeros_like(x0)
        y0 = x0 - mu
        target = schedule.training_target(sch, y0, noise, t, cfg.prediction)
        out = model.denoiser(keep * x0 + (1 - keep) * (mu + schedule.forward_noise(sch, y0, noise, t)), t, avail)
        weight = (1 - keep).expand_as(x0)
    else:
        target = schedule.training_target(sch, x0, noise, t, cfg.prediction)
        out = model.denoiser(schedule.forward_noise(sch, x0, noise, t), t)
        weight = torch.ones_like(x0)
    err = ((out - target) ** 2 * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))
    if per_bin is not None:
        bins = (t * NOISE_BINS // cfg.num_train_timesteps).cpu().numpy()
        e = err.detach().cpu().numpy()
        for b in range(NOISE_BINS):
            sel = bins == b
            per_bin[0, b] += e[sel].sum()
            per_bin[1, b] += sel.sum()
    return err.mean()


def clip_range(cfg, full_train: torch.Tensor) -> float | None:
    """Predicted clean rows are clipped to this quantile of |standardized train embeddings|."""
    q = cfg.clip_quantile
    return None if q is None else float(torch.quantile(full_train.abs().flatten()[:1_000_000], q))


@torch.no_grad()
def fit_prior(model: ADMCModel, full_tr: torch.Tensor, full_va: torch.Tensor) -> dict:
    """Fit the conditional ADN's linear prior on full training samples; its shrinkage is the one of
    ``adn.prior_grid`` with the lowest validation completion MSE (mean over missing conditions)."""
    cfg = model.cfg.adn
    model.prior.fit(full_tr)
    grid = [cfg.prior_shrinkage] if cfg.prior_shrinkage else list(cfg.prior_grid)
    scores = {}
    for lam in grid:
        model.prior.set_shrinkage(lam)
        errs = []
        for _, mask in missing_conditions(model.schema.names):
            avail = torch.tensor(mask, device=full_va.device).expand(len(full_va), -1)
            mu = model.prior(full_va * avail[..., None], avail)
            errs.append(float(((mu - full_va)[~avail] ** 2).mean()))
        scores[float(lam)] = float(np.mean(errs))
    best = min(scores, key=scores.get)
    model.prior.set_shrinkage(best)
    log(f"ADN linear prior: shrinkage {best:g} (val completion MSE {scores[best]:.4f})")
    return {"prior_shrinkage": best, "prior_val_completion_mse": scores[best],
            "prior_grid_val_completion_mse": {f"{k:g}": v for k, v in scores.items()}}


def train_adn(model: ADMCModel, z_tr: torch.Tensor, p_tr: torch.Tensor, z_va: torch.Tensor, p_va: torch.Tensor,
              seed: int) -> dict:
    cfg = model.cfg.adn
    dev = z_tr.device
    sch = schedule.ddpm(cfg)
    full_tr = z_tr[p_tr.all(dim=1)]
    full_va = z_va[p_va.all(dim=1)]
    if len(full_tr) < 2 or len(full_va) < 1:
        raise ValueError("the ADN trains on samples with every modality present: too few in train/val")
    model.clip_range = clip_range(cfg, full_tr)
    prior_info = fit_prior(model, full_tr, full_va) if model.prior is not None else {}
    torch.manual_seed(seed + 17)
    gen = torch.Generator().manual_seed(seed + 17)
    rng = np.random.default_rng(seed + 17)
    opt = torch.optim.AdamW(model.denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_rule(cfg.epochs))
    # an exponential moving average of the weights is what gets evaluated and kept
    ema = (torch.optim.swa_utils.AveragedModel(model.denoiser, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
           if cfg.ema_decay else None)
    stopper, history = EarlyStopping(cfg.patience, mode="min"), []
    # The conditional variant is selected on what it is for: completion error on validation.
    # The paper variant's start step n is chosen after training, so it is selected on the loss.
    select_on_completion = cfg.variant == "conditional"
    bar = progress(range(cfg.epochs), desc="ADN")
    for epoch in bar:
        model.denoiser.train()
        per_bin = np.zeros((2, NOISE_BINS))
        for idx in batches(len(full_tr), cfg.batch_size, rng):
            loss = adn_loss(model, sch, full_tr[torch.from_numpy(idx).to(dev)], gen, per_bin)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.denoiser.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(model.denoiser)
        sched.step()
        train_state = None
        if ema is not None:  # evaluate (and keep) the averaged weights
            train_state = copy.deepcopy(model.denoiser.state_dict())
            model.denoiser.load_state_dict(ema.module.state_dict())
        val = _adn_val_loss(model, sch, full_va, seed)
        train_bins = (per_bin[0] / np.maximum(per_bin[1], 1)).tolist()
        h = {"epoch": epoch + 1, "val_loss": val, "train_loss_per_noise_bin": train_bins}
        if select_on_completion:
            errs = completion_errors(model, z_va, p_va, seed)
            h["val_completion_mse"] = float(np.mean([e["mse"] for e in errs.values()]))
        history.append(h)
        score = h.get("val_completion_mse", val)
        bar.set_postfix(val_loss=f"{val:.4f}", score=f"{score:.4f}")
        stop = stopper.step(score, model.denoiser)
        if stopper.improved:
            best_epoch = h
        if train_state is not None:
            model.denoiser.load_state_dict(train_state)
        if stop:
            break
    model.denoiser.load_state_dict(stopper.best_state)
    model.denoiser.requires_grad_(False)
    val_bins = np.zeros((2, NOISE_BINS))
    with torch.no_grad():
        model.denoiser.eval()
        adn_loss(model, sch, full_va, torch.Generator().manual_seed(seed + 99), val_bins)
    info = {
        "epochs": len(history),
        "best_epoch": best_epoch["epoch"],
        "selected_on": "val completion MSE" if select_on_completion else "val denoising loss",
        "best_val_loss": best_epoch["val_loss"],
        "best_val_completion_mse": best_epoch.get("val_completion_mse"),
        "train_loss_per_noise_bin": best_epoch["train_loss_per_noise_bin"],
        "val_loss_per_noise_bin": (val_bins[0] / np.maximum(val_bins[1], 1)).tolist(),
        "noise_bins": [[b * cfg.num_train_timesteps // NOISE_BINS, (b + 1) * cfg.num_train_timesteps // NOISE_BINS]
                       for b in range(NOISE_BINS)],
        "clip_range": model.clip_range,
        **prior_info,
        "val_loss_curve": [h["val_loss"] for h in history],
    }
    log(f"ADN: selected epoch {info['best_epoch']} ({info['selected_on']} {stopper.best:.4f})")
    return info


@torch.no_grad()
def _adn_val_loss(model: ADMCModel, sch, full_va: torch.Tensor, seed: int) -> float:
    model.denoiser.eval()
    gen = torch.Generator().manual_seed(seed + 99)  # same t, noise and masks every epoch
    losses = [adn_loss(model, sch, full_va[s : s + 1024], gen).item() * len(full_va[s : s + 1024])
              for s in range(0, len(full_va), 1024)]
    return float(sum(losses) / len(full_va))


def choose_start_step(model: ADMCModel, z_va: torch.Tensor, p_va: torch.Tensor, seed: int) -> dict:
    """Paper variant: pick the reverse-chain start n from the grid by validation completion MSE."""
    grid = {}
    for n in progress(model.cfg.adn.start_grid, desc="choose n"):
        errs = completion_errors(model, z_va, p_va, seed, start_step=n)
        grid[str(n)] = float(np.mean([e["mse"] for e in errs.values()]))
    best = int(min(grid, key=grid.get))
    model.start_step = best
    log(f"ADN start step n = {best} (validation completion MSE {grid})")
    return {"start_step": best, "val_mse_by_start_step": grid}


# ---- stage 3: fusion -------------------------------------------------------------------------------

def _fusion_masks(M: int, rng: np.random.Generator, max_patterns: int = 16) -> list[tuple[bool, ...]]:
    masks = all_masks(M)
    if len(masks) <= max_patterns:
        return masks
    picked = [masks[i] for i in rng.choice(len(masks) - 1, max_patterns - 1, replace=False)]
    return picked + [masks[-1]]


@torch.no_grad()
def _pattern_set(model: ADMCModel, z, present, labels, masks, seed: int):
    """Fusion inputs for each availability pattern over the samples that have those modalities."""
    out = []
    for k, mask in enumerate(masks):
        m = torch.tensor(mask, device=z.device)
        rows = torch.nonzero((present | ~m).all(dim=1)).flatten()
        if len(rows) == 0:
            continue
        avail = m.expand(len(rows), -1)
        gen = torch.Generator().manual_seed(seed * 7919 + k)
        tokens = model.fusion_inputs(z[rows], avail, gen)
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
    for epoch in range(cfg.epochs):
        net.train()
        for idx in batches(len(Y), cfg.batch_size, rng):
            i = torch.from_numpy(idx).to(X.device)
            logits = net(X[i], A[i]) if net.mask_aware else net(X[i])
            loss = nn.functional.cross_entropy(logits, Y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if stopper.step(_fusion_val_ua(net, val_sets), net):
            break
    net.load_state_dict(stopper.best_state)
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
    if model.fusion_mode == "shared":
        if cfg.shared_patterns not in ("all", "full"):
            raise ValueError(f"fusion.shared_patterns must be all or full, got {cfg.shared_patterns!r}")
        masks = _fusion_masks(model.M, rng) if cfg.shared_patterns == "all" else [tuple(True for _ in range(model.M))]
        tr = _pattern_set(model, z_tr, p_tr, y_tr, masks, seed)
        va = _pattern_set(model, z_va, p_va, y_va, masks, seed + 1)
        info["shared"] = fit_fusion(model.fusion["shared"], tr, va, cfg, seed + 11)
        info["shared"]["patterns"] = [model.condition_name(m) for m in masks]
    else:
        for k, mask in enumerate(progress(all_masks(model.M), desc="fusion")):
            tr = _pattern_set(model, z_tr, p_tr, y_tr, [mask], seed + k)
            va = _pattern_set(model, z_va, p_va, y_va, [mask], seed + 1000 + k)
            info[model.condition_name(mask)] = fit_fusion(model.fusion[mask_key(mask)], tr, va, cfg, seed + 11 + k)
    return info


# ---- everything ------------------------------------------------------------------------------------

def train(ds: FeatureDataset, cfg: TrainConfig, device: torch.device, encoders_from: ADMCModel | None = None) -> tuple[ADMCModel, dict]:
    """Train a full model on ``ds['train']`` with selection on ``ds['val']``.

    ``encoders_from`` reuses another model's frozen ITFN (the paper's ablation shares it).
    """
    t0 = time.time()
    model = ADMCModel(ds.schema, cfg).to(device)
    train_split, val_split = ds["train"], ds["val"]
    info: dict = {}
    if encoders_from is not None:
        model.encoders.load_state_dict(encoders_from.encoders.state_dict())
        model.encoders.requires_grad_(False)
        model.emb_mean.copy_(encoders_from.emb_mean)
        model.emb_std.copy_(encoders_from.emb_std)
        info["itfn"] = "shared with another run"
    else:
        info["itfn"] = train_unimodal(model, train_split, val_split, device, cfg.seed)
        fit_standardization(model, train_split)
    z_tr, p_tr = model.embed(train_split)
    z_va, p_va = model.embed(val_split)
    if model.uses_adn:
        info["adn"] = train_adn(model, z_tr, p_tr, z_va, p_va, cfg.seed)
        if cfg.adn.variant == "paper" and cfg.adn.start_step is None:
            info["adn"].update(choose_start_step(model, z_va, p_va, cfg.seed))
        info["adn"]["val_completion"] = completion_errors(model, z_va, p_va, cfg.seed)
    if model.fusion_mode != "late":
        info["fusion"] = train_fusion(model, z_tr, p_tr, train_split.labels, z_va, p_va, val_split.labels,
                                      cfg.seed)
    info["train_seconds"] = round(time.time() - t0, 1)
    return model, info
