"""Our Peakachu-style random forest (:mod:`hicmix.baselines.peakachu`) as a row of the peers table.

Same cut as the real Peakachu: trained on region A only, scored on region B. Run as a child process
(``python -m hicmix.peers.rf ...``) so that wall time and peak RSS are measured like the peers'.

* features and grid: :class:`~hicmix.baselines.peakachu.PeakachuRF` (w = 5, §2.2 grid, 5-fold MCC,
  seeded);
* positives: reference loops with both anchors in region A, ``w + 1`` .. 4 Mb apart, whose window
  lies inside region A (no region-B pixel or label reaches training);
* negatives (:func:`sample_negatives`, §2.2): 4 x #positives distances, half from a Gaussian KDE
  of the positive distances and half uniform long-range, each at a random nonzero, non-positive
  region-A pixel; the windows pass the same filters as positives, then 1:1 truncation;
* calling: Poisson candidates (§2.3, diagonals 6 .. 300) with ``bin1`` in region B, P(loop) > 0.5,
  :func:`hicmix.evaluate.loops.pool_calls` at 0.9, radius 2 bins.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicmix.peers import Protocol


def _long_range(distances: np.ndarray, resolution: int) -> tuple[int, int]:
    """(long_start, long_end) of Peakachu's uniform long-range negatives (§2.2)."""
    long_end = int(max(distances.max(), 5_000_000 // resolution))
    counts, edges = np.histogram(distances, bins=min(100, max(2, len(distances))))
    rising = np.flatnonzero(np.diff(counts) >= 0)
    long_start = int(edges[rising[0] + 1]) if rising.size else int(distances.min())
    return max(long_start, int(distances.min())), long_end


def sample_negatives(
    band: Any,
    positives: np.ndarray,
    lo_bin: int,
    hi_bin: int,
    w: int,
    rng: np.random.Generator,
    ratio: int = 4,
) -> np.ndarray:
    """(n, 2) negative bin pairs with windows inside ``[lo_bin, hi_bin)``, Peakachu-style.

    ``ratio`` x #positives distances: half resampled from a KDE of the positive distances
    (clipped to [min, long_end]), half uniform in [long_start, long_end]; for each distance a
    random pixel with a nonzero value that is not a positive. Order is random.
    """
    from scipy.stats import gaussian_kde

    dist = positives[:, 1] - positives[:, 0]
    n = ratio * len(positives)
    long_start, long_end = _long_range(dist, band.binsize)
    top = min(long_end, band.max_diag - 1, hi_bin - lo_bin - 2 * w - 1)
    kde = gaussian_kde(dist.astype(np.float64)) if np.unique(dist).size > 1 else None
    part1 = (
        kde.resample(n // 2, seed=rng).astype(np.int64).ravel()
        if kde is not None
        else np.full(n // 2, dist[0])
    )
    part1 = part1[(part1 >= dist.min()) & (part1 <= top)]
    part2 = rng.integers(min(long_start, top), top + 1, n - n // 2)
    taken = set(map(tuple, positives.tolist()))
    out = []
    values, counts = np.unique(np.concatenate([part1, part2]), return_counts=True)
    for d, k in zip(values.tolist(), counts.tolist(), strict=True):
        rows = np.arange(lo_bin + w, hi_bin - w - d, dtype=np.int64)
        rows = rows[np.nan_to_num(band.values[d, rows]) > 0]
        rows = np.array([i for i in rows.tolist() if (i, i + d) not in taken], dtype=np.int64)
        if rows.size == 0:
            continue
        pick = rng.choice(rows, size=min(k, rows.size), replace=False)
        out.append(np.stack([pick, pick + d], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(out)
    return pairs[rng.permutation(len(pairs))]


def training_set(
    band: Any,
    truth: pd.DataFrame,
    expected: np.ndarray,
    protocol: Protocol,
    w: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Features and labels from region A only (positives + 1:1 filtered negatives)."""
    from hicmix.baselines.peakachu import peakachu_features

    cut = protocol.cut_bp // protocol.resolution
    max_bins = 4_000_000 // protocol.resolution
    t = truth[truth["chrom"] == protocol.chrom]
    pos = t[["bin1", "bin2"]].to_numpy(np.int64)
    d = pos[:, 1] - pos[:, 0]
    inside = (pos[:, 0] - w >= 0) & (pos[:, 1] + w < cut) & (d >= w + 1) & (d <= max_bins)
    pos = pos[inside & (d < band.max_diag - 2 * w)]
    rng = np.random.default_rng(seed)
    neg = sample_negatives(band, pos, 0, cut, w, rng)

    def featurise(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        patches = band.patches(pairs[:, 0] - w, pairs[:, 1] - w, 2 * w + 1)
        return peakachu_features(patches, expected, w, distances=pairs[:, 1] - pairs[:, 0])

    fpos, keep_pos = featurise(pos)
    fneg, keep_neg = featurise(neg)
    fpos, fneg = fpos[keep_pos], fneg[keep_neg][: int(keep_pos.sum())]
    x = np.concatenate([fpos, fneg])
    y = np.r_[np.ones(len(fpos)), np.zeros(len(fneg))]
    counts = {"positives": len(fpos), "negatives": len(fneg), "labels_in_region": len(t)}
    return x, y, counts


def call_region_b(
    cool: str | Path,
    truth_bedpe: str | Path,
    out: str | Path,
    protocol: Protocol,
    *,
    w: int = 5,
    seed: int = 0,
    threshold: float = 0.9,
    pool_radius: int = 2,
    upper: int = 300,
    grid: str = "full",
    n_jobs: int = 2,
) -> dict[str, Any]:
    """Train on region A, call region B, write the BEDPE ``out``; returns timings and counts."""
    from hicmix.baselines.peakachu import (
        PeakachuRF,
        peakachu_expected,
        poisson_candidates,
        score_band,
    )
    from hicmix.evaluate.loops import pool_calls, read_bedpe_loops, restrict, write_bedpe
    from hicmix.hic import native_chrom_name, open_hic, read_band

    start = time.perf_counter()
    clr = open_hic(cool, protocol.resolution)
    band = read_band(clr, protocol.chrom, upper + 2 * w + 2, "weight")
    native = native_chrom_name(clr, protocol.chrom)
    weights = clr.bins().fetch(native)["weight"].to_numpy(float)
    expected = peakachu_expected(band)
    truth = read_bedpe_loops(truth_bedpe, protocol.resolution, [protocol.chrom], score_column=None)
    truth_a = restrict(truth, protocol.chrom, protocol.region("A"), resolution=protocol.resolution)
    x, y, counts = training_set(band, truth_a, expected, protocol, w, seed)
    model = PeakachuRF(w=w, seed=seed, grid=grid, cv=5, n_jobs=n_jobs).fit(x, y)
    trained = time.perf_counter()
    cut = protocol.cut_bp // protocol.resolution
    candidates = poisson_candidates(band, weights, expected, lower=w + 1, upper=upper)
    candidates = candidates[candidates["bin1"] >= cut].reset_index(drop=True)
    pixels = score_band(model, band, candidates, expected, min_prob=0.5)
    calls = pool_calls(pixels, threshold, pool_radius)
    write_bedpe(calls, protocol.resolution, out, {protocol.chrom: int(clr.chromsizes[native])})
    done = time.perf_counter()
    return {
        "train_s": trained - start,
        "score_s": done - trained,
        "n_candidates": len(candidates),
        "n_pixels": len(pixels),
        "n_calls": len(calls),
        "best_params": {k: str(v) for k, v in model.best_params.items()},
        "cv_mcc": model.cv_score,
        **counts,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hicmix.peers.rf")
    parser.add_argument("--cool", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--out", required=True, help="BEDPE of the calls")
    parser.add_argument("--report", required=True, help="JSON with timings and counts")
    parser.add_argument("--chrom", default="chr20")
    parser.add_argument("--resolution", type=int, default=25_000)
    parser.add_argument("--cut-bp", type=int, default=37_825_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--grid", default="full", choices=["full", "small"])
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    protocol = Protocol(args.chrom, args.resolution, args.cut_bp)
    report = call_region_b(
        args.cool,
        args.truth,
        args.out,
        protocol,
        seed=args.seed,
        threshold=args.threshold,
        grid=args.grid,
        n_jobs=args.n_jobs,
    )
    Path(args.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
