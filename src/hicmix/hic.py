"""Open Hi-C files (.mcool, .cool, .hic) at one resolution and read a chromosome's diagonal band.

The band reader never builds the dense n x n matrix: it keeps the first ``max_diag`` diagonals of
one chromosome, stored as ``values[d, i] = M[i, i + d]`` (memory O(max_diag x n_bins)).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cooler
import h5py
import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path
from hicmix.errors import InputError
from hicmix.genome import chrom_not_found, normalize_chrom, normalize_chromsizes

log = logging.getLogger(__name__)

#: Pixels read per chunk by the band reader (~16 bytes each, so about 80 MB of buffers).
PIXEL_CHUNK = 5_000_000
#: Patches gathered per vectorised batch in Band.patches.
PATCH_BATCH = 256
#: Rows (bp) per query when converting a .hic file chromosome by chromosome.
HIC_BLOCK_BP = 20_000_000

_TEMP_DIRS: list[Path] = []


def corrupt_file_error(path: Path | str, detail: object = "") -> InputError:
    """The one-line error for an unreadable (truncated, partly downloaded) Hi-C file."""
    reason = f" ({detail})" if detail else ""
    return InputError(
        f"{path}: the Hi-C file is truncated or corrupt{reason}; delete it and re-download it"
    )


def _split_uri(path_or_uri: str | Path) -> tuple[Path, str | None]:
    text = str(path_or_uri)
    if "::" in text:
        path, group = text.split("::", 1)
        return Path(path), "/" + group.strip("/")
    return Path(text), None


def _is_hic(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"HIC\x00"


def _cooler_groups(path: Path) -> tuple[list[int] | None, bool]:
    """(available mcool resolutions or None, whether the file root is a single cooler)."""
    try:
        with h5py.File(path, "r") as h5:
            if "resolutions" in h5:
                return sorted(int(k) for k in h5["resolutions"]), False
            return None, "bins" in h5 and "pixels" in h5 and "indexes" in h5
    except OSError as error:
        raise corrupt_file_error(path, str(error).split("(")[0].strip()) from error


def open_hic(
    path_or_uri: str | Path, resolution: int | None = None, *, cache_dir: str | Path | None = None
) -> cooler.Cooler:
    """Open a Hi-C file at ``resolution`` (bp) as a :class:`cooler.Cooler`.

    Accepts ``.mcool`` (picks ``resolutions/N``), ``.cool``, ``file.mcool::resolutions/N`` URIs
    and ``.hic`` (converted with hictkpy to a .cool in ``cache_dir``, or in a temporary folder
    removed at exit).
    ``resolution=None`` accepts a single-resolution .cool at its own bin size.
    """
    path, group = _split_uri(path_or_uri)
    if not path.is_file():
        raise InputError(f"{path}: Hi-C file not found; check the path or run the download step")
    if _is_hic(path):
        if group is not None:
            raise InputError(f"{path_or_uri}: a .hic file has no '::' groups; give the plain path")
        return _open_cool(_hic_to_cool(path, resolution, cache_dir), resolution)
    resolutions, is_single = _cooler_groups(path)
    if group is not None and resolutions is not None:
        requested = group.rsplit("/", 1)[-1]
        _pick_resolution(path, resolutions, int(requested) if requested.isdigit() else -1)
    if group is None:
        if resolutions is not None:
            group = _pick_resolution(path, resolutions, resolution)
        elif not is_single:
            raise InputError(
                f"{path}: not a .cool, .mcool or .hic file (no cooler tables inside); "
                "check the file or re-download it"
            )
    uri = str(path) if group is None else f"{path}::{group}"
    return _open_cool(uri, resolution)


def _missing_resolution(
    path: Path, kind: str, available: list[int], resolution: int | None
) -> InputError:
    """The error for a multi-resolution file without the requested resolution."""
    wanted = "no resolution was requested" if resolution is None else f"no resolution {resolution}"
    return InputError(
        f"{path}: {wanted} in this {kind} (available: {', '.join(map(str, available))}); "
        "set `resolution` in the config to one of them"
    )


def _pick_resolution(path: Path, available: list[int], resolution: int | None) -> str:
    if resolution is None or int(resolution) not in available:
        raise _missing_resolution(path, ".mcool", available, resolution)
    return f"/resolutions/{int(resolution)}"


def _open_cool(uri: str, resolution: int | None) -> cooler.Cooler:
    try:
        clr = cooler.Cooler(uri)
        binsize = clr.binsize
        clr.chromsizes  # noqa: B018 - touch the chrom table so a damaged file fails here
    # h5py raises RuntimeError, and cooler's group walk AttributeError, on damaged object headers
    except (OSError, KeyError, ValueError, RuntimeError, AttributeError) as error:
        raise corrupt_file_error(uri, type(error).__name__) from error
    if binsize is None:
        raise InputError(f"{uri}: bins have variable sizes; hicmix needs a fixed-resolution cooler")
    if resolution is not None and int(binsize) != int(resolution):
        raise InputError(
            f"{uri}: bins are {binsize} bp, not the requested {resolution} bp; set `resolution` to "
            f"{binsize} in the config or coarsen the file (cooler zoomify)"
        )
    return clr


def _hic_resolutions(path: Path) -> list[int]:
    import hictkpy

    return sorted(int(r) for r in hictkpy.MultiResFile(str(path)).resolutions())


def _hic_to_cool(path: Path, resolution: int | None, cache_dir: str | Path | None) -> str:
    """Convert one resolution of a .hic file to a .cool (cis, raw counts); return its path."""
    try:
        import hictkpy
    except ImportError as error:
        raise InputError(
            f"{path}: reading .hic needs hictkpy; pip install 'hicmix[hic]' or convert the file "
            "to .mcool with hictk convert"
        ) from error
    try:
        available = _hic_resolutions(path)
    except RuntimeError as error:
        raise corrupt_file_error(path, str(error)) from error
    if resolution is None or int(resolution) not in available:
        raise _missing_resolution(path, ".hic", available, resolution)
    resolution = int(resolution)
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="hicmix-hic-"))
        _TEMP_DIRS.append(cache_dir)
    out = Path(cache_dir) / f"{path.name}.{resolution}.cool"
    if out.is_file() and out.stat().st_mtime >= path.stat().st_mtime:
        return str(out)
    try:
        hic = hictkpy.File(str(path), resolution)
        chromsizes = {name: int(size) for name, size in hic.chromosomes().items()}
        bins = cooler.binnify(pd.Series(chromsizes), resolution)
        per_chrom = [-(-size // resolution) for size in chromsizes.values()]
        offsets = np.concatenate([[0], np.cumsum(per_chrom)]).astype(np.int64)
        chunks = _hic_cis_pixels(hic, chromsizes, resolution, offsets)
        with atomic_path(out) as tmp:
            cooler.create_cooler(
                str(tmp),
                bins,
                chunks,
                ordered=True,
                dtypes={"count": np.int32},
                metadata={"hicmix": f"converted from {path.name}, cis contacts only"},
                temp_dir=str(out.parent),
            )
    except RuntimeError as error:
        raise InputError(
            f"{path}: could not convert the .hic file at {resolution} bp ({error}); "
            "convert it yourself with `hictk convert` and point the config at the .mcool"
        ) from error
    log.info("converted %s at %d bp to %s", path, resolution, out)
    return str(out)


def _hic_cis_pixels(
    hic: object, chromsizes: dict[str, int], resolution: int, offsets: np.ndarray
) -> Iterator[pd.DataFrame]:
    """Upper-triangle cis pixels of a hictkpy file, in row blocks, with global bin ids."""
    for index, (chrom, size) in enumerate(chromsizes.items()):
        for start in range(0, size, HIC_BLOCK_BP):
            end = min(size, start + HIC_BLOCK_BP)
            coo = hic.fetch(
                f"{chrom}:{start}-{end}", f"{chrom}:{start}-{size}", normalization="NONE"
            )
            coo = coo.to_coo()
            rows = coo.row.astype(np.int64) + start // resolution
            cols = coo.col.astype(np.int64) + start // resolution
            keep = (cols >= rows) & (coo.data != 0)
            frame = pd.DataFrame(
                {
                    "bin1_id": rows[keep] + offsets[index],
                    "bin2_id": cols[keep] + offsets[index],
                    "count": coo.data[keep].astype(np.int32),
                }
            )
            yield frame.sort_values(["bin1_id", "bin2_id"], ignore_index=True)


@atexit.register
def _remove_temp_dirs() -> None:
    for folder in _TEMP_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def cooler_chromsizes(clr: cooler.Cooler) -> dict[str, int]:
    """{normalised chromosome name: length} of a cooler, in file order."""
    return normalize_chromsizes(dict(clr.chromsizes), clr.filename)


def native_chrom_name(clr: cooler.Cooler, chrom: str) -> str:
    """The cooler's own name for ``chrom`` ('1' for 'chr1' in an Ensembl-style file)."""
    natives = {normalize_chrom(name): name for name in clr.chromnames}
    if normalize_chrom(chrom) not in natives:
        raise chrom_not_found(clr.filename, chrom, clr.chromnames)
    return natives[normalize_chrom(chrom)]


