"""Epiphany-lite: a track-only Hi-C map predictor (baselines_and_metrics.md §5), a small
re-implementation of Epiphany's idea (conv over tracks -> BiLSTM -> contacts) for hicmix windows.

- Tracks (N, C, 2·W·P) are standardised per channel on the training windows. Each anchor region
  (W·P positions) goes through two Conv1d(k5)+ReLU layers and a max-pool of P positions (one token
  per bin), then a BiLSTM over its W tokens (shared weights for both anchors).
- Pair head: for row token r_a and column token c_b, ReLU(U r_a + V c_b + (P r_a) * (Q c_b)
  + w log1p(diagonal)) -> Linear 16 -> ReLU -> Linear 1 (outer sum + outer product, then an MLP per
  pixel). Windows on the diagonal (distance 0) are symmetrised.
- The network predicts the residual over the distance decay fitted on the training windows
  (:class:`hicmix.baselines.decay.DistanceDecay`), so it has to learn only what tracks add to P(s).
- Masked MSE, Adam, best epoch by validation mean per-distance Pearson (d >= 1).
W, P and C come from the array shapes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hicmix.baselines.decay import DistanceDecay, as_distances
from hicmix.baselines.torch_fit import FitResult, fit_torch, predict_torch
from hicmix.evaluate.maps import mean_distance_pearson, pearson_by_distance


class EpiphanyLiteNet(nn.Module):
    """Conv + BiLSTM track encoder and a pairwise map head.

    forward(tracks (B, C, 2·W·P), distances (B,)) -> maps (B, W, W).
    """

    def __init__(
        self,
        channels: int,
        window: int,
        positions: int,
        conv: int = 32,
        hidden: int = 32,
        pair: int = 32,
        kernel: int = 5,
    ) -> None:
        super().__init__()
        self.window, self.positions = window, positions
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, conv, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.Conv1d(conv, conv, kernel, padding=kernel // 2),
            nn.ReLU(),
            nn.MaxPool1d(positions),
        )
        self.lstm = nn.LSTM(conv, hidden, batch_first=True, bidirectional=True)
        self.row = nn.Linear(2 * hidden, pair)
        self.col = nn.Linear(2 * hidden, pair, bias=False)
        self.row_product = nn.Linear(2 * hidden, pair, bias=False)
        self.col_product = nn.Linear(2 * hidden, pair, bias=False)
        self.distance = nn.Linear(1, pair, bias=False)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(pair, 16), nn.ReLU(), nn.Linear(16, 1))
        offsets = torch.arange(window)
        self.register_buffer("offset", offsets[None, :] - offsets[:, None], persistent=False)

    def forward(self, tracks: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        batch, channels = tracks.shape[0], tracks.shape[1]
        anchors = tracks.view(batch, channels, 2, -1).transpose(1, 2)
        tokens = self.encoder(anchors.reshape(2 * batch, channels, -1)).transpose(1, 2)
        states, _ = self.lstm(tokens)
        states = states.reshape(batch, 2, self.window, -1)
        rows, cols = states[:, 0], states[:, 1]
        diagonal = (distances.view(-1, 1, 1) + self.offset).abs().float().log1p()
        hidden = (
            self.row(rows)[:, :, None]
            + self.col(cols)[:, None, :]
            + self.row_product(rows)[:, :, None] * self.col_product(cols)[:, None, :]
            + self.distance(diagonal[..., None])
        )
        out = self.out(hidden).squeeze(-1)
        on_diagonal = (distances == 0).view(-1, 1, 1)
        return torch.where(on_diagonal, 0.5 * (out + out.transpose(1, 2)), out)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)


def _window_and_positions(tracks: np.ndarray, window: int) -> int:
    if tracks.ndim != 3 or tracks.shape[2] % (2 * window):
        raise ValueError(f"tracks must be (N, C, 2·W·P) with W = {window}, got {tracks.shape}")
    return tracks.shape[2] // (2 * window)


class EpiphanyLite:
    """fit(tracks, maps) / predict(tracks) for (N, C, 2·W·P) tracks and (N, W, W) maps in the tiles'
    Hi-C transform; ``distances`` (y - x per window, default 0) give each pixel's genomic
    diagonal."""

    def __init__(
        self,
        epochs: int = 20,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        conv: int = 32,
        hidden: int = 32,
        pair: int = 32,
        patience: int | None = None,
        seed: int = 0,
        device: str | None = "auto",
    ) -> None:
        self.epochs, self.batch_size, self.lr, self.weight_decay = (
            epochs,
            batch_size,
            lr,
            weight_decay,
        )
        self.conv, self.hidden, self.pair, self.patience = conv, hidden, pair, patience
        self.seed, self.device = seed, device
        self.decay = DistanceDecay()
        self.mean = self.sd = None
        self.window: int | None = None
        self.model: EpiphanyLiteNet | None = None
        self.result: FitResult | None = None

    def _scale(self, tracks: np.ndarray) -> np.ndarray:
        tracks = np.nan_to_num(np.asarray(tracks, dtype=np.float32), nan=0.0)
        return (tracks - self.mean) / self.sd

    def _targets(self, maps: np.ndarray, mask: np.ndarray | None, distances: np.ndarray):
        maps = np.asarray(maps, dtype=np.float32)
        valid = np.isfinite(maps)
        if mask is not None:
            valid &= np.asarray(mask).astype(bool)
        decay = self.decay.predict(maps.shape[0], maps.shape[1], distances)
        residual = np.where(valid, maps - decay, 0.0).astype(np.float32)
        return residual, valid.astype(np.float32)

    def fit(
        self,
        tracks: np.ndarray,
        maps: np.ndarray,
        mask: np.ndarray | None = None,
        distances: np.ndarray | None = None,
        *,
        tracks_val: np.ndarray | None = None,
        maps_val: np.ndarray | None = None,
        mask_val: np.ndarray | None = None,
        distances_val: np.ndarray | None = None,
    ) -> EpiphanyLite:
        tracks = np.asarray(tracks, dtype=np.float32)
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim != 3 or maps.shape[1] != maps.shape[2] or len(maps) != len(tracks):
            raise ValueError(f"maps must be (N, W, W) for {len(tracks)} windows, got {maps.shape}")
        self.window = window = maps.shape[1]
        positions = _window_and_positions(tracks, window)
        distances = as_distances(distances, len(maps))
        self.decay.fit(maps, mask, distances)
        self.mean = np.nan_to_num(tracks).mean(axis=(0, 2), keepdims=True)[0]
        self.sd = np.maximum(np.nan_to_num(tracks).std(axis=(0, 2), keepdims=True)[0], 1e-6)
        residual, valid = self._targets(maps, mask, distances)
        has_val = tracks_val is not None and maps_val is not None
        val_inputs, val_score = None, None
        if has_val:
            d_val = as_distances(distances_val, len(maps_val))
            val_inputs = [self._scale(tracks_val), d_val]
            decay_val = self.decay.predict(len(maps_val), window, d_val)

            def val_score(pred: np.ndarray) -> float:
                r = pearson_by_distance(maps_val, decay_val + pred, mask_val)
                return mean_distance_pearson(r)

        channels = tracks.shape[1]
        self.model, self.result = fit_torch(
            lambda: EpiphanyLiteNet(channels, window, positions, self.conv, self.hidden, self.pair),
            [self._scale(tracks), distances, residual, valid],
            masked_mse,
            n_inputs=2,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            device=self.device,
            val_inputs=val_inputs,
            val_score=val_score,
            patience=self.patience,
            desc="epiphany-lite",
        )
        return self

    def predict(self, tracks: np.ndarray, distances: np.ndarray | None = None) -> np.ndarray:
        """float32 (N, W, W) predicted maps (distance decay + learned residual)."""
        if self.model is None or self.window is None:
            raise RuntimeError("EpiphanyLite.fit must be called before predict")
        tracks = np.asarray(tracks, dtype=np.float32)
        _window_and_positions(tracks, self.window)
        distances = as_distances(distances, len(tracks))
        residual = predict_torch(
            self.model, [self._scale(tracks), distances], device=self.device, batch_size=64
        )
        return self.decay.predict(len(tracks), self.window, distances) + residual
