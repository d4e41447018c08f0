"""``predict``: a new cell line's maps, loops and expression from its tracks (+ optional Hi-C)."""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hicmix import __version__
from hicmix.atomic import atomic_dir
from hicmix.errors import ConfigError, InputError
from hicmix.predict.loops import PrefilterSettings
from hicmix.predict.models import LoadedModel, Runner

log = logging.getLogger(__name__)

MCOOL_FILE = "predicted.mcool"
LOOPS_FILE = "loops.bedpe"
PIXELS_FILE = "loop_pixels.tsv.gz"
EXPRESSION_FILE = "expression.tsv"
HTML_FILE = "summary.html"
SUMMARY_FILE = "summary.json"
#: Candidate pixels with a score at least this (or the threshold, if lower) go to loop_pixels.
PIXEL_FLOOR = 0.1
#: Signal-free runs at least this long are assembly gaps such as centromeres (not predicted);
#: shorter ones are stretches without peaks of sparse tracks (predicted from their zeros; GM12878
#: chr20's 8 peak tracks leave 45 % of its 25 kb bins empty, 247 of them in runs >= 500 kb).
MIN_GAP_BP = 1_000_000


@dataclass
class _Setup:
    """Everything fixed before the chromosome loop."""

    items: dict[str, LoadedModel]
    runners: dict[str, Runner]
    tracks: dict[str, str]
    channels: list[str]
    missing: list[str]
    resolution: int
    positions: int
    track_transform: str
    sizes: dict[str, int]
    chroms: list[str]
    clr: Any = None
    hic_scale: float = 1.0
    genes: pd.DataFrame | None = None
    loop: dict[str, Any] = field(default_factory=dict)
    stride: int = 0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _track_sizes(tracks: Mapping[str, str], chroms: Sequence[str] | None) -> dict[str, int]:
    """Chromosome sizes of the first track, checked against the other tracks."""
    from hicmix.genome import check_chromsizes
    from hicmix.tracks import bigwig_chromsizes

    paths = list(tracks.values())
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"{path}: bigWig not found; fix the --track path")
    sizes = bigwig_chromsizes(paths[0])
    wanted = list(chroms) if chroms else None
    for other in paths[1:]:
        check_chromsizes(sizes, bigwig_chromsizes(other), paths[0], other, wanted)
    return sizes


def _select(sizes: Mapping[str, int], chromosomes: Sequence[str] | None, source: str) -> list[str]:
    from hicmix.genome import normalize_chrom, require_chrom
    from hicmix.tiles import _default_chromosomes

    if not chromosomes:
        return _default_chromosomes(sizes)
    wanted = [normalize_chrom(c) for c in chromosomes]
    for chrom in wanted:
        require_chrom(sizes, chrom, source)
    return list(dict.fromkeys(wanted))


def _check_assembly(card: Mapping[str, Any], assembly: str | None, sizes, source, chroms) -> None:
    """Tracks whose chromosome lengths differ from the card's (known) assembly are refused."""
    from hicmix.genome import assembly_chromsizes, check_chromsizes

    name = assembly or card.get("assembly")
    reference = assembly_chromsizes(name) if name else None
    if reference:
        try:
            check_chromsizes(reference, sizes, f"assembly {name}", source, chroms)
        except InputError as error:
            raise InputError(
                f"the tracks do not match the assembly {name} of the model ({error})"
            ) from None


def _open_hic(path: str, item: LoadedModel, sizes, track_source, chroms):
    from hicmix.genome import check_chromsizes
    from hicmix.hic import cooler_chromsizes, open_hic

    try:
        clr = open_hic(path, item.resolution)
    except InputError as error:
        if "bp" in str(error) and "resolution" in str(error):
            raise InputError(
                f"model {item.path} was trained at resolution {item.resolution} bp, which the "
                f"Hi-C file does not hold ({error})"
            ) from None
        raise
    check_chromsizes(sizes, cooler_chromsizes(clr), track_source, path, chroms)
    return clr


