"""Training loop of the ADN denoiser (paper 3.2) on frozen, standardized full-sample embeddings."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from admc import distributed as dp
from admc.optim import EarlyStopping, lambda_rule
from admc.masks import proper_masks
from admc.runtime import log, progress

NOISE_BINS = 10             # the loss reported per band of noise levels (diagnostics)


@torch.no_grad()
def val_completion_mse(diffusion, full_va: torch.Tensor, seed: int) -> float:
    """Mean over the missing conditions of the completion MSE on full validation samples (the
    completer as it is set: its sampler, its start step)."""
    errs = []
    for mask in proper_masks(full_va.shape[1]):
        avail = torch.tensor(mask, device=full_va.device).expand(len(full_va), -1)
        filled = diffusion.complete(full_va, avail, torch.Generator().manual_seed(seed + 5))
        errs.append(float(((filled - full_va)[~avail] ** 2).mean()))
    return float(np.mean(errs))


@torch.no_grad()
def _val_loss(diffusion, full_va: torch.Tensor, seed: int) -> float:
    diffusion.denoiser.eval()
    gen = torch.Generator().manual_seed(seed + 99)  # same t, noise and masks every epoch
    losses = [diffusion.loss(full_va[s : s + 1024], gen).item() * len(full_va[s : s + 1024])
              for s in range(0, len(full_va), 1024)]
    return float(sum(losses) / len(full_va))


def _epoch_record(diffusion, full_va, seed: int, epoch: int, per_bin: np.ndarray, completion: bool) -> dict:
    """One epoch's line of the training history: validation loss (and completion MSE), train loss per bin."""
    h = {"epoch": epoch + 1, "val_loss": _val_loss(diffusion, full_va, seed),
         "train_loss_per_noise_bin": (per_bin[0] / np.maximum(per_bin[1], 1)).tolist()}
    if completion:
        h["val_completion_mse"] = val_completion_mse(diffusion, full_va, seed)
    return h


def train_denoiser(diffusion, full_tr: torch.Tensor, full_va: torch.Tensor, seed: int,
                   present: torch.Tensor | None = None) -> dict:
    """AdamW with MMIN's LR rule, early stopping.  The conditional variant is selected on what it is
    for, validation completion MSE; the paper variant on the validation denoising loss (its start
    step n is chosen afterwards).  ``present``: which training rows are there (a masked loss)."""
    cfg = diffusion.cfg
    net = diffusion.denoiser
    dev = full_tr.device
    torch.manual_seed(seed + 17)
    gen = torch.Generator().manual_seed(dp.rank_seed(seed + 17))   # each process its own t and noise
    rng = np.random.default_rng(seed + 17)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_rule(cfg.epochs))
    # an exponential moving average of the weights is what gets evaluated and kept
    ema = (torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
           if cfg.ema_decay else None)
    stopper, history = EarlyStopping(cfg.patience, mode="min"), []
    select_on_completion = diffusion.variant.selects_on_completion
    best_epoch = None
    bar = progress(range(cfg.epochs), desc="ADN")
    step = dp.wrap(net)
    for epoch in bar:
        net.train()
        per_bin = np.zeros((2, NOISE_BINS))
        for idx in dp.batches(len(full_tr), cfg.batch_size, rng):
            i = torch.from_numpy(idx).to(dev)
            with dp.forward_through(diffusion, "denoiser", step):
                loss = diffusion.loss(full_tr[i], gen, per_bin, None if present is None else present[i])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
        sched.step()
        train_state = None
        if ema is not None:  # evaluate (and keep) the averaged weights
            train_state = copy.deepcopy(net.state_dict())
            net.load_state_dict(ema.module.state_dict())
        h = dp.agree(lambda: _epoch_record(diffusion, full_va, seed, epoch, per_bin, select_on_completion))
        val = h["val_loss"]
        history.append(h)
        score = h.get("val_completion_mse", val)
        bar.set_postfix(val_loss=f"{val:.4f}", score=f"{score:.4f}")
        stop = stopper.step(score, net)
        if stopper.improved:
            best_epoch = h
        if train_state is not None:
            net.load_state_dict(train_state)
        if stop:
            break
    net.load_state_dict(stopper.best_state)
    dp.sync(net)
    net.requires_grad_(False)
    val_bins = np.zeros((2, NOISE_BINS))
    with torch.no_grad():
        net.eval()
        diffusion.loss(full_va, torch.Generator().manual_seed(seed + 99), val_bins)
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
        "clip_range": diffusion.clip_range,
        "val_loss_curve": [h["val_loss"] for h in history],
    }
    log(f"ADN: selected epoch {info['best_epoch']} ({info['selected_on']} {stopper.best:.4f})")
    return info
