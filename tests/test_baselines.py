"""Baselines learn planted signals on small synthetic arrays, deterministically, for any shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage, stats
from sklearn.metrics import roc_auc_score

from hicmix.baselines.decay import DistanceDecay, TrackOuterDecay, anchor_bin_means
from hicmix.baselines.deepchrome import DeepChrome, DeepChromeNet
from hicmix.baselines.dloopcaller import (
    DLoopCaller,
    DLoopCallerNet,
    dloopcaller_inputs,
    pick_track_channel,
)
from hicmix.baselines.epiphany import EpiphanyLite
from hicmix.baselines.linear import LinearExpression, mark_means
from hicmix.baselines.peakachu import (
    PeakachuRF,
    monotone_expected,
    peakachu_expected,
    peakachu_features,
    poisson_candidates,
    score_band,
)
from hicmix.baselines.simplechrome import MarkScaler, SimpleChrome
from hicmix.baselines.torch_fit import fit_torch
from hicmix.evaluate.maps import mean_distance_pearson, pearson_by_distance
from hicmix.hic import Band

torch.set_num_threads(1)

W, P = 24, 2


def decay_curve(d: np.ndarray) -> np.ndarray:
    return 200.0 / (1.0 + np.asarray(d, dtype=np.float64))


# --------------------------------------------------------------------------------------------------
# synthetic loops


def loop_patches(
    n: int, seed: int, size: int = W, track_peak: float = 0.0, dot: float = 3.0
) -> dict[str, np.ndarray]:
    """Off-diagonal count patches (rows x - size/2 ...); positives get a dot (x (1 + ``dot``)) at
    the centre and ``track_peak`` added at both anchor bins of track channel 0."""
    rng = np.random.default_rng(seed)
    label = np.tile([0, 1], n // 2)
    distance = rng.integers(8, 40, size=n)
    offsets = np.arange(size)
    diag = np.abs(distance[:, None, None] + offsets[None, None, :] - offsets[None, :, None])
    mean = decay_curve(diag)
    centre = size // 2
    blob = np.exp(-((offsets[:, None] - centre) ** 2 + (offsets[None, :] - centre) ** 2) / 2.0)
    mean = mean * (1.0 + dot * label[:, None, None] * blob[None])
    hic = rng.poisson(mean).astype(np.float32)
    hic[rng.random(hic.shape) < 0.01] = np.nan
    tracks = rng.gamma(1.0, 0.5, size=(n, 2, 2 * size * P)).astype(np.float32)
    for anchor in (centre, size + centre):
        tracks[:, 0, anchor * P : (anchor + 1) * P] += track_peak * label[:, None]
    return {"hic": hic, "tracks": tracks, "label": label, "distance": distance}


def test_peakachu_features_match_a_hand_computation() -> None:
    rng = np.random.default_rng(3)
    w, size, distance = 3, 10, 12
    patch = rng.poisson(5.0, size=(size, size)).astype(np.float32)
    patch[0, 9] = np.nan
    curve = decay_curve(np.arange(40))
    features, keep = peakachu_features(patch[None], curve, w, distances=[distance])
    window = np.nan_to_num(patch[5 - w : 5 + w + 1, 5 - w : 5 + w + 1].astype(np.float64))
    oe = np.empty_like(window)
    for a in range(2 * w + 1):
        for b in range(2 * w + 1):
            oe[a, b] = window[a, b] / curve[abs(distance + b - a)]
    smooth = ndimage.gaussian_filter(oe, sigma=1)
    expected = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    np.testing.assert_allclose(features[0], expected.ravel(), rtol=1e-5, atol=1e-6)
    assert keep[0]
    assert features.shape == (1, (2 * w + 1) ** 2)


def test_peakachu_filters() -> None:
    w = 2
    sparse_window = np.zeros((1, 5, 5), dtype=np.float32)
    sparse_window[0, 2, 2] = 1.0  # 1 of 25 pixels nonzero: < 10 %
    weak_centre = np.ones((1, 5, 5), dtype=np.float32)
    weak_centre[0, 2, 2] = 0.05  # centre / corner mean = 0.05 <= 0.1
    empty_corner = np.ones((1, 5, 5), dtype=np.float32)
    empty_corner[0, :2, :2] = 0.0
    good = np.ones((1, 5, 5), dtype=np.float32)
    patches = np.concatenate([sparse_window, weak_centre, empty_corner, good])
    _, keep = peakachu_features(patches, np.ones(10), w, distances=np.full(4, 5))
    assert keep.tolist() == [False, False, False, True]
    per_pixel = np.ones_like(patches)
    features, keep2 = peakachu_features(patches, per_pixel, w)
    assert keep2.tolist() == keep.tolist()
    assert np.all((features >= 0) & (features <= 1))


def test_monotone_expected_is_non_increasing() -> None:
    curve = np.array([np.nan, 10.0, 12.0, 6.0, 0.0, 3.0, 4.0, np.nan])
    fitted = monotone_expected(curve)
    assert np.all(np.diff(fitted) <= 1e-12)
    assert fitted[0] == fitted[1] and fitted[-1] == fitted[-2]
    assert fitted[1] == pytest.approx(11.0)


def test_peakachu_rf_learns_dots_and_is_deterministic(tmp_path) -> None:
    train, test = loop_patches(400, 0, dot=1.0), loop_patches(200, 1, dot=1.0)
    curve = decay_curve(np.arange(80))
    model = PeakachuRF(w=5, seed=0, grid="small", cv=3)
    model.fit_patches(train["hic"], train["label"], curve, train["distance"])
    scores = model.score_patches(test["hic"], curve, test["distance"])
    assert roc_auc_score(test["label"], scores) > 0.9
    again = PeakachuRF(w=5, seed=0, grid="small", cv=3)
    again.fit_patches(train["hic"], train["label"], curve, train["distance"])
    np.testing.assert_array_equal(again.score_patches(test["hic"], curve, test["distance"]), scores)
    loaded = PeakachuRF.load(model.save(tmp_path / "rf.joblib"))
    np.testing.assert_array_equal(
        loaded.score_patches(test["hic"], curve, test["distance"]), scores
    )
    assert set(model.best_params) == {
        "n_estimators",
        "max_features",
        "max_depth",
        "criterion",
        "class_weight",
    }


def synthetic_band(seed: int, n_bins: int = 240, max_diag: int = 40, dots: int = 20):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.5, 2.0, n_bins)
    d = np.arange(max_diag)[:, None]
    i = np.arange(n_bins)[None, :]
    inside = i + d < n_bins
    j = np.minimum(i + d, n_bins - 1)
    ww = weights[i] * weights[j]
    mean_raw = decay_curve(d) / 4.0 / ww
    dot_i = rng.choice(np.arange(10, n_bins - max_diag - 10), dots, replace=False)
    dot_d = rng.integers(8, max_diag - 8, dots)
    for a, b in zip(dot_i, dot_d, strict=True):
        for da in (-1, 0, 1):
            for db in (-1, 0, 1):
                mean_raw[b + db - da, a + da] *= 1 + 10.0 * np.exp(-(da * da + db * db) / 2.0)
    raw = rng.poisson(mean_raw).astype(np.float64)
    values = np.where(inside, raw * ww, np.nan).astype(np.float32)
    band = Band(
        "chr1", n_bins, max_diag, 10_000, values, np.zeros(n_bins, bool), (values > 0).sum(1)
    )
    return band, weights, raw, mean_raw, dot_i, dot_i + dot_d


def test_poisson_candidates_matches_direct_test_and_finds_dots() -> None:
    band, weights, raw, _, dot_i, dot_j = synthetic_band(0)
    expected = decay_curve(np.arange(band.max_diag)) / 4.0
    table = poisson_candidates(band, weights, expected, lower=6, upper=30, p=0.01)
    assert list(table.columns) == ["chrom", "bin1", "bin2"]
    chosen = set(zip(table["bin1"], table["bin2"], strict=True))
    direct = set()
    for d in range(6, 31):
        for i in range(band.n_bins - d):
            mu = expected[d] / (weights[i] * weights[i + d])
            if raw[d, i] > 0 and stats.poisson.sf(raw[d, i] - 1, mu) < 0.01:
                direct.add((i, i + d))
    assert chosen == direct
    found = [(a, b) in chosen for a, b in zip(dot_i, dot_j, strict=True)]
    assert np.mean(found) >= 0.9
    n_tested = sum(band.n_bins - d for d in range(6, 31))
    assert len(chosen) < 0.05 * n_tested
    raw_band = Band(
        "chr1", band.n_bins, band.max_diag, 10_000, raw.astype(np.float32), band.bad_bins, band.nnz
    )
    raw_table = poisson_candidates(raw_band, weights, expected, 6, 30, balanced=False)
    pd.testing.assert_frame_equal(raw_table, table)


def test_score_band_ranks_planted_dots_first() -> None:
    band, weights, _, _, dot_i, dot_j = synthetic_band(1, n_bins=400, dots=40)
    expected = peakachu_expected(band)
    assert np.all(np.diff(expected) <= 1e-9)
    rng = np.random.default_rng(0)
    neg_i = rng.integers(10, band.n_bins - 50, 200)
    neg_j = neg_i + rng.integers(8, 32, 200)
    rows = np.concatenate([dot_i, neg_i])
    cols = np.concatenate([dot_j, neg_j])
    label = np.r_[np.ones(dot_i.size), np.zeros(neg_i.size)]
    patches = band.patches(rows - W // 2, cols - W // 2, W)
    model = PeakachuRF(w=5, seed=0, grid="small", cv=3)
    model.fit_patches(patches, label, expected, cols - rows)
    candidates = poisson_candidates(band, weights, expected, lower=6, upper=34)
    scored = score_band(model, band, candidates, expected, batch=500)
    assert list(scored.columns) == ["chrom", "bin1", "bin2", "score"]
    top = scored.nlargest(dot_i.size, "score")
    truth = set(zip(dot_i, dot_j, strict=True))
    hits = sum((a, b) in truth for a, b in zip(top["bin1"], top["bin2"], strict=True))
    assert hits >= 0.7 * dot_i.size


def test_dloopcaller_inputs_and_network_size() -> None:
    data = loop_patches(4, 0, track_peak=2.0)
    x = dloopcaller_inputs(data["hic"], data["tracks"], channel=0)
    assert x.shape == (4, 2, 23, 23) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], np.nan_to_num(data["hic"][:, 1:24, 1:24]))
    rows, cols = anchor_bin_means(data["tracks"], W)
    np.testing.assert_allclose(x[1, 1, 11, 11], rows[1, 0, 12] * cols[1, 0, 12], rtol=1e-6)
    assert sum(p.numel() for p in DLoopCallerNet().parameters()) == 23089
    assert pick_track_channel(["H3K27ac", "CTCF", "ATAC"]) == 2
    assert pick_track_channel(["H3K27ac", "ctcf"]) == 1


def test_dloopcaller_learns_dots_and_is_deterministic() -> None:
    train, val, test = loop_patches(512, 0), loop_patches(128, 1), loop_patches(256, 2)
    inputs = {
        k: dloopcaller_inputs(d["hic"], d["tracks"], 0)
        for k, d in (("tr", train), ("va", val), ("te", test))
    }
    preds = []
    for _ in range(2):
        model = DLoopCaller(epochs=8, batch_size=32, seed=0, device="cpu")
        model.fit(inputs["tr"], train["label"], inputs["va"], val["label"])
        preds.append(model.predict_proba(inputs["te"]))
    assert roc_auc_score(test["label"], preds[0]) > 0.9
    np.testing.assert_array_equal(preds[0], preds[1])
    assert 1 <= model.result.best_epoch <= 8
    assert len(model.result.history) == 8


def test_dloopcaller_uses_the_track_channel() -> None:
    data = [loop_patches(n, seed, track_peak=1.0, dot=0.0) for n, seed in ((256, 3), (128, 4))]
    x = [dloopcaller_inputs(d["hic"], d["tracks"], 0) for d in data]
    model = DLoopCaller(epochs=6, batch_size=32, seed=0, device="cpu")
    model.fit(x[0], data[0]["label"])
    assert model.result.best_epoch == 6  # no validation set: the last epoch
    assert roc_auc_score(data[1]["label"], model.predict_proba(x[1])) > 0.85


# --------------------------------------------------------------------------------------------------
# synthetic expression


def expression_data(n: int, seed: int, bins: int = 20, marks: int = 3) -> dict[str, np.ndarray]:
    """Mark 1 near the TSS drives expression; the other marks are noise."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(1.0, 0.5, size=(n, bins, marks)).astype(np.float32)
    level = rng.normal(size=n)
    centre = slice(bins // 3, max(bins // 3 + 1, 2 * bins // 3))
    x[:, centre, 1 % marks] += np.clip(level, -1, None)[:, None] + 1.0
    y_reg = level + 0.3 * rng.normal(size=n)
    return {"x": x, "y_reg": y_reg, "y_bin": (y_reg > 0).astype(np.int64)}


EXPR = {
    name: expression_data(n, seed)
    for name, n, seed in (("tr", 600, 0), ("va", 200, 1), ("te", 300, 2))
}


def test_linear_reference_learns_the_driving_mark() -> None:
    tr, te = EXPR["tr"], EXPR["te"]
    clf = LinearExpression("binary").fit(tr["x"], tr["y_bin"])
    assert roc_auc_score(te["y_bin"], clf.predict_proba(te["x"])) > 0.85
    reg = LinearExpression("regression").fit(tr["x"], tr["y_reg"])
    assert np.corrcoef(te["y_reg"], reg.predict(te["x"]))[0, 1] > 0.6
    assert mark_means(tr["x"]).shape == (600, 3)


def test_deepchrome_learns_and_is_deterministic() -> None:
    tr, va, te = EXPR["tr"], EXPR["va"], EXPR["te"]
    preds = []
    for _ in range(2):
        model = DeepChrome("binary", epochs=10, seed=0, device="cpu")
        model.fit(tr["x"], tr["y_bin"], va["x"], va["y_bin"])
        preds.append(model.predict_proba(te["x"]))
    assert roc_auc_score(te["y_bin"], preds[0]) > 0.85
    np.testing.assert_array_equal(preds[0], preds[1])
    other = DeepChrome("binary", epochs=2, seed=1, device="cpu").fit(tr["x"], tr["y_bin"])
    assert not np.array_equal(other.predict(te["x"]), preds[0])
    reg = DeepChrome("regression", epochs=10, seed=0, device="cpu")
    reg.fit(tr["x"], tr["y_reg"], va["x"], va["y_reg"])
    assert np.corrcoef(te["y_reg"], reg.predict(te["x"]))[0, 1] > 0.6


def test_deepchrome_network_matches_the_published_size() -> None:
    assert sum(p.numel() for p in DeepChromeNet(100, 5).parameters()) == 644_177


def test_simplechrome_learns_from_the_latent() -> None:
    tr, va, te = EXPR["tr"], EXPR["va"], EXPR["te"]
    common = dict(vae_epochs=25, vae_lr=1e-3, head_epochs=10, seed=0, device="cpu")
    model = SimpleChrome("binary", **common).fit(tr["x"], tr["y_bin"], va["x"], va["y_bin"])
    assert roc_auc_score(te["y_bin"], model.predict_proba(te["x"])) > 0.85
    mu, logvar = model.encode(te["x"])
    assert mu.shape == logvar.shape == (300, 10)
    # the same VAE under other heads: upstream's sampled z, and the regression head
    sampled = SimpleChrome("binary", latent_mode="sampled", vae_from=model, **common)
    sampled.fit(tr["x"], tr["y_bin"], va["x"], va["y_bin"])
    assert roc_auc_score(te["y_bin"], sampled.predict_proba(te["x"])) > 0.75
    reg = SimpleChrome("regression", vae_from=model, **common)
    reg.fit(tr["x"], tr["y_reg"], va["x"], va["y_reg"])
    assert np.corrcoef(te["y_reg"], reg.predict(te["x"]))[0, 1] > 0.5


def test_simplechrome_is_deterministic() -> None:
    tr, te = EXPR["tr"], EXPR["te"]
    runs = [
        SimpleChrome("binary", vae_epochs=2, head_epochs=2, seed=3, device="cpu")
        .fit(tr["x"][:200], tr["y_bin"][:200])
        .predict(te["x"])
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_mark_scaler_uses_training_maximum() -> None:
    x = np.zeros((2, 4, 2), dtype=np.float32)
    x[0, 0] = [4.0, 2.0]
    scaler = MarkScaler().fit(x)
    out = scaler.transform(np.array([[[2.0, 4.0]]], dtype=np.float32))
    np.testing.assert_allclose(out[0, 0], [0.0, 1.0])
    assert scaler.transform(x).min() == -1.0


@pytest.mark.parametrize("bins, marks", [(4, 1), (7, 2), (50, 10)])
def test_expression_baselines_accept_any_shape(bins: int, marks: int) -> None:
    data = expression_data(64, 5, bins, marks)
    for model in (
        DeepChrome("binary", epochs=1, device="cpu"),
        DeepChrome("regression", epochs=1, device="cpu"),
        SimpleChrome("binary", vae_epochs=1, head_epochs=1, device="cpu"),
        LinearExpression("binary"),
    ):
        target = data["y_reg"] if model.task == "regression" else data["y_bin"]
        pred = model.fit(data["x"], target).predict(data["x"][:5])
        assert pred.shape == (5,) and np.all(np.isfinite(pred))


# --------------------------------------------------------------------------------------------------
# synthetic Hi-C maps


def map_data(n: int, seed: int, window: int = 12, positions: int = 2, noise: float = 0.05):
    """Diagonal windows: decay + 0.5 u_a u_b (u = per-bin mean of channel 0) + noise."""
    rng = np.random.default_rng(seed)
    tracks = rng.gamma(1.0, 1.0, size=(n, 2, window * positions)).astype(np.float32)
    tracks = np.concatenate([tracks, tracks], axis=2)  # diagonal window: both anchors the same
    u = tracks[:, 0, : window * positions].reshape(n, window, positions).mean(-1)
    offsets = np.arange(window)
    decay = 1.0 / (1.0 + np.abs(offsets[:, None] - offsets[None, :]))
    maps = (
        decay[None]
        + 0.5 * u[:, :, None] * u[:, None, :]
        + noise * rng.normal(size=(n, window, window))
    )
    maps = 0.5 * (maps + maps.transpose(0, 2, 1))
    mask = rng.random(maps.shape) > 0.02
    mask &= mask.transpose(0, 2, 1)
    return tracks, maps.astype(np.float32), mask


def test_distance_decay_reproduces_pure_decay_exactly() -> None:
    offsets = np.arange(10)
    curve = 3.0 / (1.0 + offsets)
    pure = np.broadcast_to(curve[np.abs(offsets[:, None] - offsets[None, :])], (5, 10, 10)).copy()
    model = DistanceDecay().fit(pure)
    np.testing.assert_allclose(model.predict(5, 10), pure, rtol=1e-6)
    # off-diagonal patches: pixel (a, b) on genomic diagonal |distance + b - a|
    distances = np.array([0, 7, 15])
    long_curve = 3.0 / (1.0 + np.arange(40))
    diag = np.abs(distances[:, None, None] + offsets[None, None, :] - offsets[None, :, None])
    patches = long_curve[diag]
    fitted = DistanceDecay().fit(patches, distances=distances)
    np.testing.assert_allclose(fitted.predict(3, 10, distances), patches, rtol=1e-6)
    # noise around P(s): the decay prediction carries no per-distance information
    _, maps, mask = map_data(50, 0)
    model = DistanceDecay().fit(maps, mask)
    r = pearson_by_distance(maps, model.predict(50, 12), mask)
    assert np.nanmax(np.abs(r)) < 1e-9


def test_track_outer_product_and_epiphany_beat_decay() -> None:
    tr_tracks, tr_maps, tr_mask = map_data(256, 0)
    va_tracks, va_maps, va_mask = map_data(64, 1)
    te_tracks, te_maps, te_mask = map_data(128, 2)

    def score(pred: np.ndarray) -> float:
        return mean_distance_pearson(pearson_by_distance(te_maps, pred, te_mask))

    decay = DistanceDecay().fit(tr_maps, tr_mask)
    decay_score = score(decay.predict(128, 12))
    outer = TrackOuterDecay(seed=0).fit(tr_maps, tr_tracks, tr_mask)
    assert score(outer.predict(te_tracks, 12)) > 0.8
    preds = []
    for _ in range(2):
        model = EpiphanyLite(epochs=15, seed=0, device="cpu")
        model.fit(
            tr_tracks, tr_maps, tr_mask, tracks_val=va_tracks, maps_val=va_maps, mask_val=va_mask
        )
        preds.append(model.predict(te_tracks))
    assert preds[0].shape == (128, 12, 12)
    np.testing.assert_allclose(preds[0], preds[0].transpose(0, 2, 1), atol=1e-6)
    np.testing.assert_array_equal(preds[0], preds[1])
    assert score(preds[0]) > decay_score + 0.3


def test_fit_torch_keeps_the_best_epoch_and_stops_early() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.65, 0.1, 0.1])
    snapshots = []

    def val_score(pred: np.ndarray) -> float:
        snapshots.append(pred.copy())
        return next(scores)

    model, result = fit_torch(
        lambda: torch.nn.Linear(3, 1),
        [x, y[:, None]],
        torch.nn.BCEWithLogitsLoss(),
        epochs=7,
        batch_size=16,
        lr=0.05,
        seed=0,
        device="cpu",
        val_inputs=[x],
        val_score=val_score,
        patience=3,
    )
    assert result.best_epoch == 2 and result.best_score == 0.9
    assert len(result.history) == 5  # stopped 3 epochs after the best
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.as_tensor(x)).numpy(), snapshots[1], rtol=1e-6)
