"""What a configuration and a ``run.json`` may hold, checked before anything is built from them.

The types come from the dataclasses in :mod:`admc.config` (a field added there is type-checked
here without a change); :data:`RANGES` adds the value ranges of the settings that have one.  Every
problem is one line naming the key (``config.adn.lr``), raised by the caller with the file or
option it came from.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

from admc.config import TrainConfig

MAX_SIZE = 2**16     # widths (emb_dim, d_model, ff, hidden): far above any model here, far below an OOM
MAX_LAYERS = 256
MAX_DIM = 2**20      # a modality's feature dim


def _pos(x) -> bool:
    return x > 0


def _unit_open(x) -> bool:
    return 0 < x < 1


RANGES: dict[str, tuple[typing.Callable, str]] = {
    **{f"{s}.{k}": (lambda x: 1 <= x <= MAX_SIZE, f"in 1..{MAX_SIZE}")
       for s, k in (("itfn", "emb_dim"), ("adn", "d_model"), ("adn", "ff"), ("fusion", "d_model"),
                    ("fusion", "ff"), ("fusion", "hidden"), ("adn", "heads"), ("fusion", "heads"))},
    **{f"{s}.layers": (lambda x: 1 <= x <= MAX_LAYERS, f"in 1..{MAX_LAYERS}") for s in ("adn", "fusion")},
    **{f"{s}.{k}": (_pos, "> 0") for s in ("itfn", "adn", "fusion") for k in ("epochs", "batch_size", "lr")},
    **{f"{s}.patience": (lambda x: x >= 0, ">= 0") for s in ("itfn", "adn", "fusion")},
    **{f"{s}.weight_decay": (lambda x: x >= 0, ">= 0") for s in ("itfn", "adn", "fusion")},
    **{f"{s}.dropout": (lambda x: 0 <= x < 1, "in [0, 1)") for s in ("adn", "fusion")},
    "itfn.max_len": (lambda x: x is None or x >= 1, "null or >= 1"),
    "itfn.dropout": (lambda x: x is None or 0 <= x < 1, "null or in [0, 1)"),
    "itfn.head_dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "itfn.head_hidden": (lambda x: 1 <= x <= MAX_SIZE, f"in 1..{MAX_SIZE}"),
    "adn.beta_start": (_unit_open, "in (0, 1)"),
    "adn.beta_end": (_unit_open, "in (0, 1)"),
    "adn.num_train_timesteps": (lambda x: 1 <= x <= 100_000, "in 1..100000"),
    "adn.sample_steps": (lambda x: 1 <= x <= 100_000, "in 1..100000"),
    "adn.num_samples": (lambda x: 1 <= x <= 10_000, "in 1..10000"),
    "adn.neighbours": (lambda x: 1 <= x <= 10_000, "in 1..10000"),
    "adn.neighbour_bank": (lambda x: 0 <= x <= 10_000_000, "in 0..10000000"),
    "adn.start_step": (lambda x: x is None or x >= 1, "null or >= 1"),
    "adn.start_grid": (lambda x: len(x) > 0 and all(v >= 1 for v in x), "a non-empty list of steps >= 1"),
    "adn.prior_shrinkage": (lambda x: x is None or x > 0, "null or > 0"),
    "adn.prior_grid": (lambda x: len(x) > 0 and all(v > 0 for v in x), "a non-empty list of numbers > 0"),
    "adn.ema_decay": (lambda x: x is None or 0 <= x < 1, "null or in [0, 1)"),
    "adn.clip_quantile": (lambda x: x is None or 0 < x <= 1, "null or in (0, 1]"),
    "data.train_missing_rate": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "data.label_fraction": (lambda x: 0 < x <= 1, "in (0, 1]"),
    "fusion.cross_fit": (lambda x: x == 0 or x >= 2, "0 (off) or >= 2"),
    "calibration.ood_quantile": (lambda x: 0 < x <= 1, "null or in (0, 1]"),
    "calibration.abstain_below": (lambda x: 0 <= x <= 1, "null or in [0, 1]"),
    "calibration.abstain_keep": (lambda x: 0 < x <= 1, "in (0, 1]"),
    **{f"imputer.{k}": (_pos, "> 0") for k in ("epochs", "batch_size", "lr", "grad_clip")},
    "imputer.patience": (lambda x: x >= 0, ">= 0"),
    "imputer.blocks": (lambda x: 1 <= x <= MAX_LAYERS, f"in 1..{MAX_LAYERS}"),
    **{f"imputer.{k}": (lambda x: len(x) > 0 and all(1 <= v <= MAX_SIZE for v in x),
                        f"a non-empty list of widths in 1..{MAX_SIZE}") for k in ("layers", "cls_layers")},
    **{f"imputer.{k}": (lambda x: x >= 0, ">= 0")
       for k in ("weight_decay", "mse_weight", "cycle_weight", "ce_weight")},
    "imputer.beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "imputer.cls_dropout": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "linear.c_grid": (lambda x: len(x) > 0 and all(v > 0 for v in x), "a non-empty list of numbers > 0"),
    "linear.max_iter": (_pos, "> 0"),
}


def _type_name(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    return getattr(hint, "__name__", str(hint))


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True  # a type this checker does not know: left to the dataclass


def sections() -> dict[str, type]:
    """Config sections (``itfn``, ``adn``, ``fusion``, ...) and their dataclasses."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig) if dataclasses.is_dataclass(hints[f.name])}


