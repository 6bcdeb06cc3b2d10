"""MF: self-attention over modality tokens, mean over tokens, 2-layer FC head (paper Eq. 6).

``mask_aware=True`` adds a per-token state embedding (live / filled-in) so one network can serve
every missing-modality condition (``--fusion shared``).
"""

from __future__ import annotations

import torch
from torch import nn


class FusionNet(nn.Module):
    def __init__(self, n_modalities: int, in_dim: int, n_classes: int, d_model: int = 256, layers: int = 2,
                 heads: int = 4, ff: int = 1024, dropout: float = 0.3, hidden: int = 128, mask_aware: bool = False):
        super().__init__()
        self.mask_aware = mask_aware
        self.inp = nn.Linear(in_dim, d_model)
        self.modality = nn.Parameter(torch.randn(n_modalities, d_model) * 0.02)
        self.state = nn.Embedding(2, d_model) if mask_aware else None
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.attn = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, tokens: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(tokens) + self.modality[None]
        if self.mask_aware:
            if avail is None:
                raise ValueError("mask-aware fusion needs the availability mask")
            h = h + self.state(avail.long())
        return self.head(self.attn(h).mean(dim=1))
