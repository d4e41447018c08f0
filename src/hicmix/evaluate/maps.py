"""Hi-C map metrics: pixel scores, R², distance-stratified and O/E Pearson, insulation, SCC.

Window metrics take arrays of windows ``(N, W, W)`` (or one ``(W, W)``) holding truth and prediction
in the same transform space, with an optional validity ``mask`` (True = valid, e.g. a shard's
``hic_mask``); pixels that are NaN in either array are also left out.

Pixel set: diagonal windows (start on the diagonal, symmetric) are scored on their upper triangle
including the diagonal (``triangle=True``, the default), so each contact counts once; for
off-diagonal patches (loop tiles) pass ``triangle=False`` to score every pixel.

Correlations: a prediction that is constant over the compared pixels while the truth varies
carries no information there and scores 0 (so the decay-only baseline, constant along each
diagonal, gets r(d) = 0 rather than NaN); a constant truth gives NaN.

Map metrics (insulation, SCC, per-distance Pearson of whole chromosomes) take a dense square
matrix, a scipy sparse matrix (upper triangle), a Band-like object (``.values[d, i] = M[i, i+d]``,
e.g. :class:`hicmix.hic.Band`) or a :class:`cooler.Cooler` with ``chrom`` and ``weight``; they
work on the diagonal band only, never on a dense chromosome matrix.

R² is always ``r2_score(y_true, y_pred)`` (normalised by the variance of the truth; MIX-HIC
defect D2 swapped the arguments).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats
from sklearn.metrics import r2_score

# --------------------------------------------------------------------------------------------------
# helpers


def _pearson(true: np.ndarray, pred: np.ndarray) -> float:
    """Pearson r in float64; 0 for a constant prediction of a varying truth, NaN when the truth
    is constant or has fewer than 2 values."""
    x = np.asarray(true, dtype=np.float64)
    y = np.asarray(pred, dtype=np.float64)
    if x.size < 2 or _constant(x):
        return math.nan
    if _constant(y):
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.dot(dx, dy) / math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy))))


def _constant(x: np.ndarray) -> bool:
    """True when all values are equal up to rounding (so a correlation would be noise)."""
    return bool(np.ptp(x) <= 1e-12 * np.max(np.abs(x)))


def _windows(true: Any, pred: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if true.ndim == 2:
        true, pred = true[None], pred[None]
        mask = None if mask is None else np.asarray(mask)[None]
    if true.shape != pred.shape or true.ndim != 3 or true.shape[1] != true.shape[2]:
        raise ValueError(f"expected two (N, W, W) arrays, got {true.shape} and {pred.shape}")
    valid = np.isfinite(true) & np.isfinite(pred)
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != true.shape:
            raise ValueError(f"mask has shape {mask.shape}, windows have {true.shape}")
        valid &= mask
    return true, pred, valid


def _valid_pixels(true: Any, pred: Any, mask: Any, triangle: bool) -> tuple[np.ndarray, ...]:
    """(true, pred, valid) with the triangle rule applied to ``valid``."""
    true, pred, valid = _windows(true, pred, mask)
    if triangle:
        valid &= np.triu(np.ones(true.shape[1:], dtype=bool))[None]
    return true, pred, valid


def pixel_values(
    true: Any, pred: Any, mask: Any = None, triangle: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (true, pred) values of the scored pixel set (see the module docstring)."""
    true, pred, valid = _valid_pixels(true, pred, mask, triangle)
    return true[valid], pred[valid]


# --------------------------------------------------------------------------------------------------
# pixel metrics


def pixel_pearson(true: Any, pred: Any, mask: Any = None, triangle: bool = True) -> float:
    """Pearson r over all scored pixels of all windows (MIX-HIC style; inflated by P(s))."""
    return _pearson(*pixel_values(true, pred, mask, triangle))


def pixel_spearman(true: Any, pred: Any, mask: Any = None, triangle: bool = True) -> float:
    """Spearman rho over all scored pixels of all windows."""
    x, y = pixel_values(true, pred, mask, triangle)
    if x.size < 2 or _constant(x):
        return math.nan
    return 0.0 if _constant(y) else float(stats.spearmanr(x, y).statistic)


def pixel_mse(true: Any, pred: Any, mask: Any = None, triangle: bool = True) -> float:
    """Mean squared error over all scored pixels."""
    x, y = pixel_values(true, pred, mask, triangle)
    return float(np.mean((x - y) ** 2)) if x.size else math.nan


