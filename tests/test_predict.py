"""hicmix predict on a tiny simulated genome: tiny models fine-tuned on SIMA, applied to the
held-out chromosome of SIMB from its tracks alone (and with its Hi-C): .mcool round trip,
stitching exactness and seams, loop calls, expression, card checks, model card, evaluation, CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import cooler
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.evaluate import loop_calling_scores, read_bedpe_loops, restrict
from hicmix.finetune import FinetuneConfig, finetune, write_finetune_config
from hicmix.predict import (
    PrefilterSettings,
    count_candidates,
    evaluate_prediction,
    load_model,
    predict,
    tracks_from_sheet,
    window_starts,
    write_model_card,
)
from hicmix.predict.loops import chromosome_candidates
from hicmix.predict.models import Runner, read_track_bins
from hicmix.predict.stitch import band_depth, predict_map_band
from hicmix.simulate import SimParams, simulate_genome
from hicmix.tiles import tile_cell_line

RES, W, SUBBIN, STRIDE = 10_000, 16, 1000, 4  # P = 10; default stride W // 4
CHANNELS = ["ATAC", "CTCF", "H3K27ac", "H3K4me3", "H3K27me3"]
CHROM, CHROM_BP = "chr3", 3_000_000  # the test chromosome of the tiles
RUN = {
    "size": "tiny", "lr": 3e-3, "batch_size": 8, "max_epochs": 2, "patience": 0,
    "warmup_steps": 2, "num_workers": 0, "channel_dropout": 0.2,
}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """SIMA tiles (chr1 train, chr2 val, chr3 test) and tiny hicmap / loops / expression models."""
    root = tmp_path_factory.mktemp("predict")
    sim = simulate_genome(
        root / "sim", cell_lines=["SIMA", "SIMB"], seed=0, chrom_lengths_mb=[4, 3, 3],
        params=SimParams(extra_loops_per_tad=6.0), progress=False,
    )  # fmt: skip
    for cell in ("SIMA", "SIMB"):
        balance_hic(sim["hic"][cell], root / f"{cell}.cool", RES)
    tile_cell_line(
        cell_line="SIMA", out=root / "tiles", assembly="sim1", hic=root / "SIMA.cool",
        tracks={c: sim["tracks"]["SIMA"][c] for c in CHANNELS}, loops=sim["loops"]["SIMA"],
        genes=sim["genes"], expression_column="SIMA", splits={"val": ["chr2"], "test": [CHROM]},
        window_bins=W, stride_bins=4, subbin_bp=SUBBIN, kinds=["loops", "tss"], progress=False,
    )  # fmt: skip
    config = write_finetune_config(RUN, root / "finetune.yaml")
    models = {}
    for task, mode in (("hicmap", "tracks_only"), ("loops", "bimodal"), ("expression", "bimodal")):
        finetune(task, mode, [root / "tiles"], None, config, root / task, 0, None, "cpu",
                 progress=False)  # fmt: skip
        models[task] = root / task / "model"
    return {
        "root": root,
        "sim": sim,
        "models": models,
        "tracks": {c: str(sim["tracks"]["SIMB"][c]) for c in CHANNELS},
        "truth_cool": root / "SIMB.cool",
    }


@pytest.fixture(scope="module")
def predicted(world: dict) -> tuple[Path, dict]:
    """SIMB chr3 from its tracks alone, with all three models."""
    out = world["root"] / "pred"
    summary = predict(
        list(world["models"].values()), world["tracks"], out, chromosomes=[CHROM],
        cell_line="SIMB", genes=world["sim"]["genes"], device="cpu", batch_size=128,
        progress=False,
    )  # fmt: skip
    return out, summary


# ----------------------------------------------------------------------------- map
def test_mcool_opens_at_every_resolution(predicted: tuple[Path, dict]):
    out, summary = predicted
    path = out / "predicted.mcool"
    groups = cooler.fileops.list_coolers(str(path))
    assert [int(g.rsplit("/", 1)[1]) for g in groups] == [RES * f for f in (1, 2, 4, 8, 16)]
    base = cooler.Cooler(f"{path}::{groups[0]}")
    meta = base.info["metadata"]
    assert meta["band_diagonals"] == band_depth(W, STRIDE) == 13
    assert meta["hic_transform"] == "clip_scale" and meta["inverse_column"] == "balanced"
    assert base.chromnames == ["chr1", "chr2", "chr3"]  # genome coordinates kept
    pixels = base.pixels()[:]
    chroms = base.bins()[:]["chrom"].to_numpy()[pixels["bin1_id"]]
    assert set(chroms) == {CHROM}
    assert (pixels["bin2_id"] - pixels["bin1_id"]).max() == meta["band_diagonals"] - 1
    assert pixels["count"].between(0, 1).all()  # sigmoid head of clip_scale
    factor = meta["hic_clip"] / meta["inverse_scale"]
    np.testing.assert_allclose(pixels["balanced"], pixels["count"] * factor, rtol=1e-5)
    for group in groups:
        clr = cooler.Cooler(f"{path}::{group}")
        n = math.ceil(CHROM_BP / clr.binsize)
        matrix = clr.matrix(balance=True).fetch(CHROM)
        assert matrix.shape == (n, n)
        weight = clr.bins().fetch(CHROM)["weight"].to_numpy()
        ok = np.isfinite(weight)
        assert ok.mean() > 0.9
        inner = matrix[np.ix_(ok, ok)]
        assert np.isfinite(inner).all()
        np.testing.assert_allclose(matrix, matrix.T, equal_nan=True)
        assert np.diagonal(inner).min() > 0
        assert {"count", "balanced"} <= set(clr.pixels()[:0].columns)
    assert summary["stats"]["map_windows"] == len(window_starts(300, W, STRIDE))


def test_stitching_reproduces_a_known_map_exactly():
    """A fake model that returns the true window of a known symmetric matrix: the stitched band is
    that matrix on every stored diagonal, whatever the stride and weighting."""
    rng = np.random.default_rng(0)
    n, positions = 53, 2
    dense = rng.random((n, n))
    dense = dense + dense.T
    track_bins = np.repeat(np.arange(n, dtype=np.float32), positions)[None]  # encodes the bin

    def runner(tracks: np.ndarray, distance: np.ndarray) -> dict:
        starts = tracks[:, 0, 0].astype(int)
        maps = np.stack([dense[s : s + W, s : s + W] for s in starts])
        return {"map": maps[:, None]}

    for stride, taper in ((1, True), (4, True), (7, False), (15, True)):
        band = predict_map_band(runner, track_bins, n, W, positions, stride, 5, taper=taper)
        assert band.shape == (W - stride + 1, n)
        for d in range(band.shape[0]):
            np.testing.assert_allclose(band[d, : n - d], np.diagonal(dense, d), rtol=1e-6)
            assert np.isnan(band[d, n - d :]).all()
    with pytest.raises(ConfigError, match="stride_bins"):
        predict_map_band(runner, track_bins, n, W, positions, W, 5)


def _seam_ratio(band: np.ndarray, starts: np.ndarray) -> float:
    """Mean |step| along each diagonal where a window enters or leaves, over the mean elsewhere."""
    at_edge, inside = [], []
    for d in range(band.shape[0]):
        step = np.abs(np.diff(band[d].astype(np.float64)))
        i = np.arange(step.size)
        edge = np.isin(i + 1, starts) | np.isin(i + 1 - (W - d), starts)
        ok = np.isfinite(step)
        at_edge.append(step[ok & edge])
        inside.append(step[ok & ~edge])
    return float(np.concatenate(at_edge).mean() / np.concatenate(inside).mean())


def test_no_seams_at_window_boundaries(world: dict):
    item = load_model(world["models"]["hicmap"])
    runner = Runner(item, "tracks_only", torch.device("cpu"))
    n = CHROM_BP // RES
    track_bins = read_track_bins(world["tracks"], CHANNELS, CHROM, CHROM_BP, n, RES, 10, "log2p1")
    starts = window_starts(n, W, STRIDE)
    tapered = predict_map_band(runner, track_bins, n, W, 10, STRIDE, 64, taper=True)
    flat = predict_map_band(runner, track_bins, n, W, 10, STRIDE, 64, taper=False)
    ratio_tapered, ratio_flat = _seam_ratio(tapered, starts), _seam_ratio(flat, starts)
    # steps where a window enters or leaves are no larger than overlap noise elsewhere
    assert ratio_tapered < 1.35, (ratio_tapered, ratio_flat)
    assert ratio_tapered <= ratio_flat + 0.05


# ----------------------------------------------------------------------------- loops
def _truth(world: dict) -> pd.DataFrame:
    truth = read_bedpe_loops(world["sim"]["loops"]["SIMB"], RES, [CHROM])
    return restrict(truth, min_bins=2, max_bins=200)


def test_tracks_only_loop_calls(predicted: tuple[Path, dict], world: dict):
    out, summary = predicted
    stats = summary["stats"]
    # every candidate of the card's range (from the training tiles: 20 kb - 2 Mb) was scored
    assert stats["loop_candidates"] == stats["loop_scored"] == count_candidates(300, W, 2, 200)
    loops = summary["models"]["loops"]
    assert loops["mode (trained / used)"] == "bimodal / tracks_only"
    assert "training tiles" in loops["loop range (bp)"] and loops["threshold"].startswith("0.5")
    calls = read_bedpe_loops(out / "loops.bedpe", RES)
    assert len(calls) == stats["loop_calls"]
    assert set(calls["chrom"]) <= {CHROM} and (calls["score"] >= 0.5).all()
    pixels = pd.read_csv(out / "loop_pixels.tsv.gz", sep="\t")
    assert (pixels["score"] >= 0.1).all() and (pixels["bin2"] - pixels["bin1"]).between(
        2, 200
    ).all()
    scores = loop_calling_scores(calls, _truth(world), radius_bins=2)
    assert scores["n_truth"] > 5 and scores["n_pred"] == len(calls)


def test_tracks_and_hic_loop_calls_with_prefilter(world: dict, tmp_path: Path):
    summary = predict(
        [world["models"]["loops"]], world["tracks"], tmp_path / "o", chromosomes=[CHROM],
        hic=world["truth_cool"], prefilter="enrichment", device="cpu", batch_size=256,
        html=False, progress=False,
    )  # fmt: skip
    stats = summary["stats"]
    assert summary["models"]["loops"]["mode (trained / used)"] == "bimodal / bimodal"
    assert stats["loop_candidates"] == count_candidates(300, W, 2, 200)
    assert 0 < stats["loop_scored"] < 0.25 * stats["loop_candidates"]
    calls = read_bedpe_loops(tmp_path / "o" / "loops.bedpe", RES)
    scores = loop_calling_scores(calls, _truth(world), radius_bins=2)
    assert scores["tp"] > 0  # with the observed Hi-C the bimodal model finds planted loops
    assert not (tmp_path / "o" / "summary.html").exists()
    # the pre-filter's recall cost: true loop pixels that survive it
    from hicmix.hic import open_hic, read_band

    band = read_band(open_hic(world["truth_cool"], RES), CHROM, 200 + W + 1)
    i, j, total = chromosome_candidates(300, W, 2, 200, PrefilterSettings("enrichment"),
                                        band=band.values)  # fmt: skip
    kept = set(zip(i.tolist(), j.tolist(), strict=True))
    truth = _truth(world)
    fits = truth[(truth["bin1"] >= W // 2) & (truth["bin2"] + W // 2 <= 300)]
    recall = np.mean([(a, b) in kept for a, b in zip(fits["bin1"], fits["bin2"], strict=True)])
    assert recall >= 0.8 and len(i) < 0.25 * total


# ----------------------------------------------------------------------------- expression, html
def test_expression_and_html(predicted: tuple[Path, dict], world: dict):
    out, summary = predicted
    table = pd.read_csv(out / "expression.tsv", sep="\t", dtype={"gene_id": str})
    assert list(table.columns) == ["gene_id", "cell_line", "prediction"]
    genes = pd.read_csv(world["sim"]["genes"], sep="\t", dtype={"gene_id": str})
    on_chrom = genes[genes["chrom"] == CHROM]
    skipped = summary["stats"].get("genes_skipped_off_chromosome", 0)
    assert len(table) == len(on_chrom) - skipped > 10
    assert set(table["gene_id"]) <= set(on_chrom["gene_id"])
    assert (table["cell_line"] == "SIMB").all() and np.isfinite(table["prediction"]).all()
    assert table["prediction"].std() > 0
    html = (out / "summary.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=['\"]http", html)  # self-contained
    saved = json.loads((out / "summary.json").read_text())
    assert saved["finished"] and saved["outputs"]["summary"] == "summary.html"
    assert "'count'" in saved["values"] and "balanced" in saved["values"]


# ----------------------------------------------------------------------------- card checks
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"order": True}, "order"),
        ({"extra": True}, "channels"),
        ({"assembly": "hg38"}, "assembly"),
        ({"resolution": 20_000}, "resolution"),
        ({"hic": "20000"}, "resolution"),
    ],
)
def test_card_mismatch_refused(world: dict, tmp_path: Path, change: dict, field: str):
    tracks = dict(world["tracks"])
    kwargs = {}
    if change.get("order"):
        tracks = {c: tracks[c] for c in reversed(CHANNELS)}
    if change.get("extra"):
        tracks["CAGE"] = tracks["ATAC"]
    if "assembly" in change:
        kwargs["assembly"] = change["assembly"]
    if "resolution" in change:
        kwargs["resolution"] = change["resolution"]
    if "hic" in change:
        kwargs["hic"] = f"{world['sim']['hic']['SIMB']}::resolutions/{change['hic']}"
    with pytest.raises(InputError, match=field) as caught:
        predict([world["models"]["loops"]], tracks, tmp_path / "o", chromosomes=[CHROM],
                device="cpu", progress=False, **kwargs)  # fmt: skip
    assert str(world["models"]["loops"]) in str(caught.value)
    assert not (tmp_path / "o").exists()


def test_missing_channel_needs_dropout_and_the_flag(world: dict, tmp_path: Path):
    tracks = {c: p for c, p in world["tracks"].items() if c != "H3K27me3"}
    model = world["models"]["hicmap"]
    with pytest.raises(InputError, match="--allow-missing-channels"):
        predict([model], tracks, tmp_path / "a", chromosomes=[CHROM], device="cpu", progress=False)
    summary = predict([model], tracks, tmp_path / "b", chromosomes=[CHROM], device="cpu",
                      allow_missing_channels=True, html=False, progress=False)  # fmt: skip
    assert summary["missing_channels"] == ["H3K27me3"]
    assert cooler.Cooler(f"{tmp_path / 'b' / 'predicted.mcool'}::resolutions/{RES}").info["nnz"]
    no_dropout = tmp_path / "no_dropout"
    shutil.copytree(model, no_dropout)
    card = json.loads((no_dropout / "card.json").read_text())
    assert card["channel_dropout"] == 0.2  # the finetune key reaches the card
    card["channel_dropout"] = 0.0
    (no_dropout / "card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="channel dropout"):
        predict([no_dropout], tracks, tmp_path / "c", chromosomes=[CHROM], device="cpu",
                allow_missing_channels=True, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="channel_dropout"):
        FinetuneConfig(channel_dropout=1.0)


def test_two_models_of_one_task_refused(world: dict, tmp_path: Path):
    model = world["models"]["hicmap"]
    with pytest.raises(InputError, match="both do task hicmap"):
        predict([model, model], world["tracks"], tmp_path / "o", device="cpu", progress=False)


# ----------------------------------------------------------------------------- model card
def test_write_model_card(world: dict):
    folder = world["models"]["loops"]
    path = write_model_card(folder, world["root"] / "loops" / "metrics.tsv")
    text = path.read_text()
    assert path == folder / "MODEL_CARD.md"
    for needle in (
        "| training cell lines | SIMA |",
        "| assembly | sim1 |",
        "| resolution | 10,000 bp |",
        "| window | 16 bins (160,000 bp) |",
        "1. ATAC, 2. CTCF, 3. H3K27ac, 4. H3K4me3, 5. H3K27me3",
        "clip_scale (clip 255.0)",
        "| track transform | log2p1 |",
        "| tile format version | 1 |",
        "| channel dropout | 0.2",
    ):
        assert needle in text, needle
    metrics = pd.read_csv(world["root"] / "loops" / "metrics.tsv", sep="\t")
    auroc = metrics[(metrics["split"] == "test") & (metrics["metric"] == "auroc")]["value"]
    assert f"| SIMA | SIMA | auroc | {float(auroc.iloc[0]):.4g} | 0 |" in text
    assert "No metrics table" in write_model_card(folder).read_text()


# ----------------------------------------------------------------------------- evaluation
def test_evaluate_prediction_against_truth_and_decay(predicted: tuple[Path, dict], world: dict):
    out, _ = predicted
    result = evaluate_prediction(
        out / "predicted.mcool", world["truth_cool"], CHROM, 10, 2, train_chroms=["chr1"]
    )
    assert (result["h"], result["max_dist_bins"], result["max_dist_bp"]) == (2, 10, 100_000)
    assert result["decay_source"] == "training chromosomes chr1"
    assert len(result["model"]["pearson_by_distance"]) == 11
    for name in ("distance_pearson_mean", "scc", "insulation_pearson", "pixel_pearson", "mse"):
        assert np.isfinite(result["model"][name]), name
        assert np.isfinite(result["decay"][name]), name
    # decay only: constant along each diagonal, so nothing beyond P(s)
    assert result["decay"]["distance_pearson_mean"] == 0.0
    assert result["decay"]["pixel_pearson"] > 0.5  # while P(s) inflates the pixel Pearson
    with pytest.raises(InputError, match="max_dist_bins 20"):
        evaluate_prediction(out / "predicted.mcool", world["truth_cool"], CHROM, 20, 2)


# ----------------------------------------------------------------------------- CLI
def test_cli_tracks_sheet_and_error(world: dict, tmp_path: Path):
    sheet = tmp_path / "tracks.tsv"
    rows = [f"SIMB\t{c}\t.\t{p}\t\t" for c, p in reversed(world["tracks"].items())]
    sheet.write_text("cell_line\tassay\tstrand\tsource\tmd5\tnote\n" + "\n".join(rows) + "\n")
    assert list(tracks_from_sheet(sheet, "SIMB", CHANNELS)) == CHANNELS  # the card's order
    out = tmp_path / "cli"
    args = ["predict", "--model", str(world["models"]["hicmap"]), "--tracks-sheet", str(sheet),
            "--cell-line", "SIMB", "--chromosomes", CHROM, "--out", str(out), "--device", "cpu",
            "--no-html", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (
        "predicted SIMB on 1 chromosome(s)" in result.output and "predicted.mcool" in result.output
    )
    assert (out / "predicted.mcool").is_file() and (out / "summary.json").is_file()
    bad = CliRunner().invoke(cli, [*args, "--assembly", "hg19"])
    assert bad.exit_code == 1 and "error:" in bad.output and "assembly" in bad.output
    both = CliRunner().invoke(cli, [*args, "--track", f"ATAC={world['tracks']['ATAC']}"])
    assert both.exit_code == 2 and "not both" in both.output
