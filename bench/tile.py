"""Benchmark of ``hicmix tiles`` against naive per-sample references.

Simulates the embedded default genome (and, with ``--large``, 10 chromosomes x 50 Mb) into a
temporary folder, balances it with hicmix, tiles it with hicmix (in a fresh process, so its peak RSS
is its own), then cuts a subset of the same samples with a NAIVE reference: per sample one
``cooler.Cooler.matrix(balance=True).fetch(region_x, region_y)`` and one ``pyBigWig.values`` call
per sub-bin and channel. A fairer per-window reference makes one ``pyBigWig.values`` call per anchor
window and channel instead. Reference rates are measured on a subset of the samples and extrapolated
to all of them (the references do no filtering, no negative sampling and no writing, which favours
them). Their samples are checked against the hicmix shards. The last line printed is a JSON object.

    python bench/tile.py [--large] [--naive-samples 20] [--tracemalloc] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = {
    "cell_line": "SIMA",
    "assembly": "sim1",
    "window_bins": 50,
    "stride_bins": 10,
    "subbin_bp": 200,
    "splits": {"val": ["chr2"], "test": ["chr3", "chr6"]},
    "seed": 0,
}
LARGE_LENGTHS_MB = [50.0] * 10


def _maxrss_mb() -> float:
    """Peak RSS of this process image (VmHWM; ru_maxrss would keep the parent's pre-exec peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _tile_child(kwargs: dict, queue: multiprocessing.Queue) -> None:
    """Run hicmix tiling in a fresh process and report its time and memory."""
    import tracemalloc

    import hicmix.hic
    import hicmix.tiles

    baseline = _maxrss_mb()
    trace = kwargs.pop("tracemalloc")
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    manifest = hicmix.tiles.tile_cell_line(**kwargs)
    elapsed = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    queue.put(
        {
            "elapsed_s": elapsed,
            "manifest": manifest,
            "rss_after_imports_mb": baseline,
            "peak_rss_mb": _maxrss_mb(),
            "tracemalloc_peak_mb": traced,
        }
    )


def _run_hicmix(kwargs: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_tile_child, args=(kwargs, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _subbin_sums(bw, chrom, start, length, positions, subbin, per_subbin):
    """Signal sum and real width of each sub-bin of one anchor window (missing bases = 0)."""
    lo = start + subbin * np.arange(positions)
    hi = np.minimum(lo + subbin, length)
    widths = np.maximum(hi - lo, 0)
    sums = np.zeros(positions)
    if per_subbin:  # the naive reference: one pyBigWig call per sub-bin
        for k in range(positions):
            if widths[k]:
                sums[k] = np.nan_to_num(bw.values(chrom, int(lo[k]), int(hi[k]), numpy=True)).sum()
        return sums, widths
    end = min(start + positions * subbin, length)  # one call per window
    values = np.zeros(positions * subbin)
    values[: end - start] = np.nan_to_num(bw.values(chrom, start, end, numpy=True))
    return values.reshape(positions, subbin).sum(axis=1), widths


def _naive_sample(
    clr, bws, chrom_lengths, row, geometry, scale, per_subbin=True
) -> tuple[np.ndarray, np.ndarray]:
    """One sample the slow way: a cooler fetch and pyBigWig calls (per sub-bin or per window)."""
    from hicmix.transforms import transform_hic, transform_tracks

    w, res, subbin = geometry["window_bins"], geometry["resolution"], geometry["subbin_bp"]
    chrom = row["chrom"]
    length = chrom_lengths[chrom]
    region_x = (chrom, int(row["start_x"]), min(int(row["start_x"]) + w * res, length))
    region_y = (chrom, int(row["start_y"]), min(int(row["start_y"]) + w * res, length))
    balanced = np.full((w, w), np.nan)
    block = clr.matrix(balance=True).fetch(region_x, region_y)
    balanced[: block.shape[0], : block.shape[1]] = block
    hic = transform_hic("clip_scale", balanced, clip=255.0, scale=scale)
    hic = np.where(np.isfinite(hic), hic, 0)
    positions = w * (res // subbin)
    tracks = np.zeros((len(bws), 2 * positions))
    for c, bw in enumerate(bws):
        for half, start in enumerate((int(row["start_x"]), int(row["start_y"]))):
            sums, widths = _subbin_sums(bw, chrom, start, length, positions, subbin, per_subbin)
            tracks[c, half * positions : (half + 1) * positions] = np.where(
                widths > 0, sums / np.maximum(widths, 1), 0.0
            )
    return hic.astype(np.float32), transform_tracks("log2p1", tracks.astype(np.float32))


def _run_naive(
    out: Path, hic_path: Path, track_paths: dict, n_samples: int, per_subbin: bool = True
) -> dict:
    import cooler
    import h5py
    import pandas as pd
    import pyBigWig

    from hicmix.tiles import load_manifest

    manifest = load_manifest(out)
    clr = cooler.Cooler(str(hic_path))
    lengths = {str(k): int(v) for k, v in clr.chromsizes.items()}
    bws = [pyBigWig.open(str(track_paths[c])) for c in manifest["channels"]]
    index = pd.concat(
        [pd.read_csv(out / k / "index.tsv", sep="\t") for k in manifest["kinds"]], ignore_index=True
    )
    picked = index.iloc[np.linspace(0, len(index) - 1, n_samples).round().astype(int)]
    start = time.perf_counter()
    scale = manifest["hic_scale"]
    cut = [
        _naive_sample(clr, bws, lengths, row, manifest, scale, per_subbin)
        for _, row in picked.iterrows()
    ]
    elapsed = time.perf_counter() - start
    hic_err = track_err = 0.0
    for (hic, tracks), (_, row) in zip(cut, picked.iterrows(), strict=True):
        with h5py.File(out / row["kind"] / row["shard"], "r") as handle:
            hic_err = max(hic_err, float(np.abs(handle["hic"][row["row"]] - hic).max()))
            track_err = max(track_err, float(np.abs(handle["tracks"][row["row"]] - tracks).max()))
    for bw in bws:
        bw.close()
    return {
        "n": len(picked),
        "elapsed_s": elapsed,
        "samples_per_s": len(picked) / elapsed,
        "max_abs_diff_hic": hic_err,
        "max_abs_diff_tracks": track_err,
        "equal": bool(hic_err <= 1e-6 and track_err <= 1e-5),
    }


def bench_genome(name: str, lengths_mb: list[float] | None, workdir: Path, args) -> dict:
    from hicmix.balance import balance_hic
    from hicmix.simulate import DEFAULT_CHROM_LENGTHS_MB, simulate_genome

    lengths_mb = lengths_mb or list(DEFAULT_CHROM_LENGTHS_MB)
    root = workdir / name
    t0 = time.perf_counter()
    paths = simulate_genome(
        root / "sim", cell_lines=["SIMA"], seed=0, chrom_lengths_mb=lengths_mb, progress=False
    )
    t1 = time.perf_counter()
    cool = root / "SIMA.cool"
    balance_hic(paths["hic"]["SIMA"], cool, 10_000)
    t2 = time.perf_counter()
    size = sum(lengths_mb)
    print(f"[{name}] simulated {size:.0f} Mb in {t1 - t0:.0f} s, balanced in {t2 - t1:.0f} s")
    out = root / "tiles"
    kwargs = {
        **DEFAULT,
        "hic": str(cool),
        "tracks": {k: str(v) for k, v in paths["tracks"]["SIMA"].items()},
        "loops": str(paths["loops"]["SIMA"]),
        "genes": str(paths["genes"]),
        "out": str(out),
        "progress": False,
        "tracemalloc": False,
    }
    hicmix = _run_hicmix(dict(kwargs))
    manifest = hicmix.pop("manifest")
    n = sum(sum(per_split.values()) for per_split in manifest["counts"].values())
    if args.tracemalloc:
        traced = _run_hicmix({**kwargs, "out": str(root / "tiles_traced"), "tracemalloc": True})
        hicmix["tracemalloc_peak_mb"] = traced["tracemalloc_peak_mb"]
    naive = _run_naive(out, cool, paths["tracks"]["SIMA"], args.naive_samples)
    window = _run_naive(out, cool, paths["tracks"]["SIMA"], args.window_samples, per_subbin=False)
    longest = max(lengths_mb) * 1e6 / 10_000
    max_diag = 2_000_000 // 10_000 + DEFAULT["window_bins"]
    result = {
        "genome": name,
        "genome_mb": sum(lengths_mb),
        "samples": n,
        "counts": manifest["counts"],
        "hicmix_elapsed_s": round(hicmix["elapsed_s"], 2),
        "hicmix_samples_per_s": round(n / hicmix["elapsed_s"], 1),
        "naive_samples_measured": naive["n"],
        "naive_samples_per_s": round(naive["samples_per_s"], 2),
        "naive_extrapolated_s": round(n / naive["samples_per_s"], 1),
        "ratio": round(n / hicmix["elapsed_s"] / naive["samples_per_s"], 1),
        "naive_matches_hicmix": naive["equal"] and window["equal"],
        "per_window_reference_samples_measured": window["n"],
        "per_window_reference_samples_per_s": round(window["samples_per_s"], 2),
        "ratio_vs_per_window_reference": round(
            n / hicmix["elapsed_s"] / window["samples_per_s"], 1
        ),
        "max_abs_diff_hic": naive["max_abs_diff_hic"],
        "max_abs_diff_tracks": naive["max_abs_diff_tracks"],
        "hicmix_rss_after_imports_mb": round(hicmix["rss_after_imports_mb"], 1),
        "hicmix_peak_rss_mb": round(hicmix["peak_rss_mb"], 1),
        "hicmix_tracemalloc_peak_mb": hicmix["tracemalloc_peak_mb"]
        and round(hicmix["tracemalloc_peak_mb"], 1),
        "largest_band_mb": round(max_diag * longest * 4 / 2**20, 1),
        "largest_track_subbins_mb": round(5 * longest * 50 * 4 / 2**20, 1),
        "tiles_mb": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20, 1),
    }
    print(f"[{name}] " + json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 10 chromosomes x 50 Mb")
    parser.add_argument("--naive-samples", type=int, default=20, help="samples cut the naive way")
    parser.add_argument(
        "--window-samples",
        type=int,
        default=200,
        help="samples cut with one bigWig call per window",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="extra run with tracemalloc")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hicmix-bench-tile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = [bench_genome("default", None, workdir, args)]
        if args.large:
            results.append(bench_genome("large", LARGE_LENGTHS_MB, workdir, args))
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    main_result = results[-1]
    summary = {
        "bench": "tile",
        "genome": main_result["genome"],
        "samples_per_s": {
            "hicmix": main_result["hicmix_samples_per_s"],
            "naive": main_result["naive_samples_per_s"],
        },
        "naive_note": (
            f"naive measured on {main_result['naive_samples_measured']} samples, extrapolated"
        ),
        "ratio": main_result["ratio"],
        "ratio_vs_per_window_reference": main_result["ratio_vs_per_window_reference"],
        "peak_rss_mb_hicmix": main_result["hicmix_peak_rss_mb"],
        "rss_after_imports_mb_hicmix": main_result["hicmix_rss_after_imports_mb"],
        "naive_matches_hicmix": all(r["naive_matches_hicmix"] for r in results),
        "runs": results,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