def window_r2(true: Any, pred: Any, mask: Any = None, triangle: bool = True) -> dict[str, float]:
    """R² = r2_score(y_true, y_pred): mean over windows, and pooled over all scored pixels.

    Per window the formula is sklearn's, 1 - SS_res / SS_tot(truth); windows whose truth is
    constant (undefined R²) or has fewer than 2 valid pixels are left out of the mean and counted
    in ``n_windows_skipped``.
    """
    true, pred, valid = _valid_pixels(true, pred, mask, triangle)
    t, p = np.where(valid, true, 0.0), np.where(valid, pred, 0.0)
    count = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = t.sum(axis=(1, 2)) / count
        ss_tot = (np.where(valid, true - mean[:, None, None], 0.0) ** 2).sum(axis=(1, 2))
        ss_res = ((t - p) ** 2).sum(axis=(1, 2))
        per_window = 1.0 - ss_res / ss_tot
    ok = (count >= 2) & (ss_tot > 0)
    x, y = true[valid], pred[valid]
    pooled = float(r2_score(x, y)) if x.size >= 2 and np.ptp(x) > 0 else math.nan
    return {
        "r2_window_mean": float(per_window[ok].mean()) if ok.any() else math.nan,
        "r2_pooled": pooled,
        "n_windows": float(ok.sum()),
        "n_windows_skipped": float((~ok).sum()),
    }


def pearson_by_distance(true: Any, pred: Any, mask: Any = None) -> np.ndarray:
    """r(d), d = 0 … W-1: Pearson along diagonal offset d, pooled over diagonal windows.

    Within one diagonal the distance decay P(s) is constant, so r(d) measures what a model learnt
    beyond P(s); a decay-only prediction scores about 0. Summarise with
    :func:`mean_distance_pearson` (mean over d >= 1).
    """
    true, pred, valid = _windows(true, pred, mask)
    size = true.shape[1]
    out = np.full(size, np.nan)
    for d in range(size):
        keep = np.diagonal(valid, offset=d, axis1=1, axis2=2)
        x = np.diagonal(true, offset=d, axis1=1, axis2=2)[keep]
        y = np.diagonal(pred, offset=d, axis1=1, axis2=2)[keep]
        out[d] = _pearson(x, y)
    return out


def mean_distance_pearson(r_by_distance: np.ndarray, min_distance: int = 1) -> float:
    """Mean of r(d) over d >= ``min_distance`` (NaN diagonals ignored)."""
    values = np.asarray(r_by_distance, dtype=np.float64)[min_distance:]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def expected_map(expected_by_diag: Any, size: int) -> np.ndarray:
    """(size, size) map E[i, j] = expected[|i - j|]: the decay-only prediction of a diagonal window.

    Diagonals beyond the curve take its last value. Broadcast it over windows for the
    distance-decay baseline (same transform space as the truth it is scored against).
    """
    curve = np.asarray(expected_by_diag, dtype=np.float64)
    offsets = np.arange(size)
    diag = np.minimum(np.abs(offsets[:, None] - offsets[None, :]), curve.size - 1)
    return curve[diag]


