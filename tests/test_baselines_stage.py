"""The baselines stage (hicmix baselines) on a tiny simulated genome: bulk tile reading, the
expression tensor, each task's outputs in the hicmix finetune formats, val-only selection,
cross-cell runs, genome-wide Peakachu calling, the external-tensor CV, run config and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hicmix.balance import balance_hic
from hicmix.baselines.run import (
    BandReader,
    BaselinesConfig,
    TileArrays,
    caller_training_set,
    expression_tensor,
    learning_curve_sizes,
    load_baselines_config,
    load_tiles,
    masked_band,
    region_bins,
    run_baselines,
    run_npz,
    tensor_grid,
    training_bins,
    training_chromosomes,
    write_baselines_config,
)
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.evaluate import METRIC_COLUMNS
from hicmix.finetune import EXPRESSION_COLUMNS, LOOP_PREDICTION_COLUMNS
from hicmix.simulate import SimParams, simulate_genome
from hicmix.tiles import TileDataset, tile_cell_line

RES, W, SUBBIN = 10_000, 16, 1000  # P = 10
SPLIT = {"val": ["chr2"], "test": ["chr3"]}
#: small and fast settings of every method
CONFIG = {
    "methods": {
        "peakachu": {"w": 3, "grid": "small", "cv": 2},
        "dloopcaller": {"epochs": 2, "batch_size": 32},
        "track_outer": {"max_pixels": 20_000},
        "epiphany_lite": {"epochs": 1, "conv": 8, "hidden": 8, "pair": 8},
        "deepchrome": {"epochs": 2, "batch_size": 32},
        "simplechrome": {"vae_epochs": 1, "head_epochs": 2},
    },
    "expression": {"learning_curve": [30, "all"]},
    "loops_genomewide": {"max_bp": 600_000},
    "device": "cpu",
}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """chr1 4 Mb (train), chr2 3 Mb (val), chr3 3 Mb (test); SIMB = the same maps renamed."""
    root = tmp_path_factory.mktemp("baselines_genome")
    sim = simulate_genome(
        root / "sim",
        cell_lines=["SIMA"],
        seed=0,
        chrom_lengths_mb=[4, 3, 3],
        params=SimParams(extra_loops_per_tad=6.0),
        progress=False,
    )
    balance_hic(sim["hic"]["SIMA"], root / "SIMA.cool", RES)
    common = {
        "assembly": "sim1",
        "hic": root / "SIMA.cool",
        "expected": root / "SIMA.expected.tsv",
        "tracks": sim["tracks"]["SIMA"],
        "loops": sim["loops"]["SIMA"],
        "genes": sim["genes"],
        "expression_column": "SIMA",
        "splits": SPLIT,
        "window_bins": W,
        "stride_bins": 4,
        "subbin_bp": SUBBIN,
        "progress": False,
    }
    for cell in ("SIMA", "SIMB"):
        tile_cell_line(cell_line=cell, out=root / "tiles" / cell, kinds=["loops", "tss"], **common)
    config = write_baselines_config(CONFIG, root / "baselines.yaml")
    return {"root": root, "tiles": root / "tiles" / "SIMA", "other": root / "tiles" / "SIMB",
            "config": config, "genes": sim["genes"]}  # fmt: skip


def _metrics(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path / "metrics.tsv", sep="\t")
    assert tuple(table.columns) == METRIC_COLUMNS
    return table


def _summary(path: Path) -> dict:
    summary = json.loads((path / "summary.json").read_text())
    assert summary["finished"] is True
    return summary


def _run(genome: dict, task: str, method: str, name: str, test=None, seeds=(0,), **kw) -> Path:
    out = genome["root"] / "runs" / task / method / name
    run_baselines(task, method, [genome["tiles"]], test, genome["config"], out, seeds, **kw)
    return out


@pytest.fixture(scope="module")
def peakachu_run(genome: dict) -> Path:
    return _run(genome, "loops", "peakachu", "SIMA", seeds=(0, 1))


# ----------------------------------------------------------------------------- reading tiles


def test_load_tiles_matches_the_dataset(genome: dict):
    data = load_tiles([genome["tiles"]], "loops", "test")
    dataset = TileDataset([genome["tiles"]], "loops", ["test"])
    assert len(data) == len(dataset) > 0
    for item in (0, len(data) // 2, len(data) - 1):
        sample = dataset[item]
        np.testing.assert_array_equal(data.hic[item], sample["hic"][0].numpy())
        np.testing.assert_array_equal(data.mask[item], sample["hic_mask"][0].numpy() > 0)
        np.testing.assert_array_equal(data.tracks[item], sample["tracks"].numpy())
        assert data.label[item] == sample["label"].item()
        assert data.distance[item] == sample["distance"].item()
    half = load_tiles([genome["tiles"]], "loops", "test", ("tracks",), (0, W * 10))
    np.testing.assert_array_equal(half.tracks, data.tracks[:, :, : W * 10])
    assert half.hic is None
    assert training_chromosomes(data.manifest) == ["chr1"]


# ----------------------------------------------------------------------------- expression tensor


def test_tensor_grid_uses_100bp_bins_only_where_the_subbin_allows():
    assert tensor_grid(50, 5000, 100) == (100, 2, 100)  # 200 sub-bins -> 100 bins of 100 bp
    assert tensor_grid(100, 5000, 100) == (50, 1, 100)
    assert tensor_grid(200, 5000, 100) == (25, 1, 200)  # the sub-bin grid: 50 bins of 200 bp
    assert tensor_grid(1000, 5000, 100) == (5, 1, 1000)


def _fake_tss(subbin: int, tss: list[int], strand: list[str]) -> tuple[TileArrays, pd.DataFrame]:
    """Two channels whose value is the sub-bin position (channel 1 = 10x), windows at bp 0."""
    window, res = 4, 1000
    positions = window * res // subbin
    manifest = {
        "cell_line": "X", "subbin_bp": subbin, "window_bins": window,
        "positions_per_bin": res // subbin, "channels": ["ATAC", "CTCF"],
        "track_transform": "log2p1",
    }  # fmt: skip
    n = len(tss)
    base = np.arange(2 * positions, dtype=np.float32)
    tracks = np.stack([np.stack([base, 10 * base])] * n)
    index = pd.DataFrame({"gene_id": [f"g{i}" for i in range(n)], "start_x": 0, "chrom": "chr1",
                          "cell_line": "X"})  # fmt: skip
    arrays = TileArrays(index, [manifest], np.zeros(n, np.float32), np.zeros(n, np.int64),
                        np.zeros((n, 2), np.int64), tracks=tracks)  # fmt: skip
    genes = pd.DataFrame({"gene_id": index["gene_id"], "tss": tss, "strand": strand})
    return arrays, genes


def test_expression_tensor_crops_bins_and_orients():
    arrays, genes = _fake_tss(50, [2000, 2000, 230], ["+", "-", "+"])
    x, info = expression_tensor(arrays, genes, flank_bp=500, bin_bp=100)
    assert x.shape == (3, 10, 2) and info["bin_bp"] == 100 and info["marks"] == ["ATAC", "CTCF"]
    # TSS at 2000 bp = sub-bin 40: sub-bins 30..49, averaged in pairs
    np.testing.assert_allclose(x[0, :, 0], np.arange(30, 50).reshape(10, 2).mean(axis=1))
    np.testing.assert_allclose(x[0, :, 1], 10 * x[0, :, 0])
    np.testing.assert_allclose(x[1], x[0][::-1])  # '-' strand: reversed
    # near the window start: positions before 0 are 0, the rest follow the signal
    assert x[2, 0, 0] == 0.0 and x[2, -1, 0] == pytest.approx(12.5)  # sub-bins -6 … 13
    coarse, info = expression_tensor(arrays, genes, flank_bp=500, bin_bp=30)
    assert coarse.shape == (3, 20, 2) and info["bin_bp"] == 50  # sub-bin grid
    arrays, genes = _fake_tss(50, [2000], ["+"])
    with pytest.raises(InputError, match="not in the gene table"):
        expression_tensor(arrays, genes.assign(gene_id="other"))


def test_learning_curve_sizes():
    assert learning_curve_sizes([100, 1000, "all"], 500) == [("100", 100), ("all", 500)]
    assert learning_curve_sizes([100], 50) == [("all", 50)]


# ----------------------------------------------------------------------------- loops


def test_peakachu_patches_outputs_and_selection(peakachu_run: Path, genome: dict):
    for seed in (0, 1):
        folder = peakachu_run / f"seed{seed}"
        assert (folder / "model.joblib").is_file()
        pred = pd.read_csv(folder / "predictions.tsv", sep="\t")
        assert tuple(pred.columns) == LOOP_PREDICTION_COLUMNS
        assert set(pred["split"]) == {"val", "test"} and pred["score"].between(0, 1).all()
        assert set(pred.loc[pred["split"] == "test", "chrom"]) == {"chr3"}
        metrics = _metrics(folder)
        assert set(metrics["seed"]) == {seed} and set(metrics["method"]) == {"peakachu"}
        assert set(metrics["split"]) == {"val", "test"} and set(metrics["task"]) == {"loops"}
        test = metrics[(metrics["split"] == "test") & (metrics["metric"] == "auroc")]
        assert float(test["value"].iloc[0]) > 0.8  # planted dots are easy for O/E features
        summary = _summary(folder)
        assert summary["selection_split"] == "train_cv" and summary["task"] == "loops"
        assert summary["n_samples"]["test:SIMA"] == int((pred["split"] == "test").sum())


def test_dloopcaller_selects_on_val_and_cross_cell_has_test_rows_only(genome: dict):
    same = _run(genome, "loops", "dloopcaller", "SIMA")
    cross = _run(genome, "loops", "dloopcaller", "SIMB", test=[genome["other"]])
    summary = _summary(same / "seed0")
    assert summary["selection_split"] == "val" and summary["track_channel"] == "ATAC"
    history_best = _metrics(same / "seed0").query("split == 'val' and metric == 'best_epoch'")
    assert float(history_best["value"].iloc[0]) == summary["best_epoch"]
    metrics = _metrics(cross / "seed0")
    assert set(metrics["split"]) == {"test"}
    assert set(metrics["cell_line"]) == {"SIMB"} and set(metrics["train_cell_line"]) == {"SIMA"}
    # SIMB holds SIMA's maps: the refitted model (same seed) gives the same test scores
    a = pd.read_csv(same / "seed0/predictions.tsv", sep="\t").query("split == 'test'")
    b = pd.read_csv(cross / "seed0/predictions.tsv", sep="\t")
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), atol=1e-5)


def test_genomewide_peakachu_threshold_from_val(peakachu_run: Path, genome: dict):
    out = _run(genome, "loops_genomewide", "peakachu", "SIMA", seeds=(0, 1),
               model_run=peakachu_run)  # fmt: skip
    folder = out / "seed0"
    summary = _summary(folder)
    assert summary["selection_split"] == "val" and summary["threshold_source"].startswith("val")
    grid = pd.read_csv(folder / "threshold_grid.tsv", sep="\t")
    assert summary["threshold"] == pytest.approx(grid.loc[grid["f1"].idxmax(), "threshold"])
    metrics = _metrics(folder)
    assert set(metrics["task"]) == {"loops_genomewide"}
    test = metrics[metrics["split"] == "test"].set_index("metric")["value"]
    for name in ("f1_r1", "f1_r2", "precision_r1", "recall_r2", "n_calls", "n_truth"):
        assert name in test.index
    assert test["f1_r2"] >= test["f1_r1"] and test["n_truth"] > 0
    calls = pd.read_csv(folder / "calls.bedpe", sep="\t", header=None)
    assert calls.shape[1] == 7 and set(calls[0]) <= {"chr3"} and len(calls) == test["n_calls"]
    assert summary["test_regions"] == ["chr3"]
    cross = _run(genome, "loops_genomewide", "peakachu", "SIMB", test=[genome["other"]],
                 seeds=(0, 1), model_run=peakachu_run, threshold_run=out)  # fmt: skip
    cross_summary = _summary(cross / "seed1")
    assert cross_summary["threshold"] == _summary(out / "seed1")["threshold"]
    assert cross_summary["selection_split"] is None
    assert set(_metrics(cross / "seed1")["split"]) == {"test"}
    with pytest.raises(ConfigError, match="model-run"):
        _run(genome, "loops_genomewide", "peakachu", "none")


def test_genomewide_caller_rows_val_choice_and_cross_cell(genome: dict):
    out = _run(genome, "loops_genomewide", "hicmix-caller", "SIMA", seeds=(0, 1))
    folder = out / "seed0"
    summary = _summary(folder)
    assert summary["method"] == "hicmix-caller" and summary["threshold_source"] == "val (chr2)"
    assert summary["train_positives"] > 0 and summary["test_regions"] == ["chr3"]
    metrics = _metrics(folder)
    assert set(metrics["method"]) == {"hicmix-caller"} and set(metrics["split"]) == {"val", "test"}
    val = metrics[metrics["split"] == "val"].set_index("metric")["value"]
    test = metrics[metrics["split"] == "test"].set_index("metric")["value"]
    names = ["f1_r1", "f1_r2", "precision_r1", "recall_r1", "precision_r2", "recall_r2"]
    assert np.isfinite(test[[*names, "n_calls", "n_truth"]]).all() and test["n_truth"] > 0
    assert np.isfinite(val[names]).all()
    # the val-chosen pooling is recorded: val rows, summary and the choice table agree
    choice = pd.read_csv(folder / "threshold_grid.tsv", sep="\t")
    assert val["threshold"] == pytest.approx(summary["threshold"]) == choice["threshold"][0]
    assert val["pool_radius"] == summary["pool_radius"] == choice["pool_radius"][0]
    assert val["f1_r1"] == pytest.approx(choice["f1"][0])
    calls = pd.read_csv(folder / "calls.bedpe", sep="\t", header=None)
    assert calls.shape[1] == 7 and set(calls[0]) <= {"chr3"} and len(calls) == test["n_calls"]
    assert (folder / "model.joblib").is_file()
    # deterministic trees: every seed gives the same rows
    other = _metrics(out / "seed1").drop(columns="seed")
    pd.testing.assert_frame_equal(metrics.drop(columns="seed"), other)
    cross = _run(genome, "loops_genomewide", "hicmix-caller", "SIMB", test=[genome["other"]],
                 seeds=(1,), threshold_run=out)  # fmt: skip
    cross_summary = _summary(cross / "seed1")
    assert cross_summary["selection_split"] is None and cross_summary["test_cell_line"] == "SIMB"
    assert cross_summary["threshold"] == summary["threshold"]
    assert cross_summary["pool_radius"] == summary["pool_radius"]
    cross_test = _metrics(cross / "seed1")
    assert set(cross_test["split"]) == {"test"}
    # SIMB's tiles hold SIMA's maps: the same calls
    cross_values = cross_test.set_index("metric")["value"]
    pd.testing.assert_series_equal(cross_values, test, check_names=False)


def test_region_bins_follow_restrict():
    keep = region_bins([("chr1", 25_000, 60_000), ("chr2", 0, None)], "chr1", 10, 10_000)
    assert np.flatnonzero(keep).tolist() == [3, 4, 5]
    assert region_bins([("chr2", 0, None)], "chr2", 4, 10_000).all()
    band = np.arange(12.0).reshape(3, 4)  # [d, i] = M[i, i + d]
    cut = masked_band(band, np.array([True, True, False, True]))
    assert np.isnan(cut[0, 2]) and np.isnan(cut[1, 1]) and np.isnan(cut[2, 0])
    assert cut[2, 1] == band[2, 1] and np.isnan(cut[1, 3])  # (1, 3) kept; (3, 4) is off the end


@pytest.mark.parametrize("splits", [SPLIT, {"val": ["chr2"], "test": ["chr3", "chr1:2000000-"]}])
def test_caller_training_set_never_sees_held_out_contacts(genome: dict, splits: dict):
    """Scrambling every contact with an anchor in a val or test chromosome / region leaves the
    training candidates, labels and fitted scorer unchanged."""
    from hicmix.predict.loops import CallerSettings, fit_loop_scorer

    manifest = {**json.loads((genome["tiles"] / "manifest.json").read_text()), "splits": splits}
    reader = BandReader(manifest, 60 + 13)
    rng = np.random.default_rng(1)

    def scrambled(chrom: str) -> np.ndarray:
        values = np.asarray(reader(chrom), dtype=np.float64)
        keep = training_bins(manifest, chrom, values.shape[1])
        inside = np.isfinite(masked_band(np.zeros_like(values), keep))
        noise = rng.permutation(values.ravel()).reshape(values.shape) * 3.0 + 1.0
        return np.where(inside, values, noise)

    caller = CallerSettings(min_bins=2, max_bins=60)
    x, y, counts = caller_training_set(manifest, reader, caller)
    x2, y2, counts2 = caller_training_set(manifest, scrambled, caller)
    assert counts == counts2 and counts["train_positives"] > 0
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(x, x2)
    a, b = fit_loop_scorer(x, y, 0), fit_loop_scorer(x2, y2, 0)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    if len(splits["test"]) > 1:  # chr1 beyond 2 Mb is test: no candidate of it is trained on
        whole = caller_training_set({**manifest, "splits": SPLIT}, reader, caller)[2]
        assert counts["train_candidates"] < whole["train_candidates"]


# ----------------------------------------------------------------------------- Hi-C maps


@pytest.mark.parametrize("method", ["distance_decay", "track_outer", "epiphany_lite"])
def test_hicmap_baselines_write_the_finetune_layout(genome: dict, method: str):
    out = _run(genome, "hicmap", method, "SIMA")
    folder = out / "seed0"
    with h5py.File(folder / "predictions.h5") as h5:
        assert {"pred", "true", "mask", "bins", "distance", "split", "cell_line", "chrom",
                "gene_id"} <= set(h5)  # fmt: skip
        n = h5["pred"].shape[0]
        assert h5["pred"].shape == h5["true"].shape == (n, W, W)
        assert h5.attrs["method"] == method and h5.attrs["window_bins"] == W
        splits = h5["split"].asstr()[()]
    assert set(splits) == {"val", "test"}
    metrics = _metrics(folder).query("split == 'test'").set_index("metric")["value"]
    for name in ("pixel_pearson", "distance_pearson_mean", "r2_window_mean", "pearson_d01"):
        assert name in metrics.index
    if method == "distance_decay":  # constant along each diagonal: r(d) = 0 by construction
        assert metrics["distance_pearson_mean"] == 0.0 and metrics["pixel_pearson"] > 0.5


# ----------------------------------------------------------------------------- expression


@pytest.mark.parametrize("method", ["linear", "deepchrome", "simplechrome"])
def test_expression_baselines_outputs_and_learning_curve(genome: dict, method: str):
    out = _run(genome, "expression", method, "SIMA")
    folder = out / "seed0"
    table = pd.read_csv(folder / "expression.tsv", sep="\t", dtype={"gene_id": str})
    assert tuple(table.columns) == (*EXPRESSION_COLUMNS, "probability")
    assert table["probability"].between(0, 1).all() and set(table["split"]) == {"val", "test"}
    index = pd.read_csv(genome["tiles"] / "tss/index.tsv", sep="\t", dtype={"gene_id": str})
    test_genes = set(index.loc[index["split"] == "test", "gene_id"])
    assert set(table.loc[table["split"] == "test", "gene_id"]) == test_genes
    metrics = _metrics(folder)
    main = metrics[metrics["task"] == "expression"]
    assert {"pearson", "spearman", "r2", "above_median_auroc"} <= set(main["metric"])
    curve = metrics[metrics["task"] == "expression_learning_curve"]
    assert {"pearson_n30", "pearson_nall", "n_train_genes_n30"} <= set(curve["metric"])
    both = curve.query("split == 'test' and metric == 'pearson_nall'")["value"].iloc[0]
    assert both == main.query("split == 'test' and metric == 'pearson'")["value"].iloc[0]
    summary = _summary(folder)
    assert summary["tensor"]["bin_bp"] == SUBBIN and summary["tensor"]["shape_per_gene"] == [10, 5]
    expected = None if method == "linear" else "val"
    assert summary["selection_split"] == expected
    if method == "linear":  # histone marks at the TSS carry the simulated expression
        test = main.query("split == 'test' and metric == 'pearson'")["value"].iloc[0]
        assert test > 0.3


def test_npz_cross_validation(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.random((120, 8, 3)).astype(np.float32)
    y = 2.0 * x[:, :, 1].mean(axis=1) + 0.02 * rng.standard_normal(120)
    np.savez(tmp_path / "genes.npz", X=x, y_reg=y, gene_id=np.array([f"g{i}" for i in range(120)]))
    config = {**CONFIG, "expression_npz": {"folds": 3}}
    run_npz("linear", tmp_path / "genes.npz", tmp_path / "out", [0, 1], config, name="TOY")
    folder = tmp_path / "out/seed1"
    metrics = _metrics(folder)
    assert set(metrics["split"]) == {"cv"} and set(metrics["cell_line"]) == {"TOY"}
    values = metrics.set_index("metric")["value"]
    assert values["n_folds"] == 3 and values["above_median_auroc"] > 0.8
    folds = pd.read_csv(folder / "folds.tsv", sep="\t")
    assert len(folds) == 3
    assert values["pearson"] == pytest.approx(folds["pearson"].mean())
    assert values["pearson_fold_sd"] == pytest.approx(folds["pearson"].std(ddof=1))
    oof = pd.read_csv(folder / "expression.tsv", sep="\t")
    assert sorted(oof["gene_id"]) == sorted(f"g{i}" for i in range(120))  # each gene once
    assert "CV by gene" in _summary(folder)["protocol"]


# ----------------------------------------------------------------------------- config, errors, CLI


def test_run_config_roundtrip_and_errors(tmp_path: Path):
    path = write_baselines_config({"methods": {"dloopcaller": {"epochs": 3}}}, tmp_path / "c.yaml")
    cfg = load_baselines_config(path)
    assert cfg.method_settings("dloopcaller")["epochs"] == 3
    assert cfg.method_settings("peakachu")["w"] == 5
    assert cfg.expression_settings()["flank_bp"] == 5000
    with pytest.raises(ConfigError, match="unknown method"):
        BaselinesConfig.from_dict({"methods": {"hiccups": {}}})
    with pytest.raises(ConfigError, match="unknown key"):
        BaselinesConfig.from_dict({"expression": {"flank": 3}})
    with pytest.raises(ConfigError, match="learning_curve"):
        BaselinesConfig.from_dict({"expression": {"learning_curve": [1]}})
    with pytest.raises(ConfigError, match="no baseline"):
        run_baselines("loops", "linear", [tmp_path], None, None, tmp_path / "x", [0])


def test_empty_val_split_is_one_line(genome: dict, tmp_path: Path):
    folder = tmp_path / "tiles"
    manifest = json.loads((genome["tiles"] / "manifest.json").read_text())
    tile_cell_line(
        cell_line="SIMA", out=folder, kinds=["loops"], assembly="sim1",
        hic=genome["root"] / "SIMA.cool", expected=genome["root"] / "SIMA.expected.tsv",
        tracks=manifest["track_files"], loops=manifest["inputs"]["loops"]["path"],
        splits={"test": ["chr3"]}, window_bins=W, stride_bins=4, subbin_bp=SUBBIN, progress=False,
    )  # fmt: skip
    with pytest.raises(InputError, match="no loops samples in the val split"):
        run_baselines("loops", "peakachu", [folder], None, CONFIG, tmp_path / "out", [0])


def test_cli(genome: dict, tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        cli,
        ["baselines", "--task", "hicmap", "--method", "distance_decay", "--tiles",
         str(genome["tiles"]), "--config", str(genome["config"]), "--seed", "0", "--seed", "2",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "distance_decay hicmap seed 2" in result.output
    assert (out / "seed0/summary.json").is_file() and (out / "seed2/metrics.tsv").is_file()
    result = runner.invoke(cli, ["baselines", "--task", "expression_npz", "--method", "linear",
                                 "--seed", "0", "--out", str(out)])  # fmt: skip
    assert result.exit_code != 0 and "--npz" in result.output
    result = runner.invoke(
        cli,
        ["baselines", "--task", "loops", "--method", "peakachu", "--tiles", str(tmp_path / "none"),
         "--seed", "0", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1 and result.output.startswith("error: ")
