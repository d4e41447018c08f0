"""Peakachu-style loop classifier (baselines_and_metrics.md §2), re-implemented from the spec.

Features per candidate pixel: the (2w+1) x (2w+1) window centred on it, NaN -> 0, two filters (>=
10 % nonzero pixels; corner-block mean > 0 and centre / corner mean > 0.1), observed / expected by
diagonal (expected made non-increasing by isotonic regression), Gaussian filter sigma = 1, min-max
to [0, 1], flattened. A random forest tuned by 5-fold GridSearchCV on the Matthews correlation
coefficient.

The features do not change when the patches and the expected curve are multiplied by constants
(the ratio filter, O/E then min-max cancel them), so tile patches in ``clip_scale`` space can be
fed with the balanced expected curve as long as few pixels reach the clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from scipy import ndimage, stats
from sklearn.ensemble import RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from tqdm.auto import tqdm

from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError

#: §2.2: 18 candidates (x 5 folds = 90 fits).
FULL_GRID: dict[str, list[Any]] = {
    "n_estimators": [100],
    "max_features": ["sqrt"],
    "max_depth": [15, 20, 25],
    "criterion": ["entropy", "gini"],
    "class_weight": ["balanced", "balanced_subsample", None],
}
#: Two cheap candidates, for tests and smoke runs.
SMALL_GRID: dict[str, list[Any]] = {
    "n_estimators": [50],
    "max_features": ["sqrt"],
    "max_depth": [10],
    "criterion": ["gini"],
    "class_weight": [None, "balanced"],
}
MIN_NONZERO_FRACTION = 0.1
MIN_CENTRE_RATIO = 0.1
#: A diagonal's mean enters the expected curve only with more than this many valid pixels.
MIN_DIAGONAL_VALUES = 10


def monotone_expected(curve: np.ndarray) -> np.ndarray:
    """The expected curve made non-increasing in d by isotonic regression over its positive, finite
    diagonals; other diagonals take the fitted value of the nearest one (clipped at the ends)."""
    curve = np.asarray(curve, dtype=np.float64).ravel()
    known = np.flatnonzero(np.isfinite(curve) & (curve > 0))
    if known.size == 0:
        raise ValueError("the expected curve has no positive finite diagonal")
    if known.size == 1:
        return np.full(curve.size, curve[known[0]])
    fit = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(known, curve[known])
    return fit.predict(np.arange(curve.size, dtype=np.float64))


def peakachu_expected(band: Any, min_values: int = MIN_DIAGONAL_VALUES) -> np.ndarray:
    """Expected balanced contact per diagonal of a :class:`hicmix.hic.Band`: the mean over finite
    pixels (masked rows and columns are NaN in the band) where more than ``min_values`` exist, then
    :func:`monotone_expected`. Returns float64 (max_diag,)."""
    values = np.asarray(band.values, dtype=np.float64)
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(count > min_values, total / np.maximum(count, 1), np.nan)
    return monotone_expected(curve)


def centre_crop(patches: np.ndarray, size: int) -> np.ndarray:
    """The (size x size) block of (N, S, S) patches centred on pixel (S // 2, S // 2), the anchor
    pixel of a tile patch (rows x - S/2 ... x + S/2 - 1) and the centre of an odd window."""
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2]:
        raise ValueError(f"patches must be (N, S, S), got {patches.shape}")
    lo = patches.shape[1] // 2 - size // 2
    if lo < 0 or lo + size > patches.shape[1]:
        raise ValueError(
            f"cannot crop {size} x {size} from {patches.shape[1]} x {patches.shape[1]}"
        )
    return patches[:, lo : lo + size, lo : lo + size]


def _window_expected(
    expected: np.ndarray, n: int, size: int, distances: np.ndarray | None
) -> np.ndarray:
    """Per-pixel expected of centred (size x size) windows: pixel (a, b) lies on diagonal
    |distance + b - a|; diagonals past the curve take its last value."""
    if distances is None:
        raise ValueError("a 1-D expected curve needs the bin distance (y - x) of every patch")
    distances = np.asarray(distances, dtype=np.int64).ravel()
    if distances.size != n:
        raise ValueError(f"{distances.size} distances for {n} patches")
    curve = monotone_expected(expected)
    offsets = np.arange(size)
    diag = np.abs(distances[:, None, None] + offsets[None, None, :] - offsets[None, :, None])
    return curve[np.minimum(diag, curve.size - 1)]


def peakachu_features(
    patches: np.ndarray,
    expected: np.ndarray,
    w: int,
    distances: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Peakachu v2 features of the (2w+1)-window centred in each (N, S, S) patch (NaN allowed).

    ``expected`` is either the per-diagonal curve (1-D, made non-increasing here; then
    ``distances``, the bin distance y - x of each patch centre, is required) or a per-pixel
    expected array shaped like ``patches``. Returns (features float32 (N, (2w+1)^2), keep bool
    (N,)): ``keep`` is False for windows dropped by the nonzero or the centre/corner filter (their
    feature rows are still filled).
    """
    if w < 1:
        raise ValueError("w must be >= 1")
    size = 2 * w + 1
    window = np.nan_to_num(centre_crop(patches, size).astype(np.float64), nan=0.0)
    n = window.shape[0]
    expected = np.asarray(expected, dtype=np.float64)
    if expected.ndim == 1:
        exp = _window_expected(expected, n, size, distances)
    elif expected.shape == np.shape(patches):
        exp = centre_crop(expected, size)
    else:
        raise ValueError(f"expected must be 1-D or shaped like patches, got {expected.shape}")
    nonzero = (window != 0).reshape(n, -1).mean(axis=1) >= MIN_NONZERO_FRACTION
    corner = window[:, :w, :w].mean(axis=(1, 2))
    centre = window[:, w, w]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_ok = (corner > 0) & (centre / np.where(corner > 0, corner, 1.0) > MIN_CENTRE_RATIO)
        oe = np.where(exp > 0, window / exp, 0.0)
    smooth = ndimage.gaussian_filter(np.nan_to_num(oe), sigma=(0, 1, 1))
    low = smooth.min(axis=(1, 2), keepdims=True)
    span = smooth.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (smooth - low) / np.where(span > 0, span, 1.0), 0.0)
    return scaled.reshape(n, -1).astype(np.float32), nonzero & ratio_ok


