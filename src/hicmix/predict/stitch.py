"""Whole-chromosome contact maps stitched from overlapping diagonal windows, written as .mcool.

Windows of W bins start every ``stride`` bins (plus one flush with the chromosome end). Each pixel's
value is the weighted mean of the windows that contain it; by default the weight falls linearly
towards the window edges (``1 + distance to the nearest window edge``), so a pixel counts most from
the windows where it has the most context and the stitched map has no steps where a window starts
or ends (``taper=False`` gives the plain mean). A pixel at diagonal d lies in a window at every
start s with s <= i <= s + W - 1 - d, so diagonals d <= W - stride are covered everywhere: that is
the stored band (``band_depth``). Memory: a (W, n) sum and weight per chromosome, never n x n.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError

log = logging.getLogger(__name__)

#: Coarser .mcool levels, as multiples of the base resolution.
ZOOM_FACTORS = (2, 4, 8, 16)
#: Rows (bins) of the band turned into pixel records at once.
_PIXEL_ROWS = 20_000
#: Pixels read and written at once when adding the inverse column.
_PIXEL_CHUNK = 4_000_000


def window_starts(n_bins: int, window: int, stride: int) -> np.ndarray:
    """Start bins 0, stride, 2·stride, ... of the diagonal windows, plus n - W when not on the
    grid; empty when the chromosome is shorter than one window."""
    if n_bins < window:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(0, n_bins - window + 1, stride, dtype=np.int64)
    if starts[-1] != n_bins - window:
        starts = np.append(starts, n_bins - window)
    return starts


def band_depth(window: int, stride: int) -> int:
    """Diagonals covered by a window everywhere along the chromosome: 0 … W - stride."""
    return window - stride + 1


def check_stride(window: int, stride: int) -> None:
    if not 1 <= stride < window:
        raise ConfigError(
            f"stride_bins {stride} must be between 1 and window_bins - 1 = {window - 1} so that "
            "windows overlap; the default is W // 4"
        )


def pixel_weights(window: int, taper: bool = True) -> np.ndarray:
    """(W, W) weight of each window pixel in the stitched mean (1 + distance to the window edge)."""
    if not taper:
        return np.ones((window, window), dtype=np.float64)
    k = np.arange(window)
    edge = np.minimum(k, window - 1 - k)
    return (np.minimum(edge[:, None], edge[None, :]) + 1).astype(np.float64)


class BandAccumulator:
    """Weighted sums of window predictions on a (W, n) band: ``sum[d, i]`` for pixel (i, i + d)."""

    def __init__(self, n_bins: int, window: int, taper: bool = True) -> None:
        self.n_bins, self.window = n_bins, window
        self.total = np.zeros((window, n_bins), dtype=np.float64)
        self.weight = np.zeros((window, n_bins), dtype=np.float64)
        rows, cols = np.triu_indices(window)
        self._rows, self._diag = rows, cols - rows
        self._w = pixel_weights(window, taper)[rows, cols]
        self._pixels = (rows, cols)

    def add(self, starts: np.ndarray, windows: np.ndarray) -> None:
        """Add (B, W, W) window maps starting at ``starts`` (B,) on the diagonal (symmetrised)."""
        starts = np.asarray(starts, dtype=np.int64)
        sym = 0.5 * (windows + windows.transpose(0, 2, 1))
        values = sym[:, self._pixels[0], self._pixels[1]].astype(np.float64)  # (B, K)
        lo = int(starts.min())
        span = int(starts.max()) + self.window - lo
        flat = self._diag[None, :] * span + (starts[:, None] - lo + self._rows[None, :])
        size = self.window * span
        total = np.bincount(flat.ravel(), weights=(values * self._w).ravel(), minlength=size)
        weight = np.bincount(flat.ravel(), weights=np.tile(self._w, len(starts)), minlength=size)
        self.total[:, lo : lo + span] += total.reshape(self.window, span)
        self.weight[:, lo : lo + span] += weight.reshape(self.window, span)

    def mean(self, depth: int) -> np.ndarray:
        """float32 (depth, n) stitched band; NaN where no window covers a pixel or past the end."""
        with np.errstate(invalid="ignore", divide="ignore"):
            band = np.where(self.weight > 0, self.total / self.weight, np.nan)[:depth]
        return band.astype(np.float32)


def signal_bins(track_bins: np.ndarray, positions: int, min_gap_bins: int = 1) -> np.ndarray:
    """bool (n,): False in assembly gaps, runs of at least ``min_gap_bins`` bins where no channel
    has signal. Shorter signal-free runs are valid (sparse peak tracks leave many single bins
    without any peak; the model reads their zeros as it did in training)."""
    c, length = track_bins.shape
    per_bin = track_bins.reshape(c, length // positions, positions)
    signal = np.any(per_bin != 0, axis=(0, 2))
    if min_gap_bins <= 1:
        return signal
    edges = np.diff(np.concatenate([[1], signal.astype(np.int8), [1]]))
    valid = signal.copy()
    for start, stop in zip(np.flatnonzero(edges == -1), np.flatnonzero(edges == 1), strict=True):
        if stop - start < min_gap_bins:
            valid[start:stop] = True
    return valid


def predict_map_band(
    runner: Callable[..., dict[str, np.ndarray]],
    track_bins: np.ndarray,
    n_bins: int,
    window: int,
    positions: int,
    stride: int,
    batch_size: int,
    *,
    taper: bool = True,
    progress: bool = False,
    desc: str = "map",
) -> np.ndarray:
    """Stitched float32 (band_depth, n) map of one chromosome from a hicmap model's windows."""
    check_stride(window, stride)
    starts = window_starts(n_bins, window, stride)
    acc = BandAccumulator(n_bins, window, taper)
    bar = tqdm(
        total=len(starts), desc=desc, unit="win", disable=not progress, file=sys.stderr, leave=False
    )
    for lo in range(0, len(starts), batch_size):
        part = starts[lo : lo + batch_size]
        tracks = _cut(track_bins, part, window, positions)
        out = runner(tracks, np.zeros(len(part), dtype=np.int64))
        acc.add(part, out["map"][:, 0])
        bar.update(len(part))
    bar.close()
    return acc.mean(band_depth(window, stride))


