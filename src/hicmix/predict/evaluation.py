"""Score a predicted map against a true one, next to the distance-decay baseline."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from hicmix.errors import InputError


def _metadata(clr: Any) -> dict[str, Any]:
    meta = clr.info.get("metadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {}
    return dict(meta)


def _to_model_space(
    balanced: np.ndarray, meta: dict[str, Any], scale: float, expected: np.ndarray | None
) -> np.ndarray:
    from hicmix.transforms import transform_hic

    name = meta.get("hic_transform", "clip_scale")
    if name == "log1p_oe":
        if expected is None:
            raise ValueError("log1p_oe needs the expected balanced contact per diagonal")
        per_pixel = np.broadcast_to(expected[: balanced.shape[0], None], balanced.shape)
        return transform_hic(name, balanced, expected=per_pixel)
    return transform_hic(name, balanced, clip=float(meta.get("hic_clip", 255.0)), scale=scale)


def _diagonal_means(values: Sequence[np.ndarray]) -> np.ndarray:
    total = sum(np.nansum(v, axis=1) for v in values)
    count = sum(np.isfinite(v).sum(axis=1) for v in values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _scores(
    true: np.ndarray, pred: np.ndarray, max_dist: int, min_dist: int, h: int, ins_window: int
) -> dict[str, Any]:
    from hicmix import evaluate

    t = SimpleNamespace(values=true, n_bins=true.shape[1])
    p = SimpleNamespace(values=pred, n_bins=pred.shape[1])
    r = evaluate.pearson_by_distance_map(t, p, max_dist)
    rows = slice(min_dist, max_dist + 1)
    keep = np.isfinite(true[rows]) & np.isfinite(pred[rows])
    x, y = true[rows][keep], pred[rows][keep]
    return {
        "pearson_by_distance": [float(v) for v in r],
        "distance_pearson_mean": evaluate.mean_distance_pearson(r, min_distance=max(min_dist, 1)),
        "scc": evaluate.scc(t, p, h, max_dist, min_dist_bins=min_dist),
        "insulation_pearson": evaluate.insulation_correlation(t, p, ins_window)[
            "insulation_pearson"
        ],
        "pixel_pearson": float(np.corrcoef(x, y)[0, 1])
        if x.size > 1 and np.ptp(y) > 0
        else math.nan,
        "mse": float(np.mean((x - y) ** 2)) if x.size else math.nan,
    }


def evaluate_prediction(
    pred_cool: str | Path | Any,
    true_cool: str | Path | Any,
    chrom: str,
    max_dist_bins: int,
    h: int,
    *,
    weight: str | None = "weight",
    resolution: int | None = None,
    expected: np.ndarray | None = None,
    train_chroms: Sequence[str] | None = None,
    insulation_window: int | None = None,
    min_dist_bins: int = 1,
) -> dict[str, Any]:
    """Per-distance Pearson, SCC, insulation correlation, pixel Pearson and MSE of a predicted map
    (``hicmix predict`` .mcool) against the true balanced map, and the same for the decay baseline.

    Both maps are compared in the model's transform space (named in the .mcool metadata): the
    truth is balanced with ``weight`` and transformed like the tiles (clip_scale with the true
    file's balancing scale). The decay baseline predicts every pixel as the mean of its diagonal:
    ``expected`` (per diagonal, model space) when given, else the mean over ``train_chroms`` of the
    true file, else over ``chrom`` itself (in-sample, optimistic; stated in the result). Pixels
    beyond the predicted band are left out of both. SCC uses smoothing ``h`` and strata
    ``min_dist_bins`` … ``max_dist_bins`` (both reported); insulation uses a diamond of
    ``insulation_window`` bins (default: as large as the predicted band allows, at most 10).
    """
    from hicmix.hic import balance_scale, open_hic, read_band

    true_clr = true_cool if hasattr(true_cool, "pixels") else open_hic(true_cool, resolution)
    res = int(true_clr.binsize)
    pred_clr = pred_cool if hasattr(pred_cool, "pixels") else open_hic(pred_cool, res)
    meta = _metadata(pred_clr)
    depth_pred = int(meta.get("band_diagonals", 0)) or None
    if depth_pred is not None and max_dist_bins > depth_pred - 1:
        raise InputError(
            f"{pred_clr.filename}: the predicted band holds diagonals 0-{depth_pred - 1}, so "
            f"max_dist_bins {max_dist_bins} is too far; use at most {depth_pred - 1}"
        )
    band_limit = depth_pred or max_dist_bins + 1
    ins = insulation_window or max(1, min(10, (band_limit - 1) // 2))
    depth = max(max_dist_bins + 2 * h + 1, 2 * ins + 1) + 1
    pred = read_band(pred_clr, chrom, depth, weight="weight").values.astype(np.float64)
    pred[band_limit:] = np.nan  # unstored diagonals read as 0: they were not predicted
    scale = balance_scale(true_clr, weight) if weight else 1.0

    def truth_band(name: str) -> np.ndarray:
        return read_band(true_clr, name, depth, weight=weight).values.astype(np.float64)

    balanced = truth_band(chrom)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        others = [truth_band(c) for c in train_chroms or []]
        oe_expected = _diagonal_means(others or [balanced])
        true = _to_model_space(balanced, meta, scale, oe_expected)
        if expected is not None:
            curve, source = np.asarray(expected, dtype=np.float64), "provided expected"
        elif train_chroms:
            curve = _diagonal_means([_to_model_space(b, meta, scale, oe_expected) for b in others])
            source = "training chromosomes " + ", ".join(train_chroms)
        else:
            curve, source = _diagonal_means([true]), f"{chrom} itself (in-sample)"
    true[band_limit:] = np.nan
    curve = np.pad(curve, (0, max(0, depth - curve.size)), mode="edge")[:depth]
    decay = np.where(np.isfinite(true), curve[:, None], np.nan)
    args = (max_dist_bins, min_dist_bins, h, ins)
    return {
        "chrom": chrom,
        "resolution": res,
        "space": f"model ({meta.get('hic_transform', 'clip_scale')})",
        "max_dist_bins": int(max_dist_bins),
        "max_dist_bp": int(max_dist_bins) * res,
        "min_dist_bins": int(min_dist_bins),
        "h": int(h),
        "insulation_window": int(ins),
        "decay_source": source,
        "model": _scores(true, pred, *args),
        "decay": _scores(true, decay, *args),
    }
