"""The ``admc`` command line's core commands: train, eval, bench, info, import.

The ``admc`` console script is :func:`app.commands.main`, which adds the commands that run
the feature extractors (``extract``, ``manifest``) to this parser: this package imports nothing
from ``extractors`` or ``app`` (docs/architecture.md, "Layers and shared code").
``python -m admc.cli`` runs the core commands alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from admc import __version__

DESCRIPTION = "The ``admc`` command line: train, eval, bench, info, import."


class UsageError(ValueError):
    """A bad argument or option value; the message names it."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the argument (exit 2), and which takes no
    abbreviated option names."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)   # --dat is not --data: an option is named in full
        super().__init__(*args, **kwargs)

    def error(self, message):  # one line, like every other admc error
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _floats(s: str) -> list[float]:
    try:
        vals = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None
    if any(not 0 <= v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"missing rates must be in [0, 1), got {s!r}")
    return vals


def _ints(s: str) -> list[int]:
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {s!r}")
    if any(not 0 <= v < 2**32 for v in vals):
        raise argparse.ArgumentTypeError(f"seeds must be in 0..{2**32 - 1}, got {s!r}")
    return vals


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def number_type(kind, low, high=None, what=""):
    """An argparse type: a ``kind`` (int, float) in [low, high] (high None: no upper bound); anything
    else is refused naming the range (``expected a port in 1..65535, got '70000'``)."""
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            v = None
        if v is None or v != v or v < low or (high is not None and v > high):
            bound = f"in {low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected {what or kind.__name__} {bound}, got {s!r}")
        return v
    parse.__name__ = kind.__name__
    return parse


_seed = number_type(int, 0, 2**32 - 1, what="an integer")


def _device(s: str) -> str:
    if s == "auto":
        return s
    import torch

    try:
        dev = torch.device(s)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {s!r}")
    return s


