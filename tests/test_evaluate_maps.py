"""Hi-C map metrics: R² argument order, pixel sets, per-distance/O-E Pearson, insulation, SCC."""

from __future__ import annotations

import math

import cooler
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.metrics import r2_score

from hicmix.evaluate.maps import (
    as_band,
    diamond_insulation,
    expected_map,
    insulation_correlation,
    map_scores,
    mean_distance_pearson,
    oe_pearson,
    pearson_by_distance,
    pearson_by_distance_map,
    pixel_mse,
    pixel_pearson,
    pixel_spearman,
    scc,
    scc_by_distance,
    smooth_band,
    window_r2,
)

W = 20
DECAY = 100.0 / (1.0 + np.arange(W))


def symmetric(x: np.ndarray) -> np.ndarray:
    upper = np.triu(x)
    return upper + np.swapaxes(np.triu(x, 1), -1, -2)


def decay_windows(n=150, sigma=0.5, seed=0):
    """Diagonal windows: expected decay times independent log-normal noise per contact."""
    rng = np.random.default_rng(seed)
    noise = rng.lognormal(0.0, sigma, (n, W, W))
    return symmetric(expected_map(DECAY, W)[None] * noise)


def structured_map(n=400, seed=0, scale=5.0):
    """(mean, replicate) of a map with decay, TADs and dots, Poisson counts at ``scale``."""
    rng = np.random.default_rng(seed)
    i, j = np.indices((n, n))
    mean = 200.0 / (1.0 + np.abs(i - j))
    edges = np.cumsum(rng.integers(15, 40, 30))
    tad = np.searchsorted(edges, np.arange(n), side="right")
    mean = mean * np.where(tad[:, None] == tad[None, :], 2.5, 1.0)
    for a in rng.integers(0, n - 60, 12):
        b = a + rng.integers(20, 60)
        bump = 4.0 * np.exp(-((i - a) ** 2 + (j - b) ** 2) / 2.0)
        mean = mean * (1 + bump + bump.T)
    return mean, lambda s: symmetric(np.random.default_rng(s).poisson(mean * scale) / scale)


# --------------------------------------------------------------------------------------------------
# R² and pixel metrics


def test_r2_uses_truth_variance_not_prediction_variance():
    rng = np.random.default_rng(0)
    true = symmetric(rng.normal(0, 1, (30, W, W)))
    pred = symmetric(0.3 * true + rng.normal(0, 0.2, true.shape))
    iu = np.triu_indices(W)
    x, y = true[:, iu[0], iu[1]].ravel(), pred[:, iu[0], iu[1]].ravel()
    assert abs(r2_score(x, y) - r2_score(y, x)) > 0.3  # the two orders really differ
    scores = window_r2(true, pred)
    assert scores["r2_pooled"] == pytest.approx(r2_score(x, y))
    per_window = [r2_score(t[iu], p[iu]) for t, p in zip(true, pred, strict=True)]
    assert scores["r2_window_mean"] == pytest.approx(np.mean(per_window))
    assert scores["n_windows"] == 30 and scores["n_windows_skipped"] == 0


def test_pixel_set_upper_triangle_mask_and_nan():
    rng = np.random.default_rng(1)
    true = symmetric(rng.random((4, W, W)))
    pred = true.copy()
    pred[:, np.tril_indices(W, -1)[0], np.tril_indices(W, -1)[1]] = 99.0  # lower triangle ignored
    assert pixel_pearson(true, pred) == pytest.approx(1.0)
    assert pixel_mse(true, pred) == 0.0
    assert pixel_mse(true, pred, triangle=False) > 0
    mask = np.ones(true.shape, dtype=bool)
    mask[0] = False
    true[1, 0, 0] = np.nan
    scores = map_scores(true, pred, mask=mask)
    assert scores["n_pixels"] == 3 * W * (W + 1) // 2 - 1
    assert scores["pixel_spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mask"):
        window_r2(true, pred, mask=mask[:2])