def _grid(grid: str | dict[str, list[Any]]) -> dict[str, list[Any]]:
    if isinstance(grid, dict):
        return grid
    if grid == "full":
        return FULL_GRID
    if grid == "small":
        return SMALL_GRID
    raise ConfigError(f"unknown Peakachu grid {grid!r}; use 'full' or 'small'")


class PeakachuRF:
    """Random forest on Peakachu features, tuned by GridSearchCV (stratified ``cv`` folds, shuffled
    with ``seed``, MCC scoring) over the §2.2 grid ("full") or a 2-candidate grid ("small").

    ``n_jobs`` parallelises the grid search (fits of candidates x folds); each forest is serial.
    """

    def __init__(
        self,
        w: int = 5,
        seed: int = 0,
        grid: str | dict[str, list[Any]] = "full",
        cv: int = 5,
        n_jobs: int = 1,
    ) -> None:
        self.w = int(w)
        self.seed = int(seed)
        self.grid = _grid(grid)
        self.cv = int(cv)
        self.n_jobs = n_jobs
        self.model: RandomForestClassifier | None = None
        self.best_params: dict[str, Any] = {}
        self.cv_score = float("nan")

    @property
    def n_features(self) -> int:
        return (2 * self.w + 1) ** 2

    def _check(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(
                f"features must be (N, {self.n_features}) for w = {self.w}, got {features.shape}"
            )
        return features

    def fit(self, features: np.ndarray, labels: np.ndarray) -> PeakachuRF:
        """Grid-search and refit on (N, (2w+1)^2) features and 0/1 labels."""
        features = self._check(features)
        labels = np.asarray(labels).astype(np.int64).ravel()
        if np.unique(labels).size != 2:
            raise ValueError("PeakachuRF needs both positive and negative training windows")
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.seed)
        search = GridSearchCV(
            RandomForestClassifier(random_state=self.seed, n_jobs=1),
            self.grid,
            scoring="matthews_corrcoef",
            cv=folds,
            n_jobs=self.n_jobs,
            refit=True,
        )
        search.fit(features, labels)
        self.model = search.best_estimator_
        self.best_params = dict(search.best_params_)
        self.cv_score = float(search.best_score_)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(loop) for each feature row, float64 (N,)."""
        if self.model is None:
            raise RuntimeError("PeakachuRF.fit must be called before predict_proba")
        features = self._check(features)
        if features.shape[0] == 0:
            return np.zeros(0)
        return self.model.predict_proba(features)[:, 1]

    def fit_patches(
        self,
        patches: np.ndarray,
        labels: np.ndarray,
        expected: np.ndarray,
        distances: np.ndarray | None = None,
    ) -> PeakachuRF:
        """Featurise patches, drop windows failing the filters (positives and negatives), fit."""
        features, keep = peakachu_features(patches, expected, self.w, distances)
        return self.fit(features[keep], np.asarray(labels).ravel()[keep])

    def score_patches(
        self, patches: np.ndarray, expected: np.ndarray, distances: np.ndarray | None = None
    ) -> np.ndarray:
        """P(loop) per patch; windows failing the filters score 0 (Peakachu never calls them)."""
        features, keep = peakachu_features(patches, expected, self.w, distances)
        scores = np.zeros(features.shape[0])
        scores[keep] = self.predict_proba(features[keep])
        return scores

    def save(self, path: str | Path) -> Path:
        """joblib dump with xz compression (as Peakachu), written atomically."""
        with atomic_path(path) as tmp:
            joblib.dump(self, tmp, compress=("xz", 3))
        return Path(path)

    @staticmethod
    def load(path: str | Path) -> PeakachuRF:
        try:
            model = joblib.load(path)
        except (OSError, EOFError, ValueError) as error:
            raise InputError(
                f"{path}: cannot read the Peakachu model ({error}); retrain it"
            ) from error
        if not isinstance(model, PeakachuRF):
            raise InputError(f"{path}: not a hicmix PeakachuRF model; retrain it")
        return model


def poisson_candidates(
    band: Any,
    weights: np.ndarray | None,
    expected: np.ndarray,
    lower: int = 6,
    upper: int = 300,
    p: float = 0.01,
    *,
    balanced: bool = True,
) -> pd.DataFrame:
    """Genome-wide candidate pixels (§2.3) of a band: raw count > 0 and Poisson upper-tail
    P(X >= raw) < ``p``, with mean = expected balanced value of the diagonal / (w_i w_j).

    ``band.values`` are balanced (``balanced=True``; raw = balanced / (w_i w_j)) or raw counts;
    ``weights`` are the multiplicative cooler weights of the chromosome's bins (NaN = masked; None =
    all 1). Diagonals ``lower`` ... ``upper`` (clipped to the band and the curve). Returns a
    DataFrame chrom, bin1, bin2 (chromosome-local bins, bin1 < bin2).
    """
    values = np.asarray(band.values)
    n_bins = int(band.n_bins)
    weights = np.ones(n_bins) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_bins,):
        raise ValueError(f"weights has shape {weights.shape}, the band has {n_bins} bins")
    expected = np.asarray(expected, dtype=np.float64)
    top = min(int(upper), values.shape[0] - 1, expected.size - 1, n_bins - 1)
    rows, cols = [], []
    for d in range(max(int(lower), 1), top + 1):
        ww = weights[: n_bins - d] * weights[d:]
        observed = values[d, : n_bins - d].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = np.rint(observed / ww if balanced else observed)
            mean = expected[d] / ww
        ok = np.isfinite(raw) & (raw > 0) & np.isfinite(mean) & (mean > 0)
        index = np.flatnonzero(ok)
        hit = index[stats.poisson.sf(raw[index] - 1, mean[index]) < p]
        rows.append(hit)
        cols.append(hit + d)
    bin1 = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    bin2 = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    order = np.lexsort((bin2, bin1))
    return pd.DataFrame(
        {
            "chrom": pd.Series([band.chrom] * bin1.size, dtype=object),
            "bin1": bin1[order].astype(np.int64),
            "bin2": bin2[order].astype(np.int64),
        }
    )


def score_band(
    model: PeakachuRF,
    band: Any,
    candidates: pd.DataFrame,
    expected: np.ndarray,
    *,
    batch: int = 100_000,
    min_prob: float = 0.0,
) -> pd.DataFrame:
    """Score candidate pixels of a balanced band in batches of ``batch`` windows.

    Windows failing the Peakachu filters are not scored (as upstream). Returns chrom, bin1, bin2,
    score (P(loop)) for the scored candidates with score > ``min_prob`` (0.5 mimics Peakachu's
    output), ready for :func:`hicmix.evaluate.loops.pool_calls`.
    """
    w = model.w
    bin1 = candidates["bin1"].to_numpy(dtype=np.int64)
    bin2 = candidates["bin2"].to_numpy(dtype=np.int64)
    parts = []
    for lo in tqdm(range(0, bin1.size, batch), desc="peakachu score", disable=None, leave=False):
        i, j = bin1[lo : lo + batch], bin2[lo : lo + batch]
        patches = band.patches(i - w, j - w, 2 * w + 1)
        features, keep = peakachu_features(patches, expected, w, distances=j - i)
        score = model.predict_proba(features[keep])
        parts.append(pd.DataFrame({"bin1": i[keep], "bin2": j[keep], "score": score}))
    table = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(
            {"bin1": np.zeros(0, np.int64), "bin2": np.zeros(0, np.int64), "score": np.zeros(0)}
        )
    )
    table = table[table["score"] > min_prob].reset_index(drop=True)
    table.insert(0, "chrom", pd.Series([band.chrom] * len(table), dtype=object))
    return table
