"""DeepChrome-style expression CNN (baselines_and_metrics.md §4.1), re-implemented from the spec.

Input (genes, bins, marks) of any shape. Conv1d(marks -> 50, kernel min(10, bins), no padding),
ReLU, MaxPool 5 (or the whole conv output when shorter), flatten, Dropout 0.5, Linear -> 625, ReLU,
Linear -> 125, ReLU, Linear -> 2 with log-softmax and NLL loss (P(class 1) = exp of the second
output); 644,177 parameters at 100 bins x 5 marks. The regression variant ends in one output with
MSE loss. Training differs from the original (plain SGD, batch 1): Adam with mini-batches; the best
epoch is chosen by validation AUROC (binary) or validation Pearson (regression).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hicmix.baselines.torch_fit import (
    FitResult,
    auroc_or_nan,
    fit_torch,
    pearson_or_nan,
    predict_torch,
)
from hicmix.errors import ConfigError

TASKS = ("binary", "regression")


def check_genes(x: np.ndarray) -> np.ndarray:
    """(genes, bins, marks) float32, NaN -> 0."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or min(x.shape[1:]) < 1:
        raise ValueError(f"expression inputs must be (genes, bins, marks), got {x.shape}")
    return np.nan_to_num(x, nan=0.0)


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ConfigError(f"unknown expression task {task!r}; use one of {', '.join(TASKS)}")
    return task


class DeepChromeNet(nn.Module):
    """DeepChrome's CNN for (batch, bins, marks) input; ``n_out`` = 2 (log-probabilities) or 1."""

    def __init__(
        self,
        bins: int,
        marks: int,
        n_out: int = 2,
        filters: int = 50,
        kernel: int = 10,
        pool: int = 5,
        hidden: tuple[int, int] = (625, 125),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        kernel = min(kernel, bins)
        length = bins - kernel + 1
        pool = min(pool, length)
        flat = filters * (length // pool)
        self.conv = nn.Sequential(
            nn.Conv1d(marks, filters, kernel), nn.ReLU(), nn.MaxPool1d(pool), nn.Flatten()
        )
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(flat, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], n_out),
        )
        self.n_out = n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.conv(x.transpose(1, 2)))
        if self.n_out == 1:
            return out.squeeze(-1)
        return torch.log_softmax(out, dim=-1)


def _positive_probability(log_probs: torch.Tensor) -> torch.Tensor:
    return log_probs[:, 1].exp()


class DeepChrome:
    """fit / predict on (genes, bins, marks) arrays; ``task`` "binary" (0/1 labels) or
    "regression" (e.g. log expression)."""

    def __init__(
        self,
        task: str = "binary",
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        filters: int = 50,
        kernel: int = 10,
        pool: int = 5,
        dropout: float = 0.5,
        patience: int | None = None,
        seed: int = 0,
        device: str | None = "auto",
    ) -> None:
        self.task = check_task(task)
        self.epochs, self.batch_size, self.lr, self.weight_decay = (
            epochs,
            batch_size,
            lr,
            weight_decay,
        )
        self.filters, self.kernel, self.pool, self.dropout = filters, kernel, pool, dropout
        self.patience, self.seed, self.device = patience, seed, device
        self.model: DeepChromeNet | None = None
        self.result: FitResult | None = None

    def _net(self, bins: int, marks: int) -> DeepChromeNet:
        n_out = 2 if self.task == "binary" else 1
        return DeepChromeNet(
            bins, marks, n_out, self.filters, self.kernel, self.pool, dropout=self.dropout
        )

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DeepChrome:
        x = check_genes(x)
        binary = self.task == "binary"
        target = np.asarray(y).ravel().astype(np.int64 if binary else np.float32)
        loss = nn.NLLLoss() if binary else nn.MSELoss()
        has_val = x_val is not None and y_val is not None
        y_val_arr = np.asarray(y_val, dtype=np.float64).ravel() if has_val else None
        metric = auroc_or_nan if binary else pearson_or_nan
        self.model, self.result = fit_torch(
            lambda: self._net(x.shape[1], x.shape[2]),
            [x, target],
            loss,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            device=self.device,
            val_inputs=[check_genes(x_val)] if has_val else None,
            val_score=(lambda p: metric(y_val_arr, p)) if has_val else None,
            output_fn=_positive_probability if binary else None,
            patience=self.patience,
            desc="deepchrome",
        )
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) (binary) or the predicted value (regression), float32 (genes,)."""
        if self.model is None:
            raise RuntimeError("DeepChrome.fit must be called before predict")
        binary = self.task == "binary"
        return predict_torch(
            self.model,
            [check_genes(x)],
            device=self.device,
            output_fn=_positive_probability if binary else None,
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.task != "binary":
            raise ConfigError("predict_proba needs task 'binary'; use predict for regression")
        return self.predict(x)
