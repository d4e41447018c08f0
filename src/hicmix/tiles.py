"""Tiling: paired Hi-C patches and track windows in HDF5 shards, and the lazy torch Dataset.

The folder layout is the "Tile contract" of docs/architecture.md. Conventions used here:

- Every sample has a row anchor bin x and a column anchor bin y. Its Hi-C patch covers rows
  x - W//2 ... x - W//2 + W - 1 and the same columns around y; ``start_x`` / ``start_y`` in
  index.tsv are the bp starts of those two windows, ``(x - W//2) * resolution``.
- ``pretrain``: diagonal windows starting at bins 0, S, 2S, ... (x = y = start + W//2), plus
  off-diagonal pairs of those windows up to ``max_offdiag_bp`` apart.
- ``loops``: patches centred on the BEDPE loops (label 1) and on Peakachu-style negatives (label 0).
- ``tss``: one diagonal window per gene, centred on the bin of its TSS (label = expression); the
  shards and index.tsv also keep the TSS's bp offset within that bin (``tss_offset``) and the gene's
  strand (``strand``: +1 / -1, 0 when the gene table has none). Older tss tiles without them read
  back as 0 (the tile format is unchanged: no version bump).

A cell line is tiled chromosome by chromosome: the chromosome's Hi-C band and track sub-bins are
read once, then samples are cut in batches with vectorised indexing and streamed into one open shard
per split.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hicmix import TILE_FORMAT_VERSION, __version__
from hicmix.atomic import atomic_dir, atomic_path
from hicmix.errors import ConfigError, InputError
from hicmix.genome import SPLITS, SplitSpec, check_chromsizes, normalize_chrom, require_chrom
from hicmix.transforms import (
    check_hic_transform,
    check_track_transform,
    expected_for_patches,
    transform_hic,
    transform_tracks,
)

log = logging.getLogger(__name__)

KINDS = ("pretrain", "loops", "loop_candidates", "tss")
INDEX_COLUMNS = (
    "sample",
    "kind",
    "cell_line",
    "chrom",
    "bin_x",
    "bin_y",
    "start_x",
    "start_y",
    "distance_bins",
    "split",
    "shard",
    "row",
)
LABEL_COLUMNS = {
    "pretrain": (),
    "loops": ("label",),
    "loop_candidates": ("label",),
    "tss": ("gene_id", "expression", "tss_offset", "strand"),
}
#: per-sample TSS datasets of tss shards (int64; absent elsewhere and in older tiles: read as 0)
TSS_FIELDS = ("tss_offset", "strand")
STRAND_CODES = {"+": 1, "-": -1}

#: manifest fields that must agree between tile folders mixed in one TileDataset (shards repeat).
COMPAT_FIELDS = (
    "format_version",
    "resolution",
    "window_bins",
    "subbin_bp",
    "positions_per_bin",
    "channels",
    "hic_transform",
    "hic_clip",
    "track_transform",
)
SHARD_ATTRS = (*COMPAT_FIELDS, "cell_line", "assembly", "hic_scale")

GENE_CHROM_COLUMN = "chrom"
PEAK_RATIO_MIN = 0.1
CANDIDATE_LABEL_RADIUS = 1  # a loop candidate this close (Chebyshev bins) to a loop is a positive
CANDIDATE_STREAM = 1  # random stream of candidate negatives (apart from the loops' negatives)
_BATCH = 128  # samples cut and written at once: bounds memory to a few x _BATCH x C x 2WP floats
_NEGATIVE_ROUNDS = 20
# gzip 4 without the shuffle filter: on simulated and real (ENCODE chr21) tiles shuffle made every
# dataset larger (tracks 0.22 vs 0.11 and 0.23 vs 0.19 of raw size) and compression 1.6-2.3x slower,
# since bigWig sub-bin means repeat exact float values that byte shuffling breaks apart.
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": False}


# --------------------------------------------------------------------------------------------------
# samples


@dataclass
class _Samples:
    """Candidate samples of one kind on one chromosome: window start bins, labels, gene ids."""

    start_x: np.ndarray
    start_y: np.ndarray
    label: np.ndarray
    gene_id: np.ndarray | None = None
    split: np.ndarray | None = None
    tss: dict[str, np.ndarray] | None = None  # TSS_FIELDS of tss samples

    @classmethod
    def empty(cls, with_genes: bool = False) -> _Samples:
        none = np.zeros(0, dtype=np.int64)
        genes = np.zeros(0, dtype=object) if with_genes else None
        labels = np.zeros(0, dtype=np.float32)
        return cls(none, none.copy(), labels, genes, np.zeros(0, dtype=object))

    def __len__(self) -> int:
        return len(self.start_x)

    def take(self, keep: np.ndarray | slice) -> _Samples:
        return _Samples(
            self.start_x[keep],
            self.start_y[keep],
            self.label[keep],
            None if self.gene_id is None else self.gene_id[keep],
            None if self.split is None else self.split[keep],
            None if self.tss is None else {k: v[keep] for k, v in self.tss.items()},
        )

    @staticmethod
    def concat(parts: Sequence[_Samples]) -> _Samples:
        first = parts[0]
        return _Samples(
            np.concatenate([p.start_x for p in parts]),
            np.concatenate([p.start_y for p in parts]),
            np.concatenate([p.label for p in parts]),
            None if first.gene_id is None else np.concatenate([p.gene_id for p in parts]),
            None if first.split is None else np.concatenate([p.split for p in parts]),
            None
            if first.tss is None
            else {k: np.concatenate([p.tss[k] for p in parts]) for k in first.tss},
        )

    def sorted(self) -> _Samples:
        """By row window, then column window; stable, so ties keep their input order."""
        return self.take(np.lexsort((self.start_y, self.start_x)))


@dataclass
class _Context:
    """Everything fixed for one cell line."""

    cell_line: str
    clr: Any
    resolution: int
    weight: str | None
    window: int
    positions: int
    channels: list[str]
    track_paths: list[str]
    spec: SplitSpec
    hic_transform: str
    hic_clip: float
    hic_scale: float
    expected: np.ndarray | None
    track_transform: str
    min_nonzero: float
    max_diag: int
    dropped: dict[str, Counter] = field(default_factory=dict)

    def drop(self, kind: str, reason: str, n: int) -> None:
        if n:
            self.dropped.setdefault(kind, Counter())[reason] += int(n)


def _hic():
    from hicmix import hic

    return hic


def _tracks():
    from hicmix import tracks

    return tracks


def _chrom_rng(seed: int, chrom: str, stream: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, chromosome, stream), so chromosome order does not
    matter; stream 0 is the loops' negatives (its entropy is unchanged since before streams)."""
    key = [int(seed), zlib.crc32(chrom.encode())] + ([int(stream)] if stream else [])
    return np.random.default_rng(key)


