"""Opening Hi-C files and reading the diagonal band against dense cooler matrices."""

from __future__ import annotations

import time
from pathlib import Path

import cooler
import h5py
import numpy as np
import pandas as pd
import pytest

from hicmix.errors import InputError
from hicmix.hic import (
    balance_scale,
    cooler_chromsizes,
    native_chrom_name,
    open_hic,
    read_band,
    read_expected,
)

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
BINSIZE = 1000
CHROMS = {"1": 60_500, "2": 40_000}  # chr-less names, chromosome 1 ends in a partial bin


def make_cool(path: Path, seed: int = 0, balance: bool = True) -> cooler.Cooler:
    """A small cooler with distance decay, trans contacts and two empty (maskable) bins on '1'."""
    rng = np.random.default_rng(seed)
    bins = cooler.binnify(pd.Series(CHROMS), BINSIZE)
    n = len(bins)
    i, j = np.triu_indices(n)
    chrom = bins["chrom"].to_numpy()
    cis = chrom[i] == chrom[j]
    counts = rng.poisson(np.where(cis, 80.0 / (1 + j - i), 0.3))
    for empty in (5, 30):
        counts[(i == empty) | (j == empty)] = 0
    keep = counts > 0
    pixels = pd.DataFrame({"bin1_id": i[keep], "bin2_id": j[keep], "count": counts[keep]})
    cooler.create_cooler(str(path), bins, pixels)
    clr = cooler.Cooler(str(path))
    if balance:
        with np.errstate(divide="ignore", invalid="ignore"):
            cooler.balance_cooler(clr, cis_only=True, min_nnz=3, store=True)
    return clr


def dense_balanced(clr: cooler.Cooler, chrom: str, balance: bool | str = True) -> np.ndarray:
    return np.asarray(clr.matrix(balance=balance).fetch(chrom), dtype=np.float64)


