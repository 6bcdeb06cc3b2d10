"""Learning-rate rule and early stopping shared by every training stage (ITFN, ADN, fusion)."""

from __future__ import annotations

import copy

from torch import nn


def lambda_rule(epochs: int):
    """Constant learning rate for the first half, then linear decay (MMIN's LambdaLR rule)."""
    keep = max(1, epochs // 2)

    def f(epoch: int) -> float:
        return 1.0 - max(0, epoch - keep) / float(epochs - keep + 1)

    return f


class EarlyStopping:
    """Keeps the state of the best epoch; says stop after ``patience`` epochs without improvement."""

    def __init__(self, patience: int, mode: str = "max"):
        self.patience, self.sign = patience, 1.0 if mode == "max" else -1.0
        self.best, self.best_state, self.bad = None, None, 0

    def step(self, score: float, module: nn.Module) -> bool:
        if self.best is None or self.sign * (score - self.best) > 1e-9:
            self.best, self.best_state, self.bad = score, copy.deepcopy(module.state_dict()), 0
        else:
            self.bad += 1
        return self.bad >= self.patience

    @property
    def improved(self) -> bool:
        return self.bad == 0