def oe_pearson(
    true: Any,
    pred: Any,
    expected_by_diag: Any,
    mask: Any = None,
    triangle: bool = True,
    *,
    row_starts: Any = None,
    col_starts: Any = None,
) -> float:
    """Pearson over scored pixels after dividing both maps by the expected value of their diagonal.

    Both maps and ``expected_by_diag`` (training chromosomes) must be in the same linear space,
    e.g. balanced contacts. Diagonal windows use their in-window offset as the distance; for
    off-diagonal patches give the genomic ``row_starts``/``col_starts`` of each window.
    """
    true, pred, valid = _valid_pixels(true, pred, mask, triangle)
    n, size = true.shape[0], true.shape[1]
    if row_starts is None and col_starts is None:
        exp = np.broadcast_to(expected_map(expected_by_diag, size), true.shape)
    else:
        from hicmix.transforms import expected_for_patches

        exp = expected_for_patches(
            np.asarray(expected_by_diag), np.asarray(row_starts), np.asarray(col_starts), size
        ).astype(np.float64)
        if exp.shape[0] != n:
            raise ValueError("row_starts/col_starts must have one entry per window")
    valid = valid & (exp > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _pearson(true[valid] / exp[valid], pred[valid] / exp[valid])


def map_scores(true: Any, pred: Any, mask: Any = None, triangle: bool = True) -> dict[str, float]:
    """All window metrics in one dict: pixel pearson/spearman/mse, R² (window mean and pooled),
    mean r(d) over d >= 1 and the number of scored pixels."""
    scores = {
        "pixel_pearson": pixel_pearson(true, pred, mask, triangle),
        "pixel_spearman": pixel_spearman(true, pred, mask, triangle),
        "pixel_mse": pixel_mse(true, pred, mask, triangle),
    }
    scores.update(window_r2(true, pred, mask, triangle))
    scores["distance_pearson_mean"] = mean_distance_pearson(pearson_by_distance(true, pred, mask))
    scores["n_pixels"] = float(pixel_values(true, pred, mask, triangle)[0].size)
    return scores


# --------------------------------------------------------------------------------------------------
# whole-map inputs as a diagonal band


def as_band(
    matrix: Any, depth: int, *, chrom: str | None = None, weight: str | None = "weight"
) -> np.ndarray:
    """float64 (depth, n) band ``V[d, i] = M[i, i + d]``, NaN past the chromosome end.

    Accepts a dense square array, a scipy sparse matrix (upper triangle used; implicit zeros are
    zeros), a Band-like object with ``.values`` and ``.n_bins``, or a cooler.Cooler (needs
    ``chrom``; read with :func:`hicmix.hic.read_band` and ``weight``).
    """
    if hasattr(matrix, "values") and hasattr(matrix, "n_bins"):
        values = np.asarray(matrix.values, dtype=np.float64)
        if values.shape[0] < depth:
            raise ValueError(
                f"the band holds {values.shape[0]} diagonals but {depth} are needed; "
                "read it with a larger max_diag"
            )
        return values[:depth].copy()
    if hasattr(matrix, "pixels") and hasattr(matrix, "extent"):
        if chrom is None:
            raise ValueError("a cooler input needs chrom")
        from hicmix.hic import read_band

        return np.asarray(read_band(matrix, chrom, depth, weight).values, dtype=np.float64)
    if sparse.issparse(matrix):
        return _sparse_band(matrix, depth)
    dense = np.asarray(matrix, dtype=np.float64)
    if dense.ndim != 2 or dense.shape[0] != dense.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {dense.shape}")
    n = dense.shape[0]
    band = np.full((depth, n), np.nan)
    for d in range(min(depth, n)):
        band[d, : n - d] = np.diagonal(dense, offset=d)
    return band


def _sparse_band(matrix: Any, depth: int) -> np.ndarray:
    coo = sparse.coo_matrix(matrix)
    if coo.shape[0] != coo.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {coo.shape}")
    n = coo.shape[0]
    row, col, data = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    if not np.any(col >= row) and np.any(col < row):
        row, col = col, row  # only the lower triangle is stored
    d = col - row
    keep = (d >= 0) & (d < depth)
    band = np.zeros((depth, n))
    np.add.at(band, (d[keep], row[keep]), data[keep])
    for k in range(depth):
        band[k, max(n - k, 0) :] = np.nan
    return band


def _pair_bands(
    a: Any, b: Any, depth: int, chrom: str | None, weight: str | None
) -> tuple[np.ndarray, np.ndarray]:
    band_a = as_band(a, depth, chrom=chrom, weight=weight)
    band_b = as_band(b, depth, chrom=chrom, weight=weight)
    if band_a.shape != band_b.shape:
        raise ValueError(
            f"the two maps have {band_a.shape[1]} and {band_b.shape[1]} bins; use the same bins"
        )
    return band_a, band_b


def pearson_by_distance_map(
    true: Any,
    pred: Any,
    max_dist_bins: int,
    *,
    chrom: str | None = None,
    weight: str | None = "weight",
) -> np.ndarray:
    """r(d), d = 0 … max_dist_bins, along whole-chromosome diagonals (e.g. stitched maps)."""
    band_t, band_p = _pair_bands(true, pred, max_dist_bins + 1, chrom, weight)
    out = np.full(max_dist_bins + 1, np.nan)
    for d in range(max_dist_bins + 1):
        keep = np.isfinite(band_t[d]) & np.isfinite(band_p[d])
        out[d] = _pearson(band_t[d, keep], band_p[d, keep])
    return out


# --------------------------------------------------------------------------------------------------
# insulation


def diamond_insulation(
    matrix: Any,
    window_bins: int,
    *,
    chrom: str | None = None,
    weight: str | None = "weight",
    min_valid_fraction: float = 0.5,
) -> np.ndarray:
    """Insulation score per bin (our own diamond implementation on the band, not cooltools).

    For bin i, the mean of the valid pixels M[a, b] with a in [i - w, i - 1] and b in
    [i + 1, i + w] (the w x w square of contacts crossing bin i; Crane et al. 2015), then
    log2(score / median score). NaN within w bins of the chromosome ends, where fewer than
    ``min_valid_fraction`` of the w² pixels are valid, or where the mean is not positive.
    """
    w = int(window_bins)
    if w < 1:
        raise ValueError("window_bins must be >= 1")
    band = as_band(matrix, 2 * w + 1, chrom=chrom, weight=weight)
    n = band.shape[1]
    strip = band.T  # strip[a, d] = M[a, a + d]
    finite = np.isfinite(strip)
    zero = np.zeros((n, 1))
    csum = np.hstack([zero, np.cumsum(np.where(finite, strip, 0.0), axis=1)])
    ccnt = np.hstack([zero, np.cumsum(finite, axis=1)])
    total, count = np.zeros(n), np.zeros(n)
    for m in range(1, w + 1):  # row a = i - m covers distances m + 1 … m + w
        rows = np.arange(0, n - m)
        total[m:] += csum[rows, m + w + 1] - csum[rows, m + 1]
        count[m:] += ccnt[rows, m + w + 1] - ccnt[rows, m + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = total / count
    ok = count >= min_valid_fraction * w * w
    ok[:w] = False
    ok[max(n - w, 0) :] = False
    ok &= score > 0
    score = np.where(ok, score, np.nan)
    if not ok.any():
        return score
    with np.errstate(divide="ignore"):
        return np.log2(score / np.nanmedian(score))


def insulation_correlation(
    true: Any,
    pred: Any,
    window_bins: int,
    *,
    chrom: str | None = None,
    weight: str | None = "weight",
) -> dict[str, float]:
    """Pearson between the diamond-insulation tracks of two maps over bins valid in both.

    Uses :func:`diamond_insulation` (our implementation on the band). For coolers, ``chrom`` and
    ``weight`` apply to both; read bands yourself (hicmix.hic.read_band) to use different weights.
    """
    a = diamond_insulation(true, window_bins, chrom=chrom, weight=weight)
    b = diamond_insulation(pred, window_bins, chrom=chrom, weight=weight)
    if a.shape != b.shape:
        raise ValueError(f"the two maps have {a.size} and {b.size} bins; use the same bins")
    keep = np.isfinite(a) & np.isfinite(b)
    return {"insulation_pearson": _pearson(a[keep], b[keep]), "n_bins": float(keep.sum())}


# --------------------------------------------------------------------------------------------------
# HiCRep stratum-adjusted correlation


def _strip(band: np.ndarray, margin: int, width: int) -> np.ndarray:
    """(n, width) strip S[i, k] = M[i, i + k - margin] from a symmetric band (NaN outside)."""
    depth, n = band.shape
    out = np.full((n, width), np.nan)
    idx = np.arange(n)
    for k in range(width):
        e = k - margin
        if 0 <= e < depth:
            out[:, k] = band[e]
        elif e < 0 and -e < depth:
            src = idx + e  # M[i, i+e] = M[i+e, i] = band[-e, i+e]
            ok = src >= 0
            out[ok, k] = band[-e, src[ok]]
    return out


def smooth_band(band: np.ndarray, h: int, max_dist_bins: int) -> np.ndarray:
    """2D mean filter of size (2h+1)² on a symmetric map given as a band; returns diagonals
    0 … max_dist_bins.

    Each pixel becomes the mean of the finite, in-chromosome pixels of its (2h+1)² neighbourhood
    (the lower triangle by symmetry); pixels that are NaN in the input stay NaN. Separable: a
    box sum along columns (cumulative sums), then 2h+1 shifted adds along rows.
    """
    n = band.shape[1]
    need = max_dist_bins + 2 * h + 1
    if band.shape[0] < need:
        raise ValueError(f"smoothing needs {need} diagonals, the band has {band.shape[0]}")
    width = max_dist_bins + 4 * h + 1
    strip = _strip(band, 2 * h, width)  # distances -2h … max_dist + 2h
    finite = np.isfinite(strip)
    k = 2 * h + 1
    zero = np.zeros((n, 1))
    cs = np.hstack([zero, np.cumsum(np.where(finite, strip, 0.0), axis=1)])
    cc = np.hstack([zero, np.cumsum(finite, axis=1)])
    col_sum = cs[:, k:] - cs[:, :-k]  # distances -h … max_dist + h
    col_cnt = cc[:, k:] - cc[:, :-k]
    total = np.zeros((n, max_dist_bins + 1))
    count = np.zeros((n, max_dist_bins + 1))
    for a in range(-h, h + 1):  # U[i, d] += T[i + a, d - a]
        lo, hi = max(0, -a), min(n, n - a)
        if hi <= lo:
            continue
        cols = slice(h - a, h - a + max_dist_bins + 1)
        total[lo:hi] += col_sum[lo + a : hi + a, cols]
        count[lo:hi] += col_cnt[lo + a : hi + a, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan).T
    mean[~np.isfinite(band[: max_dist_bins + 1])] = np.nan
    return mean


def scc_by_distance(
    mat1: Any,
    mat2: Any,
    h: int,
    max_dist_bins: int,
    *,
    min_dist_bins: int = 1,
    chrom: str | None = None,
    weight: str | None = "weight",
) -> pd.DataFrame:
    """Per-stratum terms of HiCRep's SCC: distance, n, rho, weight (rows with too few pixels
    or a constant stratum have weight 0).

    Both maps are smoothed (:func:`smooth_band`); in stratum d, pixels NaN in either map, 0 in
    both, or whose neighbourhood crosses a chromosome end are dropped; rho_d is the Pearson r of
    the smoothed values and the weight is N_d · sqrt(var(rank1/N_d) · var(rank2/N_d)) (average
    ranks, ddof=1): HiCRep's variance-stabilising weight, about N_d/12 without ties.
    """
    if h < 0 or max_dist_bins < min_dist_bins or min_dist_bins < 0:
        raise ValueError("need h >= 0 and 0 <= min_dist_bins <= max_dist_bins")
    depth = max_dist_bins + 2 * h + 1
    band1, band2 = _pair_bands(mat1, mat2, depth, chrom, weight)
    s1, s2 = smooth_band(band1, h, max_dist_bins), smooth_band(band2, h, max_dist_bins)
    n = band1.shape[1]
    index = np.arange(n)
    rows = []
    for d in range(min_dist_bins, max_dist_bins + 1):
        x, y = s1[d], s2[d]
        keep = np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0))
        # a neighbourhood cut by a chromosome end is averaged differently in both maps alike,
        # which would correlate them through geometry alone
        keep &= (index >= h) & (index + d + h < n)
        x, y = x[keep], y[keep]
        size = x.size
        rho = _pearson(x, y) if size >= 3 else math.nan
        w = 0.0
        if np.isfinite(rho):
            v1 = np.var(stats.rankdata(x) / size, ddof=1)
            v2 = np.var(stats.rankdata(y) / size, ddof=1)
            w = float(size * math.sqrt(v1 * v2))
        rows.append({"distance": d, "n": size, "rho": rho, "weight": w})
    return pd.DataFrame(rows)


