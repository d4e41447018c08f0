"""The embedded default genome: formats, determinism, and the biology later tasks learn from."""

from __future__ import annotations

import itertools
import json
import shutil
import warnings
from pathlib import Path

import cooler
import numpy as np
import pandas as pd
import pyBigWig
import pytest
from click.testing import CliRunner
from scipy.stats import spearmanr

from hicmix.cli import cli
from hicmix.errors import ConfigError
from hicmix.simulate import ASSAYS, simulate_genome

RES = 10_000
CELLS = ("SIMA", "SIMB")
LENGTHS = (4.0, 4.0, 4.0)


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("sim") / "simulated"
    return simulate_genome(out, CELLS, seed=0, chrom_lengths_mb=LENGTHS, progress=False, jobs=1)


@pytest.fixture(scope="module")
def truth(genome: dict) -> dict:
    return json.loads(genome["truth"].read_text())


def _sizes(genome: dict) -> dict[str, int]:
    rows = [line.split("\t") for line in genome["chrom_sizes"].read_text().splitlines()]
    return {name: int(length) for name, length in rows}


def _loops(genome: dict, cell: str) -> pd.DataFrame:
    return pd.read_csv(genome["loops"][cell], sep="\t", header=None)


def _clr(genome: dict, cell: str, res: int = RES) -> cooler.Cooler:
    return cooler.Cooler(f"{genome['hic'][cell]}::/resolutions/{res}")


def _mean(bw, chrom: str, start: float, end: float, length: int) -> float:
    start, end = max(0, int(start)), min(length, int(end))
    value = bw.stats(chrom, start, end, type="mean", exact=True)[0]
    return 0.0 if value is None else value


# ----------------------------------------------------------------------------------------- formats


def test_layout_and_formats(genome: dict) -> None:
    sizes = _sizes(genome)
    assert sizes == {"chr1": 4_000_000, "chr2": 4_000_000, "chr3": 4_000_000}
    genes = pd.read_csv(genome["genes"], sep="\t")
    assert list(genes.columns) == ["gene_id", "chrom", "tss", "strand", *CELLS]
    assert genes["gene_id"].is_unique and set(genes["strand"]) == {"+", "-"}
    assert genes["tss"].between(0, 4_000_000 - 1).all() and (genes[list(CELLS)] >= 0).all().all()
    for cell in CELLS:
        mcool = str(genome["hic"][cell])
        assert cooler.fileops.list_coolers(mcool) == [
            f"/resolutions/{r}" for r in (10000, 20000, 40000)
        ]
        totals = []
        for res in (10000, 20000, 40000):
            clr = _clr(genome, cell, res)
            assert clr.binsize == res and dict(clr.chromsizes) == sizes
            assert "weight" not in clr.bins().columns
            pixels = clr.pixels()[:]
            assert pixels["count"].dtype.kind == "i" and (pixels["count"] > 0).all()
            assert (pixels["bin1_id"] <= pixels["bin2_id"]).all()
            totals.append(int(pixels["count"].sum()))
        assert len(set(totals)) == 1 and totals[0] > 1_000_000  # coarsening keeps every contact
        for assay in ASSAYS:
            bw = pyBigWig.open(str(genome["tracks"][cell][assay]))
            assert bw.isBigWig() and bw.chroms() == sizes
            values = np.array(bw.values("chr1", 0, 1_000_000)[::100])
            assert np.isfinite(values).all() and (values >= 0).all() and values.max() > 0
            bw.close()
        loops = _loops(genome, cell)
        assert loops.shape[1] == 6 and loops[0].str.startswith("chr").all()
        assert (loops[0] == loops[3]).all() and ((loops[2] - loops[1]) == RES).all()


def test_same_seed_same_files_and_jobs_do_not_matter(genome: dict, tmp_path: Path) -> None:
    again = simulate_genome(tmp_path / "again", CELLS, 0, LENGTHS, progress=False, jobs=2)
    other = simulate_genome(tmp_path / "other", CELLS, 1, LENGTHS, progress=False, jobs=1)
    for key in ("chrom_sizes", "genes", "truth"):
        assert genome[key].read_bytes() == again[key].read_bytes()
    assert genome["genes"].read_bytes() != other["genes"].read_bytes()
    for cell in CELLS:
        assert genome["loops"][cell].read_bytes() == again["loops"][cell].read_bytes()
        for assay in ASSAYS:
            assert (
                genome["tracks"][cell][assay].read_bytes()
                == again["tracks"][cell][assay].read_bytes()
            )
        assert (
            genome["tracks"][cell]["CTCF"].read_bytes()
            != other["tracks"][cell]["CTCF"].read_bytes()
        )
        for res in (10000, 40000):
            first = _clr(genome, cell, res).pixels()[:]
            pd.testing.assert_frame_equal(first, _clr(again, cell, res).pixels()[:])
            assert not first.equals(_clr(other, cell, res).pixels()[:])


