"""hicmix predict on a tiny simulated genome: tiny models fine-tuned on SIMA, applied to the
held-out chromosome of SIMB from its tracks alone (and with its Hi-C): .mcool round trip,
stitching exactness and seams, loop calls, expression, card checks, model card, evaluation, CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import cooler
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.evaluate import loop_calling_scores, read_bedpe_loops, read_metrics, restrict
from hicmix.finetune import FinetuneConfig, finetune, write_finetune_config
from hicmix.predict import (
    PrefilterSettings,
    count_candidates,
    evaluate_prediction,
    load_model,
    loop_threshold,
    predict,
    tracks_from_sheet,
    update_model_card,
    window_starts,
    write_model_card,
)
from hicmix.predict.evaluation import crop_band, diagonal_means, split_regions
from hicmix.predict.loops import chromosome_candidates
from hicmix.predict.models import Runner, read_track_bins
from hicmix.predict.stitch import band_depth, predict_map_band, signal_bins
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
    # every candidate of the card's range (loop_min_bp / loop_max_bp: 20 kb - 2 Mb) was scored
    assert stats["loop_candidates"] == stats["loop_scored"] == count_candidates(300, W, 2, 200)
    loops = summary["models"]["loops"]
    assert loops["mode (trained / used)"] == "bimodal / tracks_only"
    assert "card" in loops["loop range (bp)"] and loops["threshold"].startswith("0.5")
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
    assert f"| loops | SIMA | SIMA | auroc | {float(auroc.iloc[0]):.4g} | 0 |" in text
    assert "No metrics table" in write_model_card(folder).read_text()


# ----------------------------------------------------------------------------- evaluation
def test_evaluate_prediction_against_truth_and_decay(predicted: tuple[Path, dict], world: dict):
    out, _ = predicted
    result = evaluate_prediction(
        out / "predicted.mcool", world["truth_cool"], CHROM, 10, 2, train=["chr1"]
    )
    assert (result["h"], result["max_dist_bins"], result["max_dist_bp"]) == (2, 10, 100_000)
    assert result["decay_source"] == "training regions chr1:0-4000000"
    assert result["test_regions"] == ["chr3:0-3000000"] and result["space"].startswith("model")
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


# ----------------------------------------------------------------------------- known maps
KRES, KDEPTH = 1000, 20
KSIZES = {"chrA": 150_000, "chrB": 100_000}  # chrA trains the decay curve, chrB is scored


def _known_bands(seed: int = 0) -> dict[str, np.ndarray]:
    """Upper bands V[d, i] = M[i, i + d] of symmetric maps: power-law decay x log-normal noise."""
    rng = np.random.default_rng(seed)
    d = np.arange(KDEPTH)[:, None]
    return {
        c: 100.0 / (1.0 + d) ** 1.2 * rng.lognormal(0.0, 0.4, (KDEPTH, size // KRES))
        for c, size in KSIZES.items()
    }


def _write_cool(path: Path, bands: dict[str, np.ndarray], meta: dict | None = None) -> Path:
    bins = cooler.binnify(pd.Series(KSIZES), KRES)
    bins["weight"] = 1.0
    frames, offset = [], 0
    for chrom, size in KSIZES.items():
        n = size // KRES
        if chrom in bands:
            d, i = np.nonzero(np.ones((KDEPTH, n), dtype=bool))
            keep = i + d < n
            d, i = d[keep], i[keep]
            frames.append(pd.DataFrame({"bin1_id": offset + i, "bin2_id": offset + i + d,
                                        "count": bands[chrom][d, i]}))  # fmt: skip
        offset += n
    pixels = pd.concat(frames).sort_values(["bin1_id", "bin2_id"], ignore_index=True)
    cooler.create_cooler(str(path), bins, pixels, dtypes={"count": np.float64}, metadata=meta)
    return path


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A true map, a perfect prediction of chrB and a decay-only one (chrA's diagonal means)."""
    root = tmp_path_factory.mktemp("known")
    truth = _known_bands()
    # clip_scale with hic_clip == inverse_scale: the stored prediction is the balanced one
    meta = {"band_diagonals": KDEPTH, "hic_transform": "clip_scale", "hic_clip": 2.0,
            "inverse_scale": 2.0, "cell_line": "X"}  # fmt: skip
    curve = diagonal_means([crop_band(truth["chrA"], 0, KSIZES["chrA"] // KRES)])
    decay = np.broadcast_to(curve[:, None], truth["chrB"].shape).copy()
    return {
        "truth": _write_cool(root / "truth.cool", truth),
        "perfect": _write_cool(root / "perfect.cool", {"chrB": truth["chrB"]}, meta),
        "decay": _write_cool(root / "decay.cool", {"chrB": decay}, meta),
        "curve": curve,
        "root": root,
    }


def _evaluate(known: dict, pred: str, test: str = "chrB", **kwargs) -> dict:
    return evaluate_prediction(known[pred], known["truth"], test, 10, 2, train=["chrA"],
                               space="balanced", **kwargs)  # fmt: skip


def test_perfect_prediction_scores_one(known: dict):
    for test in ("chrB", "chrB:20500-"):  # a whole chromosome and a region (bins 21 ... 99)
        result = _evaluate(known, "perfect", test)
        model = result["model"]
        np.testing.assert_allclose(model["pearson_by_distance"], 1.0, rtol=1e-9)
        for name in ("distance_pearson_mean", "scc", "insulation_pearson", "pixel_pearson"):
            assert model[name] == pytest.approx(1.0), name
        assert model["mse"] == pytest.approx(0.0, abs=1e-18)
        assert result["decay"]["scc"] == pytest.approx(0.0, abs=1e-12)
    assert result["test_regions"] == ["chrB:21000-100000"] and result["coverage"] == 1.0
    n = 100 - 21  # pixels of the region at distances 1 ... 10
    assert model["n_pixels"] == sum(n - d for d in range(1, 11))


def test_decay_only_prediction_equals_the_decay_baseline(known: dict):
    result = _evaluate(known, "decay")
    assert result["decay_source"] == "training regions chrA:0-150000"
    model, decay = result["model"], result["decay"]
    np.testing.assert_allclose(model["pearson_by_distance"], decay["pearson_by_distance"])
    for name, value in decay.items():  # equal up to the float32 of the stored maps
        assert model[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    # constant along each diagonal: nothing beyond P(s), while P(s) inflates the pixel Pearson
    assert decay["distance_pearson_mean"] == 0.0 and decay["scc"] == pytest.approx(0.0)
    assert decay["pixel_pearson"] > 0.8 and decay["insulation_pearson"] < 0.5
    given = _evaluate(known, "perfect", expected=known["curve"])
    assert given["decay_source"] == "provided expected"
    assert given["decay"]["mse"] == pytest.approx(decay["mse"])


def test_decay_scc_stays_zero_next_to_masked_bins():
    """Smoothing next to a masked bin mixes diagonals; those pixels are left out of the SCC, so a
    decay-only map scores 0 whatever the masks (evaluate.scc would give it a positive SCC)."""
    from hicmix import evaluate
    from hicmix.predict.evaluation import decay_prediction, score_bands

    band = crop_band(_known_bands(1)["chrB"], 0, 100)
    for b in (30, 31, 60):  # masked bins: their row and column are NaN
        band[:, b] = np.nan
        for d in range(1, min(KDEPTH, b + 1)):
            band[d, b - d] = np.nan
    decay = decay_prediction(band, diagonal_means([band]))
    scores = score_bands([band], [decay], 10, 3, insulation_window=3)
    assert scores["scc"] == pytest.approx(0.0, abs=1e-12)
    naive = evaluate.scc(SimpleNamespace(values=band, n_bins=100),
                         SimpleNamespace(values=decay, n_bins=100), 3, 10)  # fmt: skip
    assert abs(naive) > 0.01
    assert score_bands([band], [band], 10, 3, insulation_window=3)["scc"] == pytest.approx(1.0)


def test_only_long_signal_free_runs_are_gaps():
    track_bins = np.ones((2, 20 * 3), dtype=np.float32)  # 20 bins, 3 positions each
    track_bins[:, 3 * 3 : 5 * 3] = 0  # 2 bins without signal: a stretch without peaks
    track_bins[:, 10 * 3 : 18 * 3] = 0  # 8 bins: an assembly gap
    valid = signal_bins(track_bins, 3, min_gap_bins=5)
    assert np.flatnonzero(~valid).tolist() == list(range(10, 18))
    assert (~signal_bins(track_bins, 3)).sum() == 10


def test_split_regions_follow_bins():
    regions = split_regions({"val": ["chrA:0-40000"], "test": ["chrB:20500-"]}, KSIZES, KRES)
    assert regions == {
        "train": ["chrA:40000-", "chrB:0-20000"],  # bin 20 straddles: in no split
        "val": ["chrA:0-40000"],
        "test": ["chrB:21000-"],
    }
    assert split_regions({"test": ["chrB"]}, KSIZES, KRES, ["chrB"]) == {
        "train": [], "val": [], "test": ["chrB"],
    }  # fmt: skip


def test_predict_eval_cli_writes_long_metrics(known: dict, tmp_path: Path):
    out = tmp_path / "eval"
    args = ["predict-eval", "--pred", str(known["perfect"]), "--truth", str(known["truth"]),
            "--out", str(out), "--h", "2", "--max-dist-bins", "10", "--split", "test=chrB",
            "--method", "m", "--train-cell-line", "Y", "--seed", "3"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "SCC 1.000 (decay 0.000)" in result.output
    table = read_metrics(out / "metrics.tsv")
    assert set(table["method"]) == {"m", "distance_decay"}
    assert set(table["task"]) == {"predict_map"} and set(table["split"]) == {"test"}
    assert set(table["cell_line"]) == {"X"} and set(table["train_cell_line"]) == {"Y"}
    mine = table[table["method"] == "m"].set_index("metric")["value"]
    assert mine["scc"] == pytest.approx(1.0) and mine["pearson_d10"] == pytest.approx(1.0)
    assert (mine["scc_h"], mine["max_dist_bp"], mine["resolution"]) == (2, 10_000, KRES)
    assert json.loads((out / "evaluation.json").read_text())["decay_source"].startswith("train")
    bad = CliRunner().invoke(cli, args[:-6])  # no card in the .cool: method and seed unknown
    assert bad.exit_code == 1 and "--method" in bad.output and "--seed" in bad.output


# ----------------------------------------------------------------------------- card keys
def test_finetune_card_keys_and_update(world: dict, tmp_path: Path):
    folder = tmp_path / "loops_model"
    shutil.copytree(world["models"]["loops"], folder)
    card = json.loads((folder / "card.json").read_text())
    manifest = json.loads((Path(card["tile_dirs"][0]) / "manifest.json").read_text())
    assert (card["loop_min_bp"], card["loop_max_bp"]) == (20_000, 2_000_000)
    assert card["hic_scale"] == pytest.approx(manifest["hic_scale"]) and card["hic_scale"] > 0
    assert card["loop_threshold"] is None  # chosen later, on validation, by genome-wide calling
    calling = tmp_path / "calling"
    (calling / "seed0").mkdir(parents=True)
    (calling / "seed0" / "summary.json").write_text(json.dumps({"threshold": 0.7}))
    update_model_card(folder, world["root"] / "loops" / "metrics.tsv", calling)
    card = json.loads((folder / "card.json").read_text())
    assert card["loop_threshold"] == 0.7 and card["loop_threshold_source"].startswith("valid")
    assert loop_threshold(card) == (0.7, "card")
    records = card["test_metrics"]
    assert {"auroc", "f1"} <= {r["metric"] for r in records}
    assert all(r["task"] == "loops" and r["seed"] == 0 for r in records)
    assert load_model(folder).card["loop_threshold"] == 0.7  # still a loadable checkpoint
    assert "| loop score threshold | 0.7 (validation" in (folder / "MODEL_CARD.md").read_text()


# ----------------------------------------------------------------------------- workflow
def test_predict_rules_in_the_default_dry_run(tmp_path: Path):
    from test_workflow import job_counts, output, project, snakemake

    result = snakemake(project(tmp_path), "-n", "-p")
    text = output(result)
    assert result.returncode == 0, text
    counts = job_counts(text)
    # the tracks_only hicmap model of SIMA x 3 seeds predicts SIMA and SIMB; 15 models get cards
    assert (counts["predict_map"], counts["predict_eval"], counts["predict_card"]) == (6, 6, 15)
    assert "--chromosomes chr3,chr6" in text and "--cell-line SIMB" in text
    # the decay curve comes from the training chromosomes: the split spans every chromosome
    assert "--h 5 --split val=chr2 --split test=chr3,chr6  --weight weight" in text
    assert "results/predict/map/hicmix-tracks_only-nonpre/SIMA/SIMB/seed2/metrics.tsv" in text


def _tracks_only_project(
    tmp_path: Path, extra: dict | None = None, bigwigs: dict | None = None, **columns: str
) -> Path:
    """The default project plus SIMC: roles predict, no Hi-C, tracks from bigwigs (channel ->
    path; default SIMA's simulated bigWigs); columns: more cells of its sheet row."""
    from test_workflow import project

    folder = project(tmp_path, extra)
    cells = folder / "config/cell_lines.tsv"
    header = cells.read_text().splitlines()[0].split("\t")
    row = {"cell_line": "SIMC", "assembly": "sim1", "roles": "predict", "note": "tracks only"}
    header += [c for c in columns if c not in header]
    lines = [
        line + "\t" * (len(header) - 1 - line.count("\t"))
        for line in cells.read_text().splitlines()
    ]
    lines.append("\t".join({**row, **columns}.get(c, "") for c in header))
    cells.write_text("\n".join(["\t".join(header), *lines[1:]]) + "\n")
    bigwigs = bigwigs or {c: f"resources/simulated/SIMA/{c}.bw" for c in CHANNELS}
    simc = "".join(f"SIMC\t{c}\t.\t{path}\t\ttracks only\n" for c, path in bigwigs.items())
    tracks = folder / "config/tracks.tsv"
    tracks.write_text(tracks.read_text() + simc)
    return folder


def test_tracks_only_cell_line_gets_predictions_not_tiles(tmp_path: Path):
    from test_workflow import job_counts, output, snakemake

    result = snakemake(_tracks_only_project(tmp_path), "-n", "-p")
    text = output(result)
    assert result.returncode == 0, text
    counts = job_counts(text)
    # SIMC adds its 5 track downloads and one predict_cell job; no Hi-C, balance, tiles or QC
    assert counts["predict_cell"] == 1 and counts["download"] == 16 + len(CHANNELS)
    assert (counts["balance"], counts["tiles"], counts["qc"]) == (2, 2, 2)
    assert "resources/SIMC/hic." not in text and "results/hic/SIMC" not in text
    assert not re.search(r"results/(tiles|qc)/SIMC|/SIMC/seed|/SIMC/SIMC/", text)
    command = next(line for line in text.splitlines() if "--cell-line SIMC" in line)
    assert "predict --model results/finetune/hicmap/hicmix-tracks_only-nonpre/SIMA/" in command
    assert "--model results/finetune/loops/hicmix-bimodal-nonpre/SIMA/SIMA/seed0/model" in command
    assert "--track ATAC=resources/SIMC/tracks/ATAC.bw" in command
    assert command.endswith("--out results/predict/cell/SIMC > logs/predict_cell/SIMC.log 2>&1")
    assert "hicmix download --source resources/simulated/SIMA/CTCF.bw --out resources/SIMC/" in text


def test_tracks_only_cell_line_without_models_plans_nothing(tmp_path: Path):
    from test_workflow import job_counts, output, snakemake

    folder = _tracks_only_project(tmp_path, {"tasks": {"enabled": False}})
    result = snakemake(folder, "-n", "--configfile", "config/extra.yaml")
    text = output(result)
    assert result.returncode == 0, text
    counts = job_counts(text)
    assert "predict_cell" not in counts and (counts["tiles"], counts["download"]) == (2, 16)


def test_task_cell_lines_skip_a_tracks_only_cell_line(tmp_path: Path):
    from test_workflow import job_counts, output, snakemake

    folder = _tracks_only_project(tmp_path, {"tasks": {"cell_lines": ["SIMA", "SIMB", "SIMC"]}})
    result = snakemake(folder, "-n", "-p", "--configfile", "config/extra.yaml")
    text = output(result)
    assert result.returncode == 0, text
    assert job_counts(text)["predict_cell"] == 1 and not re.search(r"/SIMC/seed|/SIMC/SIMC/", text)


@pytest.mark.slow
def test_tracks_only_cell_line_predict_cell_runs(world: dict, tmp_path: Path):
    """Rule predict_cell on chr3 of SIMC (SIMB's tracks) with the tiny SIMA models of world."""
    from test_workflow import output, snakemake

    folder = _tracks_only_project(tmp_path, bigwigs=world["tracks"], chromosomes=CHROM)
    for task, mode in (("hicmap", "tracks_only"), ("loops", "bimodal")):
        run = folder / f"results/finetune/{task}/hicmix-{mode}-nonpre/SIMA/SIMA/seed0"
        shutil.copytree(world["root"] / task, run)
    result = snakemake(folder, "results/predict/cell/SIMC", "--cores", "1")
    assert result.returncode == 0, output(result)
    out = folder / "results/predict/cell/SIMC"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["chromosomes"] == [CHROM] and summary["hic"] is None
    assert summary["models"]["loops"]["mode (trained / used)"] == "bimodal / tracks_only"
    clr = cooler.Cooler(f"{out}/predicted.mcool::resolutions/{RES}")
    band = clr.matrix(balance=False).fetch(CHROM)
    assert band.shape == (CHROM_BP // RES,) * 2 and np.allclose(band, band.T)
    assert np.isfinite(band).all() and band.max() > 0
    assert (out / "loops.bedpe").is_file() and not list(folder.glob("results/tiles/*"))