def setting_problem(section: str, key: str, value) -> str | None:
    """Why ``value`` cannot be setting ``section.key`` (None when it can); ``section`` "" is the top level."""
    klass = sections().get(section) if section else TrainConfig
    if klass is None:
        return f"unknown section {section!r} (sections: {', '.join(sections())})"
    hints = typing.get_type_hints(klass)
    if key not in hints or (not section and key in sections()):
        return f"unknown setting {'.'.join(filter(None, (section, key)))!r}"
    if not _fits(value, hints[key]):
        return f"expected {_type_name(hints[key])}, got {value!r}"
    rule = RANGES.get(f"{section}.{key}")
    if rule is not None and value is not None and not rule[0](value):
        return f"must be {rule[1]}, got {value!r}"
    return None


def config_problem(obj) -> str | None:
    """First problem of a configuration object (``TrainConfig.to_json()`` layout), naming the key."""
    from admc.methods import METHODS

    if not isinstance(obj, dict):
        return f"must be a JSON object with sections {', '.join(sections())}, got {type(obj).__name__}"
    secs = sections()
    for name, value in obj.items():
        if name in secs:
            if not isinstance(value, dict):
                return f"key '{name}' must be an object, got {type(value).__name__}"
            for k, v in value.items():
                why = setting_problem(name, k, v)
                if why:
                    return f"key '{name}.{k}': {why}"
        else:
            why = setting_problem("", name, value)
            if why:
                return f"key '{name}': {why}"
    if "method" in obj and obj["method"] not in METHODS:
        return f"key 'method' must be one of {', '.join(METHODS)}, got {obj['method']!r}"
    adn = obj.get("adn", {})
    steps = adn.get("num_train_timesteps", TrainConfig().adn.num_train_timesteps)
    for k in ("start_step", "sample_steps"):
        if isinstance(adn.get(k), int) and adn[k] > steps:
            return f"key 'adn.{k}' is {adn[k]}, more than adn.num_train_timesteps {steps}"
    return None


def run_meta_problem(meta: dict) -> str | None:
    """First problem of a ``run.json`` object (after its ``format`` was checked), naming the key."""
    from admc.methods import METHODS

    for key, typ, what in (("config", dict, "an object"), ("schema", dict, "an object"), ("method", str, "a string")):
        if key not in meta:
            return f"key '{key}' is missing"
        if not isinstance(meta[key], typ):
            return f"key '{key}' must be {what}, got {type(meta[key]).__name__}"
    if meta["method"] not in METHODS:
        return f"key 'method' must be one of {', '.join(METHODS)}, got {meta['method']!r}"
    cm = meta["config"].get("method", meta["method"])
    if cm != meta["method"]:
        return f"key 'method' is {meta['method']!r} but 'config.method' is {cm!r}"
    why = config_problem(meta["config"])
    if why:
        return why.replace("key '", "key 'config.", 1)
    mods = meta["schema"].get("modalities")
    if isinstance(mods, dict):
        for name, spec in mods.items():
            dim = spec.get("dim") if isinstance(spec, dict) else None
            if isinstance(dim, int) and dim > MAX_DIM:
                return f"key 'schema.modalities.{name}.dim' is {dim}, more than {MAX_DIM}"
    cr = meta.get("clip_range")
    if cr is not None and not (_fits(cr, float) and cr > 0):
        return f"key 'clip_range' must be null or a finite number > 0, got {cr!r}"
    ss = meta.get("start_step")
    if ss is not None and not (_fits(ss, int) and ss >= 1):
        return f"key 'start_step' must be null or an integer >= 1, got {ss!r}"
    steps = meta["config"].get("adn", {}).get("num_train_timesteps", TrainConfig().adn.num_train_timesteps)
    if ss is not None and ss > steps:
        return f"key 'start_step' is {ss}, more than config.adn.num_train_timesteps {steps}"
    for key, typ, what in (("fusion_mode", str, "a string"), ("dataset", dict, "an object"),
                           ("command", list, "a list"), ("train", dict, "an object")):
        if key in meta and not isinstance(meta[key], typ):
            return f"key '{key}' must be {what}, got {type(meta[key]).__name__}"
    return None