def _setup(
    models: Sequence[str | Path],
    tracks: Mapping[str, str | Path],
    *,
    chromosomes: Sequence[str] | None,
    hic: str | None,
    weight: str | None,
    assembly: str | None,
    resolution: int | None,
    allow_missing: bool,
    genes: str | None,
    gene_id_column: str,
    tss_column: str,
    device: torch.device,
    loop_options: dict[str, Any],
    stride_bins: int | None,
) -> _Setup:
    from hicmix.hic import balance_scale
    from hicmix.predict import models as m
    from hicmix.predict.expression import read_gene_table
    from hicmix.predict.stitch import check_stride

    if not models:
        raise ConfigError("no model given; pass --model with a fine-tuned model folder")
    tracks = {str(k): str(v) for k, v in tracks.items()}
    if not tracks:
        raise ConfigError("no tracks given; pass --track NAME=PATH or --tracks-sheet")
    loaded = [m.load_model(path, device) for path in models]
    m.check_models_compatible(loaded)
    missing: list[str] = []
    for item in loaded:
        missing = m.check_tracks(
            item,
            list(tracks),
            assembly=assembly,
            resolution=resolution,
            allow_missing=allow_missing,
        )
    ref = loaded[0]
    source = next(iter(tracks.values()))
    sizes = _track_sizes(tracks, chromosomes)
    chroms = _select(sizes, chromosomes, source)
    _check_assembly(ref.card, assembly, sizes, source, chroms)
    clr = None if hic is None else _open_hic(hic, ref, sizes, source, chroms)
    items = {item.task: item for item in loaded}
    runners = {
        task: Runner(item, m.resolve_mode(item, clr is not None), device)
        for task, item in items.items()
    }
    setup = _Setup(
        items=items,
        runners=runners,
        tracks=tracks,
        channels=ref.channels,
        missing=missing,
        resolution=ref.resolution,
        positions=ref.positions,
        track_transform=str(m.card_value(ref.card, "track_transform")),
        sizes=sizes,
        chroms=chroms,
        clr=clr,
        hic_scale=balance_scale(clr, weight) if clr is not None and weight else 1.0,
    )
    if "expression" in items and genes:
        setup.genes = read_gene_table(genes, sizes, gene_id_column, tss_column)
    elif "expression" in items:
        log.warning("an expression model was given without --genes: no expression predicted")
    if "loops" in items:
        card = items["loops"].card
        lo, hi, range_source = m.loop_range_bp(card, loop_options["min_bp"], loop_options["max_bp"])
        threshold, threshold_source = m.loop_threshold(card, loop_options["threshold"])
        settings: PrefilterSettings = loop_options["prefilter"]
        if settings.rule == "enrichment" and clr is None:
            raise ConfigError("prefilter enrichment needs observed Hi-C; pass --hic or use anchors")
        setup.loop = {
            "min_bp": lo,
            "max_bp": hi,
            "min_bins": max(1, math.ceil(lo / setup.resolution)),
            "max_bins": hi // setup.resolution,
            "range_source": range_source,
            "threshold": threshold,
            "threshold_source": threshold_source,
            "prefilter": settings,
            "pool_radius": int(loop_options["pool_radius"]),
        }
    if "hicmap" in items:
        window = items["hicmap"].window
        setup.stride = int(stride_bins) if stride_bins else max(1, window // 4)
        check_stride(window, setup.stride)
    return setup


def _hic_source(setup: _Setup, band: Any, item: LoadedModel, window: int | None = None):
    """Transformed patch source for a model that reads Hi-C (None in tracks_only mode)."""
    from hicmix.predict.loops import hic_patch_source

    transforms = item.card["transforms"]
    expected = None
    if transforms["hic_transform"] == "log1p_oe":  # the chromosome's own mean per diagonal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN diagonals stay NaN
            expected = np.nanmean(band.values, axis=1).astype(np.float32)
    return hic_patch_source(
        band,
        window or item.window,
        transforms["hic_transform"],
        float(transforms.get("hic_clip", 255.0)),
        setup.hic_scale,
        expected,
    )


@dataclass
class _Results:
    bands: dict[str, np.ndarray] = field(default_factory=dict)
    valid: dict[str, np.ndarray] = field(default_factory=dict)
    pixels: list[pd.DataFrame] = field(default_factory=list)
    calls: list[pd.DataFrame] = field(default_factory=list)
    expression: list[pd.DataFrame] = field(default_factory=list)
    regions: list[Any] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.stats[key] = self.stats.get(key, 0.0) + float(value)


def _predict_chromosome(
    setup: _Setup,
    chrom: str,
    results: _Results,
    regions: list[tuple[str, int, int]],
    batch_size: int,
    weight: str | None,
    taper: bool,
    progress: bool,
) -> None:
    from hicmix.hic import read_band
    from hicmix.predict.expression import predict_expression
    from hicmix.predict.models import read_track_bins
    from hicmix.predict.stitch import predict_map_band, signal_bins, window_starts

    res, positions = setup.resolution, setup.positions
    length = setup.sizes[chrom]
    n = math.ceil(length / res)
    track_bins = read_track_bins(
        setup.tracks, setup.channels, chrom, length, n, res, positions, setup.track_transform
    )
    results.valid[chrom] = signal_bins(track_bins, positions, math.ceil(MIN_GAP_BP / res))
    band = None
    if setup.clr is not None:
        depth = max(item.window for item in setup.items.values())
        if setup.loop:
            depth += setup.loop["max_bins"]
        band = read_band(setup.clr, chrom, depth + 1, weight=weight)
    if "hicmap" in setup.items:
        item = setup.items["hicmap"]
        if n < item.window:
            log.warning("%s has %d bins, fewer than one window (%d): no map", chrom, n, item.window)
        started = time.perf_counter()
        results.bands[chrom] = predict_map_band(
            setup.runners["hicmap"], track_bins, n, item.window, positions, setup.stride,
            batch_size, taper=taper, progress=progress, desc=f"map {chrom}",
        )  # fmt: skip
        results.add("map_windows", len(window_starts(n, item.window, setup.stride)))
        results.add("map_seconds", time.perf_counter() - started)
    calls = None
    if "loops" in setup.items:
        calls = _call_loops(setup, chrom, n, track_bins, band, results, batch_size, progress)
    if "expression" in setup.items and setup.genes is not None:
        item = setup.items["expression"]
        mine = setup.genes[setup.genes["chrom"] == chrom]
        if len(mine):
            runner = setup.runners["expression"]
            hic = None if runner.mode == "tracks_only" else _hic_source(setup, band, item)
            table, skipped = predict_expression(
                runner, mine, track_bins, n, item.window, positions, res, batch_size,
                item.card.get("label_standardisation"), hic=hic,
            )  # fmt: skip
            results.expression.append(table)
            results.add("genes_skipped_off_chromosome", skipped)
    for name, lo, hi in regions:
        if name == chrom:
            results.regions.append(_region(setup, chrom, lo, hi, track_bins, band, results, calls))


def _call_loops(
    setup: _Setup,
    chrom: str,
    n: int,
    track_bins: np.ndarray,
    band: Any,
    results: _Results,
    batch_size: int,
    progress: bool,
) -> pd.DataFrame:
    from hicmix.evaluate import pool_calls
    from hicmix.predict.loops import chromosome_candidates, score_candidates

    item, runner, cfg = setup.items["loops"], setup.runners["loops"], setup.loop
    started = time.perf_counter()
    i, j, total = chromosome_candidates(
        n, item.window, cfg["min_bins"], cfg["max_bins"], cfg["prefilter"],
        band=None if band is None else band.values, track_bins=track_bins,
        positions=setup.positions,
    )  # fmt: skip
    hic = None if runner.mode == "tracks_only" else _hic_source(setup, band, item)
    filtered = time.perf_counter()
    scores = score_candidates(
        runner, i, j, track_bins, item.window, setup.positions, batch_size, hic=hic,
        progress=progress, desc=f"loops {chrom}",
    )  # fmt: skip
    results.add("loop_candidates", total)
    results.add("loop_scored", len(i))
    results.add("loop_prefilter_seconds", filtered - started)
    results.add("loop_seconds", time.perf_counter() - filtered)
    floor = min(cfg["threshold"], PIXEL_FLOOR)
    keep = scores >= floor
    pixels = pd.DataFrame({"chrom": chrom, "bin1": i[keep], "bin2": j[keep], "score": scores[keep]})
    results.pixels.append(pixels)
    calls = pool_calls(pixels, cfg["threshold"], cfg["pool_radius"])
    results.calls.append(calls)
    return calls


def _region(setup, chrom, lo, hi, track_bins, band, results, calls):
    from hicmix.predict.report import Region, dense_from_band

    region = Region(chrom, lo, hi, setup.resolution)
    if chrom in results.bands:
        region.predicted = dense_from_band(results.bands[chrom], lo, hi)
    if band is not None:
        item = setup.items.get("hicmap") or next(iter(setup.items.values()))
        source = _hic_source(setup, band, item, window=hi - lo)
        region.observed = source(np.array([lo]), np.array([lo]))[0]
    per_bin = track_bins.reshape(len(setup.channels), -1, setup.positions).mean(axis=2)
    region.tracks = {c: per_bin[k, lo:hi] for k, c in enumerate(setup.channels)}
    if calls is not None:
        inside = (calls["bin1"] >= lo) & (calls["bin2"] < hi)
        region.loops = calls[inside]
    return region


def _model_info(setup: _Setup) -> dict[str, dict[str, Any]]:
    info = {}
    for task, item in setup.items.items():
        card = item.card
        entry = {
            "folder": str(item.path),
            "method": card.get("method"),
            "mode (trained / used)": f"{card.get('mode')} / {setup.runners[task].mode}",
            "training cell lines": card.get("cell_lines"),
            "assembly": card.get("assembly"),
            "resolution": card.get("resolution"),
            "window_bins": item.window,
            "channels": item.channels,
            "validation": (card.get("metrics") or {}).get("val"),
        }
        if task == "loops":
            cfg = setup.loop
            entry.update(
                {
                    "loop range (bp)": f"{cfg['min_bp']}-{cfg['max_bp']} ({cfg['range_source']})",
                    "threshold": f"{cfg['threshold']:g} ({cfg['threshold_source']})",
                    "pool radius (bins)": cfg["pool_radius"],
                    "prefilter": cfg["prefilter"].rule,
                }
            )
        if task == "hicmap":
            entry["stride_bins"] = setup.stride
        info[task] = entry
    return info


def _values_note(setup: _Setup, inverse: tuple[str, Any] | None, scale: float | None) -> str:
    item = setup.items.get("hicmap")
    if item is None:
        return ""
    transforms = item.card["transforms"]
    text = (
        f"{MCOOL_FILE}: pixel column 'count' (float32) holds the model's output in its "
        f"{transforms['hic_transform']} space; the bins' 'weight' column is 1 (NaN on bins "
        "without any track signal and on chromosomes not predicted), so balance=True returns "
        "'count' unchanged. Coarser resolutions hold the mean of the finer pixels."
    )
    if inverse and inverse[0] == "balanced":
        text += (
            f" Column 'balanced' = count x clip / scale = count x {transforms.get('hic_clip')} / "
            f"{scale:g}: ICE-balanced-like contacts (clipped at clip / scale)."
        )
    elif inverse:
        text += " Column 'oe' = exp(count) - 1: observed / expected."
    return text


def predict(
    models: Sequence[str | Path],
    tracks: Mapping[str, str | Path],
    out: str | Path,
    *,
    chromosomes: Sequence[str] | None = None,
    cell_line: str = "query",
    hic: str | Path | None = None,
    weight: str | None = "weight",
    assembly: str | None = None,
    resolution: int | None = None,
    allow_missing_channels: bool = False,
    genes: str | Path | None = None,
    gene_id_column: str = "gene_id",
    tss_column: str = "tss",
    batch_size: int = 32,
    device: str = "auto",
    stride_bins: int | None = None,
    taper: bool = True,
    threshold: float | None = None,
    pool_radius: int = 2,
    prefilter: str | PrefilterSettings = "none",
    loop_min_bp: int | None = None,
    loop_max_bp: int | None = None,
    html: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict a cell line's 3D genome from its tracks (+ optional Hi-C) with fine-tuned models.

    ``models``: checkpoint folders of ``hicmix finetune`` (at most one per task: hicmap → stitched
    map ``predicted.mcool``; loops → ``loops.bedpe`` + ``loop_pixels.tsv.gz``; expression with
    ``genes`` → ``expression.tsv``). ``tracks``: channel → bigWig, in the cards' channel order.
    Writes ``out`` (complete or absent) with ``summary.html`` and, last, ``summary.json``;
    returns the summary.
    """
    from hicmix.predict.models import resolve_device, training_hic_scale

    started = time.perf_counter()
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size} must be at least 1")
    settings = (
        prefilter if isinstance(prefilter, PrefilterSettings) else PrefilterSettings(prefilter)
    )
    dev = resolve_device(device)
    setup = _setup(
        models, tracks, chromosomes=chromosomes, hic=None if hic is None else str(hic),
        weight=weight, assembly=assembly, resolution=resolution,
        allow_missing=allow_missing_channels, genes=None if genes is None else str(genes),
        gene_id_column=gene_id_column, tss_column=tss_column, device=dev,
        loop_options={"min_bp": loop_min_bp, "max_bp": loop_max_bp, "threshold": threshold,
                      "prefilter": settings, "pool_radius": pool_radius},
        stride_bins=stride_bins,
    )  # fmt: skip
    from hicmix.predict.report import pick_regions

    n_bins = {c: math.ceil(setup.sizes[c] / setup.resolution) for c in setup.chroms}
    window = max(item.window for item in setup.items.values())
    regions = pick_regions(n_bins, max(3 * window, 60)) if html else []
    results = _Results()
    with atomic_dir(out) as tmp:
        bar = tqdm(setup.chroms, desc=f"predict {cell_line}", unit="chrom", disable=not progress,
                   file=sys.stderr)  # fmt: skip
        for chrom in bar:
            bar.set_postfix_str(chrom)
            _predict_chromosome(setup, chrom, results, regions, batch_size, weight, taper, progress)
        outputs, scale, inverse = _write_outputs(setup, results, tmp, cell_line, training_hic_scale)
        summary = _summary(setup, results, outputs, cell_line, hic, dev, started)
        summary["values"] = _values_note(setup, inverse, scale)
        if html:
            from hicmix.predict.report import write_html

            write_html(tmp / HTML_FILE, summary, results.regions)
            summary["outputs"]["summary"] = HTML_FILE
        summary["wall_time_s"] = time.perf_counter() - started
        summary["peak_rss_mb"] = _peak_rss_mb()
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _write_outputs(setup: _Setup, results: _Results, tmp: Path, cell_line: str, scale_of):
    from hicmix.evaluate import write_bedpe
    from hicmix.predict.stitch import band_depth, inverse_transform, write_mcool
    from hicmix.tiles import _default_chromosomes

    outputs: dict[str, str] = {}
    scale, inverse = None, None
    if results.bands:
        item = setup.items["hicmap"]
        transforms = item.card["transforms"]
        scale = setup.hic_scale if setup.clr is not None else scale_of(item.card)
        if scale is None:
            log.warning("no balancing scale known for the inverse transform: using 1")
            scale = 1.0
        inverse = inverse_transform(transforms["hic_transform"], transforms.get("hic_clip"), scale)
        keep = set(_default_chromosomes(setup.sizes)) | set(setup.chroms)
        chromsizes = {c: v for c, v in setup.sizes.items() if c in keep}
        metadata = {
            "generator": f"hicmix predict {__version__}",
            "cell_line": cell_line,
            "model": str(item.path),
            "hic_transform": transforms["hic_transform"],
            "hic_clip": transforms.get("hic_clip"),
            "inverse_column": None if inverse is None else inverse[0],
            "inverse_scale": scale,
            "band_diagonals": band_depth(item.window, setup.stride),
            "window_bins": item.window,
            "stride_bins": setup.stride,
            "count": "model output in its Hi-C transform space (float32); weight = 1",
        }
        write_mcool(
            tmp / MCOOL_FILE, results.bands, chromsizes, setup.resolution,
            valid_bins=results.valid, inverse=inverse, metadata=metadata,
            assembly=item.card.get("assembly"),
        )  # fmt: skip
        outputs["map"] = MCOOL_FILE
    if "loops" in setup.items:
        calls = pd.concat(results.calls, ignore_index=True) if results.calls else None
        if calls is None or calls.empty:
            from hicmix.evaluate.loops import empty_loops

            calls = empty_loops()
        write_bedpe(calls, setup.resolution, tmp / LOOPS_FILE, setup.sizes)
        pixels = (
            pd.concat(results.pixels, ignore_index=True)
            if results.pixels
            else pd.DataFrame(columns=["chrom", "bin1", "bin2", "score"])
        )
        pixels.to_csv(tmp / PIXELS_FILE, sep="\t", index=False, float_format="%.5g")
        results.stats["loop_calls"] = float(len(calls))
        outputs["loops"] = LOOPS_FILE
        outputs["loop_pixels"] = PIXELS_FILE
    if results.expression:
        table = pd.concat(results.expression, ignore_index=True)
        table.insert(1, "cell_line", cell_line)
        table[["gene_id", "cell_line", "prediction"]].to_csv(
            tmp / EXPRESSION_FILE, sep="\t", index=False, float_format="%.6g"
        )
        outputs["expression"] = EXPRESSION_FILE
    return outputs, scale, inverse


def _summary(setup, results, outputs, cell_line, hic, device, started) -> dict[str, Any]:
    stats = dict(results.stats)
    if stats.get("map_seconds"):
        stats["map_windows_per_s"] = stats["map_windows"] / stats["map_seconds"]
    if stats.get("loop_seconds"):
        stats["loop_pixels_per_s"] = stats["loop_scored"] / stats["loop_seconds"]
    return {
        "finished": True,
        "cell_line": cell_line,
        "chromosomes": setup.chroms,
        "tracks": setup.tracks,
        "missing_channels": setup.missing,
        "hic": None if hic is None else str(hic),
        "device": device.type,
        "models": _model_info(setup),
        "outputs": outputs,
        "stats": stats,
        "hicmix_version": __version__,
    }