def band_reference(dense: np.ndarray, max_diag: int, bad: np.ndarray) -> np.ndarray:
    """values[d, i] = dense[i, i + d], NaN for masked bins and past the end."""
    n = dense.shape[0]
    ref = np.full((max_diag, n), np.nan)
    for d in range(min(max_diag, n)):
        ref[d, : n - d] = np.diagonal(dense, d)
    ref[:, bad] = np.nan
    for d in range(min(max_diag, n)):
        ref[d, : n - d][bad[d:]] = np.nan
    return ref


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(np.nan_to_num(actual), np.nan_to_num(expected), rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def small_cool(tmp_path_factory: pytest.TempPathFactory) -> cooler.Cooler:
    return make_cool(tmp_path_factory.mktemp("hic") / "small.cool")


@pytest.mark.parametrize("chunk_pixels", [7, 5_000_000])
def test_band_equals_dense_balanced_matrix(small_cool: cooler.Cooler, chunk_pixels: int) -> None:
    band = read_band(small_cool, "chr1", max_diag=12, chunk_pixels=chunk_pixels)
    dense = dense_balanced(small_cool, "1")
    weights = small_cool.bins().fetch("1")["weight"].to_numpy()
    assert band.chrom == "chr1" and band.n_bins == 61 and band.binsize == BINSIZE
    assert band.values.dtype == np.float32 and band.values.shape == (12, 61)
    np.testing.assert_array_equal(band.bad_bins, np.isnan(weights))
    assert band.bad_bins[5] and band.bad_bins[30]
    assert_same(band.values, band_reference(dense, 12, band.bad_bins))
    assert np.all(np.isnan(band.values[3, 58:]))  # past the chromosome end
    finite = np.isfinite(band.values)
    np.testing.assert_array_equal(band.n_valid, finite.sum(axis=1))
    np.testing.assert_array_equal(band.nnz, (finite & (band.values != 0)).sum(axis=1))


def test_band_has_zeros_where_no_pixel_between_valid_bins(tmp_path: Path) -> None:
    bins = cooler.binnify(pd.Series({"chr1": 10_000}), BINSIZE)
    pixels = pd.DataFrame({"bin1_id": [0, 0, 2], "bin2_id": [0, 1, 4], "count": [4.0, 2.5, 1.0]})
    cooler.create_cooler(str(tmp_path / "t.cool"), bins, pixels, dtypes={"count": np.float64})
    band = read_band(cooler.Cooler(str(tmp_path / "t.cool")), "1", max_diag=3, weight=None)
    # weight=None: the stored (float) values as they are, bins without any contact masked
    np.testing.assert_array_equal(band.bad_bins, [False, False, False, True, False] + [True] * 5)
    assert band.values[0, 0] == 4.0 and band.values[1, 0] == 2.5 and band.values[2, 2] == 1.0
    assert band.values[0, 1] == 0.0 and band.values[2, 0] == 0.0  # valid bins, no pixel
    assert np.isnan(band.values[1, 2])  # bin 3 masked


def test_band_weight_none_matches_unbalanced(small_cool: cooler.Cooler) -> None:
    band = read_band(small_cool, "2", max_diag=40, weight=None)
    dense = dense_balanced(small_cool, "2", balance=False)
    assert not band.bad_bins.any()
    assert_same(band.values, band_reference(dense, 40, band.bad_bins))


def test_band_max_diag_longer_than_chromosome(small_cool: cooler.Cooler) -> None:
    band = read_band(small_cool, "2", max_diag=45)
    assert np.all(np.isnan(band.values[40:]))
    assert_same(band.values, band_reference(dense_balanced(small_cool, "2"), 45, band.bad_bins))


def test_patches_equal_dense_slices(small_cool: cooler.Cooler) -> None:
    max_diag, size = 15, 8
    band = read_band(small_cool, "chr1", max_diag=max_diag)
    dense = dense_balanced(small_cool, "1")
    n = dense.shape[0]
    rows_idx, cols_idx = np.indices(dense.shape)
    ref = np.where(np.abs(rows_idx - cols_idx) < max_diag, dense, np.nan)
    padded = np.full((n + 2 * size, n + 2 * size), np.nan)
    padded[size : size + n, size : size + n] = ref
    rows = np.array([0, 10, 14, 20, 3, -3, 55, 56, 25, 0, 50])
    cols = np.array([0, 10, 10, 27, 12, -3, 55, 50, 41, 40, 58])
    got = band.patches(rows, cols, size)
    assert got.shape == (len(rows), size, size) and got.dtype == np.float32
    for k, (r, c) in enumerate(zip(rows, cols, strict=True)):
        expected = padded[r + size : r + 2 * size, c + size : c + 2 * size]
        assert_same(got[k], expected)
    diagonal = got[1]
    np.testing.assert_array_equal(np.isnan(diagonal), np.isnan(diagonal.T))
    np.testing.assert_allclose(np.nan_to_num(diagonal), np.nan_to_num(diagonal.T))
    assert np.all(np.isnan(got[9]))  # 40 diagonals away, beyond max_diag
    assert np.isnan(got[5][:3]).all() and np.isnan(got[10][:, 3:]).all()  # off the chromosome
    assert_same(band.dense(10, 18), got[1])


def test_open_cool_mcool_and_uri(tmp_path: Path, small_cool: cooler.Cooler) -> None:
    mcool = tmp_path / "x.mcool"
    cooler.zoomify_cooler(small_cool.filename, str(mcool), [1000, 2000, 4000], chunksize=10**6)
    clr = open_hic(mcool, 2000)
    assert clr.binsize == 2000
    assert open_hic(f"{mcool}::resolutions/4000", 4000).binsize == 4000
    assert open_hic(f"{mcool}::/resolutions/4000", None).binsize == 4000
    assert open_hic(small_cool.filename, None).binsize == 1000
    assert cooler_chromsizes(clr) == {"chr1": 60_500, "chr2": 40_000}
    assert native_chrom_name(clr, "chr2") == "2"
    assert native_chrom_name(clr, "2") == "2"
    with pytest.raises(InputError, match=r"chromosome chr9 not found \(it has 1, 2\)"):
        native_chrom_name(clr, "chr9")


def test_open_errors(tmp_path: Path, small_cool: cooler.Cooler) -> None:
    mcool = tmp_path / "x.mcool"
    cooler.zoomify_cooler(small_cool.filename, str(mcool), [1000, 2000], chunksize=10**6)
    with pytest.raises(InputError) as info:
        open_hic(mcool, 5000)
    message = str(info.value)
    assert "available: 1000, 2000" in message and "set `resolution`" in message
    assert str(mcool) in message
    with pytest.raises(InputError, match="available: 1000, 2000"):
        open_hic(mcool, None)
    with pytest.raises(InputError, match=r"no resolution 5000 in this \.mcool"):
        open_hic(f"{mcool}::resolutions/5000", None)
    with pytest.raises(InputError, match="bins are 1000 bp, not the requested 5000 bp"):
        open_hic(small_cool.filename, 5000)
    with pytest.raises(InputError, match="not found"):
        open_hic(tmp_path / "absent.cool", 1000)
    text = tmp_path / "text.cool"
    text.write_text("not hdf5\n")
    with pytest.raises(InputError, match="truncated or corrupt"):
        open_hic(text, 1000)


def test_truncated_file_is_an_input_error(tmp_path: Path, small_cool: cooler.Cooler) -> None:
    data = Path(small_cool.filename).read_bytes()
    for fraction in (0.5, 0.9):
        broken = tmp_path / f"broken{fraction}.cool"
        broken.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InputError) as info:
            read_band(open_hic(broken, BINSIZE), "chr1", 10)
        assert str(broken) in str(info.value) and "re-download" in str(info.value)