def _pretrain_samples(ctx: _Context, n_bins: int, stride: int, max_offdiag_bins: int) -> _Samples:
    starts = np.arange(0, n_bins, stride, dtype=np.int64)
    ctx.drop("pretrain", "off_chromosome", int(np.sum(starts + ctx.window > n_bins)))
    starts = starts[starts + ctx.window <= n_bins]
    parts = []
    for offset in range(0, max_offdiag_bins + 1, stride):
        rows = starts[starts + offset + ctx.window <= n_bins]
        parts.append(_Samples(rows, rows + offset, np.zeros(len(rows), dtype=np.float32)))
    return _Samples.concat(parts).sorted()


def _tss_samples(ctx: _Context, genes: pd.DataFrame) -> _Samples:
    tss = genes["tss"].to_numpy(np.int64)
    start = tss // ctx.resolution - ctx.window // 2
    strand = genes["strand"] if "strand" in genes else pd.Series(0, index=genes.index)
    return _Samples(
        start,
        start.copy(),
        genes["expression"].to_numpy(np.float32),
        genes["gene_id"].to_numpy(object),
        tss={"tss_offset": tss % ctx.resolution, "strand": strand.to_numpy(np.int64)},
    ).sorted()


def _off_chromosome(ctx: _Context, samples: _Samples, n_bins: int) -> np.ndarray:
    lo = np.minimum(samples.start_x, samples.start_y)
    hi = np.maximum(samples.start_x, samples.start_y) + ctx.window
    return (lo < 0) | (hi > n_bins)


def _assign_splits(ctx: _Context, chrom: str, length: int, samples: _Samples) -> np.ndarray:
    """Split of each sample over the hull of its two anchor windows (None when it straddles)."""
    whole = ctx.spec.split_of(chrom, 0, length)
    if whole is not None:
        return np.full(len(samples), whole, dtype=object)
    res = ctx.resolution
    lo = np.minimum(samples.start_x, samples.start_y) * res
    hi = np.minimum((np.maximum(samples.start_x, samples.start_y) + ctx.window) * res, length)
    return np.array(
        [ctx.spec.split_of(chrom, int(a), int(b)) for a, b in zip(lo, hi, strict=True)],
        dtype=object,
    )


