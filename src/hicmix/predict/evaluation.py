"""Score a predicted map against a true one, next to the distance-decay baseline.

The test part of the genome is a list of regions (whole chromosomes or bp ranges, the split
entries of the config); each region is scored as its own matrix (pixels with both bins inside it)
and the scores are pooled over regions: r(d) over the pixels of every region at distance d, SCC
over every region's strata (HiCRep weights), insulation and pixel metrics over every region's bins
and pixels. The decay baseline predicts each pixel as the mean of its diagonal over the training
regions only.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from hicmix.errors import InputError

#: value spaces in which maps can be compared
SPACES = ("balanced", "model")
#: method name of the decay-only rows in the metrics table
DECAY_METHOD = "distance_decay"
#: metric names written per method (besides pearson_dNN)
SCORE_NAMES = (
    "distance_pearson_mean",
    "scc",
    "insulation_pearson",
    "pixel_pearson",
    "mse",
    "n_pixels",
)


@dataclass(frozen=True)
class Run:
    """Bins [lo, hi) of one chromosome scored as one matrix."""

    chrom: str
    lo: int
    hi: int

    def label(self, resolution: int) -> str:
        return f"{self.chrom}:{self.lo * resolution}-{self.hi * resolution}"


def _metadata(clr: Any) -> dict[str, Any]:
    meta = clr.info.get("metadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {}
    return dict(meta)


# --------------------------------------------------------------------------------------------------
# regions


def region_runs(
    regions: str | Iterable[str], chromsizes: Mapping[str, int], resolution: int
) -> list[Run]:
    """Bin runs of region strings ('chr3', 'chr20:37825000-'); a run keeps the bins wholly inside
    its region. Unknown chromosomes are an InputError naming the known ones."""
    from hicmix.genome import Region, normalize_chrom

    if isinstance(regions, str):
        regions = [r for r in regions.split(",") if r.strip()]
    sizes = {normalize_chrom(c): int(v) for c, v in chromsizes.items()}
    runs = []
    for text in regions:
        region = Region.parse(text)
        if region.chrom not in sizes:
            raise InputError(
                f"region {text} is on {region.chrom}, which the map does not have (it has "
                f"{', '.join(list(sizes)[:8])}); fix the split or --chromosomes"
            )
        n = math.ceil(sizes[region.chrom] / resolution)
        lo = math.ceil(region.start / resolution)
        stop = sizes[region.chrom] if region.end is None else min(region.end, sizes[region.chrom])
        hi = n if stop >= sizes[region.chrom] else stop // resolution
        if hi > lo:
            runs.append(Run(region.chrom, lo, hi))
    return runs


def split_regions(
    splits: Mapping[str, Iterable[str] | str] | None,
    chromsizes: Mapping[str, int],
    resolution: int,
    chromosomes: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """{'train': [...], 'val': [...], 'test': [...]} region strings of a split (the config's val
    and test entries; train is the rest), bin-aligned, over ``chromosomes`` (default all).

    A bin that straddles two splits belongs to none.
    """
    from hicmix.genome import SplitSpec, normalize_chrom

    spec = SplitSpec.from_mapping(splits)
    wanted = None if chromosomes is None else {normalize_chrom(c) for c in chromosomes}
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for native, size in chromsizes.items():
        chrom = normalize_chrom(native)
        if wanted is not None and chrom not in wanted:
            continue
        n = math.ceil(int(size) / resolution)
        labels = [spec.split_of(chrom, i * resolution, (i + 1) * resolution) for i in range(n)]
        start = 0
        for i in range(1, n + 1):
            if i == n or labels[i] != labels[start]:
                if labels[start] is not None:
                    end = "" if i == n else str(i * resolution)
                    text = chrom if start == 0 and i == n else f"{chrom}:{start * resolution}-{end}"
                    out[str(labels[start])].append(text)
                start = i
    return out


def crop_band(band: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The band of bins [lo, hi) as its own matrix: pixels reaching past ``hi`` become NaN."""
    out = np.array(band[:, lo:hi], dtype=np.float64)
    n = hi - lo
    for d in range(min(out.shape[0], n + 1)):
        out[d, n - d :] = np.nan
    out[n + 1 :] = np.nan
    return out


