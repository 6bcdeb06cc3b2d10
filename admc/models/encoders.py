"""ITFN: one encoder + classifier head per modality, trained alone by single-modality classification.

Every encoder maps a padded batch ``x [B, T, D]`` with ``lengths [B]`` to a 256-d embedding.
Padding never reaches the embedding: the LSTM and TextCNN max-pool only over valid positions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """bool [B, T]: True on real frames, False on padding."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_max(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Max over time of ``h [B, T, H]`` restricted to the first ``lengths[b]`` steps."""
    mask = valid_mask(lengths, h.shape[1])[..., None]
    return h.masked_fill(~mask, float("-inf")).amax(dim=1)


class LSTMEncoder(nn.Module):
    """Frame-level sequence -> LSTM -> max-pool over valid frames (paper 4.1, Enc_a / Enc_v)."""

    def __init__(self, in_dim: int, out_dim: int = 256, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, out_dim, batch_first=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.drop(masked_max(h, lengths))


class TextCNN(nn.Module):
    """Word-level sequence -> parallel 1-D convolutions (kernels 3, 4, 5) -> max over valid positions
    -> linear to ``out_dim`` (Kim 2014, paper 4.1 Enc_t)."""

    def __init__(self, in_dim: int, out_dim: int = 256, filters: int = 128, kernels=(3, 4, 5),
                 dropout: float = 0.0):
        super().__init__()
        self.kernels = tuple(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, filters, k) for k in self.kernels)
        self.proj = nn.Sequential(nn.Dropout(dropout), nn.Linear(filters * len(self.kernels), out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Zero the padding, then pad on the right so that sequences shorter than a kernel still
        # give one output position.  Output position i sees frames i..i+k-1 and is valid when the
        # window starts inside the sequence.
        x = x * valid_mask(lengths, x.shape[1])[..., None]
        kmax = max(self.kernels)
        x = nn.functional.pad(x, (0, 0, 0, kmax - 1)).transpose(1, 2)  # [B, D, T + kmax - 1]
        pooled = []
        for k, conv in zip(self.kernels, self.convs):
            h = torch.relu(conv(x)).transpose(1, 2)  # [B, T + kmax - k, F]
            n_valid = torch.clamp(lengths - k + 1, min=1)
            pooled.append(masked_max(h, n_valid))
        return self.proj(torch.cat(pooled, dim=-1))


class MLPEncoder(nn.Module):
    """One row per sample (``vector`` modality) -> 2-layer MLP."""

    def __init__(self, in_dim: int, out_dim: int = 256, dropout: float = 0.2):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(out_dim, out_dim), nn.ReLU()
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x[:, 0] if x.dim() == 3 else x)


ENCODER_CLASSES = {"lstm": LSTMEncoder, "textcnn": TextCNN, "mlp": MLPEncoder}


class UnimodalNet(nn.Module):
    """Encoder + 2-layer classifier head (ITFN for one modality)."""

    def __init__(self, encoder: str, in_dim: int, n_classes: int, emb_dim: int = 256, hidden: int = 128,
                 dropout: float = 0.3, encoder_dropout: float | None = None):
        super().__init__()
        # encoder_dropout None: each encoder's own (MLP 0.2, LSTM and TextCNN none)
        kw = {} if encoder_dropout is None else {"dropout": encoder_dropout}
        self.encoder = ENCODER_CLASSES[encoder](in_dim, emb_dim, **kw)
        self.head = nn.Sequential(nn.Linear(emb_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        # Per-dimension standardization of the raw input features (e.g. openSMILE LLDs span 1e-3..1e7),
        # fitted on the training rows by fit_input_norm; identity until then, and for runs saved before
        # these buffers existed (see _load_from_state_dict).
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))

    @torch.no_grad()
    def fit_input_norm(self, rows: np.ndarray) -> None:
        """Mean and std per input dimension from ``rows [N, in_dim]`` (constant dims keep std 1)."""
        rows = np.asarray(rows)
        if len(rows) == 0:
            return
        mean = rows.mean(axis=0, dtype=np.float64)
        std = np.sqrt(np.mean((rows - mean) ** 2, axis=0, dtype=np.float64))
        std = np.where(std > 1e-8, std, 1.0)
        self.in_mean.copy_(torch.from_numpy(mean).float())
        self.in_std.copy_(torch.from_numpy(std).float())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for k in ("in_mean", "in_std"):  # runs saved without input standardization: identity
            if prefix + k not in state_dict:
                state_dict[prefix + k] = getattr(self, k).detach().clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.encoder((x - self.in_mean) / self.in_std, lengths)
        return emb, self.head(emb)