def _patch_reasons(ctx: _Context, band: Any, samples: _Samples, check_peak: bool) -> np.ndarray:
    """Per sample: '' to keep, else the name of the Hi-C filter that drops it."""
    reasons = np.full(len(samples), "", dtype=object)
    w = ctx.window
    corner = math.ceil(w / 4)  # MIX-HIC: window[37:50, 0:13] for W = 50
    for lo in range(0, len(samples), _BATCH):
        part = samples.take(slice(lo, lo + _BATCH))
        patches = band.patches(part.start_x, part.start_y, w)
        finite = np.isfinite(patches)
        n_valid = finite.sum(axis=(1, 2))
        n_nonzero = (finite & (patches != 0)).sum(axis=(1, 2))
        sparse = (n_valid == 0) | (n_nonzero < ctx.min_nonzero * n_valid)
        bad = np.where(sparse, "sparse", "")
        if check_peak:
            filled = np.nan_to_num(patches, nan=0.0)
            centre = filled[:, w // 2, w // 2]
            lower_left = filled[:, w - corner :, :corner].mean(axis=(1, 2))
            # Peakachu: keep only when the corner mean is > 0 and centre / corner >= 0.1
            low = ~(lower_left > 0) | (centre < PEAK_RATIO_MIN * lower_left)
            bad = np.where((bad == "") & low, "low_peak_ratio", bad)
        reasons[lo : lo + len(part)] = bad
    return reasons


def _screen(
    ctx: _Context,
    band: Any,
    chrom: str,
    length: int,
    samples: _Samples,
    kind: str,
    check_peak: bool,
    prefix: str = "",
) -> _Samples:
    """Apply the edge, split and Hi-C filters; count drops; return kept samples with their split."""
    n_bins = band.n_bins
    off = _off_chromosome(ctx, samples, n_bins)
    ctx.drop(kind, prefix + "off_chromosome", int(off.sum()))
    samples = samples.take(~off)
    splits = _assign_splits(ctx, chrom, length, samples)
    straddles = np.array([s is None for s in splits], dtype=bool)
    ctx.drop(kind, prefix + "straddles_split", int(straddles.sum()))
    samples = samples.take(~straddles)
    samples.split = splits[~straddles]
    reasons = _patch_reasons(ctx, band, samples, check_peak)
    for reason, n in zip(*np.unique(reasons[reasons != ""], return_counts=True), strict=True):
        ctx.drop(kind, prefix + str(reason), int(n))
    return samples.take(reasons == "")


# --------------------------------------------------------------------------------------------------
# loops and negatives


def read_loops(path: str | Path, chromsizes: Mapping[str, int]) -> tuple[pd.DataFrame, Counter]:
    """Intra-chromosomal loops of a headerless BEDPE: chrom, start1, end1, start2, end2.

    Chromosome names are normalised. Returns the table and the count of lines set aside
    (``interchromosomal``, ``chromosome_not_in_hic``). A first line whose coordinates are not
    integers is taken as a header; '#' and 'track' lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: loops BEDPE not found; check the --loops path")
    rows, skipped = [], Counter()
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split()
            coords = _bedpe_coords(fields)
            if coords is None:
                if number == 1 and len(fields) >= 6:
                    continue  # header line
                raise InputError(
                    f"{path} line {number}: expected 'chrom1 start1 end1 chrom2 start2 end2' with "
                    f"integer coordinates, got {line.strip()[:80]!r}; fix the BEDPE"
                )
            chrom1, chrom2 = normalize_chrom(fields[0]), normalize_chrom(fields[3])
            if chrom1 != chrom2:
                skipped["interchromosomal"] += 1
                continue
            if chrom1 not in chromsizes:
                skipped["chromosome_not_in_hic"] += 1
                continue
            length = chromsizes[chrom1]
            s1, e1, s2, e2 = coords
            if min(s1, s2) < 0 or max(e1, e2) > length:
                raise InputError(
                    f"{path} line {number}: an anchor lies outside {chrom1} (length {length:,} bp "
                    "in the Hi-C file); use loops called on the same assembly as the Hi-C"
                )
            rows.append((chrom1, s1, e1, s2, e2))
    table = pd.DataFrame(rows, columns=["chrom", "start1", "end1", "start2", "end2"])
    return table, skipped


def _bedpe_coords(fields: list[str]) -> tuple[int, int, int, int] | None:
    if len(fields) < 6:
        return None
    try:
        s1, e1, s2, e2 = (int(fields[i]) for i in (1, 2, 4, 5))
    except ValueError:
        return None
    if e1 < s1 or e2 < s2:
        return None
    return s1, e1, s2, e2


def _loop_bins(loops: pd.DataFrame, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor midpoint bins of each loop, ordered so that i <= j."""
    a = ((loops["start1"].to_numpy(np.int64) + loops["end1"].to_numpy(np.int64)) // 2) // resolution
    b = ((loops["start2"].to_numpy(np.int64) + loops["end2"].to_numpy(np.int64)) // 2) // resolution
    return np.minimum(a, b), np.maximum(a, b)


@dataclass(frozen=True)
class _LoopParams:
    min_bins: int
    max_bins: int
    negative_ratio: float
    exclusion_bins: int
    candidate_ratio: float = 0.0


def _exclusion_codes(i: np.ndarray, j: np.ndarray, radius: int, n_bins: int) -> np.ndarray:
    """Sorted pixel codes (row * n_bins + col) within Chebyshev ``radius`` of any (i, j)."""
    offsets = np.arange(-radius, radius + 1)
    rows = (i[:, None, None] + offsets[None, :, None]).repeat(len(offsets), axis=2).ravel()
    cols = (j[:, None, None] + offsets[None, None, :]).repeat(len(offsets), axis=1).ravel()
    inside = (rows >= 0) & (cols >= 0) & (rows < n_bins) & (cols < n_bins)  # codes must not alias
    return np.unique(rows[inside] * n_bins + cols[inside])


def _draw_distances(
    rng: np.random.Generator, kde: Any, pos_dist: np.ndarray, n: int, lo: int, hi: int, n_bins: int
) -> np.ndarray:
    """Half from the positives' distance KDE, half long-range weighted by pixels per diagonal."""
    n_kde = n // 2
    if kde is not None:
        near = np.rint(kde.resample(n_kde, seed=rng)[0]).astype(np.int64)
    else:  # one distinct positive distance: the KDE is singular, resample the distances themselves
        near = rng.choice(pos_dist, size=n_kde)
    span = np.arange(lo, hi + 1, dtype=np.int64)
    weight = (n_bins - span).astype(np.float64)
    far = rng.choice(span, size=n - n_kde, p=weight / weight.sum())
    near = near[(near >= lo) & (near <= hi)]
    return np.concatenate([near, far])


def _pick_pixels(
    ctx: _Context,
    band: Any,
    distances: np.ndarray,
    rng: np.random.Generator,
    taken: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per distance, random pixels with a nonzero value and a fitting patch, not in ``taken``."""
    half, n_bins = ctx.window // 2, band.n_bins
    out_i, out_d = [], []
    values, counts = np.unique(distances, return_counts=True)
    for d, k in zip(values.tolist(), counts.tolist(), strict=True):
        rows = np.arange(half, n_bins - ctx.window + half - d + 1, dtype=np.int64)
        rows = rows[band.values[d, rows] > 0]
        codes = rows * n_bins + rows + d
        rows = rows[~np.isin(codes, taken, assume_unique=False)]
        if len(rows) == 0:
            continue
        pick = np.sort(rng.choice(len(rows), size=min(k, len(rows)), replace=False))
        out_i.append(rows[pick])
        out_d.append(np.full(len(pick), d, dtype=np.int64))
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate(out_i)
    return i, i + np.concatenate(out_d)


def _negatives(
    ctx: _Context,
    band: Any,
    chrom: str,
    length: int,
    excluded: np.ndarray,
    pos_dist: np.ndarray,
    target: int,
    params: _LoopParams,
    rng: np.random.Generator,
) -> _Samples:
    """Peakachu-style negatives: distance-matched plus long-range, screened like positives."""
    from scipy.stats import gaussian_kde

    n_bins = band.n_bins
    lo, hi = params.min_bins, min(params.max_bins, n_bins - ctx.window, band.max_diag - ctx.window)
    if target == 0 or lo > hi or len(pos_dist) == 0:
        ctx.drop("loops", "negative_shortfall", target)
        return _Samples.empty()
    kde = gaussian_kde(pos_dist.astype(np.float64)) if len(np.unique(pos_dist)) > 1 else None
    taken = excluded
    kept: list[_Samples] = []
    n_kept = 0
    half = ctx.window // 2
    for _ in range(_NEGATIVE_ROUNDS):
        need = target - n_kept
        if need <= 0:
            break
        distances = _draw_distances(rng, kde, pos_dist, max(2 * need, 32), lo, hi, n_bins)
        i, j = _pick_pixels(ctx, band, distances, rng, taken)
        if len(i) == 0:
            continue
        taken = np.union1d(taken, i * n_bins + j)
        order = rng.permutation(len(i))  # interleave distances so truncation keeps the mix
        cand = _Samples(i[order] - half, j[order] - half, np.zeros(len(i), dtype=np.float32))
        good = _screen(ctx, band, chrom, length, cand, "loops", check_peak=True, prefix="negative_")
        good = good.take(slice(0, need))
        kept.append(good)
        n_kept += len(good)
    ctx.drop("loops", "negative_shortfall", max(0, target - n_kept))
    if not kept:
        return _Samples.empty()
    return _Samples.concat(kept)


def _loop_samples(
    ctx: _Context,
    band: Any,
    chrom: str,
    length: int,
    loops: pd.DataFrame,
    params: _LoopParams,
    rng: np.random.Generator,
) -> _Samples:
    """Positives of one chromosome (dedup, distance range, filters) plus negatives, by position."""
    i, j = _loop_bins(loops, ctx.resolution)
    excluded = _exclusion_codes(i, j, params.exclusion_bins, band.n_bins)
    pairs = np.unique(np.stack([i, j], axis=1), axis=0) if len(i) else np.zeros((0, 2), np.int64)
    ctx.drop("loops", "duplicate", len(i) - len(pairs))
    dist = pairs[:, 1] - pairs[:, 0]
    in_range = (dist >= params.min_bins) & (dist <= params.max_bins)
    ctx.drop("loops", "out_of_range", int((~in_range).sum()))
    pairs, dist = pairs[in_range], dist[in_range]
    half = ctx.window // 2
    pos = _Samples(pairs[:, 0] - half, pairs[:, 1] - half, np.ones(len(pairs), dtype=np.float32))
    pos = _screen(ctx, band, chrom, length, pos, "loops", check_peak=True)
    target = round(params.negative_ratio * len(pos))
    neg = _negatives(ctx, band, chrom, length, excluded, dist, target, params, rng)
    return _Samples.concat([pos, neg]).sorted()


def _candidate_samples(
    ctx: _Context,
    band: Any,
    chrom: str,
    length: int,
    loops: pd.DataFrame,
    params: _LoopParams,
    seed: int,
) -> _Samples:
    """Hard examples for loop models: the genome-wide callers' candidates (HICCUPS-like donut
    enrichment maxima, :func:`hicmix.predict.loops.enrichment_mask`) within the loop distance
    range. Candidates within ``CANDIDATE_LABEL_RADIUS`` of a loop are positives, those farther
    than ``exclusion_bins`` negatives (``candidate_ratio`` per loop, drawn at random), the rest are
    dropped. Test-split candidates are not written: they exist only to train and select models."""
    from hicmix.predict.loops import PrefilterSettings, enrichment_mask, pixel_labels

    lo, hi = params.min_bins, min(params.max_bins, band.max_diag - 1)
    if lo > hi:
        return _Samples.empty()
    keep = enrichment_mask(band.values, lo, hi, PrefilterSettings("enrichment"))
    i, d = np.nonzero(keep.T)
    j = i + d + lo
    li, lj = _loop_bins(loops, ctx.resolution)
    truth = pd.DataFrame({"bin1": li, "bin2": lj})
    positive = pixel_labels(i, j, truth, CANDIDATE_LABEL_RADIUS)
    near = pixel_labels(i, j, truth, params.exclusion_bins) & ~positive
    ctx.drop("loop_candidates", "near_loop", int(near.sum()))
    negative = np.flatnonzero(~positive & ~near)
    in_range = (lj - li >= params.min_bins) & (lj - li <= params.max_bins)
    target = min(len(negative), round(params.candidate_ratio * int(in_range.sum())))
    rng = _chrom_rng(seed, chrom, CANDIDATE_STREAM)
    negative = np.sort(rng.choice(negative, size=target, replace=False))
    chosen = np.sort(np.concatenate([np.flatnonzero(positive), negative]))
    half = ctx.window // 2
    cand = _Samples(i[chosen] - half, j[chosen] - half, positive[chosen].astype(np.float32))
    samples = _screen(ctx, band, chrom, length, cand, "loop_candidates", check_peak=True)
    test = samples.split == "test"
    ctx.drop("loop_candidates", "test_split_not_written", int(test.sum()))
    return samples.take(~test).sorted()


# --------------------------------------------------------------------------------------------------
# genes


def read_genes(
    path: str | Path,
    chromsizes: Mapping[str, int],
    gene_id_column: str,
    tss_column: str,
    expression_column: str,
    strand_column: str | None = "strand",
) -> pd.DataFrame:
    """The gene table as (gene_id, chrom, tss, expression, strand) with normalised chromosome names.

    strand is +1 / -1 from '+' / '-' in ``strand_column``, 0 where that column is absent or holds
    anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: gene table not found; check the --genes path")
    try:
        table = pd.read_csv(path, sep="\t", dtype={gene_id_column: str, GENE_CHROM_COLUMN: str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise InputError(
            f"{path}: not a readable tab-separated gene table ({error}); fix the file"
        ) from None
    expected = [gene_id_column, GENE_CHROM_COLUMN, tss_column, expression_column]
    missing = [c for c in expected if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: gene table lacks column(s) {', '.join(missing)}; it needs "
            f"{', '.join(expected)} (set --gene-id-column, --tss-column, --expression-column)"
        )
    tss = pd.to_numeric(table[tss_column], errors="coerce")
    expression = pd.to_numeric(table[expression_column], errors="coerce")
    bad = tss.isna() | (tss < 0)
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise InputError(
            f"{path} line {line}: TSS is not a non-negative integer; fix the gene table"
        )
    genes = pd.DataFrame(
        {
            "gene_id": table[gene_id_column].astype(str).to_numpy(),
            "chrom": [normalize_chrom(c) for c in table[GENE_CHROM_COLUMN]],
            "tss": tss.astype(np.int64).to_numpy(),
            "expression": expression.astype(np.float32).to_numpy(),
            "strand": _strand_codes(table, strand_column),
        }
    )
    lengths = genes["chrom"].map(chromsizes)
    outside = lengths.notna() & (genes["tss"] >= lengths)
    if outside.any():
        row = genes[outside].iloc[0]
        raise InputError(
            f"{path}: TSS of {row.gene_id} at {row.chrom}:{row.tss} lies beyond the chromosome end "
            "in the Hi-C file; use a gene table of the same assembly"
        )
    return genes


def _strand_codes(table: pd.DataFrame, column: str | None) -> np.ndarray:
    if not column or column not in table.columns:
        return np.zeros(len(table), dtype=np.int64)
    codes = table[column].astype(str).str.strip().map(STRAND_CODES)
    return codes.fillna(0).to_numpy(np.int64)


# --------------------------------------------------------------------------------------------------
# writing


class _ShardWriter:
    """Appends samples of one (kind, split) to ``{split}-NNN.h5`` files of ``shard_size`` rows."""

    def __init__(
        self, folder: Path, split: str, shard_size: int, shapes: dict, attrs: dict
    ) -> None:
        self.folder, self.split, self.shard_size = folder, split, shard_size
        self.shapes, self.attrs = shapes, attrs
        self.number = -1
        self.handle: h5py.File | None = None
        self.rows = 0

    @property
    def name(self) -> str:
        return f"{self.split}-{self.number:03d}.h5"

    def _next(self) -> None:
        self.close()
        self.number += 1
        self.rows = 0
        self.handle = h5py.File(self.folder / self.name, "w")
        for key, value in self.attrs.items():
            self.handle.attrs[key] = value
        for key, (tail, dtype) in self.shapes.items():
            chunk_rows = 1 if tail else min(self.shard_size, 4096)
            self.handle.create_dataset(
                key,
                shape=(0, *tail),
                maxshape=(None, *tail),
                chunks=(chunk_rows, *tail),
                dtype=dtype,
                track_times=False,
                **_COMPRESSION,
            )

    def append(self, arrays: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
        """Write the rows; return the shard name and row of each."""
        n = len(next(iter(arrays.values())))
        names: list[str] = []
        rows = np.zeros(n, dtype=np.int64)
        done = 0
        while done < n:
            if self.handle is None or self.rows >= self.shard_size:
                self._next()
            take = min(n - done, self.shard_size - self.rows)
            for key, data in arrays.items():
                dataset = self.handle[key]
                dataset.resize(self.rows + take, axis=0)
                dataset[self.rows : self.rows + take] = data[done : done + take]
            names.extend([self.name] * take)
            rows[done : done + take] = np.arange(self.rows, self.rows + take)
            self.rows += take
            done += take
        return names, rows

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@dataclass
class _KindOutput:
    """Open shard writers and the index file of one kind."""

    kind: str
    folder: Path
    index: Any
    writers: dict[str, _ShardWriter] = field(default_factory=dict)
    n_samples: int = 0
    counts: Counter = field(default_factory=Counter)


def _format_float(x: float) -> str:
    return np.format_float_positional(np.float32(x), trim="0") if np.isfinite(x) else "nan"


def _write_samples(
    ctx: _Context,
    out: _KindOutput,
    band: Any,
    track_bins: np.ndarray,
    chrom: str,
    samples: _Samples,
    shard_size: int,
) -> None:
    """Cut, transform and append the kept samples of one chromosome, in order, with index rows."""
    w, p = ctx.window, ctx.positions
    for lo in range(0, len(samples), _BATCH):
        part = samples.take(slice(lo, lo + _BATCH))
        balanced = band.patches(part.start_x, part.start_y, w)
        hic, mask = _transform_patches(ctx, balanced, part.start_x, part.start_y)
        tracks = _cut_tracks(track_bins, part.start_x * p, part.start_y * p, w * p)
        bins = np.stack([part.start_x, part.start_y], axis=1) + w // 2
        arrays = {
            "hic": hic,
            "hic_mask": mask,
            "tracks": tracks,
            "bins": bins.astype(np.int64),
            "distance": (bins[:, 1] - bins[:, 0]).astype(np.int64),
            "label": part.label.astype(np.float32),
        }
        if out.kind == "tss":
            arrays.update({k: part.tss[k].astype(np.int64) for k in TSS_FIELDS})
        shard = np.zeros(len(part), dtype=object)
        row = np.zeros(len(part), dtype=np.int64)
        for split in SPLITS:
            sel = np.flatnonzero(part.split == split)
            if len(sel) == 0:
                continue
            writer = out.writers.get(split)
            if writer is None:
                writer = out.writers[split] = _ShardWriter(
                    out.folder,
                    split,
                    shard_size,
                    _shard_shapes(ctx, out.kind),
                    _shard_attrs(ctx, out.kind, split),
                )
            whole = len(sel) == len(part)  # the usual case: no copy
            names, where = writer.append(
                arrays if whole else {k: v[sel] for k, v in arrays.items()}
            )
            shard[sel] = names
            row[sel] = where
            out.counts[split] += len(sel)
        _write_index_rows(ctx, out, chrom, part, bins, shard, row)


def _cut_tracks(
    track_bins: np.ndarray, starts_x: np.ndarray, starts_y: np.ndarray, length: int
) -> np.ndarray:
    """(N, C, 2 * length): the row-anchor then column-anchor positions of every channel."""
    offsets = np.arange(length)
    out = np.empty((len(starts_x), track_bins.shape[0], 2 * length), dtype=np.float32)
    for c, channel in enumerate(track_bins):
        out[:, c, :length] = channel[starts_x[:, None] + offsets]
        out[:, c, length:] = channel[starts_y[:, None] + offsets]
    return out


def _write_index_rows(
    ctx: _Context,
    out: _KindOutput,
    chrom: str,
    part: _Samples,
    bins: np.ndarray,
    shard: np.ndarray,
    row: np.ndarray,
) -> None:
    res = ctx.resolution
    lines = []
    for k in range(len(part)):
        fields = [
            out.n_samples + k,
            out.kind,
            ctx.cell_line,
            chrom,
            bins[k, 0],
            bins[k, 1],
            part.start_x[k] * res,
            part.start_y[k] * res,
            bins[k, 1] - bins[k, 0],
            part.split[k],
            shard[k],
            row[k],
        ]
        if out.kind in ("loops", "loop_candidates"):
            fields.append(int(part.label[k]))
        elif out.kind == "tss":
            fields += [part.gene_id[k], _format_float(part.label[k])]
            fields += [int(part.tss[name][k]) for name in TSS_FIELDS]
        lines.append("\t".join(map(str, fields)) + "\n")
    out.index.writelines(lines)
    out.n_samples += len(part)


def _transform_patches(
    ctx: _Context, balanced: np.ndarray, start_x: np.ndarray, start_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Transformed patches with masked (NaN) pixels set to 0, and the uint8 mask (1 = valid)."""
    if ctx.hic_transform == "log1p_oe":
        expected = expected_for_patches(ctx.expected, start_x, start_y, ctx.window)
        values = transform_hic("log1p_oe", balanced, expected=expected)
    else:
        values = transform_hic(ctx.hic_transform, balanced, clip=ctx.hic_clip, scale=ctx.hic_scale)
    mask = np.isfinite(values)
    return np.where(mask, values, 0).astype(np.float32), mask.astype(np.uint8)


def _shard_shapes(ctx: _Context, kind: str) -> dict[str, tuple[tuple[int, ...], str]]:
    w, c, length = ctx.window, len(ctx.channels), 2 * ctx.window * ctx.positions
    tss = {name: ((), "int64") for name in TSS_FIELDS} if kind == "tss" else {}
    return {
        "hic": ((w, w), "float32"),
        "hic_mask": ((w, w), "uint8"),
        "tracks": ((c, length), "float32"),
        "bins": ((2,), "int64"),
        "distance": ((), "int64"),
        "label": ((), "float32"),
        **tss,
    }


def _geometry(ctx: _Context) -> dict[str, Any]:
    return {
        "format_version": TILE_FORMAT_VERSION,
        "resolution": ctx.resolution,
        "window_bins": ctx.window,
        "subbin_bp": ctx.resolution // ctx.positions,
        "positions_per_bin": ctx.positions,
        "channels": list(ctx.channels),
        "hic_transform": ctx.hic_transform,
        "hic_clip": float(ctx.hic_clip),
        "track_transform": ctx.track_transform,
    }


def _shard_attrs(ctx: _Context, kind: str, split: str) -> dict[str, Any]:
    attrs = _geometry(ctx)
    attrs.update(cell_line=ctx.cell_line, hic_scale=float(ctx.hic_scale), kind=kind, split=split)
    return attrs


def _read_track_bins(ctx: _Context, chrom: str, length: int, n_bins: int) -> np.ndarray:
    """(C, n_bins * P) transformed sub-bin means of every channel; positions past the end are 0."""
    subbin = ctx.resolution // ctx.positions
    out = np.zeros((len(ctx.track_paths), n_bins * ctx.positions), dtype=np.float32)
    for c, path in enumerate(ctx.track_paths):
        values = _tracks().read_subbins(path, chrom, length, subbin)
        out[c, : len(values)] = values[: out.shape[1]]
    return transform_tracks(ctx.track_transform, out)


# --------------------------------------------------------------------------------------------------
# entry point


def _size(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    path = Path(path)
    local = Path(str(path).split("::")[0])
    return {"path": str(path), "size_bytes": local.stat().st_size if local.is_file() else None}


def _open_hic(path: str | Path) -> tuple[Any, int]:
    """The balanced cooler and its resolution (.cool, or 'file.mcool::resolutions/N')."""
    clr = _hic().open_hic(path)
    return clr, int(clr.binsize)


def _default_chromosomes(sizes: Mapping[str, int]) -> list[str]:
    return [c for c in sizes if c != "chrM" and "_" not in c and not c.startswith("chrUn")]


def _check_params(window: int, stride: int, resolution: int, subbin_bp: int, **more: Any) -> None:
    if window < 2:
        raise ConfigError(f"window_bins is {window}; set it to at least 2 (MIX-HIC uses 50)")
    if stride < 1:
        raise ConfigError(f"stride_bins is {stride}; set it to a positive number of bins")
    if subbin_bp < 1 or resolution % subbin_bp:
        raise ConfigError(
            f"subbin_bp {subbin_bp} does not divide the Hi-C resolution {resolution}; choose a "
            "divisor (resolution / 50 keeps P = 50)"
        )
    if not 0 <= more["min_nonzero"] <= 1:
        raise ConfigError(f"min_nonzero is {more['min_nonzero']}; set a fraction in [0, 1]")
    if more["shard_size"] < 1:
        raise ConfigError(
            f"shard_size is {more['shard_size']}; set it to a positive number of samples"
        )
    if more["negative_ratio"] < 0 or more["exclusion_bins"] < 0 or more["candidate_ratio"] < 0:
        raise ConfigError(
            "negative_ratio, candidate_ratio and exclusion_bins must not be negative; fix the "
            "tiles config"
        )
    if more["loop_min_bp"] > more["loop_max_bp"]:
        raise ConfigError("loop_min_bp is above loop_max_bp; swap them in the tiles config")
    if not more["channels"]:
        raise ConfigError("no tracks given; pass at least one --track NAME=PATH")


def tile_cell_line(
    *,
    cell_line: str,
    hic: str | Path,
    tracks: Mapping[str, str | Path],
    out: str | Path,
    assembly: str | None = None,
    weight: str | None = "weight",
    expected: str | Path | None = None,
    loops: str | Path | None = None,
    genes: str | Path | None = None,
    gene_id_column: str = "gene_id",
    tss_column: str = "tss",
    strand_column: str | None = "strand",
    expression_column: str | None = None,
    chromosomes: Sequence[str] | None = None,
    splits: SplitSpec | Mapping[str, Iterable[str] | str] | None = None,
    window_bins: int = 50,
    stride_bins: int = 10,
    max_offdiag_bp: int = 0,
    subbin_bp: int = 200,
    hic_transform: str = "clip_scale",
    hic_clip: float = 255.0,
    track_transform: str = "log2p1",
    min_nonzero: float = 0.1,
    loop_min_bp: int = 20_000,
    loop_max_bp: int = 2_000_000,
    negative_ratio: float = 1.0,
    exclusion_bins: int = 2,
    candidate_ratio: float = 0.0,
    shard_size: int = 1024,
    seed: int = 0,
    kinds: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tile one cell line into ``out`` (tile contract folder, complete or absent); return manifest.

    ``tracks`` maps channel names to bigWig paths, in channel order. ``kinds`` defaults to pretrain,
    plus loops when ``loops`` is given and tss when ``genes`` is given. ``expression_column``
    defaults to ``cell_line``; ``strand_column`` ('+' / '-') is optional (strand 0 without it).
    """
    check_hic_transform(hic_transform)
    check_track_transform(track_transform)
    spec = splits if isinstance(splits, SplitSpec) else SplitSpec.from_mapping(splits)
    kinds = _resolve_kinds(kinds, loops, genes, candidate_ratio)
    clr, resolution = _open_hic(hic)
    channels = list(tracks)
    _check_params(
        window_bins,
        stride_bins,
        resolution,
        subbin_bp,
        min_nonzero=min_nonzero,
        shard_size=shard_size,
        negative_ratio=negative_ratio,
        exclusion_bins=exclusion_bins,
        candidate_ratio=candidate_ratio,
        loop_min_bp=loop_min_bp,
        loop_max_bp=loop_max_bp,
        channels=channels,
    )
    hic_sizes = _hic().cooler_chromsizes(clr)
    chroms = _select_chromosomes(hic_sizes, chromosomes, hic)
    _check_inputs(hic, hic_sizes, tracks, chroms, assembly)

    loop_params = _LoopParams(
        min_bins=math.ceil(loop_min_bp / resolution),
        max_bins=loop_max_bp // resolution,
        negative_ratio=negative_ratio,
        exclusion_bins=exclusion_bins,
        candidate_ratio=candidate_ratio,
    )
    max_offdiag_bins = (max_offdiag_bp // resolution) if "pretrain" in kinds else 0
    max_diag = window_bins + max_offdiag_bins
    if "loops" in kinds or "loop_candidates" in kinds:
        max_diag = max(max_diag, loop_params.max_bins + window_bins)

    ctx = _Context(
        cell_line=cell_line,
        clr=clr,
        resolution=resolution,
        weight=weight,
        window=window_bins,
        positions=resolution // subbin_bp,
        channels=channels,
        track_paths=[str(tracks[c]) for c in channels],
        spec=spec,
        hic_transform=hic_transform,
        hic_clip=float(hic_clip),
        hic_scale=float(_hic().balance_scale(clr, weight)) if weight else 1.0,
        expected=None,
        track_transform=track_transform,
        min_nonzero=float(min_nonzero),
        max_diag=max_diag,
    )
    if hic_transform == "log1p_oe":
        ctx.expected = _training_expected(expected, hic_sizes, chroms, spec, max_diag)

    loop_table = gene_table = None
    if "loops" in kinds or "loop_candidates" in kinds:
        loop_table, skipped = read_loops(loops, hic_sizes)
        for reason, n in skipped.items():
            ctx.drop("loops", reason, n)
        not_tiled = ~loop_table["chrom"].isin(chroms)
        ctx.drop("loops", "chromosome_not_tiled", int(not_tiled.sum()))
    if "tss" in kinds:
        gene_table = read_genes(
            genes,
            hic_sizes,
            gene_id_column,
            tss_column,
            expression_column or cell_line,
            strand_column,
        )
        ctx.drop("tss", "chromosome_not_tiled", int((~gene_table["chrom"].isin(chroms)).sum()))
        missing = gene_table["expression"].isna() & gene_table["chrom"].isin(chroms)
        ctx.drop("tss", "missing_label", int(missing.sum()))
        gene_table = gene_table[~gene_table["expression"].isna()]

    with atomic_dir(out) as tmp, ExitStack() as stack:
        outputs = {}
        for kind in kinds:
            folder = tmp / kind
            folder.mkdir()
            index = stack.enter_context(open(folder / "index.tsv", "w"))
            index.write("\t".join([*INDEX_COLUMNS, *LABEL_COLUMNS[kind]]) + "\n")
            outputs[kind] = _KindOutput(kind, folder, index)
        bar = tqdm(chroms, desc=f"tiles {cell_line}", unit="chrom", disable=not progress)
        for chrom in bar:
            bar.set_postfix_str(chrom)
            _tile_chromosome(
                ctx,
                chrom,
                hic_sizes[chrom],
                outputs,
                stride_bins,
                max_offdiag_bins,
                loop_table,
                gene_table,
                loop_params,
                seed,
                shard_size,
            )
        for output in outputs.values():
            for writer in output.writers.values():
                writer.close()
            output.index.close()
        manifest = _manifest(
            ctx,
            outputs,
            assembly=assembly,
            chroms=chroms,
            seed=seed,
            inputs={
                "hic": hic,
                "expected": expected,
                "loops": loops if loop_table is not None else None,
                "genes": genes if "tss" in kinds else None,
            },
            tracks=tracks,
            options={
                "weight": weight,
                "stride_bins": stride_bins,
                "max_offdiag_bp": max_offdiag_bp,
                "min_nonzero": min_nonzero,
                "loop_min_bp": loop_min_bp,
                "loop_max_bp": loop_max_bp,
                "negative_ratio": negative_ratio,
                "exclusion_bins": exclusion_bins,
                "candidate_ratio": candidate_ratio,
                "shard_size": shard_size,
                "expression_column": (expression_column or cell_line) if "tss" in kinds else None,
                "strand_column": strand_column if "tss" in kinds else None,
            },
        )
        with atomic_path(tmp / "manifest.json") as path:
            path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def _resolve_kinds(
    kinds: Sequence[str] | None, loops: Any, genes: Any, candidate_ratio: float = 0.0
) -> list[str]:
    if kinds is None:
        loop_kinds = ["loops"] + (["loop_candidates"] if candidate_ratio > 0 else [])
        kinds = ["pretrain"] + (loop_kinds if loops else []) + (["tss"] if genes else [])
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"unknown tile kind(s) {unknown}; choose from {', '.join(KINDS)}")
    for kind in ("loops", "loop_candidates"):
        if kind in kinds and not loops:
            raise ConfigError(f"{kind} tiles need a loops BEDPE; pass --loops")
    if "tss" in kinds and not genes:
        raise ConfigError("tss tiles need a gene table; pass --genes")
    return [k for k in KINDS if k in kinds]


def _select_chromosomes(
    hic_sizes: Mapping[str, int], chromosomes: Sequence[str] | None, hic: Any
) -> list[str]:
    """Requested chromosomes (or all but chrM/contigs) in the Hi-C file's order."""
    if chromosomes is None:
        return _default_chromosomes(hic_sizes)
    wanted = [normalize_chrom(c) for c in chromosomes]
    for chrom in wanted:
        require_chrom(hic_sizes, chrom, str(hic))
    return [c for c in hic_sizes if c in set(wanted)]


def _check_inputs(
    hic: Any,
    hic_sizes: Mapping[str, int],
    tracks: Mapping[str, Any],
    chroms: list[str],
    assembly: Any,
) -> None:
    from hicmix.genome import assembly_chromsizes

    if assembly:
        reference = assembly_chromsizes(assembly)
        if reference is not None:
            check_chromsizes(reference, hic_sizes, f"assembly {assembly}", hic, chroms)
    for name, path in tracks.items():
        if not Path(path).is_file():
            raise InputError(f"{path}: bigWig for track {name} not found; fix the --track path")
        check_chromsizes(hic_sizes, _tracks().bigwig_chromsizes(path), hic, path, chroms)


def _training_expected(
    expected: Any, hic_sizes: Mapping[str, int], chroms: list[str], spec: SplitSpec, max_diag: int
) -> np.ndarray:
    """Expected balanced contact per diagonal over the chromosomes wholly in the training split."""
    if expected is None:
        raise ConfigError(
            "hic_transform log1p_oe needs --expected (the .expected.tsv of hicmix balance)"
        )
    train = [c for c in chroms if spec.split_of(c, 0, hic_sizes[c]) == "train"]
    if not train:
        raise ConfigError(
            "hic_transform log1p_oe needs at least one training chromosome for the expected curve; "
            "tile more chromosomes or shrink the val/test split"
        )
    return np.asarray(_hic().read_expected(expected, train, max_diag), dtype=np.float32)


def _tile_chromosome(
    ctx: _Context,
    chrom: str,
    length: int,
    outputs: dict[str, _KindOutput],
    stride_bins: int,
    max_offdiag_bins: int,
    loop_table: pd.DataFrame | None,
    gene_table: pd.DataFrame | None,
    loop_params: _LoopParams,
    seed: int,
    shard_size: int,
) -> None:
    band = _hic().read_band(ctx.clr, chrom, ctx.max_diag, weight=ctx.weight)
    n_bins = band.n_bins
    track_bins = _read_track_bins(ctx, chrom, length, n_bins)
    rng = _chrom_rng(seed, chrom)
    for kind, output in outputs.items():
        if kind == "pretrain":
            cand = _pretrain_samples(ctx, n_bins, stride_bins, max_offdiag_bins)
            samples = _screen(ctx, band, chrom, length, cand, kind, check_peak=False)
        elif kind == "loops":
            mine = loop_table[loop_table["chrom"] == chrom]
            samples = _loop_samples(ctx, band, chrom, length, mine, loop_params, rng)
        elif kind == "loop_candidates":
            mine = loop_table[loop_table["chrom"] == chrom]
            samples = _candidate_samples(ctx, band, chrom, length, mine, loop_params, seed)
        else:
            cand = _tss_samples(ctx, gene_table[gene_table["chrom"] == chrom])
            samples = _screen(ctx, band, chrom, length, cand, kind, check_peak=False)
        _write_samples(ctx, output, band, track_bins, chrom, samples, shard_size)


def _manifest(
    ctx: _Context,
    outputs: dict[str, _KindOutput],
    *,
    assembly: str | None,
    chroms: list[str],
    seed: int,
    inputs: dict[str, Any],
    tracks: Mapping[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format_version": TILE_FORMAT_VERSION,
        "hicmix_version": __version__,
        "cell_line": ctx.cell_line,
        "assembly": assembly,
    }
    manifest.update(_geometry(ctx))
    manifest.update(
        {
            "hic_scale": ctx.hic_scale,
            "hic_expected": None if inputs["expected"] is None else str(inputs["expected"]),
            "splits": ctx.spec.to_mapping(),
            "chromosomes": chroms,
            "seed": int(seed),
            "kinds": list(outputs),
            "counts": {k: {s: int(o.counts[s]) for s in SPLITS} for k, o in outputs.items()},
            "dropped": {k: dict(sorted(ctx.dropped.get(k, Counter()).items())) for k in outputs},
            "options": options,
            "hic_file": str(inputs["hic"]),
            "track_files": {name: str(path) for name, path in tracks.items()},
            "inputs": {
                **{role: _size(path) for role, path in inputs.items() if path is not None},
                "tracks": {name: _size(path) for name, path in tracks.items()},
            },
        }
    )
    return manifest


# --------------------------------------------------------------------------------------------------
# reading


def load_manifest(tile_dir: str | Path) -> dict[str, Any]:
    """The manifest of a tile folder; InputError if incomplete or of another format version."""
    tile_dir = Path(tile_dir)
    path = tile_dir / "manifest.json"
    if not path.is_file():
        raise InputError(
            f"{tile_dir}: incomplete tiles, rerun hicmix tiles (manifest.json is missing)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{path}: unreadable manifest, rerun hicmix tiles") from None
    version = manifest.get("format_version")
    if version != TILE_FORMAT_VERSION:
        raise InputError(
            f"{tile_dir}: tiles have format version {version} but this hicmix reads version "
            f"{TILE_FORMAT_VERSION}; rerun hicmix tiles"
        )
    return manifest


def _compat(manifest: dict[str, Any]) -> dict[str, Any]:
    fields = {k: manifest.get(k) for k in COMPAT_FIELDS}
    if fields["hic_transform"] != "clip_scale":
        fields.pop("hic_clip")
    return fields


class TileDataset(torch.utils.data.Dataset):
    """Samples of one kind and some splits from one or more tile folders, read lazily from shards.

    Each item is a dict: ``hic`` (1, W, W) float32, ``hic_mask`` (1, W, W) float32 (1 = valid
    pixel), ``tracks`` (C, 2·W·P) float32, ``label`` () float32, ``distance`` () int64, ``bins``
    (2,) int64, ``sample`` (the item's position in this dataset), and for the TSS: ``tss_offset``
    () int64 (bp within the centre bin), ``strand`` () int64 (+1 / -1, 0 = unknown) and
    ``tss_position`` () int64 (its sub-bin in the row-anchor track half, (W//2)·P + offset //
    sub-bin); these are 0 (position: the centre bin's first sub-bin) for other kinds and older
    tiles. ``index`` holds the index rows.
    HDF5 files are opened on first use in each process (so DataLoader workers never share a handle).
    """

    def __init__(
        self, tile_dirs: str | Path | Sequence[str | Path], kind: str, splits: str | Sequence[str]
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"unknown tile kind {kind!r}; choose from {', '.join(KINDS)}")
        dirs = (
            [Path(tile_dirs)] if isinstance(tile_dirs, str | Path) else [Path(d) for d in tile_dirs]
        )
        if not dirs:
            raise ConfigError("TileDataset needs at least one tile folder")
        splits = [splits] if isinstance(splits, str) else list(splits)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ConfigError(f"unknown split(s) {unknown}; choose from {', '.join(SPLITS)}")
        self.tile_dirs = dirs
        self.kind = kind
        self.splits = splits
        self.manifests = [load_manifest(d) for d in dirs]
        self._check_compatible()
        frames = []
        for number, folder in enumerate(dirs):
            frames.append(self._read_index(folder, number))
        self.index = pd.concat(frames, ignore_index=True)
        shard_keys = list(
            dict.fromkeys(zip(self.index["tile_dir"], self.index["shard"], strict=True))
        )
        self._shard_paths = [str(dirs[d] / kind / s) for d, s in shard_keys]
        lookup = {key: number for number, key in enumerate(shard_keys)}
        self._shard_of = np.array(
            [lookup[key] for key in zip(self.index["tile_dir"], self.index["shard"], strict=True)],
            dtype=np.int64,
        )
        self._row_of = self.index["row"].to_numpy(np.int64)
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    def _check_compatible(self) -> None:
        first = _compat(self.manifests[0])
        for folder, manifest in zip(self.tile_dirs[1:], self.manifests[1:], strict=True):
            other = _compat(manifest)
            for key in COMPAT_FIELDS:
                if first.get(key) != other.get(key):
                    raise InputError(
                        f"tile folders {self.tile_dirs[0]} and {folder} differ in {key} "
                        f"({first.get(key)!r} vs {other.get(key)!r}); retile them with the same "
                        "settings"
                    )

    def _read_index(self, folder: Path, number: int) -> pd.DataFrame:
        path = folder / self.kind / "index.tsv"
        if not path.is_file():
            raise InputError(
                f"{folder}: no {self.kind} tiles (missing {self.kind}/index.tsv); rerun hicmix "
                f"tiles with the inputs for {self.kind}"
            )
        index = pd.read_csv(path, sep="\t", dtype={"gene_id": str, "chrom": str})
        index = index[index["split"].isin(self.splits)].copy()
        index.insert(0, "tile_dir", number)
        return index

    @property
    def geometry(self) -> dict[str, Any]:
        """W, P, C, channel names, transforms (and resolution, sub-bin, tile format version)."""
        m = self.manifests[0]
        return {
            "W": int(m["window_bins"]),
            "P": int(m["positions_per_bin"]),
            "C": len(m["channels"]),
            "channels": list(m["channels"]),
            "transforms": {
                "hic": m["hic_transform"],
                "hic_clip": m["hic_clip"],
                "track": m["track_transform"],
            },
            "resolution": int(m["resolution"]),
            "subbin_bp": int(m["subbin_bp"]),
            "format_version": int(m["format_version"]),
        }

    def __len__(self) -> int:
        return len(self._row_of)

    def _file(self, shard: int) -> h5py.File:
        if os.getpid() != self._pid:  # forked worker: never reuse the parent's handles
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = h5py.File(self._shard_paths[shard], "r")
        return handle

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"sample {item} out of range for {len(self)} samples")
        item = int(item) % len(self)
        handle = self._file(int(self._shard_of[item]))
        row = int(self._row_of[item])
        return {
            "hic": torch.from_numpy(handle["hic"][row][None]),
            "hic_mask": torch.from_numpy(handle["hic_mask"][row][None].astype(np.float32)),
            "tracks": torch.from_numpy(handle["tracks"][row]),
            "label": torch.tensor(float(handle["label"][row]), dtype=torch.float32),
            "distance": torch.tensor(int(handle["distance"][row]), dtype=torch.int64),
            "bins": torch.from_numpy(handle["bins"][row].astype(np.int64)),
            "sample": item,
            **self._tss_fields(handle, row),
        }

    def _tss_fields(self, handle: h5py.File, row: int) -> dict[str, torch.Tensor]:
        values = {k: int(handle[k][row]) if k in handle else 0 for k in TSS_FIELDS}
        m = self.manifests[0]
        centre = int(m["window_bins"]) // 2 * int(m["positions_per_bin"])
        values["tss_position"] = centre + values["tss_offset"] // int(m["subbin_bp"])
        return {k: torch.tensor(v, dtype=torch.int64) for k, v in values.items()}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def close(self) -> None:
        """Close the HDF5 handles of this process."""
        for handle in self._handles.values():
            handle.close()
        self._handles = {}