def _weight_attrs(clr: cooler.Cooler, weight: str) -> dict:
    try:
        with clr.open("r") as group:
            attrs = dict(group["bins"][weight].attrs) if weight in group["bins"] else None
    except (OSError, KeyError, RuntimeError) as error:  # a damaged bins table
        raise corrupt_file_error(clr.filename, type(error).__name__) from error
    if attrs is None:
        raise InputError(
            f"{clr.filename}: no '{weight}' column in the bins table; run `hicmix balance` "
            "on it or set the weight name in the config"
        )
    return attrs


def balance_scale(clr: cooler.Cooler, weight: str = "weight", chrom: str | None = None) -> float:
    """The weight column's 'scale' attribute (mean raw marginal before rescaling); 1.0 if absent.

    Cis-only balancing stores one scale per chromosome: ``chrom`` picks one, otherwise their mean
    (one constant for all chromosomes keeps balanced values comparable between them).
    """
    scale = _weight_attrs(clr, weight).get("scale")
    if scale is None:
        return 1.0
    scale = np.atleast_1d(np.asarray(scale, dtype=float))
    if scale.size == 1:
        return float(scale[0])
    if chrom is not None:
        return float(scale[list(clr.chromnames).index(native_chrom_name(clr, chrom))])
    finite = scale[np.isfinite(scale) & (scale > 0)]
    return float(finite.mean()) if finite.size else 1.0


