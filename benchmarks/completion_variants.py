"""Completion quality of ADN variants on one feature dataset, several seeds (issue 5).

For each seed the ITFN encoders are trained once and frozen; every ADN variant is then trained on
the same embeddings and scored on validation and test: mean squared error and cosine of the generated
rows against the true rows (standardized embedding space), next to zero fill (the train mean) and a
ridge regression from the available rows.  Writes JSON + a markdown table.

    python benchmarks/completion_variants.py --data benchmarks/_work/mfeat3 --seeds 0,1,2 \
        --out benchmarks/results/completion/completion_variants_mfeat3
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from admc.config import TrainConfig
from admc.data import load_dataset, missing_conditions
from admc.diagnostics import RidgeCompleter, completion_report
from admc.pipeline import ADMCModel
from admc.runtime import seed_everything, set_quiet
from admc.train import choose_start_step, clip_range, fit_standardization, train_adn, train_unimodal

# name -> ADN overrides (on top of admc.config.ADNConfig defaults).
# paper: unconditional epsilon model, Eq. 3-4 re-injection from start step n chosen on validation;
# cond: conditional denoiser (available rows clean + mask embedding, loss on missing rows);
# eps / x0 / v: what the denoiser predicts; ddim10 / ddpm10: 10 reverse steps; k8: mean of 8 samples;
# mean: one x0 prediction from the prior mean (deterministic); clip: x0 clipped to the 99.9% quantile;
# cond-*: diffusion around zero (prior="none"); prior-*: around the linear prior (the default).
VARIANTS = {
    "paper": dict(variant="paper", prediction="epsilon", sampler="ddpm", clip_quantile=None),
    "paper-clip": dict(variant="paper", prediction="epsilon", sampler="ddpm"),
    "paper-clip-code-schedule": dict(variant="paper", prediction="epsilon", sampler="ddpm",
                                                   beta_start=2e-4, beta_end=4e-2),
    "cond-eps-ddim10": dict(variant="conditional", prior="none", prediction="epsilon", sampler="ddim"),
    "cond-x0-ddim10": dict(variant="conditional", prior="none", prediction="sample", sampler="ddim"),
    "cond-x0-ddpm10": dict(variant="conditional", prior="none", prediction="sample", sampler="ddpm"),
    "cond-x0-ddim10-k8": dict(variant="conditional", prior="none", prediction="sample", sampler="ddim", num_samples=8),
    "cond-x0-mean": dict(variant="conditional", prior="none", prediction="sample", sampler="mean"),
    "cond-v-ddim10": dict(variant="conditional", prior="none", prediction="v_prediction", sampler="ddim"),
    "cond-x0-cosine-mean": dict(variant="conditional", prior="none", prediction="sample", sampler="mean",
                                           schedule="squaredcos_cap_v2"),
    # train length: 4x the optimizer steps through smaller batches or more epochs; EMA; weight decay
    "cond-x0-mean-bs32": dict(variant="conditional", prior="none", prediction="sample", sampler="mean", batch_size=32),
    "cond-x0-mean-e360": dict(variant="conditional", prior="none", prediction="sample", sampler="mean", epochs=360, patience=40),
    "cond-x0-mean-bs32-ema": dict(variant="conditional", prior="none", prediction="sample", sampler="mean", batch_size=32,
                                  ema_decay=0.999),
    "cond-x0-mean-wd": dict(variant="conditional", prior="none", prediction="sample", sampler="mean", weight_decay=0.05),
    "cond-x0-mean-drop3": dict(variant="conditional", prior="none", prediction="sample", sampler="mean", dropout=0.3),
    # around the linear prior (ridge conditional mean, CARD-style): the default since session 2
    "prior-x0-mean": dict(variant="conditional", prior="linear", prediction="sample", sampler="mean"),
    "prior-x0-ddim10-k8": dict(variant="conditional", prior="linear", prediction="sample", sampler="ddim",
                               num_samples=8),
    "prior-eps-ddim10": dict(variant="conditional", prior="linear", prediction="epsilon", sampler="ddim"),
}


# settings that change the trained denoiser; variants differing only in sampling share one training
# (selected on validation with the first variant's sampler)
TRAINING_KEYS = ("variant", "prior", "prediction", "schedule", "beta_start", "beta_end", "num_train_timesteps", "d_model",
                 "layers", "heads", "ff", "dropout", "epochs", "patience", "batch_size", "lr", "weight_decay", "ema_decay")


def run(data: Path, out: Path, seeds: list[int], variants: list[str], adn_epochs: int | None) -> dict:
    ds = load_dataset(data)
    names = ds.names
    conds = [c for c, _ in missing_conditions(names)]
    rows = {v: {"val": [], "test": [], "seconds": []} for v in variants}
    refs = {"val": [], "test": []}
    for seed in seeds:
        seed_everything(seed)
        cfg = TrainConfig(seed=seed)
        base = ADMCModel(ds.schema, cfg)
        train_unimodal(base, ds["train"], ds["val"], torch.device("cpu"), seed)
        fit_standardization(base, ds["train"])
        emb = {s: base.embed(ds[s]) for s in ("train", "val", "test")}
        trained: dict[tuple, ADMCModel] = {}
        ridge = RidgeCompleter(emb["train"][0][emb["train"][1].all(1)].numpy())
        for v in variants:
            c = copy.deepcopy(cfg)
            for k, val in VARIANTS[v].items():
                setattr(c.adn, k, val)
            if adn_epochs:
                c.adn.epochs = adn_epochs
            m = ADMCModel(ds.schema, c)
            m.encoders.load_state_dict(base.encoders.state_dict())
            m.emb_mean.copy_(base.emb_mean)
            m.emb_std.copy_(base.emb_std)
            t0 = time.time()
            key = tuple(getattr(c.adn, k) for k in TRAINING_KEYS)
            if key in trained:  # same denoiser, another sampler: reuse it
                m.denoiser.load_state_dict(trained[key].denoiser.state_dict())
                if m.prior is not None:
                    m.prior.load_state_dict(trained[key].prior.state_dict())
                z_tr, p_tr = emb["train"]
                m.clip_range, info = clip_range(c.adn, z_tr[p_tr.all(1)]), {}
            else:
                info = train_adn(m, *emb["train"], *emb["val"], seed)
                trained[key] = m
            if c.adn.variant == "paper":
                info.update(choose_start_step(m, *emb["val"], ds["val"].labels, seed))
            rows[v]["seconds"].append(time.time() - t0)
            for s in ("val", "test"):
                rep = completion_report(m, *emb[s], ds[s].labels, ridge, seed)
                rows[v][s].append(rep)
            print(f"seed {seed} {v}: test MSE " + " ".join(f"{k}:{r['mse']:.3f}" for k, r in rows[v]["test"][-1].items())
                  + f" (n={info.get('start_step')}, {rows[v]['seconds'][-1]:.0f}s)", flush=True)
        for s in ("val", "test"):
            refs[s].append(rows[variants[0]][s][-1])
    result = {"dataset": ds.name, "seeds": seeds, "conditions": conds, "variants": {}, "reference": {}}
    for s in ("val", "test"):
        result["reference"][s] = {
            c: {k: [float(np.mean([r[c][k] for r in refs[s]])), float(np.std([r[c][k] for r in refs[s]]))]
                for k in ("mse_zero", "mse_ridge")} for c in conds}
    for v in variants:
        result["variants"][v] = {"overrides": VARIANTS[v], "seconds": float(np.mean(rows[v]["seconds"]))}
        for s in ("val", "test"):
            result["variants"][v][s] = {
                c: {k: [float(np.mean([r[c][k] for r in rows[v][s]])), float(np.std([r[c][k] for r in rows[v][s]]))]
                    for k in ("mse", "cos", "ua_generated")} for c in conds}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    return result


def markdown(res: dict) -> str:
    conds = res["conditions"]
    lines = [f"# Completion MSE on {res['dataset']} (test split; mean ± std over seeds {res['seeds']})", "",
             "Rows: available modalities. Lower is better. Zero fill = train mean; ridge = linear conditional mean.", "",
             "| Variant | " + " | ".join(conds) + " | mean | seconds |", "|---" * (len(conds) + 3) + "|"]
    ref = res["reference"]["test"]
    for key, label in (("mse_zero", "zero fill"), ("mse_ridge", "ridge regression")):
        vals = [ref[c][key][0] for c in conds]
        lines.append(f"| *{label}* | " + " | ".join(f"{x:.3f}" for x in vals) + f" | {np.mean(vals):.3f} | |")
    for v, r in res["variants"].items():
        vals = [r["test"][c]["mse"] for c in conds]
        lines.append(f"| {v} | " + " | ".join(f"{m:.3f}±{s:.3f}" for m, s in vals)
                     + f" | {np.mean([m for m, _ in vals]):.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output path without suffix (.json and .md are written)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="all", help="comma-separated variant names or 'all'")
    p.add_argument("--adn-epochs", type=int, default=None)
    a = p.parse_args()
    set_quiet(True)
    torch.set_num_threads(1)
    variants = list(VARIANTS) if a.variants == "all" else [v.strip() for v in a.variants.split(",")]
    run(a.data, a.out, [int(s) for s in a.seeds.split(",")], variants, a.adn_epochs)
    print(a.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
