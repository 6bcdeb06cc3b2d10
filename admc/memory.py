"""How much memory training will take, estimated before anything is allocated.

Two things grow without bound from settings and data alone: the model's tensors (``itfn.emb_dim``,
the widths of the ADN and the fusion, the linear prior's (M x emb_dim)^2 matrix), counted exactly by
building the model on PyTorch's meta device (no memory); and one padded batch of a sequence modality
(``itfn.batch_size`` x the longest sequence kept by ``itfn.max_len`` x its width).  Training needs
the model's tensors about four times (weights, gradients, Adam's two moments); an estimate above what
the machine has available is refused in one line naming the setting to lower.
"""

from __future__ import annotations

import os

ACTIVATION_FACTOR = 12      # per kept row: the input, the encoder's gates and their gradients (a bound, not a fit)


def available_bytes() -> int:
    """Memory the machine has available now (Linux ``MemAvailable``; elsewhere all physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def model_bytes(schema, cfg) -> int:
    """Bytes of every tensor of the model ``cfg`` describes (built on the meta device: no memory)."""
    import torch

    from admc.pipeline import build_model

    with torch.device("meta"):
        model = build_model(schema, cfg)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def batch_bytes(ds, cfg) -> tuple[int, str | None]:
    """The largest padded ITFN batch of one modality in the train split, and that modality's name."""
    import numpy as np

    best, name = 0, None
    train = ds["train"]
    for mod in ds.schema.modalities:
        lens = np.diff(train.offsets[mod.name])
        longest = int(lens.max()) if len(lens) else 1
        kept = min(longest, cfg.itfn.max_len) if cfg.itfn.max_len is not None else longest
        rows = min(cfg.itfn.batch_size, len(lens)) * kept
        size = rows * (mod.dim + ACTIVATION_FACTOR * cfg.itfn.emb_dim) * 4
        if size > best:
            best, name = size, mod.name
    return best, name


def training_memory_problem(ds, cfg, available: int | None = None) -> str | None:
    """Why training ``cfg`` on ``ds`` would not fit in memory (naming the setting to lower), or None."""
    available = available_bytes() if available is None else available
    state = model_bytes(ds.schema, cfg)
    batch, mod = batch_bytes(ds, cfg)
    need = 4 * state + batch
    if need <= 0.9 * available:
        return None
    if 4 * state >= batch:
        return (f"the model these settings describe holds {_gib(state)} of tensors (itfn.emb_dim={cfg.itfn.emb_dim}, "
                f"adn.d_model={cfg.adn.d_model}, fusion.d_model={cfg.fusion.d_model} ...): training needs about "
                f"{_gib(need)}, this machine has {_gib(available)} available; lower itfn.emb_dim or the widths")
    return (f"one padded batch of modality {mod} takes about {_gib(batch)} (itfn.batch_size={cfg.itfn.batch_size} "
            f"x up to itfn.max_len={cfg.itfn.max_len} rows): training needs about {_gib(need)}, this machine has "
            f"{_gib(available)} available; lower itfn.max_len or itfn.batch_size")
