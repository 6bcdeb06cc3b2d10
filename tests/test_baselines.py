"""The comparison methods of admc/baselines: ae, cra, mmin (completers), joint (encoders trained end to
end) and linear (per-condition logistic regression): each trains, round-trips through its run
directory and is scored by `admc bench` with the same results.json entries as the other methods."""

import json

import numpy as np
import pytest
import torch

from admc.baselines.imputers import AEFill, CRAFill, MMINFill
from admc.baselines.linear import LinearModel
from admc.completion import ZeroFill
from admc.config import ImputerConfig, TrainConfig
from admc.overrides import with_overrides
from admc.data import load_dataset
from admc.diffusion.training import val_completion_mse
from admc.evaluate import evaluate
from admc.masks import mask_key
from admc.methods import METHODS
from admc.run import load_run
from tests.synthetic import make_dataset

IMPUTER = ImputerConfig(layers=[32, 8], blocks=2, epochs=40, patience=40, lr=3e-3, batch_size=64)


def _correlated(n, M=3, E=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, 1, E, generator=g)
    return shared + 0.3 * torch.randn(n, M, E, generator=g)


@pytest.mark.parametrize("cls", [AEFill, CRAFill, MMINFill])
def test_autoencoder_completers_beat_zero_fill_on_correlated_rows(cls):
    tr, va, te = _correlated(400), _correlated(100, seed=1), _correlated(200, seed=2)
    labels = (tr[:, 0, 0] > 0).long()
    c = cls(IMPUTER, 3, 4, 2)
    info = c.fit(tr, va, seed=0, labels=labels)
    assert info["epochs"] == 40 and 1 <= info["best_epoch"] <= 40
    avail = torch.tensor([[True, False, False]] * 100 + [[False, True, True]] * 100)
    out = c.complete(te, avail)
    assert torch.equal(out[avail], te[avail])  # available rows exactly as given
    err = float((out[~avail] - te[~avail]).pow(2).mean())
    zero = float((ZeroFill().complete(te, avail)[~avail] - te[~avail]).pow(2).mean())
    assert err < 0.5 * zero
    assert val_completion_mse(c, va, 0) == pytest.approx(info["best_val_completion_mse"])
    if cls is MMINFill:  # the cycle and classification losses are trained too
        assert set(info["train_loss_at_best"]) == {"mse", "cycle", "ce"}
        c.net.eval()
        latent = c.net["imagine"]((te * avail[..., None]).reshape(len(te), -1))[1]
        right = c.net["classifier"](latent).argmax(-1) == (te[:, 0, 0] > 0).long()
        assert float(right[:100].float().mean()) > 0.8  # the label is the sign of an available row