def test_constant_window_is_skipped_and_constant_prediction_scores_zero():
    true = decay_windows(n=3)
    true[0] = 1.0  # constant truth: R² undefined
    scores = window_r2(true, true + 0.01)
    assert scores["n_windows_skipped"] == 1 and scores["n_windows"] == 2
    assert pixel_spearman(true, np.ones_like(true)) == 0.0


# --------------------------------------------------------------------------------------------------
# distance decay


def test_pearson_by_distance_removes_decay_inflation():
    true = decay_windows()
    decay_only = np.broadcast_to(expected_map(DECAY, W), true.shape)
    assert pixel_pearson(true, decay_only) > 0.8  # inflated by P(s)
    r = pearson_by_distance(true, decay_only)
    assert r.shape == (W,)
    assert mean_distance_pearson(r) == 0.0  # constant along each diagonal: no information
    rng = np.random.default_rng(5)
    noisy_decay = decay_only * rng.lognormal(0, 0.5, true.shape)
    assert pixel_pearson(true, noisy_decay) > 0.5
    assert abs(mean_distance_pearson(pearson_by_distance(true, noisy_decay))) < 0.05
    good = true * rng.lognormal(0, 0.1, true.shape)
    assert mean_distance_pearson(pearson_by_distance(true, good)) > 0.9
    assert map_scores(true, decay_only)["distance_pearson_mean"] == 0.0


def test_oe_pearson():
    true = decay_windows(n=50)
    decay_only = np.broadcast_to(expected_map(DECAY, W), true.shape)
    assert oe_pearson(true, decay_only, DECAY) == 0.0
    assert oe_pearson(true, true * 1.5, DECAY) == pytest.approx(1.0)
    # off-diagonal patches: expected by genomic distance from the starts
    rng = np.random.default_rng(2)
    curve = 100.0 / (1.0 + np.arange(200))
    rows, cols = np.array([0, 10]), np.array([40, 80])
    dist = np.abs(
        (cols[:, None, None] + np.arange(W)[None, None])
        - (rows[:, None, None] + np.arange(W)[None, :, None])
    )
    patches = curve[dist] * rng.lognormal(0, 0.3, (2, W, W))
    pred = curve[dist] * rng.lognormal(0, 0.3, (2, W, W))
    expect = np.corrcoef((patches / curve[dist]).ravel(), (pred / curve[dist]).ravel())[0, 1]
    got = oe_pearson(patches, pred, curve, triangle=False, row_starts=rows, col_starts=cols)
    assert got == pytest.approx(expect)


def test_expected_map():
    e = expected_map([3.0, 2.0, 1.0], 5)
    assert e[0, 0] == 3.0 and e[1, 0] == e[0, 1] == 2.0 and e[0, 4] == 1.0 and e.shape == (5, 5)


# --------------------------------------------------------------------------------------------------
# band inputs, insulation, SCC


def test_band_from_dense_sparse_and_smoothing_matches_brute_force():
    rng = np.random.default_rng(3)
    m = symmetric(rng.random((30, 30)))
    assert np.allclose(as_band(sparse.triu(m, format="csr"), 6), as_band(m, 6), equal_nan=True)
    m[4, :] = m[:, 4] = np.nan
    h, top = 2, 6
    smoothed = smooth_band(as_band(m, top + 2 * h + 1), h, top)
    for i in range(30):
        for d in range(top + 1):
            j = i + d
            if j >= 30 or np.isnan(m[i, j]):
                assert np.isnan(smoothed[d, i])
            else:
                block = m[max(i - h, 0) : i + h + 1, max(j - h, 0) : j + h + 1]
                assert smoothed[d, i] == pytest.approx(np.nanmean(block))