def scc(
    mat1: Any,
    mat2: Any,
    h: int,
    max_dist_bins: int,
    *,
    min_dist_bins: int = 1,
    chrom: str | None = None,
    weight: str | None = "weight",
) -> float:
    """HiCRep stratum-adjusted correlation (Yang et al. 2017), from the published definition.

    SCC = sum_d w_d rho_d / sum_d w_d over strata d = min_dist_bins … max_dist_bins (the main
    diagonal is left out by default) of the (2h+1)² mean-filtered maps; see
    :func:`scc_by_distance`. A prediction constant along every diagonal scores 0. ``h`` and
    ``max_dist_bins`` are required: state both in reports (2–5 Mb maximum distance; h 5–20
    depending on resolution)."""
    terms = scc_by_distance(
        mat1, mat2, h, max_dist_bins, min_dist_bins=min_dist_bins, chrom=chrom, weight=weight
    )
    used = terms[terms["weight"] > 0]
    if used.empty:
        # variance weights vanish for a prediction constant along every diagonal (decay only):
        # its rho_d are all 0, so weigh by N_d instead of returning NaN
        used = terms[np.isfinite(terms["rho"])].assign(weight=lambda t: t["n"].astype(float))
        if used.empty:
            return math.nan
    return float(np.sum(used["weight"] * used["rho"]) / np.sum(used["weight"]))