def test_refuses_to_replace_a_foreign_folder_and_bad_parameters(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("not a simulation")
    with pytest.raises(ConfigError, match="not a simulated genome"):
        simulate_genome(tmp_path, chrom_lengths_mb=(2,), progress=False)
    assert (tmp_path / "keep.txt").exists()
    with pytest.raises(ConfigError, match="distinct"):
        simulate_genome(tmp_path / "a", ("X", "X"), chrom_lengths_mb=(2,), progress=False)
    with pytest.raises(ConfigError, match="multiple of 100"):
        simulate_genome(tmp_path / "b", chrom_lengths_mb=(2,), resolution=10_050, progress=False)
    with pytest.raises(ConfigError, match=">= 1 Mb"):
        simulate_genome(tmp_path / "c", chrom_lengths_mb=(0.2,), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -------------------------------------------------------------------------------------------- Hi-C


def test_distance_decay_and_depth(genome: dict) -> None:
    clr = _clr(genome, "SIMA")
    matrix = clr.matrix(balance=False).fetch("chr1").astype(float)
    diag = [np.diagonal(matrix, d).mean() for d in (1, 2, 5, 10, 20, 50, 100, 200)]
    assert all(a > b for a, b in itertools.pairwise(diag))
    slope = np.polyfit(np.log([10, 20, 50, 100, 200]), np.log(diag[3:8]), 1)[0]
    assert -1.6 < slope < -0.7  # P(s) ~ s^-1, a little steeper at short range inside TADs
    assert np.diagonal(matrix, 350).mean() > 0  # sparse contacts beyond the 3 Mb band


def test_loops_are_enriched_dots(genome: dict) -> None:
    rng = np.random.default_rng(0)
    for cell in CELLS:
        clr = _clr(genome, cell)
        at_loop, background = [], []
        for chrom, table in _loops(genome, cell).groupby(0):
            matrix = clr.matrix(balance=False).fetch(chrom).astype(float)
            a, b = (table[1] // RES).to_numpy(), (table[4] // RES).to_numpy()
            at_loop += list(matrix[a, b])
            for dist in b - a:
                rows = rng.integers(0, len(matrix) - dist, size=20)
                background += list(matrix[rows, rows + dist])
        assert len(at_loop) >= 20
        assert np.mean(at_loop) > 2.0 * np.mean(background)


def test_ice_converges_and_masks_bad_bins(genome: dict, tmp_path: Path) -> None:
    path = tmp_path / "copy.mcool"
    shutil.copy(genome["hic"]["SIMA"], path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias, stats = cooler.balance_cooler(
            cooler.Cooler(f"{path}::/resolutions/{RES}"), cis_only=True, mad_max=5, min_nnz=10
        )
    assert all(stats["converged"])
    assert 0 < np.isnan(bias).sum() < 0.05 * len(bias)


def test_compartments_checkerboard_and_h3k27me3(genome: dict, truth: dict) -> None:
    comp = {}
    for seg in truth["compartments"]:
        comp.setdefault(seg["chrom"], np.zeros(400))[
            seg["start"] // RES : -(-seg["end"] // RES)
        ] = 1 if seg["label"] == "A" else -1
    matrix = _clr(genome, "SIMA").matrix(balance=False).fetch("chr1").astype(float)
    c = comp["chr1"]
    i, j = np.triu_indices(len(matrix), k=100)
    keep = j - i <= 250
    i, j = i[keep], j[keep]
    same, diff = c[i] == c[j], c[i] != c[j]
    assert same.any() and diff.any()
    assert matrix[i[same], j[same]].mean() > 1.2 * matrix[i[diff], j[diff]].mean()
    bw = pyBigWig.open(str(genome["tracks"]["SIMA"]["H3K27me3"]))
    per_bin = np.array(bw.stats("chr1", 0, 4_000_000, nBins=400, type="mean"), dtype=float)
    assert np.mean(per_bin[c < 0]) > 2.0 * np.mean(per_bin[c > 0])


# ------------------------------------------------------------------------------------------- loops


def test_loops_join_convergent_ctcf_sites(genome: dict, truth: dict) -> None:
    sites = pd.DataFrame(truth["ctcf_sites"])
    sites["bin"] = sites["pos"] // RES
    forward = set(
        zip(sites.chrom[sites.strand == "+"], sites.bin[sites.strand == "+"], strict=True)
    )
    reverse = set(
        zip(sites.chrom[sites.strand == "-"], sites.bin[sites.strand == "-"], strict=True)
    )
    sets = []
    for cell in CELLS:
        loops = _loops(genome, cell)
        for chrom, start1, start2 in zip(loops[0], loops[1], loops[4], strict=True):
            assert (chrom, start1 // RES) in forward and (chrom, start2 // RES) in reverse
            assert 50_000 <= start2 - start1 <= 2_000_000
        sets.append(set(zip(loops[0], loops[1], loops[4], strict=True)))
    shared = len(sets[0] & sets[1]) / len(sets[0] | sets[1])
    assert 0.55 < shared < 0.95  # mostly shared, some cell-specific
    assert truth["counts"]["loops_SIMA"] == len(sets[0])


def test_ctcf_signal_at_sites_and_stronger_at_anchors(genome: dict, truth: dict) -> None:
    sizes = _sizes(genome)
    bw = pyBigWig.open(str(genome["tracks"]["SIMA"]["CTCF"]))
    sites = pd.DataFrame(truth["ctcf_sites"])
    at_site = np.array(
        [
            _mean(bw, c, p - 200, p + 200, sizes[c])
            for c, p in zip(sites.chrom, sites.pos, strict=True)
        ]
    )
    rng = np.random.default_rng(1)
    random = [_mean(bw, "chr2", p - 200, p + 200, sizes["chr2"]) for p in rng.integers(0, 4e6, 300)]
    assert at_site.mean() > 10 * np.mean(random)
    anchors = {(r["chrom"], r["site1"]) for r in truth["loops"] if "SIMA" in r["cell_lines"]}
    anchors |= {(r["chrom"], r["site2"]) for r in truth["loops"] if "SIMA" in r["cell_lines"]}
    is_anchor = np.array([(c, p) in anchors for c, p in zip(sites.chrom, sites.pos, strict=True)])
    assert at_site[is_anchor].mean() > 1.5 * at_site[~is_anchor].mean()


# -------------------------------------------------------------------------------------- expression


def _gene_features(genome: dict, cell: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expression, promoter marks (G, 4), H3K27ac at the far anchor of loops from the promoter."""
    sizes = _sizes(genome)
    genes = pd.read_csv(genome["genes"], sep="\t")
    bws = {a: pyBigWig.open(str(genome["tracks"][cell][a])) for a in ASSAYS}
    windows = {"H3K4me3": 1000, "H3K27ac": 1000, "ATAC": 500, "H3K27me3": 3000}
    marks = np.column_stack(
        [
            [
                _mean(bws[a], c, t - w, t + w, sizes[c])
                for c, t in zip(genes.chrom, genes.tss, strict=True)
            ]
            for a, w in windows.items()
        ]
    )
    looped = np.zeros(len(genes))
    tss_bin = (genes.tss // RES).to_numpy()
    loops = _loops(genome, cell)
    for chrom, start1, start2 in zip(loops[0], loops[1], loops[4], strict=True):
        for near, far in ((start1, start2), (start2, start1)):
            hit = (genes.chrom == chrom).to_numpy() & (np.abs(tss_bin - near // RES) <= 1)
            if hit.any():
                looped[hit] += _mean(bws["H3K27ac"], chrom, far - RES, far + 2 * RES, sizes[chrom])
    return genes[cell].to_numpy(), marks, looped


@pytest.mark.parametrize("cell", CELLS)
def test_expression_follows_promoter_marks_and_looped_enhancers(genome: dict, cell: str) -> None:
    expression, marks, looped = _gene_features(genome, cell)
    assert spearmanr(marks[:, 0], expression)[0] > 0.3  # H3K4me3
    assert spearmanr(marks[:, 3], expression)[0] < 0  # H3K27me3
    assert (looped > 0).sum() >= 20
    design = np.column_stack([np.ones(len(expression)), np.log1p(marks), np.log1p(looped)])
    beta, *_ = np.linalg.lstsq(design, expression, rcond=None)
    resid = expression - design @ beta
    sigma2 = resid @ resid / (len(expression) - design.shape[1])
    t_looped = beta[-1] / np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[-1, -1])
    assert beta[-1] > 0 and t_looped > 2.5  # information beyond the promoter marks


def test_truth_json(truth: dict) -> None:
    assert truth["assembly"] == "sim1" and truth["resolutions"] == [10000, 20000, 40000]
    assert truth["cell_lines"] == list(CELLS) and truth["seed"] == 0
    assert {"ctcf_sites", "tads", "compartments", "loops", "enhancers"} <= set(truth)
    assert {s["strand"] for s in truth["ctcf_sites"]} == {"+", "-"}
    tads = pd.DataFrame(truth["tads"])
    assert (tads.groupby("chrom")["start"].min() == 0).all()
    assert ((tads.end - tads.start) >= 150_000).all()


# --------------------------------------------------------------------------------------------- CLI


def test_cli_simulate(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "--out", str(out), "--cell-lines", "GM1", "--seed", "3"]
    result = CliRunner().invoke(
        cli, [*args, "--chrom-length-mb", "2,1.5,3", "--n-chromosomes", "2"]
    )
    assert result.exit_code == 0, result.output
    assert _sizes({"chrom_sizes": out / "genome.chrom.sizes"}) == {
        "chr1": 2_000_000,
        "chr2": 1_500_000,
    }
    assert pd.read_csv(out / "genes.tsv", sep="\t").columns[-1] == "GM1"
    assert (out / "GM1" / "hic.mcool").is_file() and (out / "GM1" / "ATAC.bw").is_file()
    bad = CliRunner().invoke(
        cli, ["simulate", "--out", str(tmp_path / "x"), "--chrom-length-mb", "a,b"]
    )
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()