def test_diamond_insulation_definition():
    rng = np.random.default_rng(4)
    m = symmetric(rng.random((40, 40)) + 0.1)
    w = 3
    ins = diamond_insulation(m, w)
    raw = np.array([m[i - w : i, i + 1 : i + w + 1].mean() for i in range(w, 40 - w)])
    expect = np.log2(raw / np.median(raw))
    assert np.allclose(ins[w : 40 - w], expect)
    assert np.isnan(ins[:w]).all() and np.isnan(ins[40 - w :]).all()


def test_insulation_correlation_identical_replicate_and_cooler(tmp_path):
    _, replicate = structured_map()
    a, b = replicate(1), replicate(2)
    same = insulation_correlation(a, a, 5)
    assert same["insulation_pearson"] == pytest.approx(1.0) and same["n_bins"] > 350
    assert insulation_correlation(a, b, 5)["insulation_pearson"] > 0.8
    decay = symmetric(200.0 / (1.0 + np.abs(np.subtract.outer(np.arange(400), np.arange(400)))))
    assert insulation_correlation(a, decay, 5)["insulation_pearson"] < 0.5
    # the same map stored in a cooler (values used as they are: weight=None)
    bins = pd.DataFrame({"chrom": "chr1", "start": np.arange(400) * 1000})
    bins["end"] = bins["start"] + 1000
    i, j = np.triu_indices(400)
    counts = np.round(a * 5).astype(np.int64)
    pixels = pd.DataFrame({"bin1_id": i, "bin2_id": j, "count": counts[i, j]})
    pixels = pixels[pixels["count"] > 0]
    uri = str(tmp_path / "a.cool")
    cooler.create_cooler(uri, bins, pixels, ordered=True)
    via_cooler = insulation_correlation(
        cooler.Cooler(uri), counts.astype(float), 5, chrom="chr1", weight=None
    )
    assert via_cooler["insulation_pearson"] == pytest.approx(1.0)


def test_scc_identical_replicate_shuffled():
    _, replicate = structured_map()
    a, b = replicate(1), replicate(2)
    assert scc(a, a, 2, 60) == pytest.approx(1.0)
    rep = scc(a, b, 2, 60)
    rng = np.random.default_rng(0)
    shuffled = np.zeros_like(b)
    n = b.shape[0]
    for d in range(n):  # permute within each diagonal: the decay survives, the structure does not
        values = rng.permutation(np.diagonal(b, d))
        shuffled[np.arange(n - d), np.arange(d, n)] = values
    shuffled = symmetric(shuffled)
    low = scc(a, shuffled, 2, 60)
    assert rep > 0.85
    assert low < rep - 0.4
    assert scc(sparse.triu(a, format="csr"), sparse.triu(b, format="coo"), 2, 60) == pytest.approx(
        rep
    )
    terms = scc_by_distance(a, b, 2, 60)
    assert terms["distance"].tolist() == list(range(1, 61))
    assert (terms["weight"] > 0).all()
    assert scc(a, b, 0, 60) < rep  # smoothing raises the replicate SCC
    decay = symmetric(200.0 / (1.0 + np.abs(np.subtract.outer(np.arange(n), np.arange(n)))))
    assert scc(a, decay, 2, 60) == 0.0  # distance decay alone scores nothing


def test_scc_requires_h_and_max_distance():
    m = symmetric(np.random.default_rng(0).random((50, 50)))
    with pytest.raises(TypeError):
        scc(m, m)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        scc(m, m, 2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="bins"):
        scc(m, m[:40, :40], 2, 10)


def test_pearson_by_distance_on_whole_maps():
    _, replicate = structured_map(n=200)
    a, b = replicate(1), replicate(2)
    r = pearson_by_distance_map(a, b, 30)
    assert r.shape == (31,) and mean_distance_pearson(r) > 0.5
    decay = symmetric(200.0 / (1.0 + np.abs(np.subtract.outer(np.arange(200), np.arange(200)))))
    assert mean_distance_pearson(pearson_by_distance_map(a, decay, 30)) == 0.0
    assert math.isnan(pearson_by_distance_map(decay, a, 30)[5])  # constant truth
