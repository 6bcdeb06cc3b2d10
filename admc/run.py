"""A run directory: everything a trained model needs, as safetensors + JSON (never pickle).

```
RUN/
  run.json            config, feature schema, classes, chosen n, validation scores, command line
  model.safetensors   every weight and buffer
```
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from admc import __version__
from admc.config import TrainConfig
from admc.data import DatasetError, Schema
from admc.formats import RUN_FORMAT
from admc.outdir import current_umask, file_sha256, install, make_staging_dir
from admc.pipeline import OPTIONAL_STATE, ADMCModel, build_model
from admc.run_schema import run_meta_problem

MAX_RUN_JSON_BYTES = 64 * 2**20


class RunError(ValueError):
    """A run directory that cannot be loaded; the message names file and problem."""


# the run.json settings without which the weights mean something else (the class order, the clip range ...)
BOUND_KEYS = ("method", "schema", "config", "fusion_mode", "start_step", "clip_range")


def bound_settings(meta: dict) -> dict:
    return {k: meta.get(k) for k in BOUND_KEYS}


def _plain(obj):
    return json.loads(json.dumps(obj))


def _first_difference(a, b, key: str = "") -> str | None:
    """The dotted key of the first difference between two JSON values (``""``: the whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{key}{k}"
            d = _first_difference(a[k], b[k], f"{key}{k}.")
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{key}{i}.")
            if d is not None:
                return d
        return None
    return None if a == b else key.rstrip(".")


def _check_binding(meta: dict, wf: Path, where: Path) -> None:
    """run.json and model.safetensors were saved together: the weights' SHA-256 is the one run.json
    records, and the run identity and bound settings the weights record are run.json's.  A run saved
    before the binding existed (neither side has it) loads unchecked."""
    try:
        with safe_open(wf, framework="pt") as sf:
            wmeta = sf.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types on corrupt files
        raise RunError(f"{wf}: not a readable safetensors file ({e})") from None
    has_json, has_weights = "weights_sha256" in meta, "run_id" in wmeta
    if not has_json and not has_weights:
        return
    if not has_json:
        raise RunError(f"{where}: key 'weights_sha256' is missing, but {wf.name} belongs to run {wmeta['run_id']}")
    if not has_weights:
        raise RunError(f"{wf}: records no run identity, but {where.name} expects the weights of run {meta.get('run_id')}")
    sha = file_sha256(wf)
    if sha != meta["weights_sha256"]:
        raise RunError(f"{wf}: SHA-256 {sha[:12]}... is not the {str(meta['weights_sha256'])[:12]}... that "
                       f"{where.name} records: these weights were changed or belong to another run")
    if wmeta["run_id"] != meta.get("run_id"):
        raise RunError(f"{where}: key 'run_id' is {meta.get('run_id')!r} but {wf.name} belongs to run "
                       f"{wmeta['run_id']!r}")
    try:
        saved = json.loads(wmeta.get("run_json", ""))
    except ValueError:
        raise RunError(f"{wf}: its record of the run's settings is unreadable") from None
    key = _first_difference(_plain(bound_settings(meta)), saved)
    if key is not None:
        raise RunError(f"{where}: key '{key}' differs from what the weights were saved with; run.json was "
                       "edited after training (retrain, or calibrate into a new run)")


def save_run(model: ADMCModel, path: str | os.PathLike, info: dict, command: list[str] | None = None,
             dataset: dict | None = None) -> Path:
    """Write a run directory atomically (a temporary sibling renamed into place at the end).

    An existing run at ``path`` is replaced only once the new one is complete; anything else there
    is refused with :class:`~admc.outdir.OutputError` (``admc train`` refuses before training:
    :func:`admc.outdir.check_out`)."""
    path = Path(path)
    tmp = make_staging_dir(path)
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        meta = {
            "format": RUN_FORMAT,
            "admc_version": __version__,
            "method": model.cfg.method,
            "schema": model.schema.to_json(),
            "config": model.cfg.to_json(),
            "fusion_mode": model.fusion_mode,
            "start_step": model.start_step,
            "clip_range": model.clip_range,
            "dataset": dataset or {},
            "command": command or [],
            "train": info,
        }
        # the pair is bound: the weights carry the run's identity and the settings that give them their
        # meaning; run.json carries the weights' SHA-256 (checked by load_run)
        run_id = uuid.uuid4().hex
        bound = json.dumps(_plain(bound_settings(meta)), sort_keys=True)
        try:
            save_file(state, tmp / "model.safetensors",
                      metadata={"format": RUN_FORMAT, "run_id": run_id, "run_json": bound})
        except SafetensorError as e:     # disk full, a read-only file system: the OSError it wraps
            raise OSError(f"{path}: cannot write model.safetensors ({e})") from None
        (tmp / "model.safetensors").chmod(0o666 & ~current_umask())  # safetensors writes it private
        meta["run_id"] = run_id
        meta["weights_sha256"] = file_sha256(tmp / "model.safetensors")
        (tmp / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
        install(tmp, path, "run")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_run_meta(path: str | os.PathLike) -> dict:
    """``run.json`` of a run directory, checked against the schema in :mod:`admc.run_schema`
    (raises :class:`RunError` naming the file and key)."""
    path = Path(path)
    f = path / "run.json"
    if not f.is_file():
        raise RunError(f"{f}: missing (is {path} a run directory from `admc train`?)")
    try:
        if f.stat().st_size > MAX_RUN_JSON_BYTES:
            raise RunError(f"{f}: {f.stat().st_size} bytes, more than a run.json can hold ({MAX_RUN_JSON_BYTES})")
        meta = json.loads(f.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise RunError(f"{f}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise RunError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise RunError(f"{f}: key 'format' must be {RUN_FORMAT!r}")
    why = run_meta_problem(meta)
    if why:
        raise RunError(f"{f}: {why}")
    return meta


def run_config(meta: dict, where: Path) -> tuple[Schema, TrainConfig]:
    """Schema and TrainConfig of a checked ``run.json`` object (``where``: the file, for errors)."""
    try:
        schema = Schema.from_json(meta["schema"], f"{where}: schema")
    except DatasetError as e:
        raise RunError(str(e)) from None
    config = dict(meta["config"])
    config.setdefault("method", meta["method"])
    # runs saved before the linear prior existed diffused around zero
    config["adn"] = {"prior": "none", **config.get("adn", {})}
    try:
        return schema, TrainConfig.from_json(config)
    except (ValueError, TypeError) as e:
        raise RunError(f"{where}: key 'config': {e}") from None


def _check_weights_match(meta: dict, schema: Schema, cfg: TrainConfig, wf: Path, where: Path) -> None:
    """Shapes in the safetensors header against the model run.json declares, built on the meta
    device (no memory): a run.json declaring a dim of 10^9 is refused here, not by an out-of-memory."""
    try:
        with safe_open(wf, framework="pt") as sf:
            shapes = {k: tuple(sf.get_slice(k).get_shape()) for k in sf.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types on corrupt files
        raise RunError(f"{wf}: not a readable safetensors file ({e})") from None
    try:
        with torch.device("meta"):
            skeleton = build_model(schema, cfg)
    except (ValueError, TypeError, AssertionError, RuntimeError) as e:
        raise RunError(f"{where}: key 'config': cannot build the model it describes ({e})") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for prefix in OPTIONAL_STATE:  # a group saved before it existed is absent as a whole: defaults
        group = {k for k in expected if k.startswith(prefix)}
        if not group & set(shapes):
            expected = {k: v for k, v in expected.items() if k not in group}
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise RunError(f"{wf}: weights do not match run.json: key '{missing[0]}' missing"
                       + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise RunError(f"{wf}: weights do not match run.json: unexpected key '{extra[0]}'"
                       + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    for k, shape in expected.items():
        if shapes[k] != shape:
            raise RunError(f"{wf}: weights do not match run.json: key '{k}' has shape {list(shapes[k])}, "
                           f"run.json declares {list(shape)}")
    mode = meta.get("fusion_mode")
    if mode is not None and mode != skeleton.fusion_mode:
        raise RunError(f"{where}: key 'fusion_mode' is {mode!r} but the config gives {skeleton.fusion_mode!r}")


def _check_values(state: dict[str, torch.Tensor], wf: Path) -> None:
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise RunError(f"{wf}: key '{k}': NaN or inf values")
    for key in ("emb_std", "calibration.temperature"):
        v = state.get(key)
        if v is not None and not bool((v > 0).all()):
            raise RunError(f"{wf}: key '{key}': must be > 0 everywhere (min {float(v.min()):g})")


def load_run(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[ADMCModel, dict]:
    """Model and ``run.json`` of a run directory, everything checked before it is used: run.json
    against its schema, the weights' shapes against run.json before the model is built, the weights'
    values (finite; ``emb_std`` > 0).  Raises :class:`RunError` naming the file and key."""
    path = Path(path)
    meta = read_run_meta(path)
    where = path / "run.json"
    schema, cfg = run_config(meta, where)
    wf = path / "model.safetensors"
    if not wf.is_file():
        raise RunError(f"{wf}: missing")
    _check_weights_match(meta, schema, cfg, wf, where)
    _check_binding(meta, wf, where)
    try:
        state = load_file(wf)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types on corrupt files
        raise RunError(f"{wf}: not a readable safetensors file ({e})") from None
    _check_values(state, wf)
    model = build_model(schema, cfg)
    try:
        # strict but for the optional groups _check_weights_match found absent (they keep their defaults)
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise RunError(f"{wf}: weights do not match run.json ({e})") from None
    bad = [k for k in result.missing_keys if not k.startswith(OPTIONAL_STATE)] + list(result.unexpected_keys)
    if bad:
        raise RunError(f"{wf}: weights do not match run.json (key '{bad[0]}')")
    model.start_step = meta.get("start_step")
    model.clip_range = meta.get("clip_range")
    model.requires_grad_(False)
    model.eval()
    return model.to(device), meta
