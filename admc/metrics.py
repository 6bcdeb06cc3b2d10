"""Classification metrics, in percent: WA (accuracy), UA (macro recall), F1 (macro F1)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score


def scores(y_true, y_pred) -> dict[str, float]:
    """WA = plain accuracy, UA = unweighted (macro-averaged) recall, F1 = macro F1, all 0-100.

    Macro averages run over the classes present in ``y_true`` (scikit-learn's convention with
    ``labels`` restricted to them), so a class absent from a small test split does not count as 0.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = np.unique(y_true)
    return {
        "wa": 100.0 * float(accuracy_score(y_true, y_pred)),
        "ua": 100.0 * float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1": 100.0 * float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}
