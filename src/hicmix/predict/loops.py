"""Genome-wide loop calling with a fine-tuned loops model: every candidate pixel, batched.

Candidates of a chromosome are all pixels (i, j) with ``min_bins <= j - i <= max_bins`` whose two
W-bin anchor windows (centred as in the loop tiles: rows i - W//2 … i - W//2 + W - 1) lie on the
chromosome: O(n · D) pixels. Each batch cuts its track windows by fancy indexing the chromosome's
sub-bin array and, with Hi-C, its patches with ``Band.patches`` (no per-sample file access).

Optional pre-filters (documented recall cost in the module functions):

- ``enrichment`` (needs Hi-C): HICCUPS-like candidates, i.e. pixels whose observed count over
  the donut expectation (Σ O / Σ E over the 7×7 donut without the 3×3 centre and the centre's
  row and column, times E of the pixel; E = the chromosome's mean per diagonal) is >= ``min_oe``
  (1.25) and the largest within ``radius`` (1) bin, computed vectorised on the band by sheared
  scipy.ndimage correlations (:func:`donut_enrichment`), optionally dilated by ``dilate`` (0).
  On GM12878 chr20 at 25 kb (realdata_v1, region A, 2-80 bins) it keeps 5 % of the candidates
  and 97.7 % of the 131 Rao HiCCUPS loops within ±1 bin (maxima of the 3×3-smoothed O/E, the
  former rule, at O/E >= 1 kept 2 % and 84 %).
- ``anchors`` (tracks only): keep pixels whose two anchor bins (± ``dilate``, 0) are among the
  ``keep_fraction`` (0.5) most active bins (maximum over channels of the bin's within-chromosome
  signal percentile): ~25 % of candidates, 62 of 62 true loops on the simulation, whose loops sit
  on strong CTCF sites by construction; expect a larger recall cost on real data (measure it
  with a cell line whose loops are known before relying on it).

The learned enrichment caller (:class:`CallerSettings`, :func:`candidate_table`,
:func:`fit_loop_scorer`, :func:`call_pixels`, :func:`choose_pooling`) needs no deep model: the
``enrichment`` candidates, 15 HICCUPS-like features each (:func:`enrichment_features`: O/E,
donut / lower-left / horizontal / vertical enrichment at two scales, peak contrast, distance), a
gradient-boosted scorer trained on reference loops of training chromosomes or regions, and
pooling with a validation-chosen threshold. It scores a 2,522-bin chromosome (2-80 bins) in
about 1 s on one CPU core; ``bench/peers.py`` (row ``hicmix``) measures it on real data.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from hicmix.errors import ConfigError

PREFILTERS = ("none", "enrichment", "anchors")


@dataclass(frozen=True)
class PrefilterSettings:
    """Parameters of the cheap candidate rules (see the module docstring)."""

    rule: str = "none"
    radius: int = 1
    min_oe: float = 1.25
    dilate: int | None = None  # None: 0 bins
    keep_fraction: float = 0.5

    @property
    def dilation(self) -> int:
        return 0 if self.dilate is None else int(self.dilate)

    def __post_init__(self) -> None:
        if self.rule not in PREFILTERS:
            raise ConfigError(
                f"unknown prefilter {self.rule!r}; use one of {', '.join(PREFILTERS)}"
            )
        if not 0 < self.keep_fraction <= 1:
            raise ConfigError(f"prefilter keep fraction {self.keep_fraction} must lie in (0, 1]")


def candidate_mask(n_bins: int, window: int, min_bins: int, max_bins: int) -> np.ndarray:
    """bool (max_bins - min_bins + 1, n): ``[d - min_bins, i]`` is a candidate (i, i + d) whose
    anchor windows fit on the chromosome."""
    half = window // 2
    d = np.arange(min_bins, max_bins + 1)[:, None]
    i = np.arange(n_bins)[None, :]
    return (i >= half) & (i + d - half + window <= n_bins) & (d >= 1)


def count_candidates(n_bins: int, window: int, min_bins: int, max_bins: int) -> int:
    """Number of candidate pixels of a chromosome (before any pre-filter)."""
    half = window // 2
    d = np.arange(max(min_bins, 1), max_bins + 1)
    return int(np.clip(n_bins - window + half - d - half + 1, 0, None).sum())


def _shift(values: np.ndarray, a: int, b: int, fill: float) -> np.ndarray:
    """out[d, i] = values[d + b - a, i + a]: the band value of pixel (i + a, j + b), j = i + d."""
    depth, n = values.shape
    k = b - a
    out = np.full_like(values, fill)
    d_lo, d_hi = max(0, -k), min(depth, depth - k)
    i_lo, i_hi = max(0, -a), min(n, n - a)
    if d_lo < d_hi and i_lo < i_hi:
        out[d_lo:d_hi, i_lo:i_hi] = values[d_lo + k : d_hi + k, i_lo + a : i_hi + a]
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for a in range(-radius, radius + 1):
        for b in range(-radius, radius + 1):
            if a or b:
                out |= _shift(mask, a, b, False)
    return out


def enrichment_mask(
    band: np.ndarray, min_bins: int, max_bins: int, settings: PrefilterSettings
) -> np.ndarray:
    """Pre-filter on observed Hi-C (``band[d, i] = M[i, i + d]``): HICCUPS-like local maxima, i.e.
    pixels whose donut enrichment O / E_donut (:func:`donut_enrichment`) is >= ``min_oe`` and the
    largest within ``radius`` bins, dilated by ``dilate``; rows min_bins … max_bins."""
    ratio = donut_enrichment(band, min_bins, max_bins)
    keep = local_maxima(ratio, settings.radius) & (ratio >= settings.min_oe)
    return _dilate(keep, settings.dilation)


def anchor_activity(track_bins: np.ndarray, positions: int) -> np.ndarray:
    """Per-bin activity: maximum over channels of the bin's within-chromosome signal percentile."""
    c, length = track_bins.shape
    per_bin = track_bins.reshape(c, length // positions, positions).mean(axis=2)
    present = np.any(per_bin != 0, axis=1)
    if not present.any():
        return np.zeros(per_bin.shape[1])
    ranks = per_bin[present].argsort(axis=1).argsort(axis=1) / max(per_bin.shape[1] - 1, 1)
    return ranks.max(axis=0)


def anchors_mask(
    track_bins: np.ndarray,
    positions: int,
    min_bins: int,
    max_bins: int,
    settings: PrefilterSettings,
) -> np.ndarray:
    """Pre-filter on tracks: both anchors (± dilate bins) among the ``keep_fraction`` most active
    bins; rows min…max of the band grid."""
    activity = anchor_activity(track_bins, positions)
    n = activity.size
    cut = np.quantile(activity, 1.0 - settings.keep_fraction)
    active = activity >= cut
    grown = active.copy()
    for shift in range(1, settings.dilation + 1):
        grown[shift:] |= active[:-shift]
        grown[:-shift] |= active[shift:]
    d = np.arange(min_bins, max_bins + 1)[:, None]
    i = np.arange(n)[None, :]
    j = np.minimum(i + d, n - 1)
    return grown[i] & grown[j] & (i + d < n)


def hic_patch_source(
    band: Any,
    window: int,
    transform: str,
    clip: float,
    scale: float,
    expected: np.ndarray | None,
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(start_x, start_y) → (N, W, W) transformed patches as in the tiles (masked pixels → 0)."""
    from hicmix.tiles import _transform_patches

    ctx = SimpleNamespace(
        hic_transform=transform, hic_clip=clip, hic_scale=scale, expected=expected, window=window
    )

    def patches(start_x: np.ndarray, start_y: np.ndarray) -> np.ndarray:
        balanced = band.patches(start_x, start_y, window)
        return _transform_patches(ctx, balanced, start_x, start_y)[0]

    return patches


def score_candidates(
    runner: Callable[..., dict[str, np.ndarray]],
    i: np.ndarray,
    j: np.ndarray,
    track_bins: np.ndarray,
    window: int,
    positions: int,
    batch_size: int,
    *,
    hic: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    progress: bool = False,
    desc: str = "loops",
) -> np.ndarray:
    """float32 loop probability of each candidate pixel (i, j), in batches."""
    from hicmix.predict.models import cut_tracks

    half = window // 2
    scores = np.zeros(len(i), dtype=np.float32)
    bar = tqdm(
        total=len(i), desc=desc, unit="px", disable=not progress, file=sys.stderr, leave=False
    )
    for lo in range(0, len(i), batch_size):
        sx, sy = i[lo : lo + batch_size] - half, j[lo : lo + batch_size] - half
        tracks = cut_tracks(track_bins, sx, sy, window, positions)
        patches = None if hic is None else hic(sx, sy)
        logits = runner(tracks, sy - sx, patches)["logits"]
        scores[lo : lo + len(sx)] = 1.0 / (1.0 + np.exp(-logits))
        bar.update(len(sx))
    bar.close()
    return scores


def chromosome_candidates(
    n_bins: int,
    window: int,
    min_bins: int,
    max_bins: int,
    settings: PrefilterSettings,
    *,
    band: np.ndarray | None = None,
    track_bins: np.ndarray | None = None,
    positions: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(i, j, number before the pre-filter) of one chromosome, sorted by i then j."""
    mask = candidate_mask(n_bins, window, min_bins, max_bins)
    total = int(mask.sum())
    if settings.rule == "enrichment":
        if band is None:
            raise ConfigError("prefilter enrichment needs observed Hi-C; pass --hic or use anchors")
        mask &= enrichment_mask(band, min_bins, max_bins, settings)
    elif settings.rule == "anchors":
        mask &= anchors_mask(track_bins, positions, min_bins, max_bins, settings)
    i, d = np.nonzero(mask.T)  # i-major, so records come out sorted by (i, j)
    return i.astype(np.int64), (i + d + min_bins).astype(np.int64), total


# ----------------------------------------------------------------------------------------------
# HICCUPS-like local enrichment on the band, and a learned caller on top of it
# ----------------------------------------------------------------------------------------------
#: (peak width p, window width w) in bins of the two enrichment scales (p = 1, w = 3 is the
#: HICCUPS setting for 25 kb maps; the wider one sees broader loops at finer resolutions).
ENRICHMENT_SCALES = ((1, 3), (2, 5))
NEIGHBOURHOODS = ("donut", "lowerleft", "horizontal", "vertical")


def neighbourhood_kernel(kind: str, peak: int, width: int) -> np.ndarray:
    """(2w+1, 2w+1) 0/1 kernel in matrix offsets ``[a + w, b + w]`` = pixel (i + a, j + b).

    donut: the square of half-width w without the (2p+1)² centre and without row / column 0;
    lowerleft: rows i+1 … i+w, columns j-w … j-1 (towards the diagonal) without the centre;
    horizontal / vertical: the 3-wide strip along row i / column j without the centre.
    """
    if not 0 <= peak < width:
        raise ConfigError(f"enrichment peak width {peak} must lie in [0, window width {width})")
    a = np.arange(-width, width + 1)[:, None]
    b = np.arange(-width, width + 1)[None, :]
    centre = (np.abs(a) <= peak) & (np.abs(b) <= peak)
    shapes = {
        "donut": (a != 0) & (b != 0),
        "lowerleft": (a > 0) & (b < 0),
        "horizontal": np.abs(a) <= 1 + 0 * b,
        "vertical": np.abs(b) <= 1 + 0 * a,
    }
    if kind not in shapes:
        raise ConfigError(f"unknown neighbourhood {kind!r}; use one of {', '.join(shapes)}")
    return (shapes[kind] & ~centre).astype(np.float64)


def shear_kernel(kernel: np.ndarray) -> np.ndarray:
    """The matrix-offset kernel ``K[a + r, b + r]`` as a band kernel ``[b - a + 2r, a + r]``:
    pixel (i + a, j + b) of pixel (i, j = i + d) is band cell (d + b - a, i + a)."""
    r = kernel.shape[0] // 2
    out = np.zeros((4 * r + 1, 2 * r + 1))
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            out[b - a + 2 * r, a + r] = kernel[a + r, b + r]
    return out


def mirror_band(values: np.ndarray, pad: int) -> np.ndarray:
    """``ext[pad + d, i] = M[i, i + d]`` for d in [-pad, depth): the band with its ``pad``
    mirrored sub-diagonals (M[i, i - k] = M[i - k, i]) so that kernels may cross the diagonal."""
    depth, n = values.shape
    ext = np.full((depth + pad, n), np.nan)
    ext[pad:] = values
    for k in range(1, min(pad, depth - 1, n - 1) + 1):
        ext[pad - k, k:] = values[k, : n - k]
    return ext


def band_correlate(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum of ``values`` (NaN → 0, band layout with mirrored rows) over the matrix-offset
    ``kernel`` around every cell, by one scipy.ndimage correlation of the sheared kernel."""
    from scipy import ndimage

    x = np.where(np.isfinite(values), values, 0.0)
    return ndimage.correlate(x, shear_kernel(kernel), mode="constant", cval=0.0)


def diagonal_expected(values: np.ndarray) -> np.ndarray:
    """Mean finite value of each diagonal of a band (NaN where a diagonal has none)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=1)


FEATURE_NAMES = (
    "log_oe",
    "log_oe_smooth",
    "peak_contrast",
    *(f"log_{kind}_{p}_{w}" for p, w in ENRICHMENT_SCALES for kind in NEIGHBOURHOODS),
    "log_min_enrichment",
    "donut_coverage",
    "log_distance",
    "log_observed",
)


@dataclass
class _Prepared:
    """The band with mirrored sub-diagonals, its observed (NaN → 0) and expected (0 where the
    observed is missing) values, the O/E, and the rows of diagonals min_bins … max_bins."""

    ok: np.ndarray
    obs: np.ndarray
    exp: np.ndarray
    oe: np.ndarray
    rows: slice
    pad: int


def _prepare(values: np.ndarray, min_bins: int, max_bins: int) -> _Prepared:
    values = np.asarray(values, dtype=np.float64)
    pad = 2 * max(w for _, w in ENRICHMENT_SCALES) + 2
    depth = max_bins + pad
    if values.shape[0] < depth:  # a shallow band: the missing diagonals count as masked
        extra = np.full((depth - values.shape[0], values.shape[1]), np.nan)
        values = np.concatenate([values, extra])
    expected = diagonal_expected(values)
    expected = np.where(np.isfinite(expected) & (expected > 0), expected, 0.0)
    ext = mirror_band(values, pad)
    ok = np.isfinite(ext)
    exp = np.concatenate([expected[pad:0:-1], expected])[:, None] * ok
    obs = np.where(ok, ext, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        oe = np.where(ok & (exp > 0), obs / exp, np.nan)
    return _Prepared(ok, obs, exp, oe, slice(pad + min_bins, pad + max_bins + 1), pad)


def _local_ratio(prep: _Prepared, kind: str, peak: int, width: int) -> np.ndarray:
    """O/E of each pixel over Σ_K O / Σ_K E of its neighbourhood K (HICCUPS' local expected)."""
    kernel = neighbourhood_kernel(kind, peak, width)
    with np.errstate(invalid="ignore", divide="ignore"):
        local = band_correlate(prep.obs, kernel) / band_correlate(prep.exp, kernel)
        return prep.oe / local


def donut_enrichment(values: np.ndarray, min_bins: int, max_bins: int) -> np.ndarray:
    """(max_bins - min_bins + 1, n) O / E_donut of every band pixel at the first scale of
    :data:`ENRICHMENT_SCALES` (NaN where masked); rows min_bins … max_bins."""
    prep = _prepare(values, min_bins, max_bins)
    p, w = ENRICHMENT_SCALES[0]
    return _local_ratio(prep, "donut", p, w)[prep.rows]


def local_maxima(values: np.ndarray, radius: int) -> np.ndarray:
    """bool, same layout as ``values`` (band rows): finite cells that are the largest within
    Chebyshev ``radius`` bins in matrix coordinates (cells past the band's rows count as absent)."""
    pad = 2 * radius
    x = np.where(np.isfinite(values), values, -np.inf)
    edge = np.full((pad, x.shape[1]), -np.inf)
    peak = _window_max(np.concatenate([edge, x, edge]), radius)[pad : pad + x.shape[0]]
    return np.isfinite(x) & (x >= peak)


def enrichment_features(
    values: np.ndarray, min_bins: int, max_bins: int, pseudo: float = 0.05
) -> np.ndarray:
    """(F, max_bins - min_bins + 1, n) float32 features of every band pixel (order
    :data:`FEATURE_NAMES`): log2 O/E of the pixel and its 3×3 mean, the pixel's smoothed O/E over
    the largest one within 2 bins, log2 enrichment of O over the HICCUPS expectations (donut,
    lower-left, horizontal, vertical: Σ_K O / Σ_K E × E(pixel), at each scale of
    :data:`ENRICHMENT_SCALES`) and their minimum, the donut's finite fraction, log distance and
    log observed. ``values``: observed, band layout (missing deep diagonals count as masked)."""
    prep = _prepare(values, min_bins, max_bins)
    oe, ok = prep.oe, prep.ok * 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        box = np.ones((3, 3))
        smooth = band_correlate(oe, box) / np.maximum(band_correlate(ok, box), 1)
        peak = _window_max(smooth, 2)
        feats = [np.log2(oe + pseudo), np.log2(smooth + pseudo), smooth / np.maximum(peak, 1e-9)]
        ratios = [
            np.log2(_local_ratio(prep, kind, p, w) + pseudo)
            for p, w in ENRICHMENT_SCALES
            for kind in NEIGHBOURHOODS
        ]
        feats += ratios
        feats.append(np.min(np.stack(ratios[: len(NEIGHBOURHOODS)]), axis=0))
        p, w = ENRICHMENT_SCALES[0]
        donut = neighbourhood_kernel("donut", p, w)
        feats.append(band_correlate(ok, donut) / donut.sum())
        d = np.arange(-prep.pad, oe.shape[0] - prep.pad)[:, None] + np.zeros_like(oe)
        feats.append(np.log2(np.maximum(d, 1)))
        scale = np.max(prep.exp) if prep.exp.size else 1.0
        feats.append(np.log2(prep.obs + 1e-6 * scale))
    out = np.stack([f[prep.rows] for f in feats]).astype(np.float32)
    return np.where(np.isfinite(out), out, np.float32(np.nan))


def _window_max(values: np.ndarray, radius: int) -> np.ndarray:
    """Largest value within Chebyshev ``radius`` in matrix offsets (NaN → -inf)."""
    from scipy import ndimage

    x = np.where(np.isfinite(values), values, -np.inf)
    size = 2 * radius + 1
    footprint = shear_kernel(np.ones((size, size))) > 0
    return ndimage.maximum_filter(x, footprint=footprint, mode="constant", cval=-np.inf)


@dataclass(frozen=True)
class CallerSettings:
    """The learned enrichment caller (:func:`call_pixels`): candidates are the local maxima
    (``candidate_radius``) of the donut enrichment >= ``min_enrichment`` at ``min_bins`` …
    ``max_bins``; a candidate within ``label_radius`` of a reference loop is a positive; calls are
    pooled with :func:`hicmix.evaluate.loops.pool_calls` (``threshold``, ``pool_radius``)."""

    min_bins: int = 2
    max_bins: int = 80
    min_enrichment: float = 1.25
    candidate_radius: int = 1
    label_radius: int = 1
    threshold: float = 0.5
    pool_radius: int = 1


#: threshold grid of :func:`choose_pooling` (fine at the low end: positives are ~2 % of candidates)
POOL_THRESHOLDS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.075,
    *np.round(np.arange(0.1, 0.91, 0.05), 2).tolist(),
)
PSEUDO = 0.05  # pseudo-count of the log2 ratios of enrichment_features


def candidate_table(
    values: np.ndarray, settings: CallerSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, features (N, F)) of the candidates of one chromosome's observed band, i-major."""
    feats = enrichment_features(values, settings.min_bins, settings.max_bins, PSEUDO)
    p, w = ENRICHMENT_SCALES[0]
    donut = feats[FEATURE_NAMES.index(f"log_donut_{p}_{w}")]
    floor = np.log2(settings.min_enrichment + PSEUDO)
    with np.errstate(invalid="ignore"):
        mask = local_maxima(donut, settings.candidate_radius) & (donut >= floor)
    i, d = np.nonzero(mask.T)
    i, d = i.astype(np.int64), d.astype(np.int64)
    return i, i + d + settings.min_bins, feats[:, d, i].T.copy()


def pixel_labels(i: np.ndarray, j: np.ndarray, loops: pd.DataFrame, radius: int) -> np.ndarray:
    """bool: pixel (i, j) lies within Chebyshev ``radius`` bins of a loop (bin1, bin2)."""
    from scipy.spatial import cKDTree

    if len(loops) == 0 or len(i) == 0:
        return np.zeros(len(i), dtype=bool)
    tree = cKDTree(loops[["bin1", "bin2"]].to_numpy(np.float64))
    dist, _ = tree.query(np.c_[i, j].astype(np.float64), p=np.inf)
    return dist <= radius + 1e-9


def fit_loop_scorer(x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
    """A gradient-boosted tree classifier of candidate features (NaN allowed), deterministic."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if y.sum() == 0 or y.all():
        raise ConfigError("the loop scorer needs positive and negative candidates to train on")
    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    return model.fit(x, y.astype(np.int64))


def call_pixels(
    model: Any, values: np.ndarray, chrom: str, settings: CallerSettings
) -> pd.DataFrame:
    """Scored candidates (chrom, bin1, bin2, score) of one chromosome's observed band."""
    i, j, x = candidate_table(values, settings)
    score = model.predict_proba(x)[:, 1] if len(i) else np.zeros(0)
    return pd.DataFrame({"chrom": chrom, "bin1": i, "bin2": j, "score": score.astype(np.float64)})


def choose_pooling(
    pixels: pd.DataFrame,
    truth: pd.DataFrame,
    thresholds: Sequence[float] = POOL_THRESHOLDS,
    radii: Sequence[int] = (1, 2, 3),
    match_radius: int = 1,
) -> dict[str, float]:
    """The (threshold, pool_radius) of the best F1 (± ``match_radius``) of ``pixels`` against
    ``truth`` (both on the validation part only); ties: higher threshold, smaller radius."""
    from hicmix.evaluate.loops import loop_calling_scores, pool_calls

    best = {"f1": -1.0, "threshold": 0.5, "pool_radius": 1}
    for radius in radii:
        for threshold in sorted(thresholds, reverse=True):
            scores = loop_calling_scores(pool_calls(pixels, threshold, radius), truth, match_radius)
            if scores["f1"] > best["f1"] + 1e-12:
                best = {
                    "f1": float(scores["f1"]),
                    "precision": float(scores["precision"]),
                    "recall": float(scores["recall"]),
                    "threshold": float(threshold),
                    "pool_radius": int(radius),
                }
    return best
