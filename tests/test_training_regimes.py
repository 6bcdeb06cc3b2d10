"""Training sets with missing modalities and few labels (admc.regimes, ``data.*`` settings): the
completers learn from incomplete samples, the fusion trains on filled ones, and the CLI records it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from admc.config import ADNConfig, DataConfig
from admc.completion import RidgeFill
from admc.data import load_dataset
from admc.diffusion.process import Diffusion, _masks_within
from admc.models.denoiser import Denoiser
from admc.models.linear_prior import LinearPrior
from admc.regimes import labelled_indices, random_missing_mask, training_data
from tests.synthetic import FAST, make_dataset

M, E = 3, 4


def _correlated(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, 1, E, generator=g)
    return shared + 0.3 * torch.randn(n, M, E, generator=g)


def _missing(n, rate, seed=0):
    return torch.from_numpy(random_missing_mask(np.ones((n, M), bool), rate, np.random.default_rng(seed)))


def _completion_mse(completer, z):
    errs = []
    for code in range(1, 2**M - 1):
        mask = torch.tensor([bool(code >> i & 1) for i in range(M)])
        avail = mask.expand(len(z), -1)
        out = completer.complete(z * avail[..., None], avail)
        errs.append(float(((out - z)[~avail] ** 2).mean()))
    return float(np.mean(errs))


def test_training_data_drops_entries_at_the_rate_keeps_one_modality_and_is_seeded(tmp_path):
    ds = load_dataset(make_dataset(tmp_path / "ds", n_per_split=(120, 30, 30)))
    names = ds.schema.names
    a = training_data(ds["train"], names, DataConfig(train_missing_rate=0.5, label_fraction=0.25), seed=3)
    pm = a.split.presence_matrix(names)
    assert abs((~pm).mean() - 0.5) < 0.01 and pm.any(axis=1).all()
    b = training_data(ds["train"], names, DataConfig(train_missing_rate=0.5, label_fraction=0.25), seed=3)
    assert np.array_equal(pm, b.split.presence_matrix(names)) and np.array_equal(a.labelled, b.labelled)
    c = training_data(ds["train"], names, DataConfig(train_missing_rate=0.5), seed=4)
    assert not np.array_equal(pm, c.split.presence_matrix(names))
    # labels: a quarter of every class
    counts = np.bincount(ds["train"].labels[a.labelled])
    assert np.array_equal(counts, np.round(0.25 * np.bincount(ds["train"].labels)).astype(int))
    assert ds["train"].presence_matrix(names).all()  # the dataset itself is untouched
    assert len(labelled_indices(np.array([0, 0, 1]), 0.01, np.random.default_rng(0))) == 2  # one per class
    for bad in (dict(train_missing_rate=1.0), dict(train_missing_rate=-0.1), dict(label_fraction=0.0)):
        with pytest.raises(ValueError, match=f"data.{next(iter(bad))} must be in"):
            DataConfig(**bad)


def test_the_linear_prior_learns_from_incomplete_samples_pairwise():
    tr, va, te = _correlated(3000), _correlated(300, seed=1), _correlated(500, seed=2)
    present = _missing(len(tr), 0.5)
    assert int(present.all(dim=1).sum()) < 0.1 * len(tr)  # few complete samples
    full = RidgeFill(LinearPrior(M, E), ADNConfig())
    full.fit(tr, va, 0)
    pairwise = RidgeFill(LinearPrior(M, E), ADNConfig())
    pairwise.fit(tr * present[..., None], va, 0, present=present)
    # blocks averaged over the samples that have both rows: close to the complete-data estimate ...
    C_full, C_pair = full.prior.second_moment, pairwise.prior.second_moment
    assert float((C_pair - C_full).abs().max()) < 0.15
    # ... where averaging the zero-filled rows over every sample shrinks the cross blocks towards 0
    naive = RidgeFill(LinearPrior(M, E), ADNConfig())
    naive.fit(tr * present[..., None], va, 0)
    assert float((naive.prior.second_moment - C_full).abs().max()) > 0.5
    # half the entries missing costs some accuracy, far less than treating absent rows as data does
    e_full, e_pair, e_naive = (_completion_mse(c, te) for c in (full, pairwise, naive))
    assert e_pair < 1.35 * e_full and e_pair < 0.5 * e_naive, (e_full, e_pair, e_naive)


def test_the_prior_refuses_two_modalities_never_seen_together():
    present = torch.tensor([[True, True, False], [True, False, True]] * 5)
    present[:, 0] = False
    present[0, 0] = True
    with pytest.raises(ValueError, match="no training sample has both modality"):
        LinearPrior(M, E).fit(_correlated(10), present=present)


def test_masks_within_are_proper_non_empty_subsets_of_the_present_rows():
    present = _missing(4000, 0.3)
    present = present[present.sum(dim=1) >= 2]
    avail = _masks_within(present, torch.Generator().manual_seed(0))
    assert (avail <= present).all() and avail.any(dim=1).all() and ((present & ~avail).any(dim=1)).all()
    codes = (avail.long() << torch.arange(M)).sum(dim=1)
    assert len(codes.unique()) == 2**M - 2  # every proper pattern is drawn


@pytest.mark.parametrize("variant", ["conditional", "paper"])
def test_the_denoising_loss_ignores_absent_rows(variant):
    torch.manual_seed(0)
    cfg = ADNConfig(variant=variant, prior="linear", num_train_timesteps=50, d_model=16, ff=32, layers=1, heads=2)
    prior = LinearPrior(M, E).fit(_correlated(200), shrinkage=0.1)
    diff = Diffusion(Denoiser(M, E, 16, 1, 2, 32, 0.0, conditional=variant == "conditional"), cfg, prior)
    diff.denoiser.eval()
    x = _correlated(64, seed=5)
    present = _missing(64, 0.3, seed=1)
    garbage = x.clone()
    garbage[~present] = 1e3  # what an absent row holds must not matter
    with torch.no_grad():
        a = diff.loss(x, torch.Generator().manual_seed(1), present=present)
        b = diff.loss(garbage, torch.Generator().manual_seed(1), present=present)
    assert torch.isfinite(a) and abs(float(a) - float(b)) < 1e-4 * max(1.0, abs(float(a)))
    # and no gradient reaches the denoiser's output on an absent row
    outs = []

    def keep(module, inputs, out):
        out.retain_grad()
        outs.append(out)

    diff.denoiser.register_forward_hook(keep)
    diff.loss(x, torch.Generator().manual_seed(1), present=present).backward()
    grad = outs[-1].grad.abs().sum(dim=-1)
    assert float(grad[~present].max()) == 0.0 and float(grad[present].max()) > 0


def test_a_conditional_adn_trained_on_incomplete_samples_completes_like_the_prior():
    torch.manual_seed(0)
    tr, va, te = _correlated(1500), _correlated(200, seed=1), _correlated(300, seed=2)
    present = _missing(len(tr), 0.4)
    cfg = ADNConfig(epochs=15, patience=5, d_model=32, ff=64, layers=2, heads=2, num_train_timesteps=100,
                    batch_size=128)
    diff = Diffusion(Denoiser(M, E, 32, 2, 2, 64, 0.0, conditional=True), cfg, LinearPrior(M, E))
    info = diff.fit(tr * present[..., None], va, 0, present=present)
    assert info["train_samples"] == int((present.sum(dim=1) >= 2).sum()) < len(tr)
    zero = float((te ** 2).mean())
    assert _completion_mse(diff, te) < 0.3 * zero


@pytest.mark.slow
def test_cli_trains_on_a_reduced_train_split_and_records_it(tmp_path):
    data = make_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "admc.cli", "train", "--data", str(data), "--out", str(out), "--quiet",
           "--train-missing-rate", "0.4", "--label-fraction", "0.5", *FAST]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["data"] == {"train_missing_rate": 0.4, "label_fraction": 0.5}
    td = meta["train"]["train_data"]
    assert td["labelled"] == 45 and td["missing_entries"] == 0.4 and td["full_samples"] < 90
    assert meta["train"]["adn"]["train_samples"] < 90
    info = subprocess.run([sys.executable, "-m", "admc.cli", "info", str(out)], capture_output=True, text=True)
    assert "train     0.4 of the modality entries dropped" in info.stdout and "labels on 45 samples" in info.stdout
    bad = subprocess.run(cmd[:-len(FAST)] + ["--overwrite", "--train-missing-rate", "1"], capture_output=True,
                         text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["admc: error: --train-missing-rate 1: must be in [0, 1), got 1.0"]


def test_fusion_trains_on_filled_incomplete_samples_or_drops_them():
    from admc.config import FusionConfig, ITFNConfig, TrainConfig
    from admc.data import Modality, Schema
    from admc.pipeline import ADMCModel
    from admc.train import _pattern_set

    schema = Schema(tuple(Modality(n, 4, "vector", "mlp") for n in "ABC"), ("x", "y"))
    cfg = TrainConfig(method="ridge_fill", itfn=ITFNConfig(emb_dim=E), fusion=FusionConfig())
    model = ADMCModel(schema, cfg)
    z = _correlated(200)
    present = _missing(200, 0.4)
    model.completer.fit(z, z[:50], 0, present=present)
    y = np.zeros(200, dtype=np.int64)
    full = (True, True, True)
    (_, tok_fill, _, y_fill), = _pattern_set(model, z * present[..., None], present, y, [full], 0, incomplete="fill")
    (_, tok_drop, _, _), = _pattern_set(model, z * present[..., None], present, y, [full], 0, incomplete="drop")
    assert len(tok_drop) == int(present.all(dim=1).sum()) and len(tok_fill) == 200
    # a partial sample's tokens: its own rows kept, the others the ridge estimate from them
    i = int(torch.nonzero(~present.all(dim=1))[0])
    expect = model.fill((z * present[..., None])[i : i + 1], present[i : i + 1])
    assert torch.allclose(tok_fill[i, :, :E], expect[0])
