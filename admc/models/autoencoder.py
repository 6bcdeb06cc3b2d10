"""Fully connected autoencoders of the imputation baselines (admc/baselines/imputers.py).

``FcAE``: one encoder/decoder pair (the AE of Tran et al. 2017 and MMIN's ``SimpleFcAE``).
``ResidualAE``: a cascade of autoencoders, each refining the running estimate by adding its output
to it, then a 2-layer transition (the cascaded residual autoencoder, CRA, of Tran et al. 2017 in the
form MMIN's ``ResidualAE`` gives it).  Both map ``x [B, D]`` to ``(reconstruction [B, D], latent)``.
``FcClassifier``: MMIN's classifier on the latent (hidden layers of Linear + ReLU + Dropout).
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(dims: list[int], act, last_act=None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(dims) - 2:
            layers.append(act())
        elif last_act is not None:
            layers.append(last_act())
    return nn.Sequential(*layers)


class FcAE(nn.Module):
    """``dim -> layers[0] -> ... -> layers[-1]`` (LeakyReLU) and back (LeakyReLU, last ReLU as in MMIN's
    SimpleFcAE, here linear: the targets are standardized embeddings, negative half of the time)."""

    def __init__(self, dim: int, layers: list[int]):
        super().__init__()
        self.encoder = _mlp([dim, *layers], nn.LeakyReLU, nn.LeakyReLU)
        self.decoder = _mlp([*reversed(layers), dim], nn.LeakyReLU)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self.encoder(x)
        return self.decoder(latent), latent


class ResidualAE(nn.Module):
    """``blocks`` autoencoders in cascade: ``s_0 = x``, ``s_k = s_{k-1} + dec_k(enc_k(s_{k-1}))``,
    output ``transition(s_K)``; the latent is every block's code side by side ``[B, blocks * layers[-1]]``."""

    def __init__(self, dim: int, layers: list[int], blocks: int):
        super().__init__()
        self.encoders = nn.ModuleList(_mlp([dim, *layers], nn.LeakyReLU) for _ in range(blocks))
        self.decoders = nn.ModuleList(_mlp([*reversed(layers), dim], nn.ReLU) for _ in range(blocks))
        self.transition = _mlp([dim, dim, dim], nn.ReLU)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, latents = x, []
        for enc, dec in zip(self.encoders, self.decoders):
            code = enc(s)
            s = s + dec(code)
            latents.append(code)
        return self.transition(s), torch.cat(latents, dim=-1)


class FcClassifier(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], n_classes: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = h
        layers.append(nn.Linear(in_dim, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
