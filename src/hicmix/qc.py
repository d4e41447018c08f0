"""One-region QC figure per cell line: balanced contact map, loops, tracks on the same x-axis."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError
from hicmix.genome import normalize_chrom

log = logging.getLogger(__name__)

_REGION = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>[\d,_]+)-(?P<end>[\d,_]+)$")
#: largest map drawn, in bins (a dense square of this size is read)
MAX_REGION_BINS = 4000
TRACK_POINTS = 1000


@dataclass(frozen=True)
class QCRegion:
    """A half-open bp interval on one chromosome (UCSC-style name)."""

    chrom: str
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> QCRegion:
        """Parse 'chr1:2,000,000-5,000,000' (bp, half-open)."""
        match = _REGION.match(str(text).strip())
        if match is None:
            raise ConfigError(
                f"QC region {text!r} is not chrom:start-end; write it like chr1:2000000-5000000"
            )
        start, end = (int(match[k].replace(",", "").replace("_", "")) for k in ("start", "end"))
        if end <= start:
            raise ConfigError(f"QC region {text!r} ends before it starts; fix the coordinates")
        return cls(normalize_chrom(match["chrom"]), start, end)

    def __str__(self) -> str:
        return f"{self.chrom}:{self.start:,}-{self.end:,}"


def _native_names(names: Sequence[str]) -> dict[str, str]:
    """UCSC-style name -> the name used inside a file."""
    return {normalize_chrom(name): name for name in names}


def _check_bounds(region: QCRegion, length: int, source: str | Path) -> None:
    if region.end > length:
        raise ConfigError(
            f"QC region {region} runs past the end of {region.chrom} ({length:,} bp in {source}); "
            "shorten the region"
        )


def _open_cooler(uri: str | Path):
    import cooler

    uri = str(uri)
    path = uri.split("::")[0]
    if not Path(path).is_file():
        raise InputError(f"{path}: Hi-C file not found; check the --hic path")
    try:
        if "::" not in uri and cooler.fileops.is_multires_file(path):
            groups = ", ".join(cooler.fileops.list_coolers(path))
            raise InputError(
                f"{path}: multi-resolution file; pass one resolution as {path}::<group> ({groups})"
            )
        return cooler.Cooler(uri)
    except InputError:
        raise
    except Exception as error:  # h5py/cooler raise many types for a truncated or foreign file
        raise InputError(
            f"{uri}: not a readable cooler ({type(error).__name__}); re-create or re-download it"
        ) from None


def read_contacts(hic: str | Path, region: QCRegion, weight: str | None) -> tuple[np.ndarray, dict]:
    """Dense matrix of ``region`` (balanced with ``weight``, raw counts if None) and bin info."""
    clr = _open_cooler(hic)
    native = _native_names(clr.chromnames)
    if region.chrom not in native:
        raise InputError(
            f"{hic}: chromosome {region.chrom} not found (it has {', '.join(clr.chromnames[:6])}); "
            "pick a QC region on a chromosome of this file"
        )
    _check_bounds(region, int(clr.chromsizes[native[region.chrom]]), hic)
    n_bins = -(-(region.end - region.start) // clr.binsize)
    if n_bins > MAX_REGION_BINS:
        raise ConfigError(
            f"QC region {region} spans {n_bins} bins of {clr.binsize} bp "
            f"(at most {MAX_REGION_BINS}); choose a smaller region"
        )
    if weight and weight not in clr.bins().columns:
        raise InputError(
            f"{hic}: no '{weight}' column in the bins table; balance it first (hicmix balance) or "
            "pass the name of an existing weight column"
        )
    fetch = f"{native[region.chrom]}:{region.start}-{region.end}"
    matrix = clr.matrix(balance=weight or False).fetch(fetch).astype(np.float64)
    bins = clr.bins().fetch(fetch)
    info = {
        "binsize": int(clr.binsize),
        "start": int(bins["start"].iloc[0]),
        "end": int(bins["end"].iloc[-1]),
    }
    return matrix, info


def read_track(path: str | Path, region: QCRegion, points: int = TRACK_POINTS) -> np.ndarray:
    """Mean signal of a bigWig in ``points`` equal steps over ``region`` (no data -> 0)."""
    import pyBigWig

    if not Path(path).is_file():
        raise InputError(f"{path}: bigWig file not found; check the --track path")
    try:
        bw = pyBigWig.open(str(path))
    except RuntimeError:
        bw = None
    if bw is None or not bw.isBigWig():
        raise InputError(f"{path}: not a readable bigWig file; re-create or re-download it")
    try:
        chroms = bw.chroms()
        native = _native_names(list(chroms))
        if region.chrom not in native:
            raise InputError(
                f"{path}: chromosome {region.chrom} not found in this bigWig (it has "
                f"{', '.join(list(chroms)[:6])}); use a track of the same assembly"
            )
        _check_bounds(region, int(chroms[native[region.chrom]]), path)
        n = max(1, min(points, region.end - region.start))
        values = bw.stats(native[region.chrom], region.start, region.end, nBins=n, type="mean")
    finally:
        bw.close()
    return np.nan_to_num(np.array(values, dtype=np.float64), nan=0.0)


def read_loops(path: str | Path, region: QCRegion) -> np.ndarray:
    """Loop anchor midpoints (bp, shape (L, 2)) with both anchors inside ``region``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: loops BEDPE not found; check the --loops path")
    try:
        table = pd.read_csv(path, sep="\t", header=None, comment="#", usecols=range(6), dtype=str)
    except pd.errors.EmptyDataError:
        return np.zeros((0, 2))
    except ValueError:
        raise InputError(
            f"{path}: expected a tab-separated BEDPE with at least 6 columns; fix the file"
        ) from None
    coords = table[[1, 2, 4, 5]].apply(pd.to_numeric, errors="coerce")
    keep = coords.notna().all(axis=1)  # drops header lines such as 'chr1 x1 x2 chr2 y1 y2'
    chrom1 = table.loc[keep, 0].map(normalize_chrom)
    chrom2 = table.loc[keep, 3].map(normalize_chrom)
    coords = coords[keep]
    mid1 = (coords[1] + coords[2]) / 2
    mid2 = (coords[4] + coords[5]) / 2
    inside = (
        (chrom1 == region.chrom)
        & (chrom2 == region.chrom)
        & mid1.between(region.start, region.end)
        & mid2.between(region.start, region.end)
    )
    return np.column_stack([mid1[inside], mid2[inside]]).astype(np.float64)