def _methods(s: str) -> list[str]:
    """Method names, checked against :data:`admc.methods.METHODS` (the one list of methods)."""
    from admc.methods import METHODS

    names = [m.strip() for m in s.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise UsageError(f"--methods {s}: unknown method(s) {unknown or [s]} (choose from {', '.join(METHODS)})")
    if len(set(names)) != len(names):
        raise UsageError(f"--methods {s}: a method is listed twice")
    return names


def build_config(args):
    """TrainConfig from defaults, ``--config FILE``, ``--set section.key=value`` overrides and the
    flags that set one setting (``--fusion``, ``--train-missing-rate``, ``--label-fraction``), through
    :func:`admc.overrides.with_overrides`: each value checked against its dataclass field's
    type and range (:mod:`admc.run_schema`), the whole validated once, when it is built."""
    from admc.config import TrainConfig, trainable
    from admc.overrides import OverrideError, with_overrides
    from admc.run_schema import config_problem, sections

    obj = TrainConfig().to_json()
    secs = sections()
    if getattr(args, "config", None):
        try:
            user = json.loads(Path(args.config).read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise UsageError(f"--config {args.config}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        except (OSError, json.JSONDecodeError, RecursionError) as e:
            raise UsageError(f"--config {args.config}: {e}") from None
        if not isinstance(user, dict):
            raise UsageError(f"--config {args.config}: must hold a JSON object with sections "
                             f"{', '.join(secs)}, got a {type(user).__name__}")
        for sec, vals in user.items():
            if sec in secs and isinstance(vals, dict):
                obj[sec].update(vals)
            else:
                obj[sec] = vals
        why = config_problem(obj)
        if why:
            raise UsageError(f"--config {args.config}: {why}")
    overrides: list = list(getattr(args, "set", None) or [])
    if getattr(args, "fusion", None):
        overrides.append(("fusion.mode", args.fusion))
    for flag in ("train_missing_rate", "label_fraction"):
        if getattr(args, flag, None) is not None:
            overrides.append((f"data.{flag}", getattr(args, flag)))
    try:
        cfg = with_overrides(overrides, base=obj)
    except OverrideError as e:
        if not isinstance(e.item, str):  # a flag
            raise UsageError(f"--{e.key.split('.')[1].replace('_', '-')} {e.item[1]:g}: {e.reason}") from None
        if e.key is None:
            raise UsageError(f"--set expects section.key=value (e.g. adn.sampler=mean), got {e.item!r}") from None
        if e.unknown:
            raise UsageError(f"--set {e.key}: unknown setting (sections {', '.join(secs)}; see admc/config.py)") \
                from None
        raise UsageError(f"--set {e.item}: {e.reason}") from None
    except (TypeError, ValueError) as e:  # ConfigError: the configuration as a whole
        raise UsageError(f"bad configuration: {e}") from None
    try:
        trainable(cfg)
    except ValueError as e:
        raise UsageError(f"bad configuration: {e}") from None
    return cfg


def _training_data(ds, allow_missing_classes: bool):
    """``ds`` as training sees it, checked in one line each before anything trains: modalities
    present in no sample are left out (with a warning; fewer than two left is an error), every
    remaining modality must be in the train split, the val split needs two classes, and a class
    absent from the train split is refused unless allowed (:func:`_check_classes`)."""
    import numpy as np

    from admc.data import without_absent_modalities

    ds, dropped = without_absent_modalities(ds)
    if dropped:
        print(f"admc: WARNING: modalit{'ies' if len(dropped) > 1 else 'y'} {', '.join(dropped)} "
              f"{'are' if len(dropped) > 1 else 'is'} present in no sample of {ds.path}: training on "
              f"{'+'.join(ds.names)} alone", file=sys.stderr)
    for m in ds.names:
        if not ds["train"].present[m].any():
            raise UsageError(f"modality {m} is present in no sample of the train split of {ds.path} (only in "
                             "val/test): its encoder cannot be trained")
    if "val" in ds.splits:
        val_classes = np.unique(ds["val"].labels)
        if len(val_classes) < 2:
            raise UsageError(f"the val split of {ds.path} holds one class ({ds.classes[int(val_classes[0])]!r}): "
                             "model selection and calibration on it mean nothing; give it two or more classes")
    _check_classes(ds, allow_missing_classes)
    return ds


def _check_memory(ds, cfg, methods=None) -> None:
    """Refuse settings whose training would not fit in this machine's memory, before allocating."""
    from admc.memory import training_memory_problem
    from admc.methods import config_for_method

    for method in methods or [cfg.method]:
        c = copy.deepcopy(cfg)
        c.method = method
        why = training_memory_problem(ds, config_for_method(c))
        if why:
            raise UsageError(f"{'method ' + method + ': ' if methods else ''}{why}")


def _check_classes(ds, allow: bool) -> None:
    """A class with no training sample can never be predicted: refused unless ``allow``."""
    import numpy as np

    counts = np.bincount(ds["train"].labels, minlength=len(ds.classes))
    absent = [c for c, n in zip(ds.classes, counts) if n == 0]
    if not absent:
        return
    msg = (f"class{'es' if len(absent) > 1 else ''} {', '.join(repr(c) for c in absent)} "
           f"{'have' if len(absent) > 1 else 'has'} no sample in the train split of {ds.path}")
    if not allow:
        raise UsageError(f"{msg} (pass --allow-missing-classes to train anyway)")
    print(f"admc: WARNING: {msg}: the model will never predict "
          f"{'them' if len(absent) > 1 else 'it'}, and its scores count them as always wrong", file=sys.stderr)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=_device, default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="torch CPU threads (default: torch's own choice, one per core); 1 when another "
                        "job shares the machine")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def _train_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fusion", choices=["per-condition", "shared", "auto"], default=None,
                   help="one fusion classifier per condition (paper) or one mask-aware one (default: per-condition "
                        "when there are <= 3 modalities)")
    p.add_argument("--train-missing-rate", type=float, default=None, metavar="RATE",
                   help="drop this fraction of the train split's modality entries (CPM-Nets protocol; every "
                        "sample keeps one); the completer learns from the incomplete samples (= --set "
                        "data.train_missing_rate=RATE)")
    p.add_argument("--label-fraction", type=float, default=None, metavar="F",
                   help="keep labels on this fraction of the train split (stratified); encoders and fusion "
                        "learn from those, the completer from every sample (= --set data.label_fraction=F)")
    p.add_argument("--config", help="JSON file with itfn/adn/fusion/data settings")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one setting, e.g. --set adn.sampler=mean (repeatable)")
    p.add_argument("--allow-missing-classes", action="store_true",
                   help="train even when a class has no sample in the train split (with a warning)")


def cmd_train(args) -> int:
    from admc.bench import dataset_record
    from admc.data import load_dataset
    from admc.outdir import check_out
    from admc.run import save_run
    from admc import distributed as dp
    from admc.runtime import log, resolve_device, seed_everything
    from admc.train import train

    _methods(args.method)
    cfg = build_config(args)
    cfg.seed = args.seed
    cfg.method = args.method
    device = resolve_device(args.device)
    ds = _training_data(load_dataset(args.data, splits=("train", "val")), args.allow_missing_classes)
    _check_memory(ds, cfg)
    check_out(args.out, "run", overwrite=args.overwrite, inputs={"--data": args.data})
    seed_everything(args.seed)
    model, info = train(ds, cfg, device)
    if dp.current().active:
        info["data_parallel"] = dp.describe()
    if dp.current().main:       # under torchrun rank 0 writes the run; the others wait (admc.distributed)
        save_run(model, args.out, info, args.command_line, dataset_record(ds))
        log(f"saved {args.out}")
    return 0


def _check_matches(model, ds, args):
    """``ds`` as the run sees it (without the modalities the run left out because no sample had them);
    a dataset whose schema is not the run's is refused in one line naming both."""
    from admc.data import restrict_modalities

    if set(model.schema.names) < set(ds.names):
        ds = restrict_modalities(ds, model.schema.names)
    diff = model.schema.differences(ds.schema)
    if diff:
        raise ValueError(f"dataset {args.data} does not match run {args.run}: " + "; ".join(diff))
    return ds


def cmd_calibrate(args) -> int:
    from admc.data import load_dataset
    from admc.outdir import check_out
    from admc.regimes import training_embedding
    from admc.run import load_run, save_run
    from admc.runtime import log, resolve_device
    from admc.sampler_choice import choose_sampler, switchable, use_sampler
    from admc.train import refit_trust

    check_out(args.out, "run", overwrite=args.overwrite, inputs={"--run": args.run, "--data": args.data})
    model, meta = load_run(args.run, resolve_device(args.device))
    if args.sampler:
        switchable(model)        # before the dataset loads: a run of another method is refused at once
    ds = load_dataset(args.data, splits=("train", "val"))
    ds = _check_matches(model, ds, args)
    recalibrated = {"data": str(args.data), "command": args.command_line}
    train_embedded = training_embedding(model, ds["train"])      # the encoders' work, done once
    if args.sampler:
        choice = choose_sampler(model, ds["val"], args.sampler, ds["train"], train_embedded)
        use_sampler(model, choice.sampler, ds["train"], bank=choice.bank, embedded=train_embedded)
        recalibrated["sampler"] = choice.to_json()
        log(f"completing with adn.sampler={choice.sampler} (trained with {choice.trained}"
            + (f"; validation UA {choice.val_ua}, completion MSE {choice.val_mse})" if choice.val_ua else ")"))
    info = {**meta["train"], **refit_trust(model, ds, train_embedded), "recalibrated": recalibrated}
    save_run(model, args.out, info, meta.get("command"), meta.get("dataset"))
    log(f"saved {args.out}: OOD models, temperatures and abstain threshold fitted on {args.data}")
    return 0


def cmd_eval(args) -> int:
    from admc.formats import EVAL_FORMAT
    from admc.outdir import atomic_write_text, check_out_file

    # before anything loads: the results file may replace only an earlier admc eval results file
    check_out_file(args.json, "eval", overwrite=args.overwrite, inputs={"--run": args.run, "--data": args.data},
                   flag="--json")

    from admc.data import load_dataset
    from admc.evaluate import evaluate
    from admc.run import load_run
    from admc.runtime import resolve_device

    model, meta = load_run(args.run, resolve_device(args.device))
    ds = load_dataset(args.data, splits=(args.split,))
    ds = _check_matches(model, ds, args)
    res = evaluate(model, ds[args.split], args.seed, args.missing_rates or (), args.runs)
    out = {"format": EVAL_FORMAT, "dataset": ds.name, "split": args.split, "methods": {meta["method"]: res}}
    check_out_file(args.json, "eval", overwrite=args.overwrite, inputs={"--run": args.run, "--data": args.data},
                   flag="--json")      # again: something may have appeared there meanwhile
    atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    if not args.quiet:
        r = res
        print(f"{meta['method']} on {ds.name}/{args.split}: average WA/UA {r['average']['wa']:.1f}/{r['average']['ua']:.1f}, "
              f"full {r['full']['wa']:.1f}/{r['full']['ua']:.1f}")
        c = r["calibration"]
        print(f"expected calibration error (%, raw softmax -> temperature-scaled): average "
              f"{c['average']['ece_before']:.1f} -> {c['average']['ece_after']:.1f}, "
              f"full {c['full']['ece_before']:.1f} -> {c['full']['ece_after']:.1f}")
    return 0


def _dirs(s: str) -> list[str]:
    dirs = [d.strip() for d in s.split(",") if d.strip()]
    if len(dirs) < 2:
        raise argparse.ArgumentTypeError(f"expected two or more comma-separated dataset directories, got {s!r}")
    return dirs


def cmd_bench(args) -> int:
    from admc.bench import run_bench
    from admc.data import load_dataset
    from admc.outdir import check_out
    from admc.runtime import resolve_device

    methods = _methods(args.methods)
    cfg = build_config(args)
    seeds = args.seeds or [args.seed]
    device = resolve_device(args.device)
    if args.folds:
        data = [load_dataset(d) for d in args.folds]
        inputs = [("--folds", d) for d in args.folds]
    else:
        data, inputs = load_dataset(args.data), [("--data", args.data)]
    if args.folds:
        data = [_training_data(ds, args.allow_missing_classes) for ds in data]
    else:
        data = _training_data(data, args.allow_missing_classes)
    for ds in data if args.folds else [data]:
        _check_memory(ds, cfg, methods)
    # a bench output of ours is resumed (runs with the same config and data are reused); nothing else is touched
    check_out(args.out, "bench", overwrite=True, inputs=inputs)
    res = run_bench(data, Path(args.out), methods, cfg, seeds, args.split, args.missing_rates or (), args.runs,
                    device, args.command_line, resume=args.resume, figures=args.figures)
    if not args.quiet:
        print((Path(args.out) / "results.md").read_text())
        c = res["cells"]
        print(f"wrote {Path(args.out) / 'results.json'} in {res['seconds']:.0f} s "
              f"({c['reused']} of {c['total']} cells reused)")
    return 0


def _abstain_line(a: dict) -> str:
    return (f"{a['threshold']:.3f} (chosen by {a['chosen']}; val: {100 * a['confident_fraction']:.0f}% of windows "
            f"confident, accuracy {a['accuracy_confident']:.1f} vs {a['accuracy_all']:.1f} all)")


def _train_lines(tr: dict) -> list[str]:
    """Validation scores of ``run.json``'s ``train`` section; a part that is malformed is left out."""
    parts = [
        ("ITFN val  ", lambda: ", ".join(f"{k} UA {v['ua']:.1f}" for k, v in tr["itfn"].items())),
        ("MF val UA ", lambda: ", ".join(f"{k} {v['val_ua']:.1f}" for k, v in tr["fusion"].items()
                                        if isinstance(v, dict))),
        ("MF trained on out-of-fold completions, folds ", lambda: str(int(tr["fusion"]["cross_fit_folds"]))),
        ("ADN val completion MSE ",
         lambda: ", ".join(f"{k} {v['mse']:.3f}" for k, v in tr["adn"]["val_completion"].items())),
        ("ADN start step n by val MSE / by val UA ",
         lambda: f"{tr['adn']['start_step_by_mse']} / {tr['adn']['start_step_by_ua']}"),
        ("ridge val completion MSE " if "prior_shrinkage" in (tr.get("completion") or ()) else "completion val MSE ",
         lambda: ", ".join(f"{k} {v['mse']:.3f}" for k, v in tr["completion"]["val_completion"].items())),
        ("joint encoders + full-input fusion val UA ", lambda: f"{tr['joint']['val_ua']:.1f}"),
        ("linear val UA (C) ",
         lambda: ", ".join(f"{k} {v['val_ua']:.1f} ({v['C']:g})" for k, v in tr["linear"].items())),
        ("calibration val ECE % before -> after (T) ",
         lambda: ", ".join(f"{k} {v['ece_before']:.1f} -> {v['ece_after']:.1f} ({v['temperature']:g})"
                           for k, v in tr["calibration"]["conditions"].items())),
        ("uncertain below max probability ", lambda: _abstain_line(tr["calibration"]["abstain"])),
        ("OOD thresholds (val quantile) ",
         lambda: ", ".join(f"{k} {v['threshold']:.2f}" for k, v in tr["ood"]["modalities"].items() if v)
                 + f" ({tr['ood']['quantile']:g})"),
        ("input OOD thresholds (principal axes) ",
         lambda: ", ".join(f"{k} {v['threshold']:.3f} ({v['components']})" for k, v in tr["ood"]["input"].items() if v)
                 or "none fitted"),
    ]
    out = []
    for head, text in parts:
        try:
            out.append(head + text())
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    return out


def cmd_info(args) -> int:
    import dataclasses

    from admc.run import read_run_meta, run_config

    meta = read_run_meta(args.run)
    schema, cfg = run_config(meta, Path(args.run) / "run.json")
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    ds = meta.get("dataset", {})
    print(f"run {args.run}  (admc {meta.get('admc_version')}, method {meta['method']}, "
          f"fusion {meta.get('fusion_mode')})")
    print(f"dataset   {ds.get('name', '')} {ds.get('path', '')}")
    print(f"classes   {', '.join(schema.classes)}")
    for m in schema.modalities:
        print(f"modality  {m.name}: {m.kind} dim {m.dim} encoder {m.encoder}")
    td = meta.get("train", {}).get("train_data")
    if isinstance(td, dict):  # a reduced train split (admc.regimes)
        print(f"train     {cfg.data.train_missing_rate:g} of the modality entries dropped "
              f"({td.get('full_samples')} of {td.get('samples')} samples complete), "
              f"labels on {td.get('labelled')} samples")
    adn = dataclasses.asdict(cfg.adn)
    tr = meta.get("train", {})
    from admc.methods import METHODS, config_for_method

    acfg = config_for_method(cfg).adn  # the ADN settings the method fixes (admc_paper: the paper variant)
    if meta["method"] not in ("admc", "admc_paper", "regress_fill", "ridge_fill"):
        print(f"method    {METHODS[meta['method']].about}")
    if METHODS[meta["method"]].completer == "diffusion":
        from admc.diffusion.variants import variant_of

        for line in variant_of(acfg).describe(acfg, meta):
            print(line)
    elif meta["method"] == "ridge_fill":
        shrink = tr.get("completion", {}).get("prior_shrinkage") if isinstance(tr.get("completion"), dict) else None
        shrink = f" (shrinkage {shrink:g})" if isinstance(shrink, (int, float)) else ""
        print(f"completion ridge estimate from the available rows (linear prior{shrink}), no diffusion")
    for line in _train_lines(tr):
        print(line)
    print(f"command   {' '.join(str(c) for c in meta.get('command', []))}")
    return 0


def cmd_import(args) -> int:
    if args.layout == "mmin-iemocap":
        from admc.importers.mmin_iemocap import import_mmin_iemocap

        path = import_mmin_iemocap(args.root, args.fold, args.out, progress=not args.quiet, overwrite=args.overwrite)
    else:
        from admc.importers.mintrec import import_mintrec

        # the text encoder comes from the layer above (app.commands sets make_text_encoder)
        make = getattr(args, "make_text_encoder", None)
        if args.text_features is None and make is None:
            raise UsageError("import mintrec: --text-features is required when the text encoder is not "
                             "available (python -m admc.cli runs the core alone; the admc command has it)")
        path = import_mintrec(args.root, args.out, text_features=args.text_features, progress=not args.quiet,
                              overwrite=args.overwrite, text_encoder=make)
    if not args.quiet:
        print(f"wrote {path}")
    return 0


# input options: (attribute, what it must be); checked before any command imports torch
_INPUTS = (("data", "dir"), ("run", "dir"), ("root", "dir"), ("manifest", "file"), ("config", "file"),
           ("text_features", "file"))
# output options and the directory kind a command writes there
_DIR_OUTPUTS = {"train": "run", "calibrate": "run", "bench": "bench"}


def preflight(args) -> None:
    """The checks that need no model: every input path exists and is what it must be, and the output
    directory may be written (:func:`admc.outdir.check_out`), so a mistyped path is one line within a
    second, before torch loads.  The commands check again, and more, when they read."""
    from admc.outdir import check_out

    if hasattr(args, "set"):            # train, bench: every setting checked first (no torch needed)
        build_config(args)
    inputs = []
    for attr, kind in _INPUTS:
        value = getattr(args, attr, None)
        if not isinstance(value, str):
            continue
        flag = "run" if getattr(args, "cmd", None) == "info" else "--" + attr.replace("_", "-")  # info RUN
        path = Path(value)
        if not path.exists():
            raise UsageError(f"{flag} {value}: no such {'directory' if kind == 'dir' else 'file'}")
        if kind == "dir" and not path.is_dir():
            raise UsageError(f"{flag} {value}: not a directory")
        if kind == "file" and path.is_dir():
            raise UsageError(f"{flag} {value}: is a directory, not a file")
        needs = {"data": ("meta.json", "a dataset directory needs meta.json"),
                 "run": ("run.json", f"is {value} a run directory from `admc train`?")}.get(attr)
        if needs and not (path / needs[0]).is_file():
            raise UsageError(f"{path / needs[0]}: missing ({needs[1]})")
        inputs.append((flag, value))
    for d in getattr(args, "folds", None) or ():
        if not Path(d).is_dir():
            raise UsageError(f"--folds {d}: no such directory")
        inputs.append(("--folds", d))
    kind = _DIR_OUTPUTS.get(getattr(args, "cmd", None))
    if kind is not None:
        check_out(args.out, kind, overwrite=getattr(args, "overwrite", False) or kind == "bench", inputs=inputs)


def _data_parallel(command: Callable, private_out: bool = False) -> Callable:
    """``command`` data-parallel when ``torchrun`` started this process (:func:`admc.distributed.data_parallel`;
    torch is imported only when the command runs)."""
    def run(args) -> int:
        from admc.distributed import data_parallel

        return data_parallel(command, private_out)(args)
    return run


def build_parser(extra: Sequence[Callable] = ()) -> argparse.ArgumentParser:
    """The core commands' parser; each of ``extra`` is called with the subcommands action and the
    parser to add the commands of a layer above this package (see :mod:`app.commands`)."""
    from admc.data import SPLITS

    p = OneLineParser(prog="admc", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"admc {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train ITFN + ADN + fusion on a feature dataset")
    t.add_argument("--data", required=True, help="feature dataset directory (admc-features/1)")
    t.add_argument("--out", required=True, help="run directory to write (new or empty; not inside --data)")
    t.add_argument("--overwrite", action="store_true", help="replace the run already at --out")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--method", default="admc",
                   help="admc, admc_paper, regress_fill, ridge_fill, zero_fill (= mean fill: the train mean), late_fusion, ae, "
                        "cra, mmin, joint, linear (admc.methods.METHODS; docs/baselines.md)")
    _train_opts(t)
    _common(t)
    t.set_defaults(func=_data_parallel(cmd_train))

    c = sub.add_parser("calibrate", help="fit a run's OOD models, temperatures and abstain threshold again "
                                         "(on its own or another dataset's train/val splits) into a new run")
    c.add_argument("--run", required=True)
    c.add_argument("--data", required=True, help="feature dataset with the run's schema (train and val splits)")
    c.add_argument("--out", required=True, help="run directory to write (not the --run itself)")
    c.add_argument("--overwrite", action="store_true", help="replace the run already at --out")
    c.add_argument("--sampler", choices=("auto", "mean", "prior", "neighbours", "neighbours_marginal", "ddim", "ddpm"),
                   default=None,
                   help="complete with this ADN sampler from now on (prior: the ridge estimate alone, no "
                        "denoiser call; neighbours: the mean of the missing rows of the adn.neighbours training "
                        "samples nearest in the available rows, stored with the run; neighbours_marginal: the "
                        "classifier run on each of them, its probabilities averaged); auto: of the prior, the "
                        "run's own sampler and the two neighbour samplers, the one that classifies validation "
                        "best, a tie going to the cheaper (UA over every availability pattern; admc.sampler_choice); "
                        "default: the run's own")
    _common(c)
    c.set_defaults(func=cmd_calibrate)

    e = sub.add_parser("eval", help="evaluate a run on every missing-modality condition")
    e.add_argument("--run", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--split", choices=SPLITS, default="test")
    e.add_argument("--json", required=True, help="results file to write (an existing file that admc eval did not "
                                                 "write is replaced only with --overwrite)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --json file admc eval did not write")
    e.add_argument("--missing-rates", type=_floats, default=None)
    e.add_argument("--runs", type=_positive, default=1)
    e.add_argument("--seed", type=_seed, default=0)
    _common(e)
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="train (or reuse) and compare methods on one split")
    where = b.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="one feature dataset")
    where.add_argument("--folds", type=_dirs, metavar="DIR1,DIR2,...",
                       help="cross-validation: one dataset per fold, same schema (e.g. the 10 folds of admc import "
                            "mmin-iemocap); every table gives the mean and std over folds and seeds")
    b.add_argument("--out", required=True, help="output directory (results.json, results.md, runs/, cells/, figures/)")
    b.add_argument("--methods", default="admc,admc_paper,ridge_fill,zero_fill",
                   help="comma-separated, from admc.methods.METHODS: admc, admc_paper, regress_fill, ridge_fill, zero_fill "
                        "(missing rows = the train mean: this is mean fill, there is no separate mean_fill), "
                        "late_fusion, ae, cra, mmin, joint, linear (docs/baselines.md)")
    b.add_argument("--missing-rates", type=_floats, default=None, help="e.g. 0,0.1,0.2,0.3,0.4,0.5")
    b.add_argument("--runs", type=_positive, default=1, help="seeded random draws per missing rate")
    b.add_argument("--seed", type=_seed, default=0)
    b.add_argument("--seeds", type=_ints, default=None, help="several training seeds, e.g. 0,1,2 (mean and std)")
    b.add_argument("--split", choices=SPLITS, default="test")
    b.add_argument("--resume", action="store_true",
                   help="reuse the finished cells (method, fold, seed) of an interrupted bench in --out")
    b.add_argument("--figures", action="store_true",
                   help="also draw Figure 3 (t-SNE of real and generated embeddings) as PNG in OUT/figures/")
    _train_opts(b)
    _common(b)
    b.set_defaults(func=_data_parallel(cmd_bench, private_out=True))

    i = sub.add_parser("info", help="print what a run directory holds")
    i.add_argument("run")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info, quiet=False, device="cpu")

    im = sub.add_parser("import", help="convert a released feature set to admc-features/1")
    isub = im.add_subparsers(dest="layout", required=True)
    a = isub.add_parser("mmin-iemocap", help="MMIN's IEMOCAP features (A/comparE.h5, V/denseface.h5, L/bert_large.h5)")
    a.add_argument("--root", required=True)
    a.add_argument("--fold", type=int, required=True, help="1..10 (leave one session out)")
    a.add_argument("--out", required=True)
    a.add_argument("--overwrite", action="store_true", help="replace the dataset already at --out")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=cmd_import)
    m = isub.add_parser("mintrec", help="MIntRec's released features (audio_feats.pkl, video_feats.pkl, tsv)")
    m.add_argument("--root", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--text-features", help=".npz of text features per sample key (see admc/importers/mintrec.py)")
    m.add_argument("--overwrite", action="store_true", help="replace the dataset already at --out")
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=cmd_import)

    for add in extra:  # commands of the layers above (app.commands: extract, manifest from extractors.dataset.commands)
        add(sub, p)
    return p


def main(argv: list[str] | None = None, extra: Sequence[Callable] = ()) -> int:
    """Run one command; every error is one line on stderr (exit 2), Ctrl-C is "admc: interrupted"
    (exit 130).  ``extra``: see :func:`build_parser`."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(extra).parse_args(argv)
        args.command_line = ["admc", *argv]
        try:
            preflight(args)                 # before anything imports torch
            from admc.runtime import set_quiet, set_threads

            set_quiet(getattr(args, "quiet", False))
            set_threads(getattr(args, "threads", None))
            return args.func(args)
        except (ValueError, OSError) as e:  # DatasetError, RunError, OutputError, UsageError are ValueErrors
            print(f"admc: error: {e}", file=sys.stderr)
            return 2
        except MemoryError:
            print("admc: error: out of memory", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("admc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