def test_balance_scale(tmp_path: Path, small_cool: cooler.Cooler) -> None:
    with h5py.File(small_cool.filename, "r") as h5:
        scales = np.asarray(h5["bins/weight"].attrs["scale"])
    assert scales.shape == (2,)  # cis-only balancing: one scale per chromosome
    assert balance_scale(small_cool, "weight") == pytest.approx(scales.mean())
    assert balance_scale(small_cool, "weight", chrom="chr2") == pytest.approx(scales[1])
    raw = make_cool(tmp_path / "raw.cool", balance=False)
    with raw.open("r+") as group:
        group["bins"].create_dataset("w2", data=np.ones(len(raw.bins())))
    assert balance_scale(raw, "w2") == 1.0
    with pytest.raises(InputError, match="no 'weight' column"):
        balance_scale(raw, "weight")
    with pytest.raises(InputError, match="hicmix balance"):
        read_band(raw, "chr1", 5)


def test_divisive_weights(tmp_path: Path) -> None:
    clr = make_cool(tmp_path / "d.cool")
    with clr.open("r+") as group:
        weights = group["bins/weight"][:]
        group["bins"].create_dataset("inverse", data=1.0 / weights)
        group["bins/inverse"].attrs["divisive_weights"] = True
    np.testing.assert_allclose(
        read_band(clr, "1", 6, weight="inverse").values,
        read_band(clr, "1", 6).values,
        rtol=1e-6,
    )


def write_expected(path: Path) -> None:
    rows = []
    for region, n_valid, scale in (("1", 10, 1.0), ("2", 30, 2.0), ("3", 5, 100.0)):
        for dist in range(4):
            value = np.nan if dist == 0 else scale / dist
            rows.append((region, region, dist, n_valid, value, 3.0 * scale))
    table = pd.DataFrame(
        rows, columns=["region1", "region2", "dist", "n_valid", "balanced.avg", "count.avg"]
    )
    table.to_csv(path, sep="\t", index=False)


