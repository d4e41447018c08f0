"""Expression metrics: regression on the per-gene value, above-median classification."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, r2_score, roc_auc_score


def _paired(y_true: Any, y_other: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_other, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"y_true has {a.size} values but the predictions have {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("expression values or predictions contain NaN or infinite values")
    return a, b


def _correlation(a: np.ndarray, b: np.ndarray, method: Any) -> float:
    """NaN for a constant (or too short) truth, 0 for a constant prediction of a varying truth."""
    if a.size < 2 or np.ptp(a) == 0:
        return math.nan
    return float(method(a, b).statistic) if np.ptp(b) > 0 else 0.0


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Pearson, Spearman, R² = r2_score(y_true, y_pred) and MSE across genes.

    NaN when the truth is constant; a constant prediction of a varying truth has correlation 0.
    """
    a, b = _paired(y_true, y_pred)
    return {
        "pearson": _correlation(a, b, stats.pearsonr),
        "spearman": _correlation(a, b, stats.spearmanr),
        "r2": float(r2_score(a, b)) if a.size >= 2 and np.ptp(a) > 0 else math.nan,
        "mse": float(np.mean((a - b) ** 2)) if a.size else math.nan,
        "n": float(a.size),
    }


def classification_scores(
    y_true_binary: Any, y_score: Any, threshold: float = 0.5
) -> dict[str, float]:
    """AUROC, AUPRC (average precision) and accuracy of ``score >= threshold``.

    AUROC and AUPRC are NaN when only one class is present.
    """
    y, s = _paired(y_true_binary, y_score)
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("y_true_binary must be 0/1 labels")
    both = 0 < y.sum() < y.size
    return {
        "auroc": float(roc_auc_score(y, s)) if both else math.nan,
        "auprc": float(average_precision_score(y, s)) if both else math.nan,
        "accuracy": float(np.mean((s >= threshold) == (y == 1))) if y.size else math.nan,
        "n": float(y.size),
        "n_pos": float(y.sum()),
    }


def above_median_labels(y: Any, train_mask: Any) -> np.ndarray:
    """int64 0/1 labels: 1 where y is strictly above the median of the training genes only."""
    values = np.asarray(y, dtype=np.float64).ravel()
    mask = np.asarray(train_mask, dtype=bool).ravel()
    if mask.shape != values.shape:
        raise ValueError(f"train_mask has {mask.size} entries for {values.size} genes")
    train = values[mask]
    if train.size == 0 or not np.all(np.isfinite(train)):
        raise ValueError("the training genes are empty or have NaN expression values")
    return (values > np.median(train)).astype(np.int64)