@dataclass
class Band:
    """The first ``max_diag`` diagonals of one chromosome: ``values[d, i] = M[i, i + d]``, balanced.

    NaN where bin i or i + d is masked or i + d is past the chromosome end; 0 where no pixel is
    stored. ``nnz[d]`` counts the nonzero finite pixels of diagonal d.
    """

    chrom: str
    n_bins: int
    max_diag: int
    binsize: int
    values: np.ndarray
    bad_bins: np.ndarray
    nnz: np.ndarray

    @property
    def n_valid(self) -> np.ndarray:
        """Number of finite pixels on each diagonal (int64, (max_diag,))."""
        return np.isfinite(self.values).sum(axis=1)

    def patches(
        self,
        row_starts: np.ndarray | Iterable[int],
        col_starts: np.ndarray | Iterable[int],
        size: int,
    ) -> np.ndarray:
        """(N, size, size) float32 patches: rows from ``row_starts``, columns from ``col_starts``.

        Uses M[i, j] = M[j, i], so patches crossing the diagonal are symmetric; NaN outside the
        chromosome, beyond ``max_diag`` or at masked bins.
        """
        rows0 = np.asarray(row_starts, dtype=np.int64).reshape(-1, 1, 1)
        cols0 = np.asarray(col_starts, dtype=np.int64).reshape(-1, 1, 1)
        if rows0.shape != cols0.shape:
            raise ValueError("row_starts and col_starts must have the same length")
        offsets = np.arange(size, dtype=np.int64)
        flat = self.values.ravel()
        out = np.empty((rows0.shape[0], size, size), dtype=np.float32)
        # batches bound the (batch, size, size) int64 index temporaries
        for lo in range(0, rows0.shape[0], PATCH_BATCH):
            rows = rows0[lo : lo + PATCH_BATCH] + offsets.reshape(1, -1, 1)
            cols = cols0[lo : lo + PATCH_BATCH] + offsets.reshape(1, 1, -1)
            low = np.minimum(rows, cols)
            diag = np.abs(cols - rows)
            valid = (low >= 0) & (low + diag < self.n_bins) & (diag < self.max_diag)
            chunk = flat.take(np.where(valid, diag * self.n_bins + low, 0))
            chunk[~valid] = np.nan
            out[lo : lo + PATCH_BATCH] = chunk
        return out

    def dense(self, start: int, end: int) -> np.ndarray:
        """Dense square block of bins [start, end) (NaN beyond ``max_diag``); for QC and tests."""
        return self.patches([start], [start], end - start)[0]


def _bin_weights(clr: cooler.Cooler, weight: str | None, lo: int, hi: int) -> np.ndarray | None:
    if weight is None:
        return None
    attrs = _weight_attrs(clr, weight)
    with clr.open("r") as group:
        values = np.asarray(group["bins"][weight][lo:hi], dtype=np.float64)
    if bool(attrs.get("divisive_weights", False)):
        with np.errstate(divide="ignore"):
            values = 1.0 / values
    values[~np.isfinite(values)] = np.nan
    return values


