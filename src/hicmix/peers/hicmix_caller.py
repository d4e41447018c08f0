"""hicmix's genome-wide loop caller (:mod:`hicmix.predict.loops`): the ``hicmix`` peers row.

Same cut as the real Peakachu, with region A split once more for model selection:

* features and candidates: HICCUPS-like local enrichment on the observed band
  (:func:`hicmix.predict.loops.candidate_table`: local maxima of the donut enrichment, 15
  enrichment features per candidate);
* training: a gradient-boosted scorer (:func:`~hicmix.predict.loops.fit_loop_scorer`) on the
  candidates of region A's *training part* ``[0, val_bp)``, positives = candidates within
  ``label_radius`` bins of a reference loop of that part. The region-A band is cut out first
  (pixels reaching region B masked), so neither region-B labels nor region-B contacts reach it;
* selection: pooling threshold and radius maximise F1 (±1) on region A's validation part
  ``[val_bp, cut_bp)`` (:func:`~hicmix.predict.loops.choose_pooling`);
* calling: the whole chromosome is scored and pooled (timed as ``score_s``); the evaluator keeps
  region B.

Run as a child process (``python -m hicmix.peers.hicmix_caller ...``) so that wall time and peak RSS
are measured like the peers'.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicmix.peers import Protocol

VAL_BP = 30_000_000


def region_band(values: np.ndarray, hi_bin: int) -> np.ndarray:
    """The band of bins ``[0, hi_bin)`` alone: pixels with an anchor at or past ``hi_bin`` → NaN."""
    part = np.array(values[:, :hi_bin], dtype=np.float64)
    d = np.arange(part.shape[0])[:, None]
    i = np.arange(hi_bin)[None, :]
    part[i + d >= hi_bin] = np.nan
    return part


def candidate_recall(i: np.ndarray, j: np.ndarray, truth: pd.DataFrame, radius: int = 1) -> float:
    """Fraction of ``truth`` loops with a candidate (i, j) within ``radius`` bins."""
    from hicmix.predict.loops import pixel_labels

    if len(truth) == 0:
        return float("nan")
    found = pixel_labels(
        truth["bin1"].to_numpy(), truth["bin2"].to_numpy(), pd.DataFrame({"bin1": i, "bin2": j}),
        radius,
    )  # fmt: skip
    return float(found.mean())


def train_on_region_a(
    values: np.ndarray,
    truth_a: pd.DataFrame,
    protocol: Protocol,
    settings: Any,
    val_bp: int = VAL_BP,
    seed: int = 0,
) -> tuple[Any, Any, dict[str, Any]]:
    """(model, settings with the val-chosen threshold / pool radius, report) from region A."""
    from hicmix.predict.loops import candidate_table, choose_pooling, fit_loop_scorer, pixel_labels

    cut, val = protocol.cut_bp // protocol.resolution, val_bp // protocol.resolution
    i, j, x = candidate_table(region_band(values, cut), settings)
    train_truth = truth_a[truth_a["bin2"] < val]
    val_truth = truth_a[truth_a["bin1"] >= val]
    y = pixel_labels(i, j, train_truth, settings.label_radius)
    train, held = j < val, i >= val
    model = fit_loop_scorer(x[train], y[train], seed)
    pixels = pd.DataFrame(
        {
            "chrom": protocol.chrom,
            "bin1": i[held],
            "bin2": j[held],
            "score": model.predict_proba(x[held])[:, 1],
        }
    )
    best = choose_pooling(pixels, val_truth)
    chosen = replace(settings, threshold=best["threshold"], pool_radius=best["pool_radius"])
    report = {
        "train_candidates": int(train.sum()),
        "train_positives": int(y[train].sum()),
        "train_loops": len(train_truth),
        "val_candidates": int(held.sum()),
        "val_loops": len(val_truth),
        "val_candidate_recall": candidate_recall(i[held], j[held], val_truth),
        "val": best,
    }
    return model, chosen, report


def call_chromosome(
    cool: str | Path,
    truth_bedpe: str | Path,
    out: str | Path,
    protocol: Protocol,
    *,
    val_bp: int = VAL_BP,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on region A, score and pool the whole chromosome, write the BEDPE ``out``."""
    from hicmix.evaluate.loops import pool_calls, read_bedpe_loops, restrict, write_bedpe
    from hicmix.hic import native_chrom_name, open_hic, read_band
    from hicmix.predict.loops import ENRICHMENT_SCALES, CallerSettings, call_pixels

    start = time.perf_counter()
    settings = CallerSettings(min_bins=protocol.min_bins, max_bins=protocol.max_bins)
    clr = open_hic(cool, protocol.resolution)
    depth = settings.max_bins + 2 * max(w for _, w in ENRICHMENT_SCALES) + 3
    band = read_band(clr, protocol.chrom, depth, "weight")
    truth = read_bedpe_loops(truth_bedpe, protocol.resolution, [protocol.chrom], score_column=None)
    truth_a = restrict(
        truth,
        protocol.chrom,
        protocol.region("A"),
        settings.min_bins,
        settings.max_bins,
        resolution=protocol.resolution,
    )
    model, chosen, report = train_on_region_a(
        band.values, truth_a, protocol, settings, val_bp, seed
    )
    trained = time.perf_counter()
    pixels = call_pixels(model, band.values, protocol.chrom, chosen)
    calls = pool_calls(pixels, chosen.threshold, chosen.pool_radius)
    native = native_chrom_name(clr, protocol.chrom)
    write_bedpe(calls, protocol.resolution, out, {protocol.chrom: int(clr.chromsizes[native])})
    done = time.perf_counter()
    return {
        "train_s": trained - start,
        "score_s": done - trained,
        "n_candidates": len(pixels),
        "n_calls": len(calls),
        "settings": asdict(chosen),
        **report,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hicmix.peers.hicmix_caller")
    parser.add_argument("--cool", required=True)
    parser.add_argument("--truth", required=True)
    parser.add_argument("--out", required=True, help="BEDPE of the calls")
    parser.add_argument("--report", required=True, help="JSON with timings and counts")
    parser.add_argument("--chrom", default="chr20")
    parser.add_argument("--resolution", type=int, default=25_000)
    parser.add_argument("--cut-bp", type=int, default=37_825_000)
    parser.add_argument("--val-bp", type=int, default=VAL_BP)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    protocol = Protocol(args.chrom, args.resolution, args.cut_bp)
    report = call_chromosome(
        args.cool, args.truth, args.out, protocol, val_bp=args.val_bp, seed=args.seed
    )
    Path(args.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
