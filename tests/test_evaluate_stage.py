"""The evaluate stage (hicmix evaluate): metrics aggregation (results/metrics.tsv, mean ± sd), the
1:N prevalence rows, threshold selection and genome-wide scores, cross-cell transfer and
genome-wide calling of a fine-tuned model, the CLI, and the reduced task DAG end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import InputError
from hicmix.evaluate import METRIC_COLUMNS, write_metrics
from hicmix.evaluate.run import (
    CallingSettings,
    call_loops,
    calling_scores,
    collect_metrics,
    in_regions,
    prevalence_scores,
    select_threshold,
    split_regions,
    transfer,
)
from hicmix.finetune import LOOP_PREDICTION_COLUMNS, finetune
from hicmix.simulate import SimParams, simulate_genome
from hicmix.tiles import tile_cell_line

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workflow import job_counts, output, project, snakemake

RES, W, SUBBIN = 10_000, 16, 1000
SPLIT = {"val": ["chr2"], "test": ["chr3"]}
RUN = {"size": "tiny", "lr": 3e-3, "batch_size": 8, "max_epochs": 2, "patience": 0,
       "warmup_steps": 2, "num_workers": 0}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rows(method: str, seed: int, value: float, split: str = "test", task: str = "loops"):
    return {"task": task, "method": method, "cell_line": "SIMA", "train_cell_line": "SIMA",
            "split": split, "metric": "auroc", "value": value, "seed": seed}  # fmt: skip


# ----------------------------------------------------------------------------- aggregation


def test_collect_metrics_table_and_summary(tmp_path: Path):
    files = []
    for seed, value in enumerate([0.7, 0.8, 0.9]):
        path = tmp_path / f"ours/seed{seed}/metrics.tsv"
        write_metrics([_rows("hicmix", seed, value), _rows("hicmix", seed, 0.5, "val")], path)
        files.append(path)
    path = tmp_path / "rf/seed0/metrics.tsv"
    write_metrics([_rows("peakachu", 0, 0.95)], path)
    collect_metrics(
        [*files, path], tmp_path / "metrics.tsv", tmp_path / "summary.tsv", prevalence=None
    )
    written = pd.read_csv(tmp_path / "metrics.tsv", sep="\t")
    assert tuple(written.columns) == METRIC_COLUMNS and len(written) == 7
    saved = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert list(saved.columns) == [
        "task", "method", "cell_line", "train_cell_line", "split", "metric", "mean", "sd", "n",
        "mean_sd",
    ]  # fmt: skip
    ours = saved.query("method == 'hicmix' and split == 'test'").iloc[0]
    assert ours["mean"] == pytest.approx(0.8) and ours["sd"] == pytest.approx(0.1)  # ddof = 1
    assert ours["n"] == 3 and ours["mean_sd"] == "0.800 ± 0.100"
    single = saved.query("method == 'peakachu'").iloc[0]
    assert single["n"] == 1 and math.isnan(single["sd"]) and single["mean_sd"] == "0.950"
    with pytest.raises(InputError, match="more than once"):
        collect_metrics([files[0], files[0]], tmp_path / "m.tsv", tmp_path / "s.tsv")


def test_prevalence_scores_subsample_positives_or_negatives():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(60), np.zeros(60)].astype(int)
    scores = np.r_[rng.uniform(0.4, 1.0, 60), rng.uniform(0.0, 0.6, 60)]
    out = prevalence_scores(labels, scores, 10, draws=10, seed=0)
    assert out["n_pos_1to10"] == 6 and out["n_1to10"] == 66  # every negative, 6 positives
    full = prevalence_scores(labels, scores, 1, draws=1)
    assert out["auprc_1to10"] < full["auprc_1to1"]  # AUPRC drops with the prevalence
    assert out["auroc_1to10"] == pytest.approx(full["auroc_1to1"], abs=0.1)
    assert out == prevalence_scores(labels, scores, 10, draws=10, seed=0)  # deterministic
    few = prevalence_scores(labels[:70], scores[:70], 10)
    assert few["n_pos_1to10"] == 1 and math.isnan(few["auroc_1to10"])
    many = np.r_[np.ones(5), np.zeros(80)].astype(int)
    enough = prevalence_scores(many, rng.random(85), 10, draws=3)
    assert enough["n_pos_1to10"] == 5 and enough["n_1to10"] == 55


def test_prevalence_rows_join_the_table(tmp_path: Path):
    folder = tmp_path / "run"
    rng = np.random.default_rng(1)
    n = 120
    pred = pd.DataFrame(
        {"cell_line": "SIMA", "chrom": "chr3", "bin_x": np.arange(n), "bin_y": np.arange(n) + 5,
         "distance": 5, "split": "test", "label": np.r_[np.ones(60), np.zeros(60)].astype(int),
         "score": rng.random(n)}
    )[list(LOOP_PREDICTION_COLUMNS)]  # fmt: skip
    folder.mkdir()
    pred.to_csv(folder / "predictions.tsv", sep="\t", index=False)
    write_metrics([_rows("peakachu", 2, 0.9)], folder / "metrics.tsv")
    table, _ = collect_metrics([folder / "metrics.tsv"], tmp_path / "m.tsv", tmp_path / "s.tsv")
    extra = table[table["metric"].str.endswith("_1to10")]
    assert set(extra["seed"]) == {2} and set(extra["method"]) == {"peakachu"}
    assert {"f1_1to10", "auprc_1to10", "n_pos_1to10"} <= set(extra["metric"])


# ----------------------------------------------------------------------------- calling helpers


def _loops(rows: list[tuple[int, int]], chrom: str = "chr3", score=None) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["bin1", "bin2"])
    table.insert(0, "chrom", chrom)
    table["score"] = 1.0 if score is None else score
    return table


def test_select_threshold_and_scores():
    truth = _loops([(10, 20), (40, 60), (100, 130)])
    pixels = _loops(
        [(10, 20), (11, 21), (40, 61), (100, 129), (70, 80), (200, 230)],
        score=[0.9, 0.8, 0.85, 0.7, 0.6, 0.3],
    )
    settings = CallingSettings(grid=(0.2, 0.5, 0.65, 0.9), quantiles=(), pool_radius=2)
    best, grid = select_threshold(pixels, truth, settings)
    assert best == 0.65  # keeps the three true dots, drops the two false ones
    assert grid.set_index("threshold").loc[0.65, "f1"] == 1.0
    calls = pixels[pixels["score"] >= 0.65].iloc[[0, 2, 3]]
    scores = calling_scores(calls, truth, settings, RES)
    assert scores["f1_r1"] == 1.0 and scores["n_calls"] == 3
    far = _loops([(10, 22), (40, 62)])
    scores = calling_scores(far, truth, settings, RES)
    assert scores["tp_r1"] == 0 and scores["tp_r2"] == 2
    assert scores["recall_r1_100kb-500kb"] == 0.0 and scores["precision_r1_100kb-500kb"] == 0.0
    assert math.isnan(scores["recall_r1_0kb-100kb"])  # no truth loop under 100 kb


def test_regions_and_restriction():
    manifest = {"splits": {"val": ["chr2"], "test": ["chr3", "chr20:37825000-"]},
                "chromosomes": ["chr1", "chr2", "chr3"]}  # fmt: skip
    assert split_regions(manifest, "test") == [("chr3", 0, None)]
    manifest["chromosomes"].append("chr20")
    assert split_regions(manifest, "test")[1] == ("chr20", 37_825_000, None)
    loops = pd.concat([_loops([(1, 3), (5, 300)]), _loops([(3700, 3800), (3800, 3810)], "chr20")])
    kept = in_regions(loops, split_regions(manifest, "test"), RES, 2, 200)
    assert kept[["chrom", "bin1"]].values.tolist() == [["chr3", 1], ["chr20", 3800]]


# ----------------------------------------------------------------------------- fine-tuned models


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("evaluate_genome")
    sim = simulate_genome(
        root / "sim", cell_lines=["SIMA"], seed=0, chrom_lengths_mb=[4, 3, 3],
        params=SimParams(extra_loops_per_tad=6.0), progress=False,
    )  # fmt: skip
    balance_hic(sim["hic"]["SIMA"], root / "SIMA.cool", RES)
    common = {
        "assembly": "sim1", "hic": root / "SIMA.cool", "expected": root / "SIMA.expected.tsv",
        "tracks": sim["tracks"]["SIMA"], "loops": sim["loops"]["SIMA"], "genes": sim["genes"],
        "expression_column": "SIMA", "splits": SPLIT, "window_bins": W, "stride_bins": 4,
        "subbin_bp": SUBBIN, "progress": False,
    }  # fmt: skip
    for cell in ("SIMA", "SIMB"):
        tile_cell_line(cell_line=cell, out=root / "tiles" / cell, kinds=["loops", "tss"], **common)
    model = root / "loops"
    finetune("loops", "bimodal", [root / "tiles/SIMA"], None, RUN, model, 0, None, "cpu",
             progress=False)  # fmt: skip
    return {"root": root, "tiles": root / "tiles/SIMA", "other": root / "tiles/SIMB",
            "model": model}  # fmt: skip


def test_transfer_scores_the_other_cell_line(genome: dict):
    out = genome["root"] / "transfer"
    summary = transfer(genome["model"], [genome["other"]], out, device="cpu")
    assert summary["kind"] == "transfer" and summary["test_cell_lines"] == ["SIMB"]
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert tuple(metrics.columns) == METRIC_COLUMNS
    assert set(metrics["split"]) == {"test"} and set(metrics["cell_line"]) == {"SIMB"}
    assert set(metrics["train_cell_line"]) == {"SIMA"}
    assert set(metrics["method"]) == {"hicmix-bimodal-nonpre"}
    pred = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert tuple(pred.columns) == LOOP_PREDICTION_COLUMNS
    # SIMB holds SIMA's maps: transfer reproduces the training run's own test predictions
    own = pd.read_csv(genome["model"] / "predictions.tsv", sep="\t").query("split == 'test'")
    np.testing.assert_allclose(pred["score"].to_numpy(), own["score"].to_numpy(), atol=1e-5)
    ours = pd.read_csv(genome["model"] / "metrics.tsv", sep="\t").query("split == 'test'")
    theirs = metrics.set_index("metric")["value"]
    assert theirs["auroc"] == pytest.approx(ours.set_index("metric")["value"]["auroc"])
    with pytest.raises(InputError, match=r"card\.json"):
        transfer(genome["root"], [genome["other"]], out)


def test_call_loops_chooses_the_threshold_on_val(genome: dict):
    out = genome["root"] / "calls"
    settings = {"max_bp": 400_000, "batch_size": 128}
    summary = call_loops(genome["model"], genome["tiles"], None, out, settings=settings,
                         device="cpu")  # fmt: skip
    assert summary["selection_split"] == "val"
    assert summary["threshold_source"] == "val (chr2)" and summary["test_regions"] == ["chr3"]
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert set(metrics["split"]) == {"val", "test"} and set(metrics["task"]) == {"loops_genomewide"}
    val = metrics.query("split == 'val'").set_index("metric")["value"]
    grid = pd.read_csv(out / "threshold_grid.tsv", sep="\t")
    assert val["f1_r1"] == pytest.approx(grid["f1"].max(), abs=1e-6)
    assert val["threshold"] == pytest.approx(summary["threshold"])
    calls = pd.read_csv(out / "calls.bedpe", sep="\t", header=None)
    assert set(calls[0]) <= {"chr3"}
    assert (calls[4] - calls[1]).max() <= 400_000
    cross = call_loops(genome["model"], genome["tiles"], genome["other"], genome["root"] / "x",
                       settings=settings, threshold_run=out, device="cpu")  # fmt: skip
    assert cross["threshold"] == summary["threshold"] and cross["selection_split"] is None
    assert cross["test_cell_line"] == "SIMB"


def test_cli_metrics(tmp_path: Path):
    path = tmp_path / "a/metrics.tsv"
    write_metrics([_rows("hicmix", 0, 0.7), _rows("hicmix", 1, 0.9)], path)
    result = CliRunner().invoke(
        cli, ["evaluate", "metrics", str(path), "--out", str(tmp_path / "m.tsv"), "--summary",
              str(tmp_path / "s.tsv")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 metric rows from 1 run(s)" in result.output
    result = CliRunner().invoke(
        cli, ["evaluate", "metrics", str(tmp_path / "none.tsv"), "--out", "m", "--summary", "s"]
    )
    assert result.exit_code == 1 and result.output.startswith("error: ")


# ----------------------------------------------------------------------------- the task DAG

#: A reduced task DAG on a small genome: W = 16 at 1 kb sub-bins, one epoch, one mode and one
#: baseline per task, 2 seeds; models train on SIMA (the default train_cell_lines) and are
#: tested on SIMA and SIMB.
E2E = {
    "simulate": {"n_chromosomes": 6, "chrom_length_mb": [6, 3, 3, 3, 3, 3]},
    "window_bins": 16,
    "track_subbin_bp": 1000,
    "loops": {"candidate_ratio": 4},
    "tasks": {
        "seeds": [0, 1],
        "device": "cpu",
        "finetune": {"max_epochs": 1, "batch_size": 16, "warmup_steps": 2},
        "loops": {"modes": ["bimodal"], "baselines": ["peakachu"], "prevalence": 10,
                  "finetune": {"max_epochs": 1}},
        "loops_genomewide": {"max_bp": 400_000},
        "hicmap": {"baselines": ["distance_decay"]},
        "expression": {"modes": ["tracks_only"], "baselines": ["linear"], "npz": None,
                       "learning_curve": [50, "all"]},
        "baselines": {"peakachu": {"w": 3, "grid": "small", "cv": 2}},
    },
}  # fmt: skip


def test_dry_run_task_jobs(tmp_path: Path):
    folder = project(tmp_path, E2E)
    result = snakemake(folder, "-n", "-p", "--configfile", "config/extra.yaml")
    assert result.returncode == 0, output(result)
    text = output(result)
    counts = job_counts(text)
    # 3 tasks x 2 seeds trained on SIMA; SIMB scored with the same models; calling per model
    assert counts["finetune"] == 6 and counts["finetune_transfer"] == 6
    assert counts["loop_calling"] == 2 and counts["finetune_config"] == 3
    # loops, hicmap, expression x 2 pairs; calling (peakachu, hicmix-caller) same-cell only
    assert counts["baselines"] == 3 * 2 + 2
    caller = next(line for line in text.splitlines() if "--method hicmix-caller" in line)
    assert "--task loops_genomewide" in caller and "--model-run" not in caller
    assert "baselines_npz" not in counts and counts["metrics"] == 1
    assert "hicmix finetune --task loops --mode bimodal --tiles results/tiles/SIMA" in text
    assert "--seed 0 --seed 1" in text
    assert "--threshold-run" not in text  # genome-wide calling is same-cell by default


@pytest.mark.slow
def test_task_dag_end_to_end(tmp_path: Path):
    """simulate -> tiles -> finetune / transfer / calling / baselines -> results/metrics.tsv."""
    folder = project(tmp_path, E2E)
    result = snakemake(
        folder, "--cores", "2", "--show-failed-logs", "--configfile", "config/extra.yaml"
    )
    assert result.returncode == 0, output(result)[-6000:]
    table = pd.read_csv(folder / "results/metrics.tsv", sep="\t")
    assert tuple(table.columns) == METRIC_COLUMNS
    key = ["task", "method", "cell_line", "train_cell_line", "split", "metric", "seed"]
    assert not table.duplicated(key).any()  # one row per figure
    figures = {
        ("loops", "hicmix-bimodal-nonpre"): "auroc",
        ("loops", "peakachu"): "auroc",
        ("loops_genomewide", "hicmix-bimodal-nonpre"): "f1_r1",
        ("loops_genomewide", "peakachu"): "f1_r1",
        ("loops_genomewide", "hicmix-caller"): "f1_r1",
        ("hicmap", "hicmix-tracks_only-nonpre"): "distance_pearson_mean",
        ("hicmap", "distance_decay"): "distance_pearson_mean",
        ("expression", "hicmix-tracks_only-nonpre"): "pearson",
        ("expression", "linear"): "pearson",
        ("expression_learning_curve", "linear"): "pearson_n50",
    }
    pairs = {("SIMA", "SIMA"), ("SIMA", "SIMB")}
    for (task, method), metric in figures.items():
        rows = table[(table["task"] == task) & (table["method"] == method)]
        test = rows[(rows["split"] == "test") & (rows["metric"] == metric)]
        want = {p for p in pairs if task != "loops_genomewide" or p[0] == p[1]}
        got = set(zip(test["train_cell_line"], test["cell_line"], strict=True))
        assert got == want, (task, method, got)
        for _, seeds in test.groupby(["train_cell_line", "cell_line"])["seed"]:
            assert sorted(seeds) == [0, 1], (task, method)
        # val rows (the selection split) exist only for the training cell line itself
        val = rows[rows["split"] == "val"]
        assert (val["cell_line"] == val["train_cell_line"]).all()
    assert set(table["split"]) == {"val", "test"}
    assert table["metric"].str.endswith("_1to10").any()
    summary = pd.read_csv(folder / "results/metrics_summary.tsv", sep="\t")
    head = summary.query(
        "task == 'loops' and method == 'peakachu' and split == 'test' and "
        "metric == 'auroc' and cell_line == 'SIMA' and train_cell_line == 'SIMA'"
    )
    assert int(head["n"].iloc[0]) == 2  # fmt: skip
    # selection used validation data only: the kept epoch is the val argmax, thresholds from val
    for path in (folder / "results/finetune").glob("*/*/*/*/seed*/summary.json"):
        info = json.loads(path.read_text())
        if info.get("kind") == "transfer":
            assert info["selection"].startswith("epoch chosen on the training")
        elif info.get("task") == "loops_genomewide":
            train, test = path.parts[-4], path.parts[-3]
            assert info["selection_split"] == ("val" if train == test else None)
            assert info["threshold_source"].startswith("val (chr2") or train != test
        else:
            history = pd.read_csv(path.parent / "history.csv")
            assert info["best_epoch"] == int(history.loc[history["val_metric"].idxmax(), "epoch"])
    for path in (folder / "results/baselines").glob("*/*/*/*/seed*/summary.json"):
        assert json.loads(path.read_text())["selection_split"] in ("val", "train_cv", None)
    again = snakemake(folder, "-n", "--configfile", "config/extra.yaml")
    assert "Nothing to be done" in output(again), output(again)
