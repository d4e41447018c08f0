"""hicmix's genome-wide loop caller (hicmix.predict.loops): the HICCUPS-like enrichment on the
band, the donut-maxima candidate stage and the learned scorer, on small synthetic maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from hicmix.errors import ConfigError
from hicmix.evaluate.loops import loop_calling_scores, pool_calls
from hicmix.predict.loops import (
    FEATURE_NAMES,
    CallerSettings,
    PrefilterSettings,
    band_correlate,
    call_pixels,
    candidate_table,
    choose_pooling,
    chromosome_candidates,
    enrichment_features,
    enrichment_mask,
    fit_loop_scorer,
    local_maxima,
    mirror_band,
    neighbourhood_kernel,
    pixel_labels,
)


def to_band(dense: np.ndarray, depth: int) -> np.ndarray:
    """values[d, i] = M[i, i + d] (NaN past the end)."""
    n = dense.shape[0]
    band = np.full((depth, n), np.nan)
    for d in range(depth):
        band[d, : n - d] = np.diagonal(dense, d)
    return band


def synthetic_map(
    n: int, loops: list[tuple[int, int]], seed: int = 0, strength: float = 4.0
) -> np.ndarray:
    """Poisson counts of a power-law decay map with a 3×3 enriched blob at each planted loop."""
    rng = np.random.default_rng(seed)
    i, j = np.indices((n, n))
    mean = 400.0 / (1.0 + np.abs(i - j)) ** 1.1
    for a, b in loops:
        for x, y, w in ((0, 0, strength), (1, 0, 1.5), (-1, 0, 1.5), (0, 1, 1.5), (0, -1, 1.5)):
            mean[a + x, b + y] *= w
            mean[b + y, a + x] = mean[a + x, b + y]
    upper = np.triu(rng.poisson(mean).astype(np.float64))
    return upper + np.triu(upper, 1).T


def planted(n: int, seed: int, count: int = 12) -> list[tuple[int, int]]:
    """Well-separated loop pixels 5-30 bins apart."""
    rng = np.random.default_rng(seed)
    anchors = np.arange(8, n - 40, (n - 48) // count)[:count]
    return [(int(a), int(a + rng.integers(5, 31))) for a in anchors]


def test_neighbourhood_kernels_have_the_hiccups_shapes() -> None:
    donut = neighbourhood_kernel("donut", 1, 3)
    assert donut.sum() == 49 - 9 - 8 and donut[3, :].sum() == 0 and donut[:, 3].sum() == 0
    lower = neighbourhood_kernel("lowerleft", 1, 3)
    assert lower.sum() == 8 and lower[4:, :3].sum() == 8  # rows below, columns towards diagonal
    assert neighbourhood_kernel("horizontal", 1, 3).sum() == 3 * 4
    with pytest.raises(ConfigError, match="neighbourhood"):
        neighbourhood_kernel("ring", 1, 3)
    with pytest.raises(ConfigError, match="peak width"):
        neighbourhood_kernel("donut", 3, 3)


def test_band_correlation_equals_the_dense_correlation() -> None:
    rng = np.random.default_rng(1)
    n, depth, pad = 40, 12, 6
    dense = rng.random((n, n))
    dense = dense + dense.T
    kernel = neighbourhood_kernel("lowerleft", 1, 2) * rng.random((5, 5))
    ext = mirror_band(to_band(dense, depth + pad), pad)
    got = band_correlate(ext, kernel)
    want = ndimage.correlate(dense, kernel, mode="constant", cval=0.0)
    for d in range(depth):
        for i in range(2, n - d - 2):
            assert got[pad + d, i] == pytest.approx(want[i, i + d])


def test_candidate_stage_recovers_planted_enriched_pixels() -> None:
    n, loops = 300, planted(300, seed=2)
    band = to_band(synthetic_map(n, loops), 60)
    settings = PrefilterSettings("enrichment")  # dilate 0 by default
    mask = enrichment_mask(band, 2, 40, settings)
    d, i = np.nonzero(mask)
    kept = set(zip(i.tolist(), (i + d + 2).tolist(), strict=True))
    assert sum((a, b) in kept for a, b in loops) >= len(loops) - 1  # the exact pixel
    assert mask.sum() < 0.1 * np.isfinite(band[2:41]).sum()
    i2, j2, total = chromosome_candidates(n, 5, 2, 40, settings, band=band)
    assert len(i2) < 0.1 * total and set(zip(i2.tolist(), j2.tolist(), strict=True)) <= kept


def test_enrichment_features_separate_loops_and_accept_a_shallow_band() -> None:
    loops = planted(200, seed=3, count=8)
    band = to_band(synthetic_map(200, loops, seed=3), 45)
    feats = enrichment_features(band, 2, 40)  # needs 52 diagonals: the rest count as masked
    assert feats.shape == (len(FEATURE_NAMES), 39, 200)
    donut = feats[FEATURE_NAMES.index("log_donut_1_3")]
    at_loops = np.array([donut[b - a - 2, a] for a, b in loops])
    assert at_loops.min() > 1.0 > np.nanmedian(donut) + 0.5
    assert local_maxima(np.array([[0.0, 1.0, 0.5, np.nan]]), 1).tolist() == [
        [False, True, False, False]
    ]


def test_learned_caller_trains_on_one_part_and_calls_the_other() -> None:
    n = 400
    loops = planted(n, seed=4, count=24)
    band = to_band(synthetic_map(n, loops, seed=4, strength=3.0), 60)
    truth = pd.DataFrame(loops, columns=["bin1", "bin2"]).assign(chrom="chr1")
    settings = CallerSettings(min_bins=2, max_bins=40)
    i, j, x = candidate_table(band, settings)
    y = pixel_labels(i, j, truth, 1)
    assert y.sum() >= 20 and x.shape == (len(i), len(FEATURE_NAMES))
    train = j < n // 2
    model = fit_loop_scorer(x[train], y[train], seed=0)
    pixels = call_pixels(model, band, "chr1", settings)
    test = pixels[pixels["bin1"] >= n // 2]
    test_truth = truth[truth["bin1"] >= n // 2]
    best = choose_pooling(test, test_truth)
    scores = loop_calling_scores(pool_calls(test, best["threshold"], best["pool_radius"]),
                                 test_truth, 1)  # fmt: skip
    assert scores["f1"] == pytest.approx(best["f1"]) and scores["f1"] > 0.8
    with pytest.raises(ConfigError, match="positive and negative"):
        fit_loop_scorer(x[:5], np.zeros(5, dtype=bool))
