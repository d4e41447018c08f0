"""Linear expression references (baselines_and_metrics.md §4.4): logistic regression (binary) and
ridge regression (regression) on the per-mark mean over the TSS window, standardised on the
training genes (scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from hicmix.baselines.deepchrome import check_task
from hicmix.errors import ConfigError


def mark_means(x: np.ndarray) -> np.ndarray:
    """Per-mark mean over bins, (genes, bins, marks) -> (genes, marks), NaN -> 0.

    A (genes, marks) array is returned as it is.
    """
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    if x.ndim == 3:
        return x.mean(axis=1)
    if x.ndim == 2:
        return x
    raise ValueError(f"expression inputs must be (genes, bins, marks), got {x.shape}")


class LinearExpression:
    """StandardScaler + LogisticRegression (``task="binary"``, inverse regularisation ``c``) or
    Ridge (``task="regression"``, ``alpha``) on per-mark means."""

    def __init__(
        self, task: str = "binary", c: float = 1.0, alpha: float = 1.0, seed: int = 0
    ) -> None:
        self.task = check_task(task)
        self.c, self.alpha, self.seed = float(c), float(alpha), int(seed)
        self.model: Pipeline | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearExpression:
        if self.task == "binary":
            estimator = LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed)
            target = np.asarray(y).ravel().astype(np.int64)
        else:
            estimator = Ridge(alpha=self.alpha)
            target = np.asarray(y, dtype=np.float64).ravel()
        self.model = make_pipeline(StandardScaler(), estimator).fit(mark_means(x), target)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) (binary) or the predicted value (regression), float64 (genes,)."""
        if self.model is None:
            raise RuntimeError("LinearExpression.fit must be called before predict")
        if self.task == "binary":
            return self.model.predict_proba(mark_means(x))[:, 1]
        return self.model.predict(mark_means(x))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.task != "binary":
            raise ConfigError("predict_proba needs task 'binary'; use predict for regression")
        return self.predict(x)
