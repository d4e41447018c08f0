"""bigWig tracks read at sub-bin resolution (mean signal per sub-bin, missing bases count as 0)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hicmix.errors import InputError
from hicmix.genome import (
    check_chromsizes,
    chrom_not_found,
    normalize_chrom,
    normalize_chromsizes,
)

#: Bases read per pyBigWig call (10 Mb of float32 = 40 MB).
CHUNK_BP = 10_000_000


def _open(path: str | Path):
    import pyBigWig

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: bigWig file not found; check config/tracks.tsv or run the download step"
        )
    try:
        handle = pyBigWig.open(str(path))
    except RuntimeError as error:
        raise InputError(
            f"{path}: not a readable bigWig (truncated or wrong format); re-download it"
        ) from error
    if handle is None or not handle.isBigWig():
        raise InputError(
            f"{path}: not a bigWig file (bigBed or other format); give a bigWig signal track"
        )
    return handle


def bigwig_chromsizes(path: str | Path) -> dict[str, int]:
    """{normalised chromosome name: length} declared in a bigWig header."""
    handle = _open(path)
    try:
        return normalize_chromsizes(handle.chroms(), str(path))
    finally:
        handle.close()


def check_bigwig_chromsizes(
    path: str | Path, hic_sizes: dict[str, int], hic_file: str | Path, chroms: list[str]
) -> None:
    """InputError unless the bigWig has every chromosome of ``chroms`` at the Hi-C file's length."""
    check_chromsizes(hic_sizes, bigwig_chromsizes(path), hic_file, path, chroms)


def read_subbins(
    path: str | Path, chrom: str, length_bp: int, subbin_bp: int, *, chunk_bp: int = CHUNK_BP
) -> np.ndarray:
    """Mean signal per sub-bin over [0, length_bp) of ``chrom``, float32 (ceil(length / subbin),).

    Missing bases (no bigWig entry, NaN) count as 0. The last sub-bin, when partial, is averaged
    over its real length. Bases past the end of the bigWig's own chromosome read as 0 (check
    lengths with :func:`check_bigwig_chromsizes`).
    """
    if subbin_bp < 1 or length_bp < 1:
        raise ValueError("length_bp and subbin_bp must be positive")
    chunk_bp = max(subbin_bp, chunk_bp - chunk_bp % subbin_bp)
    handle = _open(path)
    try:
        native = {normalize_chrom(name): name for name in handle.chroms()}
        name = native.get(normalize_chrom(chrom))
        if name is None:
            raise chrom_not_found(path, chrom, handle.chroms())
        readable = min(int(length_bp), int(handle.chroms(name)))
        sums = np.zeros(math.ceil(length_bp / subbin_bp), dtype=np.float64)
        seen = False
        for start in range(0, readable, chunk_bp):
            end = min(readable, start + chunk_bp)
            raw = handle.values(name, start, end, numpy=True)
            missing = np.isnan(raw)
            seen = seen or not bool(missing.all())
            raw[missing] = 0.0
            sums[start // subbin_bp : start // subbin_bp + _n_sub(end - start, subbin_bp)] = (
                _sub_sums(raw, subbin_bp)
            )
    except RuntimeError as error:
        raise InputError(
            f"{path}: failed to read {chrom} ({error}); re-download the bigWig"
        ) from error
    finally:
        handle.close()
    if not seen and not _has_intervals(path, name):
        raise InputError(
            f"{path}: chromosome {chrom} has no data in this bigWig; remove {chrom} from "
            "`chromosomes` or use a track that covers it"
        )
    widths = np.full(sums.size, subbin_bp, dtype=np.float64)
    widths[-1] = length_bp - subbin_bp * (sums.size - 1)
    return (sums / widths).astype(np.float32)


def _n_sub(n: int, subbin_bp: int) -> int:
    return -(-n // subbin_bp)


def _sub_sums(raw: np.ndarray, subbin_bp: int) -> np.ndarray:
    """Sum over consecutive sub-bins of ``raw`` (the last one may be partial)."""
    full = raw.size // subbin_bp
    sums = raw[: full * subbin_bp].reshape(full, subbin_bp).sum(axis=1, dtype=np.float64)
    if raw.size > full * subbin_bp:
        sums = np.append(sums, raw[full * subbin_bp :].sum(dtype=np.float64))
    return sums


def _has_intervals(path: str | Path, name: str) -> bool:
    handle = _open(path)
    try:
        return bool(handle.intervals(name, 0, min(handle.chroms(name), 1_000_000_000)))
    except RuntimeError:
        return False
    finally:
        handle.close()