def _pixel_chunks(
    clr: cooler.Cooler, lo: int, hi: int, chunk: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """(bin1, bin2, count) of the pixels with bin1 in [lo, hi), ``chunk`` pixels at a time."""
    try:
        with clr.open("r") as group:
            offsets = group["indexes/bin1_offset"]
            p_lo, p_hi = int(offsets[lo]), int(offsets[hi])
            bin1, bin2 = group["pixels/bin1_id"], group["pixels/bin2_id"]
            counts = group["pixels/count"]
            for start in range(p_lo, p_hi, chunk):
                stop = min(p_hi, start + chunk)
                yield bin1[start:stop], bin2[start:stop], counts[start:stop]
    except (OSError, KeyError) as error:
        raise corrupt_file_error(clr.filename, type(error).__name__) from error


def read_band(
    clr: cooler.Cooler,
    chrom: str,
    max_diag: int,
    weight: str | None = "weight",
    *,
    chunk_pixels: int = PIXEL_CHUNK,
) -> Band:
    """Read the first ``max_diag`` diagonals of ``chrom``, balanced by ``weight``, in chunks.

    ``weight=None`` takes the stored values as already normalised; bins without any stored contact
    in the band are then masked.
    """
    if max_diag < 1:
        raise ValueError("max_diag must be >= 1")
    native = native_chrom_name(clr, chrom)
    try:
        lo, hi = (int(x) for x in clr.extent(native))
        weights = _bin_weights(clr, weight, lo, hi)
    except (OSError, KeyError, RuntimeError) as error:  # a damaged index or weight chunk
        raise corrupt_file_error(clr.filename, type(error).__name__) from error
    n_bins = hi - lo
    values = np.zeros((max_diag, n_bins), dtype=np.float32)
    nnz = np.zeros(max_diag, dtype=np.int64)
    has_data = np.zeros(n_bins, dtype=bool)
    for bin1, bin2, counts in _pixel_chunks(clr, lo, hi, chunk_pixels):
        diag = bin2.astype(np.int64) - bin1
        keep = (bin2 < hi) & (diag < max_diag) & (diag >= 0)
        i, d = bin1[keep].astype(np.int64) - lo, diag[keep]
        vals = counts[keep].astype(np.float64)
        if weights is not None:
            vals = vals * weights[i] * weights[i + d]
        else:
            has_data[i] = True
            has_data[i + d] = True
        values[d, i] = vals
        nnz += np.bincount(d[(vals != 0) & np.isfinite(vals)], minlength=max_diag)
    bad = ~np.isfinite(weights) if weights is not None else ~has_data
    _mask_band(values, bad)
    return Band(normalize_chrom(native), n_bins, max_diag, int(clr.binsize), values, bad, nnz)


def _mask_band(values: np.ndarray, bad: np.ndarray) -> None:
    """Set NaN where bin i or i + d is bad or i + d is past the end, in place."""
    values[:, bad] = np.nan
    n_bins = values.shape[1]
    for d in range(values.shape[0]):
        if d >= n_bins:
            values[d] = np.nan
            continue
        values[d, n_bins - d :] = np.nan
        values[d, : n_bins - d][bad[d:]] = np.nan


def read_expected(path: str | Path, chroms: Iterable[str], max_diag: int) -> np.ndarray:
    """Mean balanced contact per diagonal over ``chroms`` from a cooltools expected_cis TSV.

    Averages ``balanced.avg`` (``count.avg`` without a balanced column) weighted by ``n_valid``.
    Diagonals without a finite value take the nearest finite one (the first finite value for leading
    gaps, the last for trailing ones).
    Returns float32 (max_diag,).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: expected-contacts file not found; run `hicmix balance` first")
    table = pd.read_csv(path, sep="\t", dtype={"region1": str, "region2": str})
    value_col = "balanced.avg" if "balanced.avg" in table else "count.avg"
    needed = {"region1", "dist", "n_valid", value_col}
    if not needed <= set(table.columns):
        raise InputError(
            f"{path}: missing columns {sorted(needed - set(table.columns))} in the expected file; "
            "regenerate it with `hicmix balance`"
        )
    if "region2" in table:
        table = table[table["region1"] == table["region2"]]
    wanted = {normalize_chrom(c) for c in chroms}
    table = table[table["region1"].map(normalize_chrom).isin(wanted)]
    table = table[table["dist"] < max_diag]
    if table.empty:
        raise InputError(
            f"{path}: none of the chromosomes {sorted(wanted)} is in the expected file; "
            "rerun `hicmix balance` with those chromosomes"
        )
    values = table[value_col].to_numpy(dtype=np.float64)
    weights = table["n_valid"].to_numpy(dtype=np.float64)
    ok = np.isfinite(values) & (weights > 0)
    dist = table["dist"].to_numpy(dtype=np.int64)
    total = np.bincount(dist[ok], weights=values[ok] * weights[ok], minlength=max_diag)
    count = np.bincount(dist[ok], weights=weights[ok], minlength=max_diag)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(count > 0, total / count, np.nan)
    return _fill_nearest(expected, path).astype(np.float32)


def _fill_nearest(curve: np.ndarray, path: Path) -> np.ndarray:
    finite = np.flatnonzero(np.isfinite(curve))
    if finite.size == 0:
        raise InputError(f"{path}: no finite expected values; check the balancing of the Hi-C file")
    index = np.arange(curve.size)
    nearest = finite[np.clip(np.searchsorted(finite, index, side="right") - 1, 0, None)]
    nearest = np.where(index < finite[0], finite[0], nearest)
    return curve[nearest]