def diagonal_means(bands: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the finite pixels of each diagonal over several bands (NaN where none)."""
    total = sum(np.nansum(v, axis=1) for v in bands)
    count = sum(np.isfinite(v).sum(axis=1) for v in bands)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def decay_prediction(true: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Each pixel the curve value of its diagonal (NaN where the truth is NaN)."""
    depth = true.shape[0]
    curve = np.asarray(curve, dtype=np.float64)
    curve = np.pad(curve, (0, max(0, depth - curve.size)), mode="edge")[:depth]
    return np.where(np.isfinite(true), curve[:, None], np.nan)


# --------------------------------------------------------------------------------------------------
# scores pooled over regions


def _pooled_r(trues: Sequence[np.ndarray], preds: Sequence[np.ndarray], d: int) -> float:
    from hicmix.evaluate.maps import _pearson

    xs, ys = [], []
    for t, p in zip(trues, preds, strict=True):
        keep = np.isfinite(t[d]) & np.isfinite(p[d])
        xs.append(t[d, keep])
        ys.append(p[d, keep])
    return _pearson(np.concatenate(xs), np.concatenate(ys))


def _complete(band: np.ndarray, pred: np.ndarray, h: int, max_dist: int) -> np.ndarray:
    """bool (max_dist + 1, n): pixels (i, i + d) whose (2h+1)² neighbourhood holds no masked bin
    (a bin whose diagonal pixel is NaN in either map) and stays inside the region."""
    n = band.shape[1]
    bad = ~(np.isfinite(band[0]) & np.isfinite(pred[0]))
    cum = np.concatenate([[0], np.cumsum(bad)])

    def clean(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        inside = (lo >= 0) & (hi <= n)
        return inside & (cum[np.clip(hi, 0, n)] - cum[np.clip(lo, 0, n)] == 0)

    i = np.arange(n)
    rows = clean(i - h, i + h + 1)
    return np.stack([rows & clean(i + d - h, i + d + h + 1) for d in range(max_dist + 1)])


def _scc_terms(true: np.ndarray, pred: np.ndarray, h: int, lo: int, hi: int) -> list[tuple]:
    """(n, rho, weight) per stratum lo … hi, HiCRep-style (hicmix.evaluate.scc_by_distance), but
    only over pixels whose smoothing neighbourhood is complete: next to a masked bin the 2D mean
    filter averages other diagonals than elsewhere, which alone correlates a decay-only map with
    the truth (GM12878 chr20 region B: decay SCC 0.163 with those pixels, 0.000 without)."""
    from scipy import stats

    from hicmix.evaluate.maps import _pearson, smooth_band

    s1, s2 = smooth_band(true, h, hi), smooth_band(pred, h, hi)
    complete = _complete(true, pred, h, hi)
    terms = []
    for d in range(lo, hi + 1):
        x, y = s1[d], s2[d]
        keep = complete[d] & np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0))
        x, y = x[keep], y[keep]
        rho = _pearson(x, y) if x.size >= 3 else math.nan
        weight = 0.0
        if np.isfinite(rho):
            v1 = np.var(stats.rankdata(x) / x.size, ddof=1)
            v2 = np.var(stats.rankdata(y) / y.size, ddof=1)
            weight = float(x.size * math.sqrt(v1 * v2))
        terms.append((x.size, rho, weight))
    return terms


def _pooled_scc(
    trues: Sequence[np.ndarray], preds: Sequence[np.ndarray], h: int, lo: int, hi: int
) -> float:
    """SCC over every region's strata: sum w rho / sum w (weights N_d when all vanish, as for a
    prediction constant along every diagonal, whose rho_d are 0)."""
    terms = [t for a, b in zip(trues, preds, strict=True) for t in _scc_terms(a, b, h, lo, hi)]
    used = [(n, r, w) for n, r, w in terms if w > 0]
    if not used:
        used = [(n, r, float(n)) for n, r, _ in terms if np.isfinite(r)]
    total = sum(w for _, _, w in used)
    return float(sum(w * r for _, r, w in used) / total) if total > 0 else math.nan


