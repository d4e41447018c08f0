"""Benchmark of ``hicmix predict``: stitched-map windows/s, loop candidate pixels/s, peak RSS.

Simulates one chromosome (default 20 Mb at 10 kb) and builds UNTRAINED fine-tuned checkpoints
(model weights at initialisation: speed does not depend on training) of the chosen size (default
``base``) at the paper geometry W = 50, P = 50 (sub-bin 200 bp), C = 5. Then:

1. map: ``hicmix.predict.predict`` with the hicmap model on the whole chromosome, in a fresh
   process (so its peak RSS, VmHWM, is its own): stitched windows/s, wall time, peak RSS;
2. loops: every candidate pixel of the chromosome (20 kb - 2 Mb) is counted, with and without the
   tracks-only ``anchors`` pre-filter; ``--loop-sample`` of them (evenly spread) are scored with
   the loops model in tracks_only mode (tracks cut by fancy indexing, batched) → pixels/s and the
   extrapolated time of the whole chromosome;
3. ``--big``: a synthetic 60 Mb chromosome at 25 kb (random bigWigs, sub-bin 500 bp so P = 50)
   predicted by the hicmap model in a fresh process: wall time, windows/s, peak RSS.

    python bench/predict.py [--size base] [--length-mb 20] [--loop-sample 256] [--big]
                            [--batch-size 16] [--device cpu] [--workdir DIR] [--keep]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHANNELS = ["ATAC", "CTCF", "H3K27ac", "H3K4me3", "H3K27me3"]
W, P = 50, 50
LOOP_RANGE_BP = (20_000, 2_000_000)


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _checkpoint(folder: Path, task: str, size: str, resolution: int) -> Path:
    """An untrained fine-tuned checkpoint with a complete card."""
    from hicmix import TILE_FORMAT_VERSION
    from hicmix.model import MixHiC, ModelGeometry, model_config
    from hicmix.training.checkpoint import save_checkpoint

    geometry = ModelGeometry(W, P, len(CHANNELS))
    config = model_config(size)
    model = MixHiC(geometry, config, hic_transform="clip_scale", tasks=(task,))
    card = {
        "task": task,
        "mode": "tracks_only",
        "method": "hicmix-tracks_only-untrained",
        "geometry": geometry.to_dict(),
        "channels": CHANNELS,
        "transforms": {
            "hic_transform": "clip_scale",
            "hic_clip": 255.0,
            "track_transform": "log2p1",
        },
        "tile_format_version": TILE_FORMAT_VERSION,
        "cell_lines": ["SIMA"],
        "assembly": "sim1",
        "resolution": resolution,
        "subbin_bp": resolution // P,
        "size": size,
        "model_config": config.to_dict(),
        "channel_dropout": 0.0,
        "loop_min_bp": LOOP_RANGE_BP[0],
        "loop_max_bp": LOOP_RANGE_BP[1],
    }
    return save_checkpoint(folder, {"model": model.state_dict()}, card)


def _predict_child(kwargs: dict, queue: multiprocessing.Queue) -> None:
    import torch

    import hicmix.predict

    torch.set_num_threads(kwargs.pop("threads"))
    after_imports = _vmhwm_mb()
    start = time.perf_counter()
    summary = hicmix.predict.predict(**kwargs)
    queue.put(
        {
            "elapsed_s": time.perf_counter() - start,
            "stats": summary["stats"],
            "rss_after_imports_mb": after_imports,
            "peak_rss_mb": _vmhwm_mb(),
        }
    )


def _run_predict(kwargs: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_predict_child, args=(kwargs, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def _synthetic_bigwigs(folder: Path, chrom: str, length: int, step: int, seed: int) -> dict:
    """Random sparse-ish signal tracks (one value per ``step`` bp), one bigWig per channel."""
    import pyBigWig

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    n = math.ceil(length / step)
    starts = np.arange(n, dtype=np.int64) * step
    ends = np.minimum(starts + step, length)
    for name in CHANNELS:
        values = rng.gamma(0.3, 2.0, size=n) * (rng.random(n) < 0.4)
        path = folder / f"{name}.bw"
        bw = pyBigWig.open(str(path), "w")
        bw.addHeader([(chrom, length)])
        bw.addEntries([chrom] * n, starts.tolist(), ends=ends.tolist(), values=values.tolist())
        bw.close()
        paths[name] = str(path)
    return paths


def bench_loops(work: Path, tracks: dict, length: int, args) -> dict:
    import torch

    from hicmix.predict.loops import PrefilterSettings, chromosome_candidates, score_candidates
    from hicmix.predict.models import Runner, load_model, read_track_bins

    torch.set_num_threads(args.threads)
    res = 10_000
    item = load_model(_checkpoint(work / "loops", "loops", args.size, res))
    runner = Runner(item, "tracks_only", torch.device(args.device))
    n = math.ceil(length / res)
    track_bins = read_track_bins(tracks, CHANNELS, "chr1", length, n, res, P, "log2p1")
    lo, hi = math.ceil(LOOP_RANGE_BP[0] / res), LOOP_RANGE_BP[1] // res
    start = time.perf_counter()
    i, j, total = chromosome_candidates(n, W, lo, hi, PrefilterSettings("none"))
    enumerate_s = time.perf_counter() - start
    start = time.perf_counter()
    ia, _, _ = chromosome_candidates(
        n, W, lo, hi, PrefilterSettings("anchors"), track_bins=track_bins, positions=P
    )
    anchors_s = time.perf_counter() - start
    pick = np.linspace(0, len(i) - 1, min(args.loop_sample, len(i))).round().astype(np.int64)
    score_candidates(runner, i[:4], j[:4], track_bins, W, P, 4)  # warm-up
    start = time.perf_counter()
    score_candidates(runner, i[pick], j[pick], track_bins, W, P, args.batch_size)
    elapsed = time.perf_counter() - start
    rate = len(pick) / elapsed
    return {
        "candidates": int(total),
        "candidates_anchors_prefilter": len(ia),
        "enumerate_s": enumerate_s,
        "anchors_prefilter_s": anchors_s,
        "scored_sample": len(pick),
        "pixels_per_s": rate,
        "whole_chromosome_h": total / rate / 3600,
        "whole_chromosome_anchors_h": len(ia) / rate / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="base")
    parser.add_argument("--length-mb", type=float, default=20.0)
    parser.add_argument("--loop-sample", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--big", action="store_true", help="also 60 Mb at 25 kb (synthetic)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    from hicmix.simulate import simulate_genome

    work = Path(args.workdir or tempfile.mkdtemp(prefix="hicmix-bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"size": args.size, "untrained": True, "device": args.device,
                    "threads": args.threads, "W": W, "P": P}  # fmt: skip
    try:
        start = time.perf_counter()
        sim = simulate_genome(work / "sim", cell_lines=["SIMA"], seed=0,
                              chrom_lengths_mb=[args.length_mb], progress=False)  # fmt: skip
        tracks = {c: str(sim["tracks"]["SIMA"][c]) for c in CHANNELS}
        length = round(args.length_mb * 1e6)
        print(f"simulated chr1 ({args.length_mb:g} Mb) in {time.perf_counter() - start:.0f} s")
        hicmap = _checkpoint(work / "hicmap", "hicmap", args.size, 10_000)
        run = _run_predict({
            "models": [str(hicmap)], "tracks": tracks, "out": str(work / "pred"),
            "chromosomes": ["chr1"], "batch_size": args.batch_size, "device": args.device,
            "html": False, "progress": False, "threads": args.threads,
        })  # fmt: skip
        stats = run["stats"]
        result["map"] = {
            "chromosome_mb": args.length_mb, "resolution": 10_000,
            "n_bins": math.ceil(length / 10_000), "windows": int(stats["map_windows"]),
            "windows_per_s": stats["map_windows_per_s"], "wall_s": run["elapsed_s"],
            "peak_rss_mb": run["peak_rss_mb"], "rss_after_imports_mb": run["rss_after_imports_mb"],
        }  # fmt: skip
        print(f"map: {result['map']}")
        result["loops"] = {"chromosome_mb": args.length_mb, "resolution": 10_000,
                           **bench_loops(work, tracks, length, args)}  # fmt: skip
        print(f"loops: {result['loops']}")
        if args.big:
            big_len = 60_000_000
            big_tracks = _synthetic_bigwigs(work / "big", "chr1", big_len, 500, seed=1)
            big_model = _checkpoint(work / "hicmap25k", "hicmap", args.size, 25_000)
            run = _run_predict({
                "models": [str(big_model)], "tracks": big_tracks, "out": str(work / "pred_big"),
                "chromosomes": ["chr1"], "batch_size": args.batch_size, "device": args.device,
                "html": False, "progress": False, "threads": args.threads,
            })  # fmt: skip
            stats = run["stats"]
            result["map_60mb_25kb"] = {
                "n_bins": math.ceil(big_len / 25_000), "windows": int(stats["map_windows"]),
                "windows_per_s": stats["map_windows_per_s"], "wall_s": run["elapsed_s"],
                "peak_rss_mb": run["peak_rss_mb"],
                "rss_after_imports_mb": run["rss_after_imports_mb"],
            }  # fmt: skip
            print(f"map 60 Mb @ 25 kb: {result['map_60mb_25kb']}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