def test_read_expected_weighted_by_n_valid(tmp_path: Path) -> None:
    path = tmp_path / "e.tsv"
    write_expected(path)
    curve = read_expected(path, ["chr1", "chr2"], max_diag=6)
    assert curve.dtype == np.float32 and curve.shape == (6,)
    per_dist = (10 * 1.0 + 30 * 2.0) / 40 / np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(curve[1:4], per_dist, rtol=1e-6)
    assert curve[0] == curve[1]  # leading gap: nearest finite diagonal
    assert curve[4] == curve[5] == curve[3]  # trailing: last finite value
    only_three = read_expected(path, ["3"], max_diag=3)
    np.testing.assert_allclose(only_three, [100.0, 100.0, 50.0])
    with pytest.raises(InputError, match="none of the chromosomes"):
        read_expected(path, ["chrX"], 3)
    pd.read_csv(path, sep="\t").drop(columns="balanced.avg").to_csv(path, sep="\t", index=False)
    np.testing.assert_allclose(read_expected(path, ["chr1"], 2), [3.0, 3.0])


def test_hic_file_is_converted(tmp_path: Path) -> None:
    hictkpy = pytest.importorskip("hictkpy")
    rng = np.random.default_rng(1)
    chroms = {"chr1": 30_000, "chr2": 20_000}
    n = 50
    i, j = np.triu_indices(n)
    counts = rng.poisson(np.where(j - i < 10, 20.0 / (1 + j - i), 0.0))
    keep = counts > 0
    cis = (i[keep] < 30) == (j[keep] < 30)
    frame = pd.DataFrame(
        {"bin1_id": i[keep][cis], "bin2_id": j[keep][cis], "count": counts[keep][cis]}
    )
    writer = hictkpy.hic.FileWriter(str(tmp_path / "t.hic"), chroms, [1000, 2000], tmpdir=tmp_path)
    writer.add_pixels_from_dict({k: frame[k].tolist() for k in frame})
    writer.finalize()
    with pytest.raises(InputError, match="available: 1000, 2000"):
        open_hic(tmp_path / "t.hic", 5000)
    clr = open_hic(tmp_path / "t.hic", 1000, cache_dir=tmp_path / "cache")
    assert clr.binsize == 1000 and cooler_chromsizes(clr) == chroms
    assert Path(clr.filename).parent == tmp_path / "cache"
    dense = np.zeros((n, n))
    dense[frame.bin1_id, frame.bin2_id] = frame["count"]
    dense = np.triu(dense) + np.triu(dense, 1).T
    np.testing.assert_array_equal(clr.matrix(balance=False)[:], dense)


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_chr20_band() -> None:
    clr = open_hic(REALDATA / "hic/GM12878_Rao2014rep_chr20_25kb.hg19.cool", 25_000)
    start = time.perf_counter()
    band = read_band(clr, "chr20", max_diag=100)
    assert time.perf_counter() - start < 10
    assert band.n_bins == 2522 and band.values.shape == (100, 2522)
    assert 0 < band.bad_bins.sum() < 300
    dense = np.asarray(clr.matrix(balance=True).fetch("chr20:30,000,000-32,500,000"))
    patch = band.patches([1200], [1200], 100)[0]
    assert_same(patch, dense)
    assert balance_scale(clr) == pytest.approx(15931.93, rel=1e-5)


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_chr21_region_coolers_declare_whole_chr21() -> None:
    clr = open_hic(REALDATA / "hic/GM12878_chr21_28.0-30.3Mb_10kb_capped200.hg19.cool", 10_000)
    assert cooler_chromsizes(clr) == {"chr21": 48_129_895}
    band = read_band(clr, "chr21", max_diag=50, weight=None)
    valid = np.flatnonzero(~band.bad_bins)
    assert valid.min() == 2800 and valid.max() == 3030  # 28.0-30.3 Mb carries the data
    assert np.nanmax(band.values) == 200.0