def _cut(track_bins: np.ndarray, starts: np.ndarray, window: int, positions: int) -> np.ndarray:
    from hicmix.predict.models import cut_tracks

    return cut_tracks(track_bins, starts, starts, window, positions)


# --------------------------------------------------------------------------------------------------
# .mcool


def inverse_transform(
    transform: str, clip: float | None, scale: float | None
) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """(column name, function) turning model-space values back: clip_scale → ``balanced`` =
    value · clip / scale; log1p_oe → ``oe`` = exp(value) - 1 (observed / expected)."""
    if transform == "clip_scale" and clip is not None:
        factor = float(clip) / float(scale or 1.0)
        return "balanced", lambda v: v * np.float32(factor)
    if transform == "log1p_oe":
        return "oe", np.expm1
    return None


def _band_pixels(
    band: np.ndarray,
    offset: int,
    valid: np.ndarray | None,
) -> Iterator[pd.DataFrame]:
    """Upper-triangle pixel records of one chromosome's band, sorted by bin1 then bin2."""
    depth, n = band.shape
    diag = np.arange(depth)[None, :]
    for lo in range(0, n, _PIXEL_ROWS):
        hi = min(n, lo + _PIXEL_ROWS)
        values = band[:, lo:hi].T  # (rows, depth): values[r, d] = M[lo + r, lo + r + d]
        i = np.arange(lo, hi)[:, None] + np.zeros_like(diag)
        j = i + diag
        keep = np.isfinite(values) & (j < n)
        if valid is not None:
            keep &= valid[i] & valid[np.minimum(j, n - 1)]
        count = values[keep].astype(np.float32)
        yield pd.DataFrame(
            {"bin1_id": i[keep] + offset, "bin2_id": j[keep] + offset, "count": count}
        )


def _add_inverse_column(
    path: Path, group: str, name: str, function: Callable[[np.ndarray], np.ndarray]
) -> None:
    """Pixel column ``name`` = function(count), written chunk by chunk next to ``count``."""
    import h5py

    with h5py.File(path, "r+") as handle:
        pixels = handle[group]["pixels"]
        count = pixels["count"]
        out = pixels.create_dataset(
            name, shape=count.shape, dtype="float32", compression="gzip", compression_opts=6
        )
        for lo in range(0, count.shape[0], _PIXEL_CHUNK):
            out[lo : lo + _PIXEL_CHUNK] = function(count[lo : lo + _PIXEL_CHUNK]).astype(np.float32)


