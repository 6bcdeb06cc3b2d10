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
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from admc import __version__
from admc.config import TrainConfig
from admc.data import Schema
from admc.outdir import RUN_FORMAT, current_umask, install, make_staging_dir
from admc.pipeline import ADMCModel


class RunError(ValueError):
    """A run directory that cannot be loaded; the message names file and problem."""


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
        save_file(state, tmp / "model.safetensors", metadata={"format": RUN_FORMAT})
        (tmp / "model.safetensors").chmod(0o666 & ~current_umask())  # safetensors writes it private
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
        (tmp / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
        install(tmp, path, "run")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_run_meta(path: str | os.PathLike) -> dict:
    path = Path(path)
    f = path / "run.json"
    if not f.is_file():
        raise RunError(f"{f}: missing (is {path} a run directory from `admc train`?)")
    try:
        meta = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise RunError(f"{f}: key 'format' must be {RUN_FORMAT!r}")
    return meta


def load_run(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[ADMCModel, dict]:
    path = Path(path)
    meta = read_run_meta(path)
    try:
        schema = Schema.from_json(meta["schema"], str(path / "run.json"))
        config = dict(meta["config"])
        # runs saved before the linear prior existed diffused around zero
        config["adn"] = {"prior": "none", **config.get("adn", {})}
        cfg = TrainConfig.from_json(config)
    except (KeyError, ValueError, TypeError) as e:
        raise RunError(f"{path / 'run.json'}: bad schema or config ({e})") from None
    model = ADMCModel(schema, cfg)
    wf = path / "model.safetensors"
    if not wf.is_file():
        raise RunError(f"{wf}: missing")
    try:
        state = load_file(wf)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types on corrupt files
        raise RunError(f"{wf}: not a readable safetensors file ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RunError(f"{wf}: weights do not match run.json ({e})") from None
    model.start_step = meta.get("start_step")
    model.clip_range = meta.get("clip_range")
    model.requires_grad_(False)
    model.eval()
    return model.to(device), meta
