"""Extract one resolution of a Hi-C file, balance it (ICE, keep or none), compute expected contacts.

Writes three files, each atomically: ``OUT.cool`` (one resolution, with the weight column),
``OUT.expected.tsv`` (cooltools expected_cis per whole chromosome, unsmoothed) and
``OUT.balance.json``.
Chromosome names keep the input's native spelling; the tiling stage normalises them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cooler
import h5py
import numpy as np
import pandas as pd

from hicmix import __version__
from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError
from hicmix.genome import normalize_chrom
from hicmix.hic import (
    PIXEL_CHUNK,
    balance_scale,
    corrupt_file_error,
    native_chrom_name,
    open_hic,
)

log = logging.getLogger(__name__)

MODES = ("auto", "ice", "keep", "none")
#: Diagonals left out of the expected curve: none, so the curve covers every diagonal of the band.
EXPECTED_IGNORE_DIAGS = 0


@dataclass(frozen=True)
class IceParams:
    """ICE parameters, as in ``cooler balance`` (cis only)."""

    ignore_diags: int = 2
    mad_max: float = 5
    min_nnz: int = 10
    min_count: int = 0
    max_iters: int = 200
    tol: float = 1e-5


def output_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """(OUT.cool, OUT.expected.tsv, OUT.balance.json) for an output path ending in .cool."""
    out = Path(out)
    if out.suffix != ".cool":
        raise ConfigError(f"--out {out}: the balanced Hi-C output must end in .cool; rename it")
    stem = out.with_suffix("")
    return out, Path(f"{stem}.expected.tsv"), Path(f"{stem}.balance.json")


def balance_hic(
    hic: str | Path,
    out: str | Path,
    resolution: int,
    weight: str = "weight",
    mode: str = "auto",
    params: IceParams | None = None,
    chromosomes: Iterable[str] | None = None,
) -> dict:
    """Run the balance stage and return the report written to ``OUT.balance.json``."""
    if mode not in MODES:
        raise ConfigError(f"balance mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    params = params or IceParams()
    cool_out, expected_out, report_out = output_paths(out)
    cool_out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(
            tempfile.TemporaryDirectory(dir=cool_out.parent, prefix=".hicmix-balance-")
        )
        src = open_hic(hic, resolution, cache_dir=scratch)
        chroms = _select_chroms(src, chromosomes)
        cool_tmp = stack.enter_context(atomic_path(cool_out))
        expected_tmp = stack.enter_context(atomic_path(expected_out))
        report_tmp = stack.enter_context(atomic_path(report_out))
        _copy_cooler(src, cool_tmp)
        clr = cooler.Cooler(str(cool_tmp))
        try:  # decompress every chunk once, so a damaged input fails here with one line
            _read_tables(cool_tmp)
            margins = _pixel_margins(clr)
        except (OSError, KeyError, RuntimeError) as error:
            raise corrupt_file_error(hic, type(error).__name__) from error
        used, stats = _apply_weights(clr, Path(hic), weight, mode, params, chroms, margins[0])
        expected = _expected(clr, weight, chroms)
        expected.to_csv(expected_tmp, sep="\t", index=False, na_rep="nan")
        report = _report(clr, Path(hic), weight, mode, used, params, stats, chroms, margins)
        report_tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


def _select_chroms(clr: cooler.Cooler, chromosomes: Iterable[str] | None) -> list[str]:
    """Native names of the chromosomes to balance (all of the file's by default, file order)."""
    if chromosomes is None:
        return list(clr.chromnames)
    wanted = {native_chrom_name(clr, c) for c in chromosomes}
    return [c for c in clr.chromnames if c in wanted]


def _copy_cooler(src: cooler.Cooler, dst: Path) -> None:
    """Copy one cooler group (``/resolutions/10000`` of an .mcool) to the root of a new file."""
    with h5py.File(src.filename, "r") as fin, h5py.File(dst, "w") as fout:
        group = fin[src.root]
        try:
            for key in group:
                fin.copy(group[key], fout, name=key)
        except (OSError, KeyError, RuntimeError) as error:
            raise corrupt_file_error(src.filename, type(error).__name__) from error
        fout.attrs.update(dict(group.attrs))


def _read_tables(path: Path) -> None:
    """Read the chroms, bins and indexes tables in full (the pixels are read by the margins)."""
    with h5py.File(path, "r") as h5:
        for table in ("chroms", "bins", "indexes"):
            for column in h5[table].values():
                column[()]


def _pixel_margins(clr: cooler.Cooler) -> tuple[np.ndarray, float, float]:
    """(stored pixels touching each bin, total contacts, cis contacts) from one chunked pass."""
    n_bins = int(clr.info["nbins"])
    touched = np.zeros(n_bins, dtype=np.int64)
    chrom_of = clr.bins()["chrom"][:].cat.codes.to_numpy()
    total = cis = 0.0
    with clr.open("r") as group:
        bin1, bin2, counts = (group[f"pixels/{k}"] for k in ("bin1_id", "bin2_id", "count"))
        for start in range(0, bin1.shape[0], PIXEL_CHUNK):
            b1, b2 = bin1[start : start + PIXEL_CHUNK], bin2[start : start + PIXEL_CHUNK]
            values = counts[start : start + PIXEL_CHUNK].astype(np.float64)
            nonzero = values != 0
            touched += np.bincount(b1[nonzero], minlength=n_bins)
            touched += np.bincount(b2[nonzero], minlength=n_bins)
            total += values.sum()
            cis += values[chrom_of[b1] == chrom_of[b2]].sum()
    return touched, total, cis


def _in_chroms(clr: cooler.Cooler, chroms: list[str]) -> np.ndarray:
    return clr.bins()["chrom"][:].isin(chroms).to_numpy()


def _apply_weights(
    clr: cooler.Cooler,
    source: Path,
    weight: str,
    mode: str,
    params: IceParams,
    chroms: list[str],
    touched: np.ndarray,
) -> tuple[str, dict]:
    """Keep, compute (ICE) or set (none) the weight column; return the mode used and its stats."""
    with clr.open("r") as group:
        present = weight in group["bins"]
    if mode == "keep" and not present:
        raise InputError(
            f"{source}: no '{weight}' column to keep in the bins table; use --mode ice to balance "
            "it or --mode none if its values are already normalised"
        )
    used = ("keep" if present else "ice") if mode == "auto" else mode
    if used == "keep":
        with clr.open("r") as group:
            return used, dict(group["bins"][weight].attrs)
    if used == "ice":
        bias, stats = _ice(clr, params, chroms)
    else:
        bias = np.where((touched > 0) & _in_chroms(clr, chroms), 1.0, np.nan)
        stats = {"scale": 1.0, "divisive_weights": False, "hicmix_mode": "none"}
    _store_weight(clr, weight, bias, stats)
    return used, stats


def _ice(clr: cooler.Cooler, params: IceParams, chroms: list[str]) -> tuple[np.ndarray, dict]:
    outside = np.flatnonzero(~_in_chroms(clr, chroms))
    log.info("ICE (cis only) on %d chromosomes of %s", len(chroms), clr.filename)
    with np.errstate(divide="ignore", invalid="ignore"):
        bias, stats = cooler.balance_cooler(
            clr,
            cis_only=True,
            ignore_diags=params.ignore_diags,
            mad_max=params.mad_max,
            min_nnz=params.min_nnz,
            min_count=params.min_count,
            max_iters=params.max_iters,
            tol=params.tol,
            blacklist=outside if outside.size else None,
            rescale_marginals=True,
            store=False,
        )
    bias = np.asarray(bias, dtype=np.float64)
    bias[outside] = np.nan
    bias[bias == 0] = np.nan
    converged = np.asarray(stats["converged"], dtype=bool)
    if not converged.all():
        log.warning(
            "ICE did not reach tol=%g (cooler compares it with the variance of the unscaled "
            "marginals) in %d iterations on %d chromosome(s); raise --max-iters or --tol",
            params.tol,
            params.max_iters,
            int((~converged).sum()),
        )
    return bias, stats


def _store_weight(clr: cooler.Cooler, weight: str, bias: np.ndarray, stats: dict) -> None:
    """Write the weight column with its stats as attributes, the way ``cooler balance`` does."""
    with clr.open("r+") as group:
        if weight in group["bins"]:
            del group["bins"][weight]
        column = group["bins"].create_dataset(
            weight, data=bias, compression="gzip", compression_opts=6
        )
        column.attrs.update(stats)


def _expected(clr: cooler.Cooler, weight: str, chroms: list[str]) -> pd.DataFrame:
    """cooltools expected_cis over whole chromosomes (unsmoothed, every diagonal)."""
    import cooltools

    sizes = clr.chromsizes
    view = pd.DataFrame(
        {"chrom": chroms, "start": 0, "end": [int(sizes[c]) for c in chroms], "name": chroms}
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return cooltools.expected_cis(
            clr,
            view_df=view,
            intra_only=True,
            smooth=False,
            clr_weight_name=weight,
            ignore_diags=EXPECTED_IGNORE_DIAGS,
        )


def _as_list(value: object, n: int) -> list:
    array = np.atleast_1d(np.asarray(value)).tolist()
    return array * n if len(array) == 1 else array


def _report(
    clr: cooler.Cooler,
    source: Path,
    weight: str,
    mode: str,
    used: str,
    params: IceParams,
    stats: dict,
    chroms: list[str],
    margins: tuple[np.ndarray, float, float],
) -> dict:
    bins = clr.bins()[["chrom", weight]][:]
    _, total, cis = margins
    names = list(clr.chromnames)
    scales = dict(zip(names, _as_list(stats.get("scale", 1.0), len(names)), strict=True))
    converged = dict(zip(names, _as_list(stats.get("converged", True), len(names)), strict=True))
    variances = dict(zip(names, _as_list(stats.get("var", np.nan), len(names)), strict=True))
    masked = bins[weight].isna().groupby(bins["chrom"], observed=True).sum()
    counts = bins.groupby("chrom", observed=True).size()
    return {
        "hicmix_version": __version__,
        "input": str(source),
        "resolution": int(clr.binsize),
        "weight": weight,
        "mode": mode,
        "mode_used": used,
        "params": {**asdict(params), "cis_only": True} if used == "ice" else {},
        "stored_attrs": _jsonable(stats),
        "expected": {"ignore_diags": EXPECTED_IGNORE_DIAGS, "smooth": False, "view": "chromosomes"},
        "scale": balance_scale(clr, weight),
        "scale_per_chrom": {c: _finite_or_none(scales[c]) for c in chroms},
        "converged": bool(all(bool(converged[c]) for c in chroms)),
        "converged_per_chrom": {c: bool(converged[c]) for c in chroms},
        # cooler's tol bounds the variance of the unscaled marginals; var / scale^2 is scale-free
        "relative_var_per_chrom": {
            c: _finite_or_none(float(variances[c]) / float(scales[c]) ** 2) for c in chroms
        },
        "chromosomes": chroms,
        "chromosomes_normalised": [normalize_chrom(c) for c in chroms],
        "n_bins": {c: int(counts[c]) for c in chroms},
        "masked_bins": {c: int(masked[c]) for c in chroms},
        "total_contacts": float(total),
        "cis_contacts": float(cis),
    }


def _finite_or_none(value: object) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _jsonable(stats: dict) -> dict:
    """HDF5 attributes as plain JSON values (NaN, the scale of a skipped chromosome, -> null)."""
    out = {}
    for key, value in stats.items():
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = np.where(np.isfinite(array), array, None)
        out[key] = array.tolist() if array.ndim else array.item()
    return out
