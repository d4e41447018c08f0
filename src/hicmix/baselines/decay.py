"""Trivial Hi-C map baselines (baselines_and_metrics.md §5): distance decay only, and
"track outer product + P(s)".

Both work in the space of the tiles (whatever Hi-C transform they were written with) and are
fitted on training windows only. A pixel (a, b) of a window whose anchors are ``distance`` bins
apart lies on genomic diagonal |distance + b - a| (diagonal windows have distance 0).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: Pixels sampled to fit the outer-product ridge (bounds memory on large tile sets).
MAX_FIT_PIXELS = 2_000_000
#: Windows per batch when accumulating or predicting.
BATCH = 1024


def anchor_bin_means(tracks: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin means of (N, C, 2·W·P) tile tracks: (row anchor, column anchor), each (N, C, W)."""
    tracks = np.asarray(tracks, dtype=np.float32)
    if tracks.ndim != 3 or tracks.shape[2] % (2 * window):
        raise ValueError(
            f"tracks must be (N, C, 2·W·P) with W = {window}, got shape {tracks.shape}"
        )
    n, c, length = tracks.shape
    per_bin = tracks.reshape(n, c, 2, window, length // (2 * window)).mean(axis=-1)
    return per_bin[:, :, 0], per_bin[:, :, 1]


def pixel_diagonals(distances: np.ndarray | int | None, n: int, window: int) -> np.ndarray:
    """Genomic diagonal of every pixel of N (W, W) windows, int64 (N, W, W)."""
    distances = as_distances(distances, n)
    offsets = np.arange(window)
    return np.abs(distances[:, None, None] + offsets[None, None, :] - offsets[None, :, None])


def outer_features(tracks: np.ndarray, window: int) -> np.ndarray:
    """Per-pixel features u_c[a] · v_c[b] (per-bin track means of the two anchors), (N, W, W, C)."""
    rows, cols = anchor_bin_means(tracks, window)
    return np.einsum("nca,ncb->nabc", rows, cols)


def _valid(maps: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(maps)
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != maps.shape:
            raise ValueError(f"mask has shape {mask.shape}, maps have {maps.shape}")
        valid &= mask
    return valid


def _check_maps(maps: np.ndarray) -> tuple[int, int]:
    shape = np.shape(maps)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"maps must be (N, W, W), got {shape}")
    return shape[0], shape[1]


class DistanceDecay:
    """Predict each pixel as the training mean of its genomic diagonal (P(s) only).

    Diagonals never seen in training take the value of the nearest seen one.
    """

    def __init__(self) -> None:
        self.curve: np.ndarray | None = None

    def fit(
        self,
        maps: np.ndarray,
        mask: np.ndarray | None = None,
        distances: np.ndarray | None = None,
    ) -> DistanceDecay:
        """Mean of each genomic diagonal over the valid pixels of (N, W, W) training windows."""
        n, window = _check_maps(maps)
        distances = as_distances(distances, n)
        total = np.zeros(1)
        count = np.zeros(1)
        for lo in range(0, n, BATCH):
            part = np.asarray(maps[lo : lo + BATCH], dtype=np.float64)
            valid = _valid(part, None if mask is None else mask[lo : lo + BATCH])
            diag = pixel_diagonals(distances[lo : lo + BATCH], part.shape[0], window)[valid]
            size = max(total.size, int(diag.max()) + 1 if diag.size else 1)
            total = np.bincount(diag, weights=part[valid], minlength=size) + _pad(total, size)
            count = np.bincount(diag, minlength=size) + _pad(count, size)
        if not count.any():
            raise ValueError("no valid training pixel to fit the distance decay")
        seen = np.flatnonzero(count > 0)
        index = np.arange(count.size)
        nearest = seen[np.argmin(np.abs(index[:, None] - seen[None, :]), axis=1)]
        self.curve = total[nearest] / count[nearest]
        return self

    def expected(self, diagonals: np.ndarray) -> np.ndarray:
        """The fitted value at each genomic diagonal (past the curve: its last value)."""
        if self.curve is None:
            raise RuntimeError("DistanceDecay.fit must be called first")
        return self.curve[np.minimum(np.asarray(diagonals), self.curve.size - 1)]

    def predict(self, n: int, window: int, distances: np.ndarray | None = None) -> np.ndarray:
        """float32 (N, W, W) decay-only maps."""
        return self.expected(pixel_diagonals(distances, n, window)).astype(np.float32)


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    return np.pad(values, (0, size - values.size))


def as_distances(distances: np.ndarray | int | None, n: int) -> np.ndarray:
    if distances is None:
        return np.zeros(n, dtype=np.int64)
    return np.broadcast_to(np.asarray(distances, dtype=np.int64), (n,))


class TrackOuterDecay:
    """Distance decay plus a ridge model of the residual on the outer products of per-bin track
    means (u_c[a] · v_c[b], one feature per channel, standardised), fitted on at most
    ``max_pixels`` training pixels drawn with ``seed``."""

    def __init__(self, alpha: float = 1.0, seed: int = 0, max_pixels: int = MAX_FIT_PIXELS) -> None:
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.max_pixels = int(max_pixels)
        self.decay = DistanceDecay()
        self.ridge = None

    def fit(
        self,
        maps: np.ndarray,
        tracks: np.ndarray,
        mask: np.ndarray | None = None,
        distances: np.ndarray | None = None,
    ) -> TrackOuterDecay:
        n, window = _check_maps(maps)
        distances = as_distances(distances, n)
        self.decay.fit(maps, mask, distances)
        valid = np.isfinite(np.asarray(maps))
        if mask is not None:
            valid &= np.asarray(mask).astype(bool)
        index = np.flatnonzero(valid.ravel())
        if index.size > self.max_pixels:
            rng = np.random.default_rng(self.seed)
            index = np.sort(rng.choice(index, self.max_pixels, replace=False))
        sample, a, b = np.unravel_index(index, (n, window, window))
        rows, cols = anchor_bin_means(tracks, window)
        x = rows[sample, :, a] * cols[sample, :, b]
        diag = np.abs(distances[sample] + b - a)
        residual = np.asarray(maps)[sample, a, b] - self.decay.expected(diag)
        self.ridge = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        self.ridge.fit(x, residual)
        return self

    def predict(
        self, tracks: np.ndarray, window: int, distances: np.ndarray | None = None
    ) -> np.ndarray:
        """float32 (N, W, W) maps = P(s) + ridge(outer products)."""
        if self.ridge is None:
            raise RuntimeError("TrackOuterDecay.fit must be called first")
        n = len(tracks)
        distances = as_distances(distances, n)
        out = np.empty((n, window, window), dtype=np.float32)
        for lo in range(0, n, BATCH):
            features = outer_features(tracks[lo : lo + BATCH], window)
            m = features.shape[0]
            residual = self.ridge.predict(features.reshape(-1, features.shape[-1]))
            decay = self.decay.predict(m, window, distances[lo : lo + BATCH])
            out[lo : lo + m] = decay + residual.reshape(m, window, window)
        return out
