"""DLoopCaller-style loop CNN (baselines_and_metrics.md §3), re-implemented from the spec.

Input: two 23 x 23 channels around the candidate pixel, the Hi-C window (centre-cropped from the
tile patch) and the outer product of the per-bin means of one track channel at the two anchors.
Network (23,089 parameters at 23 x 23): three conv/ReLU/AvgPool2/Dropout(0.2) stages
(2 -> 16 channels, 5 x 5; 16 -> 32, 3 x 3; 32 -> 32, 3 x 3), BatchNorm after the last pool,
Linear 128 -> 64, ReLU, Dropout 0.2, Linear 64 -> 1 (a logit; BCE-with-logits). Xavier-uniform
initialisation, Adam (lr 1e-3, weight decay 5e-4), batch 128, 30 epochs, best epoch by
validation AUROC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hicmix.baselines.decay import anchor_bin_means
from hicmix.baselines.peakachu import centre_crop
from hicmix.baselines.torch_fit import FitResult, auroc_or_nan, fit_torch, predict_torch
from hicmix.errors import ConfigError

INPUT_SIZE = 23
#: Track channels tried in this order for the second input channel (§3: ATAC, else CTCF).
PREFERRED_CHANNELS = ("ATAC", "DNase", "CTCF")


def pick_track_channel(
    channels: Sequence[str], preferred: Sequence[str] = PREFERRED_CHANNELS
) -> int:
    """Index of the first of ``preferred`` present in ``channels`` (case-insensitive), else 0."""
    lower = [c.lower() for c in channels]
    for name in preferred:
        if name.lower() in lower:
            return lower.index(name.lower())
    if not channels:
        raise ConfigError("the tiles have no track channel for the DLoopCaller track input")
    return 0


def dloopcaller_inputs(
    hic: np.ndarray, tracks: np.ndarray, channel: int = 0, size: int = INPUT_SIZE
) -> np.ndarray:
    """(N, 2, size, size) float32: the centre-cropped Hi-C patch and the outer product of the
    per-bin means of track ``channel`` over the same row and column bins (NaN -> 0)."""
    hic = np.asarray(hic, dtype=np.float32)
    if hic.ndim == 4 and hic.shape[1] == 1:
        hic = hic[:, 0]
    window = hic.shape[-1]
    rows, cols = anchor_bin_means(tracks, window)
    if not 0 <= channel < rows.shape[1]:
        raise ValueError(f"track channel {channel} out of range for {rows.shape[1]} channels")
    outer = rows[:, channel, :, None] * cols[:, channel, None, :]
    stacked = np.stack([centre_crop(hic, size), centre_crop(outer, size)], axis=1)
    return np.nan_to_num(stacked, nan=0.0).astype(np.float32)


class DLoopCallerNet(nn.Module):
    """The ~23 K-parameter DLoopCaller CNN; returns one logit per sample."""

    def __init__(self, size: int = INPUT_SIZE, in_channels: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        final = size // 2 // 2 // 2
        if final < 1:
            raise ConfigError(f"DLoopCaller input size {size} is too small (needs >= 8)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Dropout(dropout),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.BatchNorm2d(32),
            nn.Dropout(dropout),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * final * final, 64),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(64, 1),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


class DLoopCaller:
    """fit / predict_proba on (N, 2, S, S) inputs from :func:`dloopcaller_inputs`.

    Each input channel is standardised by a scalar mean and sd fitted on the training samples (the
    outer product of log tracks and the Hi-C window live on different scales).
    """

    def __init__(
        self,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 5e-4,
        dropout: float = 0.2,
        patience: int | None = None,
        standardize: bool = True,
        seed: int = 0,
        device: str | None = "auto",
    ) -> None:
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.weight_decay, self.dropout, self.patience = weight_decay, dropout, patience
        self.standardize, self.seed, self.device = standardize, seed, device
        self.model: DLoopCallerNet | None = None
        self.result: FitResult | None = None
        self.mean = self.sd = None

    def _scale(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"DLoopCaller inputs must be (N, 2, S, S), got {x.shape}")
        if self.mean is None:
            return x
        return (x - self.mean) / self.sd

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> DLoopCaller:
        """Train on 0/1 labels; with a validation set the epoch of best validation AUROC is kept."""
        x = np.asarray(x, dtype=np.float32)
        if self.standardize:
            self.mean = x.mean(axis=(0, 2, 3), keepdims=True)[0]
            self.sd = np.maximum(x.std(axis=(0, 2, 3), keepdims=True)[0], 1e-6)
        x = self._scale(x)
        size, channels = x.shape[-1], x.shape[1]
        has_val = x_val is not None and y_val is not None
        y_val_arr = np.asarray(y_val, dtype=np.float32).ravel() if has_val else None
        self.model, self.result = fit_torch(
            lambda: DLoopCallerNet(size, channels, self.dropout),
            [x, np.asarray(y, dtype=np.float32).ravel()],
            nn.BCEWithLogitsLoss(),
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            device=self.device,
            val_inputs=[self._scale(x_val)] if has_val else None,
            val_score=(lambda p: auroc_or_nan(y_val_arr, p)) if has_val else None,
            output_fn=torch.sigmoid,
            patience=self.patience,
            desc="dloopcaller",
        )
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(loop) per sample, float32 (N,)."""
        if self.model is None:
            raise RuntimeError("DLoopCaller.fit must be called before predict_proba")
        return predict_torch(
            self.model, [self._scale(x)], device=self.device, output_fn=torch.sigmoid
        )
