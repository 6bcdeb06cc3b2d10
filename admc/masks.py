"""Availability patterns: which modalities of a sample are present, and their names as module keys."""

from __future__ import annotations

import itertools


def mask_key(mask) -> str:
    """Module-safe key for an availability mask: ``c101`` = modalities 0 and 2 available."""
    return "c" + "".join("1" if bool(a) else "0" for a in mask)


def all_masks(M: int) -> list[tuple[bool, ...]]:
    """Every non-empty availability pattern, full last."""
    out = [tuple(bool(b >> i & 1) for i in range(M)) for b in range(1, 2**M)]
    return sorted(out, key=lambda m: (sum(m) == M, sum(m)))


def proper_masks(M: int) -> list[tuple[bool, ...]]:
    """Every non-empty proper availability pattern (the missing conditions)."""
    return [m for m in itertools.product([False, True], repeat=M) if any(m) and not all(m)]


def fusion_masks(M: int, rng, max_patterns: int = 16) -> list[tuple[bool, ...]]:
    """The patterns one shared fusion network trains on: every pattern, or with many modalities
    ``max_patterns`` of them drawn with ``rng`` (a numpy Generator), full input always among them."""
    masks = all_masks(M)
    if len(masks) <= max_patterns:
        return masks
    picked = [masks[i] for i in rng.choice(len(masks) - 1, max_patterns - 1, replace=False)]
    return picked + [masks[-1]]
