"""bigWig sub-bin means against a brute-force base-by-base computation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyBigWig
import pytest

from hicmix.errors import InputError
from hicmix.tracks import bigwig_chromsizes, check_bigwig_chromsizes, read_subbins

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"


def write_bigwig(path: Path, sizes: dict[str, int], signal: dict[str, np.ndarray]) -> None:
    """bigWig from per-base arrays (NaN = no entry), as variable-length runs of equal values."""
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(sizes.items()))
    for chrom, values in signal.items():
        change = np.flatnonzero(np.diff(values) != 0) + 1
        both_nan = np.isnan(values[change]) & np.isnan(values[change - 1])
        starts = np.concatenate([[0], change[~both_nan]])
        ends = np.append(starts[1:], values.size)
        keep = ~np.isnan(values[starts])
        bw.addEntries(
            [chrom] * int(keep.sum()),
            starts[keep].tolist(),
            ends=ends[keep].tolist(),
            values=values[starts[keep]].astype(float).tolist(),
        )
    bw.close()


def random_signal(rng: np.random.Generator, length: int, runs: int) -> np.ndarray:
    """Piecewise-constant signal with gaps (NaN) over ``length`` bases."""
    cuts = np.sort(rng.choice(np.arange(1, length), size=runs, replace=False))
    values = rng.gamma(1.0, 3.0, size=runs + 1)
    values[rng.random(runs + 1) < 0.3] = np.nan
    return np.repeat(values, np.diff(np.concatenate([[0], cuts, [length]])))


def brute_force(signal: np.ndarray, length: int, subbin: int) -> np.ndarray:
    filled = np.nan_to_num(signal[:length])
    n = -(-length // subbin)
    return np.array([filled[k * subbin : (k + 1) * subbin].mean() for k in range(n)])


@pytest.fixture(scope="module")
def ensembl_bw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A bigWig with Ensembl names ('1', '2') and a declared-but-empty chromosome '3'."""
    rng = np.random.default_rng(0)
    sizes = {"1": 10_050, "2": 5_000, "3": 2_000}
    signal = {"1": random_signal(rng, 10_050, 300), "2": random_signal(rng, 5_000, 50)}
    path = tmp_path_factory.mktemp("bw") / "ensembl.bw"
    write_bigwig(path, sizes, signal)
    return path, signal


@pytest.mark.parametrize("chunk_bp", [1_000, 1_150, 10_000_000])
def test_subbins_match_brute_force(ensembl_bw: tuple, chunk_bp: int) -> None:
    path, signal = ensembl_bw
    got = read_subbins(path, "chr1", 10_050, 200, chunk_bp=chunk_bp)
    assert got.dtype == np.float32 and got.shape == (51,)
    # the last sub-bin covers 50 real bases and is averaged over those
    np.testing.assert_allclose(got, brute_force(signal["1"], 10_050, 200), rtol=1e-5)
    np.testing.assert_allclose(
        read_subbins(path, "2", 5_000, 100, chunk_bp=chunk_bp),
        brute_force(signal["2"], 5_000, 100),
        rtol=1e-5,
    )


def test_subbins_shorter_request_and_past_the_end(ensembl_bw: tuple) -> None:
    path, signal = ensembl_bw
    np.testing.assert_allclose(
        read_subbins(path, "chr1", 3_030, 200), brute_force(signal["1"], 3_030, 200), rtol=1e-5
    )
    longer = read_subbins(path, "chr2", 5_400, 200)  # bases past the bigWig's end read as 0
    padded = np.concatenate([signal["2"], np.zeros(400)])
    np.testing.assert_allclose(longer, brute_force(padded, 5_400, 200), rtol=1e-5)


def test_missing_and_empty_chromosomes(ensembl_bw: tuple) -> None:
    path, _ = ensembl_bw
    with pytest.raises(InputError) as info:
        read_subbins(path, "chrX", 1_000, 100)
    assert str(path) in str(info.value) and "chromosome chrX not found (it has 1, 2, 3)" in str(
        info.value
    )
    with pytest.raises(InputError, match=r"chromosome chr3 has no data in this bigWig"):
        read_subbins(path, "chr3", 2_000, 100)


def test_chromsizes_and_check(ensembl_bw: tuple, tmp_path: Path) -> None:
    path, _ = ensembl_bw
    assert bigwig_chromsizes(path) == {"chr1": 10_050, "chr2": 5_000, "chr3": 2_000}
    check_bigwig_chromsizes(path, {"chr1": 10_050, "chr2": 5_000}, "hic.cool", ["chr1", "2"])
    with pytest.raises(InputError) as info:
        check_bigwig_chromsizes(path, {"chr1": 10_000}, "hic.cool", ["chr1"])
    assert "hic.cool" in str(info.value) and str(path) in str(info.value)
    assert "same assembly" in str(info.value)
    with pytest.raises(InputError, match="not found"):
        bigwig_chromsizes(tmp_path / "absent.bw")
    junk = tmp_path / "junk.bw"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match=r"junk\.bw"):
        read_subbins(junk, "chr1", 100, 10)


def test_twenty_megabases_at_200bp_is_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    length = 20_000_000
    starts = np.sort(rng.choice(length // 50, size=200_000, replace=False)) * 50
    bw = pyBigWig.open(str(tmp_path / "big.bw"), "w")
    bw.addHeader([("chr5", length)])
    bw.addEntries("chr5", starts.tolist(), values=rng.random(starts.size).tolist(), span=50)
    bw.close()
    read_subbins(tmp_path / "big.bw", "chr5", 1_000, 200)  # warm the import
    start = time.perf_counter()
    values = read_subbins(tmp_path / "big.bw", "chr5", length, 200)
    assert time.perf_counter() - start < 2.0
    assert values.shape == (100_000,)
    assert np.all(values >= 0) and values.max() <= 1.0


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_peak_bigwig_chr20() -> None:
    path = REALDATA / "tracks/GM12878_CTCF_ENCODEpeaks_Broad.hg19.bw"
    length = 63_025_520
    values = read_subbins(path, "chr20", length, 500)
    assert values.shape == (126_052,)
    assert 0.001 < (values > 0).mean() < 0.1
    bw = pyBigWig.open(str(path))
    try:
        window = np.nan_to_num(bw.values("chr20", 30_000_000, 31_000_000, numpy=True))
    finally:
        bw.close()
    np.testing.assert_allclose(
        values[60_000:62_000], window.reshape(-1, 500).mean(axis=1), rtol=1e-5
    )
