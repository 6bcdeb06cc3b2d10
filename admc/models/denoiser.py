"""ADN denoiser: a transformer encoder over the M modality rows (paper Eq. 2).

It knows nothing about noise schedules (that is ``admc.diffusion``): it maps the current rows
``x [B, M, D]``, the timestep ``t [B]`` and, for the conditional variant, the availability mask
``avail [B, M]`` to the prediction the scheduler asks for (noise, clean sample or velocity).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Denoiser(nn.Module):
    def __init__(self, n_modalities: int, dim: int = 256, d_model: int = 256, layers: int = 4, heads: int = 8,
                 ff: int = 1024, dropout: float = 0.1, conditional: bool = False):
        super().__init__()
        self.conditional = conditional
        self.d_model = d_model
        self.inp = nn.Linear(dim, d_model)
        self.modality = nn.Parameter(torch.randn(n_modalities, d_model) * 0.02)
        self.time = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        # state 0: row to generate, 1: row given (clean) -- only used by the conditional variant
        self.state = nn.Embedding(2, d_model) if conditional else None
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x) + self.modality[None] + self.time(timestep_embedding(t, self.d_model))[:, None]
        if self.conditional:
            if avail is None:
                raise ValueError("conditional denoiser needs the availability mask")
            h = h + self.state(avail.long())
        return self.out(self.norm(self.encoder(h)))
