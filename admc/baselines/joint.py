"""``joint``: the paper's "w/o ITFN" ablation (section 5.5) and the "Jointly_training" row of its Table 5.

The encoders are not trained each alone: they and the full-input fusion network are trained end to
end, by classification of the training samples that have every modality, on their raw (not yet
standardized) embeddings; the epoch with the best validation UA (full validation samples) is kept.
Then the encoders are frozen and the pipeline goes on as for ``admc``: embeddings standardized, the
ADN trained on them, one fusion network per missing condition trained on its completions.  With
per-condition fusion the jointly trained network stays the full-input classifier (no MMER: the
model un-standardizes the full-input tokens for it, ``ADMCModel.joint_full``); with the shared
fusion it only shapes the encoders.  The unimodal heads, which joint training leaves untrained, are
fitted afterwards on the frozen embeddings (by the caller, ``admc.train``), so that the heads' UA on
generated rows (paper Table 4) can be read for this method too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from admc.batching import batches, modality_batch
from admc.data import Split
from admc.metrics import scores
from admc.models.fusion import FusionNet
from admc.optim import EarlyStopping, lambda_rule
from admc.masks import mask_key
from admc.pipeline import ADMCModel
from admc.runtime import log, progress


def _tokens(model: ADMCModel, split: Split, idx: np.ndarray, device) -> torch.Tensor:
    """Raw embeddings ``[B, M, E]`` of samples ``idx`` (every modality present)."""
    cfg = model.cfg.itfn
    return torch.stack([model.encoders[m.name](*modality_batch(split, m.name, idx, cfg.max_len, device))[0]
                        for m in model.schema.modalities], dim=1)


@torch.no_grad()
def _val_ua(model: ADMCModel, fusion: nn.Module, val: Split, idx: np.ndarray, device) -> float:
    model.encoders.eval()
    fusion.eval()
    pred = np.concatenate([fusion(_tokens(model, val, b, device)).argmax(-1).cpu().numpy()
                           for b in batches(len(idx), 512, idx=idx)])
    return scores(val.labels[idx], pred)["ua"]


def train_joint(model: ADMCModel, train: Split, val: Split, device, seed: int) -> dict:
    """Train ``model.encoders`` with a full-input fusion network end to end (``itfn`` settings: epochs,
    patience, batch size, learning rate, weight decay); then freeze the encoders."""
    cfg, names = model.cfg.itfn, model.schema.names
    tr_idx = np.flatnonzero(train.presence_matrix(names).all(axis=1))
    va_idx = np.flatnonzero(val.presence_matrix(names).all(axis=1))
    if len(tr_idx) < 2 or len(va_idx) < 1:
        raise ValueError("joint: the encoders train on samples with every modality: too few in train/val")
    for mod in model.schema.modalities:
        net = model.encoders[mod.name]
        net.fit_input_norm(train.rows[mod.name][np.repeat(train.present[mod.name], np.diff(train.offsets[mod.name]))])
    full = tuple(True for _ in names)
    f = model.cfg.fusion
    fusion = (model.fusion[mask_key(full)] if model.joint_full else
              FusionNet(model.M, model.E, model.C, f.d_model, f.layers, f.heads, f.ff, f.dropout, f.hidden)).to(device)
    both = nn.ModuleDict({"encoders": model.encoders, "fusion": fusion})
    torch.manual_seed(seed * 1000 + 7)
    rng = np.random.default_rng(seed * 1000 + 7)
    params = [p for m in model.encoders.values() for p in m.encoder.parameters()] + list(fusion.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_rule(cfg.epochs))
    stopper = EarlyStopping(cfg.patience)
    bar = progress(range(cfg.epochs), desc="joint")
    for epoch in bar:
        model.encoders.train()
        fusion.train()
        for idx in batches(len(tr_idx), cfg.batch_size, rng, idx=tr_idx):
            logits = fusion(_tokens(model, train, idx, device))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(train.labels[idx]).to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        ua = _val_ua(model, fusion, val, va_idx, device)
        bar.set_postfix(val_ua=f"{ua:.1f}")
        if stopper.step(ua, both):
            break
    both.load_state_dict(stopper.best_state)
    for m in model.encoders.values():
        m.encoder.requires_grad_(False)
    fusion.requires_grad_(False)
    log(f"joint: encoders + full-input fusion val UA {stopper.best:.1f} after {epoch + 1} epochs")
    return {"val_ua": stopper.best, "epochs": epoch + 1, "train_samples": len(tr_idx),
            "full_input_classifier": model.joint_full}