def test_absent_training_rows_carry_nothing_into_the_completer():
    """With missing modalities in the training set, what an absent row holds never reaches the
    network: garbage there trains the very same weights as zeros."""
    tr, va = _correlated(200), _correlated(50, seed=1)
    present = torch.ones(200, 3, dtype=torch.bool)
    present[::3, 1] = False
    present[1::3, 2] = False
    garbage = tr.clone()
    garbage[~present] = 100.0
    clean = tr * present[..., None]
    cfg = ImputerConfig(layers=[16, 8], blocks=2, epochs=3, patience=3, lr=3e-3, batch_size=32)
    states = []
    for x in (clean, garbage):
        torch.manual_seed(0)  # the same initial weights
        c = MMINFill(cfg, 3, 4, 2)
        c.fit(x, va, seed=0, present=present, labels=(tr[:, 0, 0] > 0).long())
        states.append(c.net.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load_dataset(make_dataset(tmp_path_factory.mktemp("data") / "ds"))


SMALL = ["itfn.epochs=8", "adn.epochs=3", "adn.d_model=32", "adn.ff=64", "adn.layers=1", "adn.heads=2",
         "fusion.epochs=8", "fusion.lr=0.001", "fusion.d_model=32", "fusion.ff=64", "imputer.layers=[32,16]",
         "imputer.blocks=2", "imputer.epochs=4", "imputer.lr=0.001"]


def test_bench_runs_every_baseline_with_the_same_results_schema(ds, tmp_path):
    from admc.cli import main

    methods = ["zero_fill", "ae", "cra", "mmin", "joint", "linear"]
    sets = [x for kv in SMALL for x in ("--set", kv)]
    assert main(["bench", "--data", str(ds.path), "--out", str(tmp_path / "b"), "--methods", ",".join(methods),
                 "--quiet", *sets]) == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert list(res["methods"]) == methods
    conds = set(res["methods"]["zero_fill"]["conditions"])
    for m in methods:
        r = res["methods"][m]
        assert set(r["conditions"]) == conds and {"wa", "ua"} <= set(r["full"]) and {"wa", "ua"} <= set(r["average"])
        # the run directory round-trips: the loaded model scores what the bench reported
        model, meta = load_run(tmp_path / "b" / "runs" / f"{m}-seed0")
        assert meta["method"] == m
        again = evaluate(model, ds["test"], 0)
        assert again["average"]["ua"] == pytest.approx(r["average"]["ua"])
        assert again["full"]["ua"] == pytest.approx(r["full"]["ua"])
        assert sorted(p.name for p in (tmp_path / "b" / "runs" / f"{m}-seed0").iterdir()) == \
            ["model.safetensors", "run.json"]
    for m in ("ae", "cra", "mmin"):  # completers: diagnostics like the ADN's
        assert "mse_zero" in res["methods"][m]["completion"]["A"]
    assert "completion" not in res["methods"]["linear"]
    zero, _ = load_run(tmp_path / "b" / "runs" / "zero_fill-seed0")
    mmin, meta = load_run(tmp_path / "b" / "runs" / "mmin-seed0")
    joint, jmeta = load_run(tmp_path / "b" / "runs" / "joint-seed0")
    enc = lambda mdl: mdl.encoders["A"].encoder.net[0].weight  # noqa: E731
    assert torch.equal(enc(mmin), enc(zero))            # the completers share the seed's ITFN
    assert not torch.equal(enc(joint), enc(zero))       # joint trains its own encoders
    assert mmin.imputer is mmin.completer.net and meta["train"]["completion"]["best_epoch"] >= 1
    # joint: the full-input classifier is the network trained end to end with the encoders (not refitted)
    assert "full" not in jmeta["train"]["fusion"] and not joint.mmer and joint.joint_full
    val = ds["val"]
    z, p = joint.embed(val)
    full = p.all(dim=1)
    raw = joint.unstandardize(z[full])
    end_to_end = joint.fusion[mask_key((True, True, True))](raw).argmax(-1)
    assert torch.equal(joint.predict_logits(z[full], p[full]).argmax(-1), end_to_end)
    from admc.metrics import scores

    assert scores(val.labels[full.numpy()], end_to_end.numpy())["ua"] == pytest.approx(jmeta["train"]["joint"]["val_ua"])


def _pooled(split, mod) -> np.ndarray:
    """Each sample's pooled row, written out independently of admc.pooling."""
    rows, off = split.rows[mod.name], split.offsets[mod.name]
    out = []
    for i in range(len(split)):
        r = rows[off[i] : off[i + 1]].astype(np.float64)
        out.append(r[0] if mod.kind == "vector" else np.concatenate([r.mean(0), r.std(0)]))
    return np.stack(out)


def test_linear_matches_a_direct_scikit_learn_fit(ds):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from admc.metrics import scores

    cfg = TrainConfig(method="linear")
    model, info = LinearModel.fit(ds, cfg, torch.device("cpu"))
    z, p = model.embed(ds["test"])
    for mask, cond in (((True, False, False), "A"), ((False, True, True), "B+C"), ((True, True, True), "full")):
        X = {s: np.hstack([_pooled(ds[s], m) for m, a in zip(ds.schema.modalities, mask) if a])
             for s in ("train", "val", "test")}
        scaler = StandardScaler().fit(X["train"])
        by_c = {}
        for c in cfg.linear.c_grid:
            clf = LogisticRegression(C=c, max_iter=1000, class_weight="balanced").fit(
                scaler.transform(X["train"]), ds["train"].labels)
            by_c[c] = (scores(ds["val"].labels, clf.predict(scaler.transform(X["val"])))["ua"], clf)
        best = max(by_c, key=lambda c: by_c[c][0])  # the first of equal ones, as the model keeps
        assert info["linear"][cond]["C"] == best
        want = by_c[best][1].predict_proba(scaler.transform(X["test"]))
        got = torch.softmax(model.predict_logits(z, torch.tensor(mask).expand(len(z), -1)), -1).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_linear_trains_and_evaluates_from_the_command_line(ds, tmp_path, capsys):
    from admc.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(ds.path), "--out", str(run), "--method", "linear", "--quiet",
                 "--set", "linear.c_grid=[0.1]"]) == 0
    assert main(["eval", "--run", str(run), "--data", str(ds.path), "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    res = json.loads((tmp_path / "r.json").read_text())["methods"]["linear"]
    assert set(res["conditions"]) == {"A", "B", "C", "A+B", "A+C", "B+C"} and res["average"]["ua"] > 50
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "linear val UA (C) A" in capsys.readouterr().out


def test_mean_fill_is_zero_fill_and_not_a_method_of_its_own(ds, tmp_path, capsys):
    from admc.cli import build_parser, main

    assert "mean_fill" not in METHODS and "mean fill" in METHODS["zero_fill"].about
    assert main(["bench", "--data", str(ds.path), "--out", str(tmp_path / "b"), "--methods", "mean_fill"]) == 2
    assert "unknown method(s) ['mean_fill']" in capsys.readouterr().err
    help_text = build_parser().format_help() + next(
        a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith("bench")
    ).format_help()
    assert "this is mean fill" in " ".join(help_text.split())


def test_the_app_refuses_a_linear_run(ds, tmp_path):
    from admc.cli import main
    from app.checkpoint import CheckpointError, load_checkpoint

    run = tmp_path / "run"
    assert main(["train", "--data", str(ds.path), "--out", str(run), "--method", "linear", "--quiet",
                 "--set", "linear.c_grid=[0.1]"]) == 0
    with pytest.raises(CheckpointError, match="method linear has no encoders"):
        load_checkpoint(run)


def test_itfn_regularisation_settings_reach_the_encoders(ds):
    from admc.pipeline import ADMCModel

    cfg = with_overrides(["itfn.dropout=0.4", "itfn.head_hidden=16", "itfn.head_dropout=0.1"])
    enc = ADMCModel(ds.schema, cfg).encoders
    assert enc["A"].encoder.net[2].p == 0.4 and enc["C"].encoder.drop.p == 0.4   # MLP and LSTM
    assert enc["A"].head[0].out_features == 16 and enc["A"].head[2].p == 0.1
    default = ADMCModel(ds.schema, TrainConfig()).encoders  # unset: each encoder's own dropout, as before
    assert default["A"].encoder.net[2].p == 0.2 and default["C"].encoder.drop.p == 0.0
    assert default["A"].head[0].out_features == 128 and default["A"].head[2].p == 0.3