def _cell_line_of(hic: str | Path) -> str:
    path = Path(str(hic).split("::")[0])
    return path.parent.name if path.stem in ("hic", "contacts", "matrix") else path.stem


def qc_figure(
    hic: str | Path,
    region: str | QCRegion,
    out: str | Path,
    weight: str | None = "weight",
    tracks: Sequence[tuple[str, str | Path]] = (),
    loops: str | Path | None = None,
    cell_line: str | None = None,
    dpi: int = 120,
) -> Path:
    """Draw the QC figure of one region and write it atomically as PNG to ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    region = region if isinstance(region, QCRegion) else QCRegion.parse(region)
    matrix, info = read_contacts(hic, region, weight)
    signals = [(name, read_track(path, region)) for name, path in tracks]
    anchors = read_loops(loops, region) if loops else np.zeros((0, 2))

    mb = 1e6
    extent = (info["start"] / mb, info["end"] / mb, info["end"] / mb, info["start"] / mb)
    fig = Figure(figsize=(7.0, 6.5 + 0.9 * len(signals)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1 + len(signals), 1, height_ratios=[6.0] + [0.9] * len(signals))
    ax = fig.add_subplot(grid[0])
    positive = matrix[np.isfinite(matrix) & (matrix > 0)]
    if positive.size:
        norm = LogNorm(vmin=np.percentile(positive, 1), vmax=np.percentile(positive, 99.5))
        # zeros drawn at the floor colour; masked bins (NaN) stay NaN and are drawn grey
        shown = np.where(np.isnan(matrix) | (matrix > 0), matrix, norm.vmin)
    else:
        norm, shown = None, matrix
    cmap = _cmap()
    image = ax.imshow(
        shown, cmap=cmap, norm=norm, extent=extent, aspect="auto", interpolation="none"
    )
    # colour bar inside the (symmetric) lower-left half, so the map keeps the tracks' x-axis
    cax = ax.inset_axes([0.03, 0.05, 0.025, 0.3])
    fig.colorbar(image, cax=cax, label="balanced contacts" if weight else "raw counts")
    if len(anchors):
        both = np.concatenate([anchors, anchors[:, ::-1]]) / mb
        ax.scatter(
            both[:, 1], both[:, 0], s=60, facecolors="none", edgecolors="tab:blue", linewidths=1.2
        )
    ax.set_xlim(region.start / mb, region.end / mb)
    ax.set_ylim(region.end / mb, region.start / mb)
    ax.set_ylabel(f"{region.chrom} (Mb)")
    name = cell_line or _cell_line_of(hic)
    ax.set_title(
        f"{name}  {region}  {_binsize_text(info['binsize'])}  weight={weight or 'none'}"
        + (f"  loops={len(anchors)}" if loops else "")
    )
    for k, (track_name, values) in enumerate(signals, start=1):
        tax = fig.add_subplot(grid[k], sharex=ax)
        x = np.linspace(region.start, region.end, len(values) + 1) / mb
        tax.stairs(values, x, fill=True, color=f"C{(k - 1) % 10}")
        tax.set_ylabel(track_name, rotation=0, ha="right", va="center")
        tax.set_ylim(0, max(float(values.max()), 1e-6) * 1.05)
        tax.tick_params(labelbottom=k == len(signals))
    if signals:
        ax.tick_params(labelbottom=False)
    (tax if signals else ax).set_xlabel(f"{region.chrom} (Mb)")

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    log.info("wrote QC figure %s", out)
    return out


def _cmap():
    from matplotlib import colormaps

    return colormaps["YlOrRd"].with_extremes(bad="lightgrey")


def _binsize_text(binsize: int) -> str:
    return f"{binsize / 1000:g} kb" if binsize >= 1000 else f"{binsize} bp"
