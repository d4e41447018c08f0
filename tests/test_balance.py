"""The balance stage: extraction, ICE / keep / none weights, expected, report and atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import cooler
import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from hicmix.balance import IceParams, balance_hic, output_paths
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.hic import balance_scale, read_band, read_expected

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
BINSIZE = 1000
CHROMS = {"1": 80_000, "2": 50_500}


def simulate_cool(path: Path, seed: int = 0) -> Path:
    """Raw counts with per-bin coverage biases, distance decay, trans noise and one empty bin."""
    rng = np.random.default_rng(seed)
    bins = cooler.binnify(pd.Series(CHROMS), BINSIZE)
    n = len(bins)
    bias = rng.uniform(0.5, 1.5, n)
    i, j = np.triu_indices(n)
    chrom = bins["chrom"].to_numpy()
    decay = np.where(chrom[i] == chrom[j], 200.0 / (1 + j - i) ** 0.8, 0.2)
    counts = rng.poisson(decay * bias[i] * bias[j])
    counts[(i == 17) | (j == 17)] = 0
    keep = counts > 0
    pixels = pd.DataFrame({"bin1_id": i[keep], "bin2_id": j[keep], "count": counts[keep]})
    cooler.create_cooler(str(path), bins, pixels)
    return path


@pytest.fixture(scope="module")
def raw_mcool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    cool = simulate_cool(folder / "raw.cool")
    mcool = folder / "raw.mcool"
    cooler.zoomify_cooler(str(cool), str(mcool), [1000, 2000], chunksize=10**6)
    return mcool


@pytest.fixture(scope="module")
def ice_result(raw_mcool: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ice") / "SIM.cool"
    return out, balance_hic(raw_mcool, out, 1000, mode="auto")


def cis_row_sums(clr: cooler.Cooler, chrom: str, ignore_diags: int) -> np.ndarray:
    dense = np.asarray(clr.matrix(balance=True).fetch(chrom))
    rows, cols = np.indices(dense.shape)
    dense[np.abs(rows - cols) < ignore_diags] = 0
    return np.nansum(dense, axis=1)


def test_ice_converges_and_rows_sum_to_one(ice_result: tuple[Path, dict]) -> None:
    out, report = ice_result
    clr = cooler.Cooler(str(out))
    assert clr.binsize == 1000 and list(clr.chromnames) == ["1", "2"]  # native names kept
    assert report["mode_used"] == "ice" and report["converged"] is True
    weights = clr.bins()[:]["weight"].to_numpy()
    for chrom in ("1", "2"):
        sums = cis_row_sums(clr, chrom, ignore_diags=2)
        lo, hi = clr.extent(chrom)
        valid = np.isfinite(weights[lo:hi])
        np.testing.assert_allclose(sums[valid], 1.0, rtol=1e-3)
    assert np.isnan(weights[17])
    assert report["masked_bins"] == {"1": 1, "2": 0}
    assert report["n_bins"] == {"1": 80, "2": 51}


def test_weight_attrs_mimic_cooler_balance(ice_result: tuple[Path, dict]) -> None:
    out, report = ice_result
    with h5py.File(out, "r") as h5:
        attrs = dict(h5["bins/weight"].attrs)
    assert attrs["cis_only"] and not attrs["divisive_weights"]
    assert attrs["ignore_diags"] == 2 and attrs["mad_max"] == 5 and attrs["min_nnz"] == 10
    assert np.asarray(attrs["scale"]).shape == (2,) and np.asarray(attrs["converged"]).all()
    scale = balance_scale(cooler.Cooler(str(out)), "weight")
    assert scale == pytest.approx(np.mean(attrs["scale"]))
    assert report["scale"] == pytest.approx(scale)
    assert report["scale_per_chrom"]["1"] == pytest.approx(attrs["scale"][0])
    assert report["params"]["max_iters"] == 200 and report["params"]["cis_only"] is True
    relative = report["relative_var_per_chrom"]["1"]
    assert relative == pytest.approx(attrs["var"][0] / attrs["scale"][0] ** 2)
    assert report["hicmix_version"] and report["total_contacts"] > report["cis_contacts"] > 0
    assert json.loads(output_paths(out)[2].read_text()) == report


def test_expected_matches_band_means(ice_result: tuple[Path, dict]) -> None:
    out, _ = ice_result
    expected_path = output_paths(out)[1]
    assert expected_path.name == "SIM.expected.tsv"
    table = pd.read_csv(expected_path, sep="\t")
    assert {"region1", "region2", "dist", "n_valid", "balanced.avg", "count.avg"} <= set(table)
    curve = read_expected(expected_path, ["chr1", "chr2"], max_diag=60)
    clr = cooler.Cooler(str(out))
    bands = [read_band(clr, c, 60) for c in ("chr1", "chr2")]
    sums = sum(np.nansum(b.values, axis=1) for b in bands)
    counts = sum(b.n_valid for b in bands)
    np.testing.assert_allclose(curve[:51], (sums / counts)[:51], rtol=1e-4)
    assert np.isfinite(curve).all()
    assert curve[0] > curve[1] > curve[10]  # diagonals 0 and 1 are kept in the expected curve


def test_keep_and_auto_keep_existing_weights(ice_result: tuple[Path, dict], tmp_path: Path) -> None:
    balanced, _ = ice_result
    with h5py.File(balanced, "r") as h5:
        original = h5["bins/weight"][:]
    for mode in ("keep", "auto"):
        out = tmp_path / f"{mode}.cool"
        report = balance_hic(balanced, out, 1000, mode=mode)
        assert report["mode_used"] == "keep"
        with h5py.File(out, "r") as h5:
            np.testing.assert_array_equal(h5["bins/weight"][:], original)


def test_keep_without_weights_is_an_error(raw_mcool: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        balance_hic(raw_mcool, tmp_path / "k.cool", 2000, mode="keep")
    assert str(raw_mcool) in str(info.value) and "--mode ice" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind, not even temporary files


def test_none_mode_for_normalised_values(tmp_path: Path) -> None:
    bins = cooler.binnify(pd.Series({"chr21": 20_000}), BINSIZE)
    pixels = pd.DataFrame(
        {"bin1_id": [5, 5, 6, 7], "bin2_id": [5, 6, 6, 9], "count": [200.0, 120.5, 200.0, 3.25]}
    )
    source = tmp_path / "capped.cool"
    cooler.create_cooler(str(source), bins, pixels, dtypes={"count": np.float64})
    out = tmp_path / "out" / "capped.cool"
    report = balance_hic(source, out, 1000, mode="none")
    weights = cooler.Cooler(str(out)).bins()[:]["weight"].to_numpy()
    expected = np.full(20, np.nan)
    expected[[5, 6, 7, 9]] = 1.0
    np.testing.assert_array_equal(weights, expected)
    assert report["mode_used"] == "none" and report["scale"] == 1.0
    assert report["masked_bins"] == {"chr21": 16}
    band = read_band(cooler.Cooler(str(out)), "chr21", 5)
    assert band.values[1, 5] == np.float32(120.5) and band.values[2, 7] == 3.25
    # diagonal 0 over the 4 valid bins: 200, 200, 0, 0
    assert read_expected(output_paths(out)[1], ["chr21"], 3)[0] == pytest.approx(100.0)


def test_chromosome_subset_and_resolution_pick(raw_mcool: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub.cool"
    report = balance_hic(raw_mcool, out, 2000, mode="ice", chromosomes=["chr2"])
    clr = cooler.Cooler(str(out))
    assert clr.binsize == 2000 and report["chromosomes"] == ["2"]
    weights = clr.bins()[:]
    assert weights[weights.chrom == "1"]["weight"].isna().all()
    assert weights[weights.chrom == "2"]["weight"].notna().sum() > 20
    table = pd.read_csv(output_paths(out)[1], sep="\t", dtype={"region1": str})
    assert set(table["region1"]) == {"2"}
    assert report["scale_per_chrom"].keys() == {"2"} and np.isfinite(report["scale"])
    json.loads(output_paths(out)[2].read_text(), parse_constant=pytest.fail)  # strict JSON
    with pytest.raises(InputError, match="chromosome chr7 not found"):
        balance_hic(raw_mcool, tmp_path / "x.cool", 2000, chromosomes=["chr7"])


def test_outputs_are_atomic(
    raw_mcool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hicmix.balance

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("expected failed")

    monkeypatch.setattr(hicmix.balance, "_expected", broken)
    with pytest.raises(RuntimeError):
        balance_hic(raw_mcool, tmp_path / "a.cool", 1000)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"must end in \.cool"):
        balance_hic(raw_mcool, tmp_path / "a.h5", 1000)
    with pytest.raises(InputError, match="available: 1000, 2000"):
        balance_hic(raw_mcool, tmp_path / "a.cool", 5000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fraction", [0.3, 0.8, 0.95])
def test_truncated_input(raw_mcool: Path, tmp_path: Path, fraction: float) -> None:
    data = raw_mcool.read_bytes()
    broken = tmp_path / "in" / "broken.mcool"
    broken.parent.mkdir()
    broken.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError, match=r"truncated or corrupt.*re-download"):
        balance_hic(broken, tmp_path / "out" / "b.cool", 1000)
    assert list((tmp_path / "out").iterdir()) == []


def test_ice_params_are_used(raw_mcool: Path, tmp_path: Path) -> None:
    report = balance_hic(
        raw_mcool, tmp_path / "p.cool", 1000, mode="ice", params=IceParams(max_iters=2, tol=1e-12)
    )
    assert report["converged"] is False and report["params"]["max_iters"] == 2
    assert report["stored_attrs"]["tol"] == 1e-12


def test_cli(raw_mcool: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli" / "S.cool"
    args = ["balance", "--hic", str(raw_mcool), "--resolution", "2000", "--mode", "ice"]
    args += ["--ignore-diags", "1", "--mad-max", "3", "--min-nnz", "5", "--max-iters", "300"]
    args += ["--tol", "1e-6", "--chromosomes", "1,2", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(output_paths(out)[2].read_text())
    assert report["params"]["ignore_diags"] == 1 and report["params"]["mad_max"] == 3
    assert report["params"]["min_nnz"] == 5 and report["params"]["tol"] == 1e-6
    bad = CliRunner().invoke(
        cli, ["balance", "--hic", str(raw_mcool), "--resolution", "7", "--out", str(out)]
    )
    assert bad.exit_code == 1 and "error:" in bad.output and "available: 1000, 2000" in bad.output


def test_hic_input_is_converted_then_balanced(tmp_path: Path) -> None:
    hictkpy = pytest.importorskip("hictkpy")
    clr = cooler.Cooler(str(simulate_cool(tmp_path / "src.cool")))
    pixels = clr.pixels()[:]
    pixels = pixels[clr.bins()[:]["chrom"].to_numpy()[pixels.bin1_id] == "2"]  # cis only, on '2'
    writer = hictkpy.hic.FileWriter(
        str(tmp_path / "in.hic"), dict(clr.chromsizes.astype(int)), [1000], tmpdir=tmp_path
    )
    writer.add_pixels_from_dict({k: pixels[k].tolist() for k in ("bin1_id", "bin2_id", "count")})
    writer.finalize()
    out = tmp_path / "out" / "H.cool"
    report = balance_hic(tmp_path / "in.hic", out, 1000, chromosomes=["chr2"])
    assert report["mode_used"] == "ice" and report["converged"] is True
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "H.balance.json",
        "H.cool",
        "H.expected.tsv",
    ]
    balanced = cooler.Cooler(str(out))
    np.testing.assert_array_equal(
        balanced.matrix(balance=False).fetch("2"), clr.matrix(balance=False).fetch("2")
    )


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_region_cooler_none_mode(tmp_path: Path) -> None:
    source = REALDATA / "hic/GM12878_chr21_28.0-30.3Mb_10kb_capped200.hg19.cool"
    report = balance_hic(source, tmp_path / "g.cool", 10_000, mode="auto")
    assert report["mode_used"] == "ice"  # no weight column: auto would ICE it ...
    report = balance_hic(source, tmp_path / "g.cool", 10_000, mode="none")  # ... so use none
    assert report["n_bins"] == {"chr21": 4813} and report["masked_bins"]["chr21"] == 4813 - 231
