"""Loop evaluation: BEDPE reading, one-to-one matching, strata, patch scores, APA, pooling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from hicmix.errors import InputError
from hicmix.evaluate.loops import (
    apa,
    classification_curves,
    loop_calling_scores,
    match_loops,
    patch_classification_scores,
    pool_calls,
    read_bedpe_loops,
    restrict,
    scores_by_distance,
    write_bedpe,
)
from hicmix.evaluate.maps import as_band
from hicmix.hic import Band, open_hic, read_band

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"


def loops(*pairs: tuple, chrom: str = "chr1") -> pd.DataFrame:
    """Loop table from (bin1, bin2) or (bin1, bin2, score) tuples."""
    rows = [(chrom, p[0], p[1], p[2] if len(p) > 2 else np.nan) for p in pairs]
    return pd.DataFrame(rows, columns=["chrom", "bin1", "bin2", "score"])


# --------------------------------------------------------------------------------------------------
# reading and writing


def test_read_bedpe_bins_duplicates_and_names(tmp_path):
    path = tmp_path / "loops.bedpe"
    path.write_text(
        "chr1\tx1\tx2\tchr2\ty1\ty2\tscore\n"  # header
        "# comment\n"
        "1\t10000\t20000\t1\t50000\t60000\t0.5\n"  # midpoints 15000, 55000 -> bins 1, 5
        "chr1\t55000\t56000\tchr1\t12000\t14000\t0.9\n"  # swapped anchors, same bins (5, 1)
        "chr1\t10000\t20000\tchr2\t50000\t60000\t1.0\n"  # inter-chromosomal: dropped
        "chrX\t0\t10000\tchrX\t30000\t40000\n"  # no score column
        "chr2\t0\t10000\tchr2\t30000\t40000\t.\n"  # '.' score
    )
    table = read_bedpe_loops(path, 10_000)
    assert list(table.columns) == ["chrom", "bin1", "bin2", "score"]
    assert table[["chrom", "bin1", "bin2"]].values.tolist() == [
        ["chr1", 1, 5],
        ["chr2", 0, 3],
        ["chrX", 0, 3],
    ]
    assert table["score"].iloc[0] == pytest.approx(0.9)  # duplicates keep the max score
    assert table["score"].iloc[1:].isna().all()
    only = read_bedpe_loops(path, 10_000, chroms=["X"])
    assert only["chrom"].tolist() == ["chrX"]


def test_read_bedpe_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.bedpe"
    path.write_text("chr1\t0\t10\tchr1\t100\t110\nchr1\t0\t10\tchr1\tabc\t110\n")
    with pytest.raises(InputError, match=r"bad\.bedpe line 2"):
        read_bedpe_loops(path, 10)
    path.write_text("chr1\t0\t10\tchr1\t100\t110\nchr1\t0\t10\n")
    with pytest.raises(InputError, match="line 2"):
        read_bedpe_loops(path, 10)
    with pytest.raises(InputError, match="not found"):
        read_bedpe_loops(tmp_path / "missing.bedpe", 10)


def test_write_bedpe_round_trip(tmp_path):
    calls = loops((3, 9, 0.75), (1, 4, 0.5))
    calls.loc[2] = ["chr2", 7, 2, np.nan]
    path = write_bedpe(calls, 5000, tmp_path / "out" / "calls.bedpe", chromsizes={"chr2": 42_000})
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["chr1", "5000", "10000", "chr1", "20000", "25000", "0.5"]
    assert lines[-1].split("\t") == ["chr2", "10000", "15000", "chr2", "35000", "40000", "."]
    back = read_bedpe_loops(path, 5000)
    assert back[["chrom", "bin1", "bin2"]].values.tolist() == [
        ["chr1", 1, 4],
        ["chr1", 3, 9],
        ["chr2", 2, 7],
    ]
    assert back["score"].tolist()[:2] == [0.5, 0.75]
    assert [p.name for p in path.parent.iterdir()] == ["calls.bedpe"]  # no temporary left


def test_restrict_same_rule_for_chrom_region_and_distance():
    table = loops((1, 3), (10, 12), (10, 30), (50, 60))
    table.loc[4] = ["chr2", 10, 12, np.nan]
    assert len(restrict(table, chrom="chr1")) == 4
    assert len(restrict(table, chrom=["1", "2"])) == 5
    kept = restrict(table, chrom="chr1", region=(100, 550), resolution=10)
    assert kept[["bin1", "bin2"]].values.tolist() == [[10, 12], [10, 30]]
    kept = restrict(table, region=(100, None), resolution=10, min_bins=2, max_bins=10)
    assert kept[["chrom", "bin1", "bin2"]].values.tolist() == [
        ["chr1", 10, 12],
        ["chr1", 50, 60],
        ["chr2", 10, 12],
    ]
    with pytest.raises(ValueError, match="resolution"):
        restrict(table, region=(0, 10))


# --------------------------------------------------------------------------------------------------
# matching


def test_matching_is_one_to_one():
    truth = loops((100, 120))
    pred = loops((100, 121), (101, 120))  # both within radius 1 of the same truth loop
    scores = loop_calling_scores(pred, truth, 1)
    assert scores["tp"] == 1
    assert scores["precision"] == 0.5
    assert scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(2 / 3)


def greedy_matches(pred: pd.DataFrame, truth: pd.DataFrame, radius: int) -> int:
    """Closest-pair-first greedy matching, the approximation the maximum matching improves on."""
    candidates = []
    for i, p in pred.iterrows():
        for j, t in truth.iterrows():
            d = max(abs(p.bin1 - t.bin1), abs(p.bin2 - t.bin2))
            if d <= radius:
                candidates.append((d, i, j))
    used_p, used_t = set(), set()
    for _, i, j in sorted(candidates):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p)


def test_maximum_matching_beats_greedy():
    truth = loops((10, 20), (10, 22))
    pred = loops((10, 20), (10, 19))  # the first is closest to T1 but could also take T2
    assert greedy_matches(pred, truth, 2) == 1
    pairs = match_loops(pred, truth, 2)
    assert len(pairs) == 2
    assert sorted(zip(pairs["pred"], pairs["truth"], strict=True)) == [(0, 1), (1, 0)]
    assert loop_calling_scores(pred, truth, 2)["f1"] == 1.0


def test_radius_boundary_inclusive_and_chromosomes_separate():
    truth = loops((50, 80))
    assert loop_calling_scores(loops((52, 78)), truth, 2)["tp"] == 1
    assert loop_calling_scores(loops((53, 80)), truth, 2)["tp"] == 0
    assert loop_calling_scores(loops((50, 80)), truth, 0)["tp"] == 1
    other = loops((50, 80), chrom="chr2")
    assert loop_calling_scores(other, truth, 2)["tp"] == 0


def test_empty_inputs():
    empty = loops()
    scores = loop_calling_scores(empty, loops((1, 5)), 1)
    assert scores["tp"] == 0 and scores["f1"] == 0.0 and math.isnan(scores["precision"])
    assert len(match_loops(loops((1, 5)), empty, 1)) == 0


def test_chance_level_is_low_and_jittered_truth_is_perfect():
    rng = np.random.default_rng(0)
    n_bins, n = 5000, 300
    dist = rng.integers(5, 200, n)
    start = rng.integers(0, n_bins - 200, n)
    truth = loops(*zip(start, start + dist, strict=True))
    random = loops(*zip(rng.permutation(start), start + dist, strict=True))
    random = restrict(random, min_bins=1)
    assert loop_calling_scores(random, truth, 2)["f1"] < 0.05
    jitter = rng.integers(-1, 2, (n, 2))
    near = loops(*zip(start + jitter[:, 0], start + dist + jitter[:, 1], strict=True))
    assert loop_calling_scores(near, truth, 1)["f1"] > 0.95


def test_scores_by_distance_strata():
    res = 10_000
    truth = loops((0, 5), (0, 9), (100, 120), (200, 300), (300, 500))  # 50k, 90k, 200k, 1M, 2M
    pred = loops((0, 5), (0, 10), (200, 301), (400, 420))  # (0, 10) at 100 kb matches (0, 9)
    table = scores_by_distance(pred, truth, 1, res)
    assert table["stratum"].tolist() == ["0kb-100kb", "100kb-500kb", "500kb-2Mb"]
    first, second, third = (table.iloc[k] for k in range(3))
    assert (first.n_truth, first.tp_truth, first.recall) == (2, 2, 1.0)
    assert (first.n_pred, first.tp_pred, first.precision) == (1, 1, 1.0)
    assert (second.n_truth, second.tp_truth, second.recall) == (1, 0, 0.0)
    assert (second.n_pred, second.tp_pred, second.precision) == (2, 1, 0.5)
    assert (third.n_truth, third.recall, third.n_pred, third.precision) == (1, 1.0, 1, 1.0)
    custom = scores_by_distance(pred, truth, 1, res, strata_bp=(0, 2_000_001))
    assert custom["n_truth"].tolist() == [5]


# --------------------------------------------------------------------------------------------------
# protocol A


def test_patch_classification_scores_and_curves():
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.6, 0.55, 0.9, 0.3, 0.2])
    scores = patch_classification_scores(y, s)
    # calls at 0.5: indices 1, 2, 3 -> tp 2, fp 1, fn 1
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert scores["auprc"] == pytest.approx(average_precision_score(y, s))
    curves = classification_curves(y, s)
    assert curves["fpr"][0] == 0 and curves["tpr"][-1] == 1
    assert len(curves["precision"]) == len(curves["recall"])
    one_class = patch_classification_scores([1, 1], [0.2, 0.8])
    assert math.isnan(one_class["auroc"]) and one_class["recall"] == 0.5
    with pytest.raises(ValueError, match="0/1"):
        patch_classification_scores([0, 2], [0.1, 0.2])


# --------------------------------------------------------------------------------------------------
# APA


def synthetic_map(n=400, seed=0, dots=()):
    """Noisy decay map with Gaussian dots; returns (matrix, expected curve)."""
    rng = np.random.default_rng(seed)
    i, j = np.indices((n, n))
    expected = 100.0 / (1.0 + np.arange(n))
    mean = expected[np.abs(i - j)]
    for a, b in dots:
        bump = 3.0 * np.exp(-((i - a) ** 2 + (j - b) ** 2) / 2.0)
        mean = mean * (1 + bump + bump.T)
    counts = rng.poisson(mean * 20) / 20.0
    upper = np.triu(counts)
    return upper + np.triu(upper, 1).T, expected


def band_of(matrix, max_diag=150):
    values = as_band(matrix, max_diag).astype(np.float32)
    n = matrix.shape[0]
    return Band("chr1", n, max_diag, 10_000, values, np.zeros(n, bool), np.zeros(max_diag, int))


def test_apa_enriched_at_dots_and_flat_at_random_positions():
    rng = np.random.default_rng(1)
    starts = rng.choice(np.arange(20, 320, 15), 15, replace=False)
    dots = [(int(a), int(a + d)) for a, d in zip(starts, rng.integers(35, 70, 15), strict=True)]
    matrix, expected = synthetic_map(dots=dots)
    band = band_of(matrix)
    at_dots = apa(band, loops(*dots), expected=expected)
    assert at_dots.pileup.shape == (21, 21)
    assert at_dots.n_loops == 15 and at_dots.n_excluded == 0
    assert at_dots.p2ll > 2.0 and at_dots.zscore_ll > 3.0
    # random positions away from the dots
    a = rng.integers(20, 320, 60)
    random = loops(*zip(a, a + rng.integers(35, 70, 60), strict=True))
    flat = apa(band.patches, random, expected=expected)  # a callable source works too
    assert 0.8 < flat.p2ll < 1.25
    near = apa(band, loops((100, 110), (100, 140)), expected=expected, min_diag=30)
    assert near.n_loops == 1 and near.n_excluded == 1
    scores = at_dots.scores()
    assert set(scores) == {"apa_p2ll", "apa_zscore_ll", "apa_n_loops"}


def test_apa_multi_chromosome_needs_mapping():
    matrix, expected = synthetic_map(n=200)
    band = band_of(matrix)
    two = pd.concat([loops((10, 60)), loops((10, 60), chrom="chr2")], ignore_index=True)
    with pytest.raises(ValueError, match="mapping"):
        apa(band, two, expected=expected)
    result = apa({"chr1": band, "2": band}, two, expected=expected)
    assert result.n_loops == 2


# --------------------------------------------------------------------------------------------------
# pooling


def test_pool_calls_merges_neighbours():
    pixels = pd.DataFrame(
        {
            "chrom": ["chr1"] * 7 + ["chr2"],
            "bin1": [10, 11, 11, 13, 40, 41, 70, 11],
            "bin2": [50, 50, 51, 53, 80, 81, 90, 51],
            "score": [0.91, 0.97, 0.95, 0.92, 0.96, 0.96, 0.5, 0.99],
        }
    )
    calls = pool_calls(pixels, threshold=0.9, radius=1)
    # (10,50), (11,50), (11,51) form one cluster; (13,53) is 2 away; (40,80)+(41,81) tie on score;
    # (70,90) is below the threshold; chr2 stays separate
    assert calls[["chrom", "bin1", "bin2"]].values.tolist() == [
        ["chr1", 11, 50],
        ["chr1", 13, 53],
        ["chr1", 40, 80],
        ["chr2", 11, 51],
    ]
    assert calls["n_pixels"].tolist() == [3, 1, 2, 1]
    assert calls["score"].tolist() == [0.97, 0.92, 0.96, 0.99]
    wider = pool_calls(pixels, threshold=0.9, radius=2)
    assert wider[["bin1", "bin2"]].values.tolist()[:2] == [[11, 50], [40, 80]]
    shuffled = pixels.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(pool_calls(shuffled, 0.9, 1), calls)
    assert pool_calls(pixels, threshold=1.5, radius=1).empty


# --------------------------------------------------------------------------------------------------
# real data: GM12878 chr20 at 25 kb with Rao 2014 HiCCUPS loops


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_real_chr20_apa_and_chance_level():
    res = 25_000
    clr = open_hic(REALDATA / "hic/GM12878_Rao2014rep_chr20_25kb.hg19.cool", res)
    band = read_band(clr, "chr20", 120, "weight")
    expected = np.nanmean(band.values, axis=1)
    truth = read_bedpe_loops(REALDATA / "loops/GM12878_Rao2014_HiCCUPS.hg19.bedpe", res, ["chr20"])
    region_b = restrict(truth, "chr20", (37_825_000, None), 2, 80, resolution=res)
    assert len(region_b) == 119  # the figure quoted in baselines_and_metrics.md §9
    at_loops = apa(band, truth, expected=expected, min_diag=10)
    assert at_loops.p2ll > 2.0
    rng = np.random.default_rng(0)
    start = rng.integers(0, band.n_bins - 100, 400)
    random = loops(*zip(start, start + rng.integers(10, 80, 400), strict=True), chrom="chr20")
    assert 0.85 < apa(band, random, expected=expected, min_diag=10).p2ll < 1.15
    dist = (region_b["bin2"] - region_b["bin1"]).to_numpy()
    f1 = []
    for seed in range(10):
        s = np.random.default_rng(seed).integers(37_825_000 // res, band.n_bins - dist)
        pred = loops(*zip(s, s + dist, strict=True), chrom="chr20")
        f1.append(loop_calling_scores(pred, region_b, 1)["f1"])
    assert 0.01 < np.mean(f1) < 0.08  # chance level, about 0.04 (§9)
