"""Autoencoder completers of the ``ae``, ``cra`` and ``mmin`` methods (docs/baselines.md).

Each has the completer surface of :mod:`admc.completion` and works, like the ADN, on the frozen,
standardized ITFN embeddings ``z [n, M, E]`` flattened to one ``M * E`` vector: the missing rows are
zero (the train mean) in the input, and the network reconstructs every row.  Training draws a random
non-empty proper availability pattern per sample and batch (MMIN's six missing conditions for three
modalities; within each sample's present rows when the training set has missing modalities, whose
absent rows carry no loss); the epoch kept is the one with the lowest validation completion MSE
(mean over the missing conditions, full validation samples).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from admc.batching import batches
from admc.config import ImputerConfig
from admc.diffusion.process import training_masks
from admc.diffusion.training import val_completion_mse
from admc.models.autoencoder import FcAE, FcClassifier, ResidualAE
from admc.optim import EarlyStopping, lambda_rule
from admc.runtime import log, progress


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, rows: torch.Tensor | None, M: int) -> torch.Tensor:
    """Mean squared error of flattened ``[B, M * E]`` rows, over the rows where ``rows [B, M]`` is True."""
    if rows is None:
        return ((pred - target) ** 2).mean()
    w = rows.float().repeat_interleave(pred.shape[1] // M, dim=1)
    return (((pred - target) ** 2) * w).sum() / w.sum().clamp_min(1.0)


class AutoencoderFill:
    """The shared part: training loop, selection and ``complete``; a subclass builds ``net`` and says
    how it reconstructs (:meth:`reconstruct`) and what it is trained on (:meth:`loss`)."""

    name = "autoencoder"
    label = "an autoencoder"
    completes = True
    clip_range = None

    def __init__(self, cfg: ImputerConfig, M: int, E: int, n_classes: int):
        self.cfg, self.M, self.E = cfg, M, E
        self.net = self.build(M * E, n_classes)  # registered by ADMCModel as ``imputer``

    def build(self, dim: int, n_classes: int) -> nn.Module:
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Every row of the flattened input ``x [B, M * E]`` (missing rows zero)."""
        return self.net(x)[0]

    def loss(self, x_in, target, rows, labels) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction of every row that is there (``rows [B, M]``; None: all) from the masked input."""
        mse = _masked_mse(self.reconstruct(x_in), target, rows, self.M)
        return mse, {"mse": mse.item()}

    def fit(self, train: torch.Tensor, full_va: torch.Tensor, seed: int, present: torch.Tensor | None = None,
            labels: torch.Tensor | None = None) -> dict:
        """Train on the standardized embeddings ``train [n, M, E]`` (``present [n, M]``: the rows that
        are there; ``labels [n]``, -1 where unlabelled: used by the methods with a classification loss)."""
        cfg, M = self.cfg, self.M
        if present is not None and bool(present.all()):
            present = None
        if present is not None:
            enough = present.sum(dim=1) >= 2
            train, present = train[enough], present[enough].bool()
            labels = labels[enough] if labels is not None else None
        if len(train) < 2 or len(full_va) < 1:
            raise ValueError(f"the {self.name} completer needs training samples with at least two modalities "
                             "present and full validation samples: too few in train/val")
        dev = train.device
        torch.manual_seed(seed + 23)
        gen = torch.Generator().manual_seed(seed + 23)
        rng = np.random.default_rng(seed + 23)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999),
                               weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda_rule(cfg.epochs))
        stopper, curve, parts = EarlyStopping(cfg.patience, mode="min"), [], {}
        bar = progress(range(cfg.epochs), desc=self.name)
        for _ in bar:
            self.net.train()
            sums: dict[str, float] = {}
            for idx in batches(len(train), cfg.batch_size, rng):
                i = torch.from_numpy(idx).to(dev)
                rows = present[i] if present is not None else None
                avail = training_masks(len(i), M, gen, dev, rows)
                x = train[i]
                x_in = (x * avail[..., None]).reshape(len(i), -1)
                loss, part = self.loss(x_in, x.reshape(len(i), -1), rows,
                                       labels[i] if labels is not None else None)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                opt.step()
                for k, v in part.items():
                    sums[k] = sums.get(k, 0.0) + v * len(i)
            sched.step()
            curve.append(val_completion_mse(self, full_va, seed))
            bar.set_postfix(val_mse=f"{curve[-1]:.4f}")
            stop = stopper.step(curve[-1], self.net)
            if stopper.improved:
                parts = {k: v / len(train) for k, v in sums.items()}
            if stop:
                break
        self.net.load_state_dict(stopper.best_state)
        self.net.requires_grad_(False)
        best = int(np.argmin(curve)) + 1
        log(f"{self.name}: selected epoch {best} (val completion MSE {stopper.best:.4f})")
        info = {"epochs": len(curve), "best_epoch": best, "selected_on": "val completion MSE",
                "best_val_completion_mse": stopper.best, "train_loss_at_best": parts,
                "val_completion_mse_curve": curve}
        if present is not None:
            info["train_samples"] = len(train)
        return info

    @torch.no_grad()
    def complete(self, z: torch.Tensor, avail: torch.Tensor, generator=None) -> torch.Tensor:
        """``z [B, M, E]`` with the rows where ``avail [B, M]`` is False reconstructed; the available
        rows returned exactly as given."""
        self.net.eval()
        keep = avail.bool()[..., None]
        x = (z * keep).reshape(len(z), -1)
        return torch.where(keep, z, self.reconstruct(x).view_as(z))


class AEFill(AutoencoderFill):
    """``ae``: one fully connected autoencoder imputes the missing rows from the zero-filled input
    (Tran et al., CVPR 2017, the AE baseline; MMIN's ``mmin_AE`` geometry: AE_layers 512,450,384,256,
    Adam lr 1e-3, batch 256, 20 + 30 epochs, scripts/CAP_mmin_AE.sh), trained by reconstruction alone."""

    name = "ae"

    def build(self, dim: int, n_classes: int) -> nn.Module:
        return FcAE(dim, self.cfg.layers)


class CRAFill(AutoencoderFill):
    """``cra``: the cascaded residual autoencoder (Tran et al., CVPR 2017) as MMIN builds it
    (``ResidualAE``, AE_layers 256,128,64, 5 blocks), trained by reconstruction alone."""

    name = "cra"

    def build(self, dim: int, n_classes: int) -> nn.Module:
        return ResidualAE(dim, self.cfg.layers, self.cfg.blocks)


class MMINFill(AutoencoderFill):
    """``mmin``: the Missing Modality Imagination Network (Zhao, Li and Jin, ACL 2021) on the frozen
    ITFN embeddings: a forward CRA imagines every row from the masked input, a backward CRA maps the
    imagination back to the masked input (cycle consistency), and a classifier reads the forward
    CRA's latent (every block's code).  Loss ``ce_weight * CE + mse_weight * MSE(forward, truth) +
    cycle_weight * MSE(backward, masked input)``.

    Hyper-parameters of AIM3-RUC/MMIN (models/mmin_model.py, scripts/CAP_mmin.sh), the defaults of
    :class:`admc.config.ImputerConfig`: AE_layers 256,128,64, n_blocks 5, separate forward and
    backward autoencoders without dropout or batch norm, cls_layers 128,128 with dropout 0.5,
    ce/mse/cycle weights 1/4/2, Adam lr 2e-4 beta1 0.5, batch 128, niter 30 + niter_decay 30
    (linear decay), gradient norm clipped to 1.

    Differences (docs/baselines.md): MMIN fine-tunes its encoders, which start from a full-modality
    teacher, and reads its own classifier; here the encoders are the frozen ITFN, the classifier is
    a training loss only (labelled training samples), the completed rows go to the same
    per-condition fusion as every completer's, and the epoch is selected on validation completion
    MSE instead of validation UA."""

    name = "mmin"

    def build(self, dim: int, n_classes: int) -> nn.Module:
        c = self.cfg
        return nn.ModuleDict({
            "imagine": ResidualAE(dim, c.layers, c.blocks),
            "back": ResidualAE(dim, c.layers, c.blocks),
            "classifier": FcClassifier(c.layers[-1] * c.blocks, c.cls_layers, n_classes, c.cls_dropout),
        })

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net["imagine"](x)[0]

    def loss(self, x_in, target, rows, labels) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        imagined, latent = self.net["imagine"](x_in)
        back, _ = self.net["back"](imagined)
        mse = _masked_mse(imagined, target, rows, self.M)
        cycle = ((back - x_in.detach()) ** 2).mean()
        loss = c.mse_weight * mse + c.cycle_weight * cycle
        out = {"mse": mse.item(), "cycle": cycle.item()}
        if labels is not None and bool((labels >= 0).any()):
            ce = nn.functional.cross_entropy(self.net["classifier"](latent), labels, ignore_index=-1)
            loss = loss + c.ce_weight * ce
            out["ce"] = ce.item()
        return loss, out
