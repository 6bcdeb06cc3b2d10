"""The linear probe the feature benchmarks share: a class-balanced logistic regression on standardized
features (scikit-learn), its C chosen on the validation split by UA (mean recall)."""

from __future__ import annotations

import numpy as np

C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def ua(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall (%) over the classes present in ``y``."""
    return 100 * float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def fit_probe(X: np.ndarray, y: np.ndarray, split: np.ndarray):
    """(the classifier fitted on ``split == "train"`` whose C is best on ``"val"``, its C, its val UA)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for C in C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, class_weight="balanced"))
        clf.fit(X[split == "train"], y[split == "train"])
        v = ua(y[split == "val"], clf.predict(X[split == "val"]))
        if best is None or v > best[2]:
            best = (clf, C, v)
    return best
