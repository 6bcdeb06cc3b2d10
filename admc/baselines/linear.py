"""``linear``: per availability condition, a logistic regression on pooled raw features.

No ITFN, no completion: each modality's rows are pooled (a ``vector`` modality: its row; a
``sequence``: the mean and the standard deviation of its rows side by side), standardized with the
training set's statistics, and for every availability pattern a class-balanced logistic regression
(scikit-learn, lbfgs) reads the pooled features of the available modalities, its ``C`` chosen from
``linear.c_grid`` by validation UA.  The fitted coefficients are the weights of one ``nn.Linear``
per pattern, so a run is safetensors + JSON like every other (nothing pickled).

:class:`LinearModel` has the surface :func:`admc.evaluate.evaluate` and ``admc bench`` use
(``embed``, ``predict_logits``, ``predict_proba``, ``calibration``, ``completes``), with one
temperature per pattern fitted on validation like the other methods'.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from admc.calibration import TemperatureScaling, fit_calibration
from admc.config import TrainConfig
from admc.data import FeatureDataset, Schema, Split, condition_name
from admc.metrics import scores
from admc.pooling import pooled_dim, pooled_split
from admc.regimes import training_data
from admc.runtime import log, progress


class LinearModel(nn.Module):
    completes = False      # nothing is completed: each pattern's regression reads only what is there
    uses_adn = False
    mmer = False
    fusion_mode = "linear"
    start_step = None      # no completer: nothing to start (saved as null in run.json)
    clip_range = None

    def __init__(self, schema: Schema, cfg: TrainConfig):
        from admc.masks import all_masks, mask_key

        super().__init__()
        self.schema, self.cfg = schema, cfg
        self.M, self.C = len(schema.modalities), len(schema.classes)
        self.dims = [pooled_dim(m.kind, m.dim) for m in schema.modalities]
        self.E = max(self.dims)  # embed() pads every modality's pooled row to this
        for i, d in enumerate(self.dims):
            self.register_buffer(f"feat_mean_{i}", torch.zeros(d))
            self.register_buffer(f"feat_std_{i}", torch.ones(d))
        self.heads = nn.ModuleDict({
            mask_key(mask): nn.Linear(sum(d for d, a in zip(self.dims, mask) if a), self.C)
            for mask in all_masks(self.M)})
        self.heads.requires_grad_(False)
        self.calibration = TemperatureScaling(self.M)
        self._key = mask_key

    # ---- features --------------------------------------------------------------------------------
    def fit_standardization(self, split: Split) -> None:
        """Per-dimension mean and std (ddof 0; constant dims keep 1) of the present training rows."""
        for i, mod in enumerate(self.schema.modalities):
            x = pooled_split(split, mod.name, mod.kind)[split.present[mod.name]]
            if len(x) == 0:
                continue
            std = x.std(axis=0)
            getattr(self, f"feat_mean_{i}").copy_(torch.from_numpy(x.mean(axis=0)))
            getattr(self, f"feat_std_{i}").copy_(torch.from_numpy(np.where(std > 1e-8, std, 1.0)))

    @torch.no_grad()
    def embed(self, split: Split, batch_size: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized pooled features ``z [n, M, E]`` (modality i in its first ``dims[i]`` columns,
        absent ones 0) and presence ``[n, M]``."""
        dev = self.feat_mean_0.device
        z = torch.zeros(len(split), self.M, self.E, device=dev)
        for i, mod in enumerate(self.schema.modalities):
            x = torch.from_numpy(pooled_split(split, mod.name, mod.kind)).float().to(dev)
            p = torch.from_numpy(split.present[mod.name]).to(dev)
            z[p, i, : self.dims[i]] = ((x - getattr(self, f"feat_mean_{i}")) / getattr(self, f"feat_std_{i}"))[p]
        return z, torch.from_numpy(split.presence_matrix(self.schema.names)).to(dev)

    def features(self, z: torch.Tensor, mask) -> torch.Tensor:
        """``[n, sum of the available dims]``: the pooled features pattern ``mask``'s regression reads."""
        return torch.cat([z[:, i, : self.dims[i]] for i, a in enumerate(mask) if a], dim=1)

    # ---- classification --------------------------------------------------------------------------
    @torch.no_grad()
    def predict_logits(self, z: torch.Tensor, avail: torch.Tensor, generator=None,
                       batch_size: int = 1024, mmer: bool = True) -> torch.Tensor:
        """Logits ``[n, C]`` of each row's availability pattern's regression."""
        avail = avail.bool()
        if (~avail.any(dim=1)).any():
            raise ValueError("every sample needs at least one available modality")
        logits = torch.zeros(z.shape[0], self.C, device=z.device)
        for pat in torch.unique(avail, dim=0):
            rows = torch.nonzero((avail == pat).all(dim=1)).flatten()
            mask = pat.tolist()
            logits[rows] = self.heads[self._key(mask)](self.features(z[rows], mask))
        return logits

    @torch.no_grad()
    def predict_proba(self, z, avail, generator=None, batch_size: int = 1024, mmer: bool = True,
                      calibrated: bool = True) -> torch.Tensor:
        logits = self.predict_logits(z, avail)
        return torch.softmax(self.calibration(logits, avail) if calibrated else logits, dim=-1)

    def condition_name(self, mask) -> str:
        return condition_name(self.schema.names, mask)

    # ---- training --------------------------------------------------------------------------------
    def _set_head(self, mask, clf) -> None:
        """Copy a fitted LogisticRegression into pattern ``mask``'s head (a class it never saw gets a
        logit far below the others; two classes: logits ``[0, w x + b]``)."""
        head = self.heads[self._key(mask)]
        coef, icpt = np.asarray(clf.coef_), np.asarray(clf.intercept_)
        if len(clf.classes_) == 2:
            coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], icpt])
        W = np.zeros((self.C, coef.shape[1]))
        b = np.full(self.C, -1e4)
        W[clf.classes_], b[clf.classes_] = coef, icpt
        head.weight.copy_(torch.from_numpy(W))
        head.bias.copy_(torch.from_numpy(b))

    @classmethod
    def fit(cls, ds: FeatureDataset, cfg: TrainConfig, device) -> tuple["LinearModel", dict]:
        """Train on ``ds['train']`` (reduced as ``cfg.data`` says), ``C`` and temperatures on ``ds['val']``."""
        from sklearn.linear_model import LogisticRegression

        from admc.masks import all_masks

        t0 = time.time()
        data = training_data(ds["train"], ds.names, cfg.data, cfg.seed)
        model = cls(ds.schema, cfg)
        model.fit_standardization(data.split)
        model.to(device)
        z_tr, p_tr = model.embed(data.split)
        z_va, p_va = model.embed(ds["val"])
        labelled = np.zeros(len(data.split), bool)
        labelled[data.labelled] = True
        y_tr, y_va = data.split.labels, ds["val"].labels
        info: dict = {}
        for mask in progress(all_masks(model.M), desc="linear"):
            m = np.array(mask)
            tr = labelled & (p_tr.cpu().numpy() | ~m).all(axis=1)
            va = (p_va.cpu().numpy() | ~m).all(axis=1)
            if len(np.unique(y_tr[tr])) < 2 or not va.any():
                raise ValueError(f"linear: condition {model.condition_name(mask)} needs training samples of two "
                                 "classes or more and validation samples with its modalities")
            X_tr = model.features(z_tr[torch.from_numpy(tr)], mask).double().cpu().numpy()
            X_va = model.features(z_va[torch.from_numpy(va)], mask).double().cpu().numpy()
            by_c, best = {}, None
            for c in cfg.linear.c_grid:
                clf = LogisticRegression(C=c, max_iter=cfg.linear.max_iter, class_weight="balanced")
                clf.fit(X_tr, y_tr[tr])
                by_c[f"{c:g}"] = scores(y_va[va], clf.predict(X_va))["ua"]
                if best is None or by_c[f"{c:g}"] > best[1]:
                    best = (clf, by_c[f"{c:g}"], c)
            model._set_head(mask, best[0])
            info[model.condition_name(mask)] = {"C": best[2], "val_ua": best[1], "val_ua_by_C": by_c,
                                                "train_samples": int(tr.sum())}
        log("linear: val UA " + ", ".join(f"{k} {v['val_ua']:.1f} (C {v['C']:g})" for k, v in info.items()))
        cal = fit_calibration(model, z_va, p_va, y_va, cfg.calibration, cfg.seed)
        model.eval()
        return model, {"linear": info, "calibration": cal.to_json(), "train_seconds": round(time.time() - t0, 1)}