def _as_map(band: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(values=band, n_bins=band.shape[1])


def _pooled_insulation(
    trues: Sequence[np.ndarray], preds: Sequence[np.ndarray], window: int
) -> float:
    from hicmix.evaluate import diamond_insulation
    from hicmix.evaluate.maps import _pearson

    a = np.concatenate([diamond_insulation(_as_map(t), window) for t in trues])
    b = np.concatenate([diamond_insulation(_as_map(p), window) for p in preds])
    keep = np.isfinite(a) & np.isfinite(b)
    return _pearson(a[keep], b[keep])


def score_bands(
    trues: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    max_dist_bins: int,
    h: int,
    *,
    min_dist_bins: int = 1,
    insulation_window: int = 10,
) -> dict[str, Any]:
    """Scores of predicted bands against true bands (one pair per region, diagonals 0 … at least
    ``max_dist_bins + 2h``): r(d) for d = 0 … max_dist_bins and its mean over d ≥ min_dist_bins,
    SCC over strata min_dist_bins … max_dist_bins with smoothing h, insulation Pearson, and pixel
    Pearson / MSE over d = min_dist_bins … max_dist_bins, all pooled over the regions."""
    from hicmix.evaluate.maps import _pearson, mean_distance_pearson

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = np.array([_pooled_r(trues, preds, d) for d in range(max_dist_bins + 1)])
        rows = slice(min_dist_bins, max_dist_bins + 1)
        pairs = [
            (t[rows][ok], p[rows][ok])
            for t, p in zip(trues, preds, strict=True)
            for ok in [np.isfinite(t[rows]) & np.isfinite(p[rows])]
        ]
        x = np.concatenate([a for a, _ in pairs])
        y = np.concatenate([b for _, b in pairs])
        return {
            "pearson_by_distance": [float(v) for v in r],
            "distance_pearson_mean": mean_distance_pearson(r, min_distance=max(min_dist_bins, 1)),
            "scc": _pooled_scc(trues, preds, h, min_dist_bins, max_dist_bins),
            "insulation_pearson": _pooled_insulation(trues, preds, insulation_window),
            "pixel_pearson": _pearson(x, y),
            "mse": float(np.mean((x - y) ** 2)) if x.size else math.nan,
            "n_pixels": float(x.size),
        }


# --------------------------------------------------------------------------------------------------
# coolers


def _to_model_space(
    balanced: np.ndarray, meta: dict[str, Any], scale: float, expected: np.ndarray | None
) -> np.ndarray:
    from hicmix.transforms import transform_hic

    name = meta.get("hic_transform", "clip_scale")
    if name == "log1p_oe":
        if expected is None:
            raise ValueError("log1p_oe needs the expected balanced contact per diagonal")
        curve = np.pad(expected, (0, max(0, balanced.shape[0] - expected.size)), mode="edge")
        per_pixel = np.broadcast_to(curve[: balanced.shape[0], None], balanced.shape)
        return transform_hic(name, balanced, expected=per_pixel)
    return transform_hic(name, balanced, clip=float(meta.get("hic_clip", 255.0)), scale=scale)


def _pred_factor(meta: Mapping[str, Any], space: str, where: str) -> float:
    """Multiplier taking the stored prediction (model space) to ``space``."""
    if space == "model":
        return 1.0
    name = meta.get("hic_transform", "clip_scale")
    if name != "clip_scale":
        raise InputError(
            f"{where}: a {name} prediction cannot be compared in balanced space here; pass "
            "--space model"
        )
    return float(meta.get("hic_clip", 255.0)) / float(meta.get("inverse_scale") or 1.0)


def _read_runs(clr: Any, runs: Sequence[Run], depth: int, weight: str | None) -> list[np.ndarray]:
    from hicmix.hic import read_band

    bands: dict[str, np.ndarray] = {}
    for run in runs:
        if run.chrom not in bands:
            bands[run.chrom] = read_band(clr, run.chrom, depth, weight=weight).values
    return [crop_band(bands[r.chrom], r.lo, r.hi) for r in runs]


def evaluate_prediction(
    pred_cool: str | Path | Any,
    true_cool: str | Path | Any,
    test: str | Sequence[str],
    max_dist_bins: int,
    h: int,
    *,
    train: Sequence[str] | None = None,
    expected: np.ndarray | None = None,
    weight: str | None = "weight",
    resolution: int | None = None,
    insulation_window: int | None = None,
    min_dist_bins: int = 1,
    space: str = "model",
) -> dict[str, Any]:
    """Per-distance Pearson, SCC, insulation correlation, pixel Pearson and MSE of a predicted map
    (``hicmix predict`` .mcool) against the true balanced map over the ``test`` regions, and the
    same for the distance-decay baseline.

    ``space``: ``model`` compares in the model's Hi-C transform (named in the .mcool metadata; the
    truth is balanced with ``weight`` and transformed like the tiles, with the true file's
    balancing scale); ``balanced`` compares balanced values (the prediction's inverse transform;
    clip_scale models only). The decay baseline predicts each pixel as the mean of its diagonal:
    ``expected`` (per diagonal, in ``space``) when given, else the mean over the ``train`` regions
    of the true file, else over the test regions themselves (in-sample, optimistic; stated in the
    result). Pixels beyond the predicted band are left out of both, and the decay baseline is
    scored on the pixels the model predicted (``coverage``: their fraction of the valid true
    pixels at distances ``min_dist_bins`` … ``max_dist_bins``). SCC uses smoothing ``h`` and
    strata ``min_dist_bins`` … ``max_dist_bins`` (both reported); insulation uses a diamond of
    ``insulation_window`` bins (default: as large as the predicted band allows, at most 10).
    """
    from hicmix.hic import balance_scale, open_hic

    if space not in SPACES:
        raise InputError(f"space {space!r} is unknown; use one of {', '.join(SPACES)}")
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
    sizes = dict(true_clr.chromsizes)
    test_runs = region_runs(test, sizes, res)
    if not test_runs:
        raise InputError(f"{true_clr.filename}: the test regions {test} hold no whole bin")
    train_runs = region_runs(train or [], sizes, res)
    factor = _pred_factor(meta, space, str(pred_clr.filename))
    preds = [b * factor for b in _read_runs(pred_clr, test_runs, depth, "weight")]
    for run, band in zip(test_runs, preds, strict=True):
        band[band_limit:] = np.nan  # unstored diagonals read as 0: they were not predicted
        if not np.any(np.nan_to_num(band[:band_limit]) != 0):
            raise InputError(
                f"{pred_clr.filename}: {run.label(res)} was not predicted; rerun hicmix predict "
                f"with --chromosomes {run.chrom}"
            )
    scale = balance_scale(true_clr, weight) if weight else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trues = _read_runs(true_clr, test_runs, depth, weight)
        others = _read_runs(true_clr, train_runs, depth, weight)
        oe_expected = diagonal_means(others or trues)
        if space == "model":
            trues = [_to_model_space(b, meta, scale, oe_expected) for b in trues]
            others = [_to_model_space(b, meta, scale, oe_expected) for b in others]
        if expected is not None:
            curve, source = np.asarray(expected, dtype=np.float64), "provided expected"
        elif others:
            curve = diagonal_means(others)
            source = "training regions " + ", ".join(r.label(res) for r in train_runs)
        else:
            curve, source = diagonal_means(trues), "the test regions themselves (in-sample)"
    for band in trues:
        band[band_limit:] = np.nan
    # the decay baseline is scored on the pixels the model predicted (same support)
    decays = [
        np.where(np.isfinite(p), decay_prediction(t, curve), np.nan)
        for t, p in zip(trues, preds, strict=True)
    ]
    rows = slice(min_dist_bins, max_dist_bins + 1)
    n_true = sum(int(np.isfinite(t[rows]).sum()) for t in trues)
    n_both = sum(
        int((np.isfinite(t[rows]) & np.isfinite(p[rows])).sum())
        for t, p in zip(trues, preds, strict=True)
    )
    kwargs = {"min_dist_bins": min_dist_bins, "insulation_window": ins}
    return {
        "test_regions": [r.label(res) for r in test_runs],
        "resolution": res,
        "space": space if space == "balanced" else f"model ({meta.get('hic_transform')})",
        "max_dist_bins": int(max_dist_bins),
        "max_dist_bp": int(max_dist_bins) * res,
        "min_dist_bins": int(min_dist_bins),
        "h": int(h),
        "insulation_window": int(ins),
        "decay_source": source,
        "coverage": n_both / n_true if n_true else math.nan,
        "model": score_bands(trues, preds, max_dist_bins, h, **kwargs),
        "decay": score_bands(trues, decays, max_dist_bins, h, **kwargs),
    }


def metric_rows(
    result: Mapping[str, Any],
    *,
    task: str,
    method: str,
    cell_line: str,
    train_cell_line: str,
    seed: int,
    split: str = "test",
) -> list[dict[str, Any]]:
    """Long-format metrics rows (results/metrics.tsv) of an :func:`evaluate_prediction` result:
    the model under ``method``, the decay baseline under ``distance_decay``; per-distance Pearson
    as ``pearson_dNN``; the settings as ``scc_h``, ``max_dist_bp``, ``resolution`` rows, and the
    predicted fraction of the true pixels as ``coverage``."""
    from hicmix.evaluate import rows_from_dict

    rows = []
    for key, name in (("model", method), ("decay", DECAY_METHOD)):
        scores = result[key]
        values = {k: scores[k] for k in SCORE_NAMES}
        r = scores["pearson_by_distance"]
        width = len(str(len(r) - 1))
        values.update({f"pearson_d{d:0{width}d}": v for d, v in enumerate(r)})
        values.update(
            scc_h=result["h"],
            max_dist_bp=result["max_dist_bp"],
            resolution=result["resolution"],
            coverage=result["coverage"],
        )
        rows += rows_from_dict(
            values,
            task=task,
            method=name,
            cell_line=cell_line,
            train_cell_line=train_cell_line,
            split=split,
            seed=int(seed),
        )
    return rows


# --------------------------------------------------------------------------------------------------
# one evaluation run (hicmix predict-eval)


def _model_card(meta: Mapping[str, Any]) -> dict[str, Any]:
    from hicmix.training.checkpoint import read_card

    folder = meta.get("model")
    if folder and Path(folder, "card.json").is_file():
        return read_card(folder)
    return {}


def _identity(
    meta: Mapping[str, Any], card: Mapping[str, Any], given: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """task/method/cell_line/train_cell_line/seed: the arguments, else the model card."""
    found = {
        "method": card.get("method"),
        "cell_line": meta.get("cell_line"),
        "train_cell_line": "+".join(card.get("cell_lines") or []) or None,
        "seed": card.get("seed"),
    }
    values = {**found, **{k: v for k, v in given.items() if v is not None}}
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise InputError(
            f"{where}: its model card is not readable, so {', '.join(missing)} are unknown; pass "
            + " ".join(f"--{k.replace('_', '-')}" for k in missing)
        )
    return values


def evaluate_run(
    pred: str | Path,
    truth: str | Path,
    out: str | Path,
    *,
    h: int,
    splits: Mapping[str, Iterable[str] | str] | None = None,
    chromosomes: Sequence[str] | None = None,
    test: Sequence[str] | None = None,
    train: Sequence[str] | None = None,
    max_dist_bins: int | None = None,
    space: str = "balanced",
    weight: str | None = "weight",
    task: str = "predict_map",
    **identity: Any,
) -> dict[str, Any]:
    """Evaluate a ``hicmix predict`` map (its folder or .mcool) against ``truth``; write
    ``out/metrics.tsv`` (long format, :func:`metric_rows`) and ``out/evaluation.json``.

    Test and training regions: ``test`` / ``train`` when given, else from ``splits`` (val and
    test entries; train is the rest) over ``chromosomes`` (default: all of ``truth``).
    ``max_dist_bins`` defaults to the predicted band's last diagonal. ``identity`` (method,
    cell_line, train_cell_line, seed) defaults to the model card named in the .mcool.
    """
    from hicmix.evaluate import write_metrics
    from hicmix.hic import open_hic
    from hicmix.predict.run import MCOOL_FILE
    from hicmix.training.logs import write_json

    pred = Path(pred)
    if pred.is_dir():
        pred = pred / MCOOL_FILE
    true_clr = open_hic(truth, None)
    res = int(true_clr.binsize)
    pred_clr = open_hic(pred, res)
    meta = _metadata(pred_clr)
    ids = _identity(meta, _model_card(meta), identity, str(pred))
    if test is None:
        regions = split_regions(splits, dict(true_clr.chromsizes), res, chromosomes)
        test, train = regions["test"], regions["train"] if train is None else train
    if max_dist_bins is None:
        max_dist_bins = int(meta.get("band_diagonals") or 0) - 1
        if max_dist_bins < 1:
            raise InputError(f"{pred}: no band_diagonals in its metadata; pass --max-dist-bins")
    result = evaluate_prediction(
        pred_clr, true_clr, test, max_dist_bins, h, train=train, weight=weight, space=space
    )
    rows = metric_rows(result, task=task, **ids)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "evaluation.json", {**result, "identity": ids, "task": task})
    write_metrics(rows, out / "metrics.tsv")
    return {**result, "identity": ids, "task": task}