def _coarse_weight(weight: np.ndarray, n_per_chrom: list[int], factor: int) -> np.ndarray:
    """Weight of coarse bins: 1 when any of their fine bins has weight 1, else NaN."""
    parts, lo = [], 0
    for n in n_per_chrom:
        ok = np.isfinite(weight[lo : lo + n])
        pad = (-n) % factor
        ok = np.pad(ok, (0, pad)).reshape(-1, factor).any(axis=1)
        parts.append(np.where(ok, 1.0, np.nan))
        lo += n
    return np.concatenate(parts) if parts else np.zeros(0)


def write_mcool(
    path: str | Path,
    bands: Mapping[str, np.ndarray],
    chromsizes: Mapping[str, int],
    resolution: int,
    *,
    valid_bins: Mapping[str, np.ndarray] | None = None,
    inverse: tuple[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    assembly: str | None = None,
    zoom_factors: tuple[int, ...] = ZOOM_FACTORS,
) -> Path:
    """Write predicted bands as a multi-resolution .mcool (atomically).

    ``bands[chrom]`` is (depth, n) with ``[d, i] = M[i, i + d]``, NaN = not predicted. Every
    chromosome of ``chromsizes`` gets bins (so genome coordinates match other tracks); only those
    in ``bands`` get pixels. Pixel column ``count`` (float32) holds the values as given (the
    model's transform space); ``inverse`` = (name, function) adds a column computed from ``count``
    at every resolution (exact for a linear inverse; cooler's coarsening keeps a single column).
    The ``weight`` column is 1 for bins of predicted chromosomes (NaN for others and where
    ``valid_bins`` is False), so ``balance=True`` in cooler/cooltools/HiGlass returns ``count``
    unchanged. Coarser levels (``zoom_factors`` × resolution) come from ``cooler.zoomify_cooler``
    with the MEAN of the stored finer pixels (a partly filled block at the band edge is not
    dimmed).
    """
    import cooler

    path = Path(path)
    sizes = pd.Series({c: int(v) for c, v in chromsizes.items()}, dtype=np.int64)
    bins = cooler.binnify(sizes, resolution)
    n_per_chrom = [-(-int(v) // resolution) for v in sizes]
    offsets = dict(zip(sizes.index, np.cumsum([0, *n_per_chrom[:-1]]), strict=True))
    weight = np.full(len(bins), np.nan)
    for chrom, band in bands.items():
        lo, n = int(offsets[chrom]), band.shape[1]
        ok = np.ones(n, dtype=bool) if valid_bins is None else np.asarray(valid_bins[chrom])
        weight[lo : lo + n] = np.where(ok, 1.0, np.nan)
    bins["weight"] = weight
    dtypes = {"count": "float32"}

    def pixels() -> Iterator[pd.DataFrame]:
        for chrom in sizes.index:
            if chrom in bands:
                valid = None if valid_bins is None else np.asarray(valid_bins[chrom])
                yield from _band_pixels(bands[chrom], int(offsets[chrom]), valid)

    meta = dict(metadata or {})
    resolutions = [resolution * f for f in (1, *zoom_factors)]
    with (
        tempfile.TemporaryDirectory(dir=path.parent, prefix=".mcool-") as work,
        atomic_path(path) as tmp,
    ):
        base = str(Path(work) / "base.cool")
        cooler.create_cooler(
            base, bins, pixels(), dtypes=dtypes, ordered=True, metadata=meta, assembly=assembly
        )
        cooler.zoomify_cooler(
            [base],
            str(tmp),
            resolutions,
            chunksize=2_000_000,
            dtypes=dtypes,
            agg={"count": "mean"},
            metadata=meta,
            assembly=assembly,
        )
        for factor in zoom_factors:
            uri = f"{tmp}::resolutions/{resolution * factor}"
            coarse = _coarse_weight(weight, n_per_chrom, factor)
            cooler.create.append(uri, "bins", {"weight": coarse}, force=True)
        if inverse is not None:  # cooler's coarsening keeps only 'count': add the column after
            for res in resolutions:
                _add_inverse_column(tmp, f"resolutions/{res}", *inverse)
    return path
