"""Expression metrics against hand-computed values, and the metrics table round trip."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hicmix.errors import InputError
from hicmix.evaluate.expression import (
    above_median_labels,
    classification_scores,
    regression_scores,
)
from hicmix.evaluate.metrics_table import (
    METRIC_COLUMNS,
    format_mean_sd,
    read_metrics,
    rows_from_dict,
    summarise,
    write_metrics,
)


def test_regression_scores_by_hand():
    y_true = [1.0, 2.0, 3.0, 4.0]
    y_pred = [2.0, 2.0, 4.0, 5.0]
    scores = regression_scores(y_true, y_pred)
    # SS_res = 1 + 0 + 1 + 1 = 3, SS_tot(truth) = 5 -> R² 0.4 (swapped: 1 - 3 / 6.75 = 0.556)
    assert scores["r2"] == pytest.approx(0.4)
    assert scores["mse"] == pytest.approx(0.75)
    # Pearson: dx = (-1.5, -.5, .5, 1.5), dy = (-1.25, -1.25, .75, 1.75); sxy 5.5, sxx 5, syy 6.75
    assert scores["pearson"] == pytest.approx(5.5 / math.sqrt(5 * 6.75))
    # Spearman: ranks (1, 2, 3, 4) vs (1.5, 1.5, 3, 4) -> Pearson of the ranks
    assert scores["spearman"] == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    assert regression_scores(y_true, [2.5] * 4)["pearson"] == 0.0  # constant prediction
    assert math.isnan(regression_scores([1.0] * 3, [1.0, 2.0, 3.0])["r2"])
    with pytest.raises(ValueError, match="NaN"):
        regression_scores([1.0, np.nan], [1.0, 2.0])


def test_classification_scores_by_hand():
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]
    scores = classification_scores(y, s)
    assert scores["auroc"] == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    assert scores["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert scores["accuracy"] == pytest.approx(0.75)  # calls at 0.5: only 0.8
    assert math.isnan(classification_scores([1, 1], [0.2, 0.9])["auroc"])


def test_above_median_uses_training_genes_only():
    y = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    train = np.array([True, True, True, False, False, False])
    assert above_median_labels(y, train).tolist() == [0, 0, 1, 1, 1, 1]  # median of train = 2
    assert above_median_labels(y, ~train).tolist() == [0, 0, 0, 0, 0, 1]  # median 20
    with pytest.raises(ValueError, match="train_mask"):
        above_median_labels(y, train[:3])


def test_metrics_table_round_trip_and_summary(tmp_path):
    identity = {
        "task": "loops",
        "method": "hicmix",
        "cell_line": "GM12878",
        "train_cell_line": "GM12878",
        "split": "test",
    }
    rows = []
    for seed, f1 in zip((0, 1, 2), (0.5, 0.6, 0.7), strict=True):
        rows += rows_from_dict({"f1": f1, "auroc": 0.9}, seed=seed, **identity)
    rows += rows_from_dict({"f1": math.nan}, seed=0, **{**identity, "method": "decay"})
    first = write_metrics(rows[:4], tmp_path / "a.tsv")
    second = write_metrics(rows[4:], tmp_path / "b.tsv")
    assert first.read_text().splitlines()[0].split("\t") == list(METRIC_COLUMNS)
    table = read_metrics([first, second])
    assert len(table) == 7 and list(table.columns) == list(METRIC_COLUMNS)
    assert table["seed"].dtype == np.int64
    expect = pd.DataFrame(rows)[list(METRIC_COLUMNS)]
    pd.testing.assert_frame_equal(table, expect, check_dtype=False)
    summary = summarise(table).set_index(["method", "metric"])
    assert summary.loc[("hicmix", "f1"), "mean"] == pytest.approx(0.6)
    assert summary.loc[("hicmix", "f1"), "sd"] == pytest.approx(0.1)  # ddof=1
    assert summary.loc[("hicmix", "f1"), "n"] == 3
    assert summary.loc[("hicmix", "auroc"), "sd"] == pytest.approx(0.0)
    assert summary.loc[("decay", "f1"), "n"] == 0
    assert format_mean_sd(0.6, 0.1) == "0.600 ± 0.100"


def test_metrics_table_errors(tmp_path):
    identity = dict(task="maps", method="m", cell_line="A", train_cell_line="A", split="val")
    rows = rows_from_dict({"r2": 0.5}, seed=0, **identity)
    path = write_metrics(rows, tmp_path / "m.tsv")
    with pytest.raises(InputError, match="more than once"):
        read_metrics([path, path])
    with pytest.raises(InputError, match="not found"):
        read_metrics(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("task\tmethod\nx\ty\n")
    with pytest.raises(InputError, match="columns"):
        read_metrics(bad)
    with pytest.raises(TypeError, match="seed"):
        rows_from_dict({"r2": 0.5}, seed=None, **identity)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-numeric"):
        rows_from_dict({"r2": "high"}, seed=0, **identity)
