"""Fine-tuning on a tiny simulated genome: outputs, val-only selection, test coverage, pretrained
loading and refusal, determinism, hicmap mode rule, augmentation, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hicmix import TILE_FORMAT_VERSION
from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.evaluate import METRIC_COLUMNS
from hicmix.finetune import (
    EXPRESSION_COLUMNS,
    HISTORY_COLUMNS,
    LOOP_PREDICTION_COLUMNS,
    FinetuneConfig,
    diagonal_stats,
    finetune,
    flip_strand,
    load_finetuned,
    masked_mse,
    model_inputs,
    predict_windows,
    task_loss,
    write_finetune_config,
)
from hicmix.model.heads import HicMapHead, TssTrackBranch
from hicmix.pretrain import pretrain
from hicmix.simulate import SimParams, simulate_genome
from hicmix.tiles import TileDataset, tile_cell_line

RES, W, SUBBIN = 10_000, 16, 1000  # P = 10
SPLIT = {"val": ["chr2"], "test": ["chr3"]}
RUN = {
    "size": "tiny",
    "lr": 3e-3,
    "batch_size": 8,
    "max_epochs": 3,
    "patience": 0,
    "warmup_steps": 2,
    "num_workers": 0,
}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """chr1 4 Mb (train), chr2 3 Mb (val), chr3 3 Mb (test); extra loops for a usable loop set."""
    root = tmp_path_factory.mktemp("finetune_genome")
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
    tile_cell_line(cell_line="SIMA", out=root / "tiles" / "SIMA", **common)
    # the same maps tiled under another name: a stand-in target for cross-cell transfer
    tile_cell_line(cell_line="SIMB", out=root / "tiles" / "SIMB", kinds=["loops"], **common)
    return {"root": root, "tiles": root / "tiles" / "SIMA", "other": root / "tiles" / "SIMB"}


@pytest.fixture(scope="module")
def config(genome: dict) -> Path:
    return write_finetune_config(RUN, genome["root"] / "finetune.yaml")


@pytest.fixture(scope="module")
def loops_run(genome: dict, config: Path) -> Path:
    out = genome["root"] / "loops"
    finetune(
        "loops", "bimodal", [genome["tiles"]], None, config, out, 0, None, "cpu", max_epochs=8,
        progress=False,
    )  # fmt: skip
    return out


def _index(tiles: Path, kind: str, split: str) -> pd.DataFrame:
    index = pd.read_csv(tiles / kind / "index.tsv", sep="\t", dtype={"gene_id": str})
    return index[index["split"] == split]


def _metrics(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert tuple(table.columns) == METRIC_COLUMNS
    return table


def _metric(table: pd.DataFrame, split: str, name: str, cell: str = "SIMA") -> float:
    row = table[
        (table["split"] == split) & (table["metric"] == name) & (table["cell_line"] == cell)
    ]
    assert len(row) == 1, (split, name, cell)
    return float(row["value"].iloc[0])


def _check_selection(out: Path, metric: str) -> None:
    """The kept epoch is the first argmax of the val metric, and its val score is reproduced."""
    history = pd.read_csv(out / "history.csv")
    assert tuple(history.columns) == HISTORY_COLUMNS
    summary = json.loads((out / "summary.json").read_text())
    best = int(history["epoch"].iloc[int(np.nanargmax(history["val_metric"].to_numpy()))])
    assert summary["best_epoch"] == best
    assert summary["selection_metric"] == metric
    card = json.loads((out / "model" / "card.json").read_text())
    assert card["epoch"] == best and card["selection_metric"] == metric
    val = _metric(_metrics(out), "val", metric)
    assert val == pytest.approx(history["val_metric"].max(), abs=1e-9)
    assert card["metrics"]["val"][metric] == pytest.approx(val, abs=1e-9)


# ----------------------------------------------------------------------------- loops
def test_loops_outputs_selection_and_test_coverage(loops_run: Path, genome: dict):
    out = loops_run
    for name in (
        "history.csv",
        "predictions.tsv",
        "metrics.tsv",
        "summary.json",
        "run_config.yaml",
    ):
        assert (out / name).is_file(), name
    assert (out / "model" / "model.pt").is_file()
    _check_selection(out, "auroc")
    pred = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert tuple(pred.columns) == LOOP_PREDICTION_COLUMNS
    assert pred["score"].between(0, 1).all()
    for split in ("val", "test"):
        mine = pred[pred["split"] == split]
        index = _index(genome["tiles"], "loops", split)
        keys = ["chrom", "bin_x", "bin_y", "label"]
        got = sorted(map(tuple, mine[keys].to_numpy().tolist()))
        assert got == sorted(map(tuple, index[keys].to_numpy().tolist()))
        assert (mine["distance"] == mine["bin_y"] - mine["bin_x"]).all()
    assert set(pred.loc[pred["split"] == "test", "chrom"]) == {"chr3"}
    metrics = _metrics(out)
    assert set(metrics["method"]) == {"hicmix-bimodal-nonpre"}
    assert set(metrics["split"]) == {"val", "test"}
    assert set(metrics["train_cell_line"]) == {"SIMA"} and set(metrics["seed"]) == {0}
    for name in ("f1", "precision", "recall", "auroc", "auprc", "n", "n_pos"):
        assert name in set(metrics["metric"])
    # planted dots: the bimodal model ranks test loops above the negatives
    assert _metric(metrics, "test", "auroc") > 0.6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == "NonPre" and summary["pretrained"] is None
    assert summary["n_test_samples"] == {"SIMA": len(_index(genome["tiles"], "loops", "test"))}


def test_card_and_reloaded_model_reproduce_predictions(loops_run: Path, genome: dict):
    card = json.loads((loops_run / "model" / "card.json").read_text())
    assert (card["task"], card["mode"], card["seed"], card["variant"]) == (
        "loops",
        "bimodal",
        0,
        "NonPre",
    )
    assert card["geometry"] == {
        "window_bins": W,
        "positions_per_bin": RES // SUBBIN,
        "n_channels": 5,
    }
    assert card["transforms"]["track_transform"] == "log2p1"
    assert card["tile_format_version"] == TILE_FORMAT_VERSION
    assert card["cell_lines"] == ["SIMA"] and card["pretrained"] is None
    model, card = load_finetuned(loops_run / "model", genome["tiles"])
    test = TileDataset([genome["tiles"]], "loops", ["test"])
    pred = predict_windows(model, test, "loops", "bimodal", 5, "cpu")
    saved = pd.read_csv(loops_run / "predictions.tsv", sep="\t")
    saved = saved[saved["split"] == "test"]["score"].to_numpy()
    np.testing.assert_allclose(pred["score"], saved, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- selection order
def test_test_split_read_only_after_selection(genome: dict, config: Path, monkeypatch, tmp_path):
    """Every validation happens before any test-split dataset exists (selection sees val only)."""
    import hicmix.finetune as ft

    events: list[str] = []
    real_init, real_validate = TileDataset.__init__, ft._Run._validate

    def spy_init(self, tile_dirs, kind, splits):
        events.append("dataset:" + ",".join([splits] if isinstance(splits, str) else splits))
        real_init(self, tile_dirs, kind, splits)

    def spy_validate(self):
        events.append("validate")
        return real_validate(self)

    monkeypatch.setattr(TileDataset, "__init__", spy_init)
    monkeypatch.setattr(ft._Run, "_validate", spy_validate)
    finetune("expression", "tracks_only", [genome["tiles"]], None, config, tmp_path, 3,
             device="cpu", max_epochs=2, progress=False)  # fmt: skip
    assert events.count("validate") == 2
    first_test = events.index("dataset:test")
    assert first_test > max(i for i, e in enumerate(events) if e == "validate")
    assert all("test" not in e for e in events[:first_test])


# ----------------------------------------------------------------------------- hicmap
def test_hicmap_windows_and_no_hic_input(genome: dict, config: Path, tmp_path: Path):
    out = tmp_path / "hicmap"
    finetune("hicmap", "tracks_only", [genome["tiles"]], None, config, out, 0, device="cpu",
             max_epochs=2, progress=False)  # fmt: skip
    _check_selection(out, "distance_pearson_mean")
    history = pd.read_csv(out / "history.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    with h5py.File(out / "predictions.h5", "r") as handle:
        split = handle["split"].asstr()[:]
        assert handle["pred"].shape == handle["true"].shape == handle["mask"].shape
        assert handle["pred"].shape[1:] == (W, W)
        pred, true = handle["pred"][:], handle["true"][:]
        genes, chrom = handle["gene_id"].asstr()[:], handle["chrom"].asstr()[:]
    np.testing.assert_allclose(pred, pred.transpose(0, 2, 1), atol=1e-6)  # diagonal windows
    for name in ("val", "test"):
        index = _index(genome["tiles"], "tss", name)
        assert sorted(genes[split == name]) == sorted(index["gene_id"])
    assert set(chrom[split == "test"]) == {"chr3"}
    assert (true >= 0).all() and (pred >= 0).all() and (pred <= 1).all()
    metrics = _metrics(out)
    assert set(metrics["method"]) == {"hicmix-tracks_only-nonpre"}
    names = set(metrics["metric"])
    assert {"distance_pearson_mean", "pixel_pearson", "r2_pooled", "r2_window_mean"} <= names
    assert {f"pearson_d{d:02d}" for d in range(W)} <= names
    # the Hi-C patch is the target, never an input: scrambling it leaves predictions unchanged
    model, _ = load_finetuned(out / "model", genome["tiles"])
    head = model.heads["hicmap"]
    assert head.is_standardised  # default hicmap_target diagonal_zscore: restored from the card
    train = TileDataset([genome["tiles"]], "tss", ["train"])
    hic = np.stack([train[i]["hic"][0].numpy() for i in range(len(train))])
    valid = np.stack([train[i]["hic_mask"][0].numpy() for i in range(len(train))]).astype(bool)
    for d in (1, 5):
        values = np.diagonal(hic, d, 1, 2)[np.diagonal(valid, d, 1, 2)]
        assert head.diag_mean[d].item() == pytest.approx(values.mean(), rel=1e-4)
        assert head.diag_sd[d].item() == pytest.approx(values.std(), rel=1e-3)
    train.close()
    data = TileDataset([genome["tiles"]], "tss", ["test"])
    batch = torch.utils.data.default_collate([data[i] for i in range(6)])
    assert "hic" not in model_inputs(batch, "tracks_only", torch.device("cpu"))

    class Scrambled(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            item = dict(data[i])
            item["hic"] = torch.rand_like(item["hic"])
            return item

    a = predict_windows(
        model, torch.utils.data.Subset(data, range(6)), "hicmap", "tracks_only", 3, "cpu"
    )
    b = predict_windows(model, Scrambled(), "hicmap", "tracks_only", 3, "cpu")
    np.testing.assert_array_equal(a["pred"], b["pred"])
    np.testing.assert_allclose(a["pred"], pred[split == "test"][:6], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["bimodal", "hic_only"])
def test_hicmap_refuses_modes_with_hic_input(genome: dict, config: Path, tmp_path: Path, mode):
    with pytest.raises(ConfigError, match="tracks_only"):
        finetune("hicmap", mode, [genome["tiles"]], None, config, tmp_path, 0, device="cpu")
    assert not (tmp_path / "summary.json").exists()


# ----------------------------------------------------------------------------- expression
def test_expression_outputs_and_determinism(genome: dict, config: Path, tmp_path: Path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        finetune("expression", "bimodal", [genome["tiles"]], None, config, out, 7, device="cpu",
                 max_epochs=2, progress=False)  # fmt: skip
        runs.append(out)
    a, b = runs
    assert (a / "metrics.tsv").read_bytes() == (b / "metrics.tsv").read_bytes()
    assert (a / "expression.tsv").read_bytes() == (b / "expression.tsv").read_bytes()
    _check_selection(a, "pearson")
    history = pd.read_csv(a / "history.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # it does train
    table = pd.read_csv(a / "expression.tsv", sep="\t", dtype={"gene_id": str})
    assert tuple(table.columns) == EXPRESSION_COLUMNS
    for name in ("val", "test"):
        index = _index(genome["tiles"], "tss", name)
        mine = table[table["split"] == name]
        assert sorted(mine["gene_id"]) == sorted(index["gene_id"])
        merged = mine.merge(index, on="gene_id")
        np.testing.assert_allclose(merged["truth"], merged["expression"], rtol=1e-5)
    metrics = _metrics(a)
    assert set(metrics["seed"]) == {7}
    for name in ("pearson", "spearman", "r2", "mse", "above_median_auroc", "above_median_auprc"):
        assert np.isfinite(_metric(metrics, "test", name)), name
    train = _index(genome["tiles"], "tss", "train")["expression"]
    card = json.loads((a / "model" / "card.json").read_text())
    assert card["label_standardisation"]["mean"] == pytest.approx(train.mean())
    assert card["label_standardisation"]["sd"] == pytest.approx(train.std(ddof=0))
    assert card["train_median"] == pytest.approx(train.median())
    test = table[table["split"] == "test"]
    n_pos = int((test["truth"] > train.median()).sum())
    assert _metric(metrics, "test", "above_median_n_pos") == n_pos


# ----------------------------------------------------------------------------- pre-trained
@pytest.fixture(scope="module")
def pretrained(genome: dict) -> Path:
    out = genome["root"] / "pretrained"
    run = {
        "size": "tiny", "seed": 0, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1,
        "max_steps": 3, "contrastive_only_steps": 1, "checkpoint_every": 100, "log_every": 1,
        "val_every": 0, "num_workers": 0,
    }  # fmt: skip
    pretrain([genome["tiles"]], run, out, device="cpu", progress=False)
    return out


def test_pretrained_encoders_loaded(genome: dict, config: Path, pretrained: Path, tmp_path: Path):
    out = tmp_path / "pre"
    summary = finetune("loops", "bimodal", [genome["tiles"]], None, config, out, 0, pretrained,
                       "cpu", max_epochs=1, progress=False)  # fmt: skip
    assert summary["variant"] == "pretrained" and summary["method"] == "hicmix-bimodal"
    assert (
        summary["load_report"].startswith("loaded ") and "loaded 0 " not in summary["load_report"]
    )
    card = json.loads((out / "model" / "card.json").read_text())
    assert card["pretrained"] == str(pretrained) and card["load_report"]["loaded"] > 10
    assert card["load_report"]["mismatched"] == []
    assert set(_metrics(out)["method"]) == {"hicmix-bimodal"}


def test_mismatched_checkpoint_refused(genome: dict, config: Path, pretrained: Path, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(pretrained, bad, ignore=shutil.ignore_patterns("checkpoints"))
    card = json.loads((bad / "card.json").read_text())
    card["transforms"]["track_transform"] = "none"  # pre-trained on raw tracks (defect D3)
    card["geometry"]["positions_per_bin"] = 20
    (bad / "card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="does not fit these tiles") as caught:
        finetune("loops", "bimodal", [genome["tiles"]], None, config, tmp_path / "o", 0, bad,
                 "cpu", max_epochs=1, progress=False)  # fmt: skip
    assert "positions_per_bin is 20" in str(caught.value)
    assert "track_transform is 'none'" in str(caught.value)
    small = write_finetune_config({**RUN, "size": "base"}, tmp_path / "base.yaml")
    with pytest.raises(ConfigError, match="size: tiny"):
        finetune("loops", "bimodal", [genome["tiles"]], None, small, tmp_path / "o", 0,
                 pretrained, "cpu", max_epochs=1, progress=False)  # fmt: skip


# ----------------------------------------------------------------------------- units
def test_flip_strand_is_an_involution_and_exact_on_diagonal_windows():
    torch.manual_seed(0)
    hic = torch.rand(3, 1, 6, 6)
    hic = hic + hic.transpose(-1, -2)
    tracks = torch.rand(3, 2, 24)
    batch = {"hic": hic, "hic_mask": torch.ones_like(hic), "tracks": tracks, "label": torch.ones(3)}
    flip = torch.tensor([True, False, True])
    once = flip_strand(batch, flip)
    torch.testing.assert_close(once["hic"][0, 0], hic[0, 0].flip(0, 1))
    torch.testing.assert_close(once["hic"][1], hic[1])
    torch.testing.assert_close(once["tracks"][0, :, :12], tracks[0, :, 12:].flip(-1))
    patch = torch.rand(1, 1, 6, 6)  # off-diagonal: the column anchor becomes the row anchor
    flipped = flip_strand({"hic": patch, "tracks": tracks[:1]}, torch.tensor([True]))["hic"][0, 0]
    assert all(flipped[a, b] == patch[0, 0, 5 - b, 5 - a] for a in range(6) for b in range(6))
    twice = flip_strand(once, flip)
    for key in ("hic", "tracks"):
        torch.testing.assert_close(twice[key], batch[key])


def test_config_validation(tmp_path: Path):
    path = write_finetune_config({"size": "tiny"}, tmp_path / "c.yaml")
    cfg = FinetuneConfig.from_yaml(path)
    assert (cfg.lr, cfg.augment, cfg.precision) == (1e-4, False, "auto")
    with pytest.raises(ConfigError, match="unknown key"):
        FinetuneConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="precision"):
        FinetuneConfig.from_dict({"precision": "fp8"})
    assert cfg.hicmap_target == "diagonal_zscore"
    with pytest.raises(ConfigError, match="hicmap_target"):
        FinetuneConfig.from_dict({"hicmap_target": "oe"})


def test_diagonal_stats_standardised_head_and_scaled_loss():
    w = 4
    hic = torch.arange(w, dtype=torch.float32).view(1, w) * torch.ones(w, 1)  # pixel = column
    items = []
    for k in range(3):  # windows differing by a constant: each diagonal's sd is that of k
        mask = torch.ones(1, w, w, dtype=torch.uint8)
        mask[0, 0, 3] = mask[0, 3, 0] = 0  # diagonal 3 (only these two pixels) has none valid
        items.append({"hic": (hic + k)[None], "hic_mask": mask, "distance": torch.tensor(0)})
    mean, sd = diagonal_stats(items, w, batch_size=2)
    expect = [np.mean(np.r_[np.diagonal(hic.numpy() + k, d), np.diagonal(hic.numpy() + k, -d)])
              for d in range(3) for k in range(3)]  # fmt: skip
    np.testing.assert_allclose(mean[:3], np.reshape(expect, (3, 3)).mean(axis=1), rtol=1e-6)
    assert mean[3] == mean[2] and sd[3] == sd[2]  # no valid pixel on diagonal 3: filled
    assert sd[0] == pytest.approx(np.std(np.r_[[np.arange(4) + k for k in range(3)]]), rel=1e-5)
    head = HicMapHead(6, 8, 0.0, "sigmoid", w)
    head.set_diagonal_standardisation(mean, sd)
    features = torch.randn(2, 2 * w, 6)
    distance = torch.tensor([0, 0])
    out = head.train()(features, distance)
    z = (out["map"] - mean[pixel_diag(w)]) / sd[pixel_diag(w)]
    torch.testing.assert_close(out["map_scale"][0, 0], sd[pixel_diag(w)])
    assert not torch.allclose(z[0, 0], torch.zeros(w, w))
    target = torch.rand(2, 1, w, w)
    mask = torch.ones(2, 1, w, w)
    scaled = masked_mse(out["map"], target, mask, out["map_scale"])
    z_target = (target - mean[pixel_diag(w)]) / sd[pixel_diag(w)]
    torch.testing.assert_close(scaled, ((z - z_target) ** 2).mean())
    evaluated = head.eval()(features, distance)["map"]
    assert evaluated.min() >= 0 and evaluated.max() <= 1  # clip_scale range in eval mode
    with pytest.raises(ValueError, match="sd > 0"):
        head.set_diagonal_standardisation(mean, torch.zeros(w))


def pixel_diag(w: int) -> torch.Tensor:
    offsets = torch.arange(w)
    return (offsets[None, :] - offsets[:, None]).abs()


def test_tss_branch_reads_only_the_centre_bins():
    w, p, c = 16, 10, 3
    branch = TssTrackBranch(c, w, p, 3, 8).eval()
    tracks = torch.rand(2, c, 2 * w * p)
    base = branch(tracks)
    far = tracks.clone()
    far[..., : (w // 2 - 1) * p] = 5.0  # row-anchor bins before the central three
    far[..., (w // 2 + 2) * p :] = 5.0  # after them, and the column-anchor half
    torch.testing.assert_close(branch(far), base)
    near = tracks.clone()
    near[..., (w // 2) * p : (w // 2) * p + 3] = 5.0  # inside the TSS bin
    assert not torch.allclose(branch(near), base)


# ----------------------------------------------------------------------------- CLI
def test_cli_cross_cell_and_refusal(genome: dict, tmp_path: Path):
    cfg = write_finetune_config({**RUN, "augment": True}, tmp_path / "aug.yaml")
    out = tmp_path / "cli"
    args = ["finetune", "--task", "loops", "--mode", "tracks_only", "--tiles", str(genome["tiles"]),
            "--test-tiles", str(genome["other"]), "--config", str(cfg), "--seed", "1",
            "--out", str(out), "--device", "cpu", "--max-epochs", "1", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "hicmix-tracks_only-nonpre loops: best epoch 1" in result.output
    metrics = _metrics(out)
    test = metrics[metrics["split"] == "test"]
    assert set(test["cell_line"]) == {"SIMB"} and set(test["train_cell_line"]) == {"SIMA"}
    assert set(metrics.loc[metrics["split"] == "val", "cell_line"]) == {"SIMA"}
    pred = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert set(pred.loc[pred["split"] == "test", "cell_line"]) == {"SIMB"}
    assert json.loads((out / "summary.json").read_text())["augment"] is True
    # augmentation is training-only: the saved test scores are those of unperturbed inputs
    model, _ = load_finetuned(out / "model", genome["other"])
    test = TileDataset([genome["other"]], "loops", ["test"])
    again = predict_windows(model, test, "loops", "tracks_only", 7, "cpu")["score"]
    saved = pred.loc[pred["split"] == "test", "score"].to_numpy()
    np.testing.assert_allclose(again, saved, rtol=1e-5, atol=1e-7)
    bad = CliRunner().invoke(cli, ["finetune", "--task", "hicmap", "--mode", "bimodal", *args[5:]])
    assert bad.exit_code == 1
    assert "error: task hicmap" in bad.output and "tracks_only" in bad.output


def test_test_tiles_without_the_task_kind_refused_before_training(
    genome: dict, config: Path, tmp_path
):
    with pytest.raises(InputError, match="no tss tiles"):
        finetune("expression", "bimodal", [genome["tiles"]], [genome["other"]], config, tmp_path, 0,
                 device="cpu", progress=False)  # fmt: skip
    assert not (tmp_path / "history.csv").exists()


def test_tss_branch_crops_the_exact_tss_and_flips_minus_strand():
    w, p = 4, 10  # row-anchor half: positions 0..39; flank = 5
    branch = TssTrackBranch(1, w, p, 1, 4)
    tracks = torch.arange(2 * w * p, dtype=torch.float32).view(1, 1, -1).repeat(4, 1, 1)
    position = torch.tensor([25, 25, 2, 38])
    strand = torch.tensor([1, -1, 1, -1])
    crop = branch.crop(tracks, position, strand)[:, 0]
    torch.testing.assert_close(crop[0], torch.arange(20.0, 31.0))
    torch.testing.assert_close(crop[1], torch.arange(30.0, 19.0, -1))  # read 3' → 5'
    torch.testing.assert_close(crop[2], torch.tensor([0.0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]))
    # minus strand at 38: 43 .. 33, positions past the row-anchor half are padding (0)
    torch.testing.assert_close(crop[3], torch.tensor([0.0, 0, 0, 0, 39, 38, 37, 36, 35, 34, 33]))


def test_tss_branch_uses_the_tss_and_falls_back_without_strand():
    w, p, c = 16, 10, 3
    torch.manual_seed(0)
    branch = TssTrackBranch(c, w, p, 3, 8).eval()
    tracks = torch.rand(3, c, 2 * w * p)
    position = torch.tensor([85, 85, 85])
    strand = torch.tensor([1, -1, 0])
    base = branch(tracks)
    out = branch(tracks, position, strand)
    torch.testing.assert_close(out[2], base[2])  # strand unknown: bin-level branch only
    assert not torch.allclose(out[:2], base[:2])
    assert not torch.allclose(out[0], out[1])  # strand matters
    moved = branch(tracks, position + 3, strand)
    assert not torch.allclose(moved[:2], out[:2])  # the exact position matters


def test_flip_strand_moves_the_tss_and_keeps_its_crop():
    w, p = 8, 10
    torch.manual_seed(0)
    row = torch.rand(2, 2, w * p)
    tracks = torch.cat([row, row], dim=-1)  # diagonal (TSS) windows: both halves alike
    batch = {
        "tracks": tracks,
        "tss_position": torch.tensor([43, 47]),
        "strand": torch.tensor([1, -1]),
        "label": torch.ones(2),
    }
    flipped = flip_strand(batch, torch.tensor([True, False]))
    assert flipped["tss_position"].tolist() == [w * p - 1 - 43, 47]
    assert flipped["strand"].tolist() == [-1, -1]
    branch = TssTrackBranch(2, w, p, 1, 4)
    before = branch.crop(tracks, batch["tss_position"], batch["strand"])
    after = branch.crop(flipped["tracks"], flipped["tss_position"], flipped["strand"])
    torch.testing.assert_close(after, before)


def test_model_inputs_pass_tss_keys():
    batch = {
        "distance": torch.zeros(2, dtype=torch.int64),
        "tracks": torch.rand(2, 1, 4),
        "hic": torch.rand(2, 1, 2, 2),
        "label": torch.ones(2),
        "tss_position": torch.tensor([1, 2]),
        "strand": torch.tensor([1, -1]),
    }
    inputs = model_inputs(batch, "bimodal", torch.device("cpu"))
    assert set(inputs) == {"distance", "tracks", "hic", "tss_position", "strand"}
    del batch["tss_position"], batch["strand"]
    assert set(model_inputs(batch, "bimodal", torch.device("cpu"))) == {"distance", "tracks", "hic"}


# ----------------------------------------------------------------------------- loop candidates
@pytest.fixture(scope="module")
def candidate_tiles(genome: dict) -> Path:
    """The loop kinds of the genome with loop candidates (2 negatives per loop)."""
    out = genome["root"] / "tiles" / "SIMA_candidates"
    manifest = json.loads((genome["tiles"] / "manifest.json").read_text())
    tile_cell_line(
        cell_line="SIMA", assembly="sim1", hic=genome["root"] / "SIMA.cool",
        tracks={c: manifest["inputs"]["tracks"][c]["path"] for c in manifest["channels"]},
        loops=manifest["inputs"]["loops"]["path"], splits=SPLIT, window_bins=W, stride_bins=4,
        subbin_bp=SUBBIN, kinds=["loops", "loop_candidates"], candidate_ratio=2.0,
        progress=False, out=out,
    )  # fmt: skip
    return out


def _spy_pos_weight(monkeypatch) -> list:
    import hicmix.finetune as ft

    seen: list = []

    def spy(task, outputs, batch, stats=None, pos_weight=None):
        seen.append(pos_weight)
        return task_loss(task, outputs, batch, stats, pos_weight)

    monkeypatch.setattr(ft, "task_loss", spy)
    return seen


def test_loops_train_on_candidates_with_pos_weight(
    candidate_tiles: Path, monkeypatch, tmp_path: Path
):
    seen = _spy_pos_weight(monkeypatch)
    out = tmp_path / "cand"
    finetune("loops", "bimodal", [candidate_tiles], None, RUN, out, 0, None, "cpu", max_epochs=1,
             progress=False)  # fmt: skip
    card = json.loads((out / "model" / "card.json").read_text())
    loops = {s: _index(candidate_tiles, "loops", s) for s in ("train", "val")}
    cands = {s: _index(candidate_tiles, "loop_candidates", s) for s in ("train", "val")}
    assert len(cands["train"]) > 0 and len(cands["val"]) > 0
    assert card["n_train_loop_candidates"] == len(cands["train"])
    assert card["n_train_samples"] == len(loops["train"]) + len(cands["train"])
    assert card["n_val_samples"] == len(loops["val"])
    assert card["n_selection_samples"] == len(loops["val"]) + len(cands["val"])
    labels = np.r_[loops["train"]["label"], cands["train"]["label"]]
    n_pos = int(labels.sum())
    assert card["loop_pos_weight"] == pytest.approx((len(labels) - n_pos) / n_pos)
    assert card["loop_pos_weight"] > 1  # the candidates add more negatives than positives
    assert seen and all(w == card["loop_pos_weight"] for w in seen)  # every step weighs positives
    # reported val / test predictions are the loop tiles' only (candidates never scored there)
    pred = pd.read_csv(out / "predictions.tsv", sep="\t")
    for split in ("val", "test"):
        index = _index(candidate_tiles, "loops", split)
        got = pred[pred["split"] == split][["chrom", "bin_x", "bin_y"]].to_numpy().tolist()
        assert sorted(map(tuple, got)) == sorted(
            map(tuple, index[["chrom", "bin_x", "bin_y"]].to_numpy().tolist())
        )


def test_loops_without_candidates(
    genome: dict, candidate_tiles: Path, monkeypatch, tmp_path: Path, caplog
):
    seen = _spy_pos_weight(monkeypatch)
    # switched off in the config, and ignored by tracks_only (it never sees observed Hi-C)
    for mode, run in (("bimodal", {**RUN, "loop_candidates": False}), ("tracks_only", RUN)):
        out = tmp_path / mode
        finetune("loops", mode, [candidate_tiles], None, run, out, 0, None, "cpu", max_epochs=1,
                 progress=False)  # fmt: skip
        card = json.loads((out / "model" / "card.json").read_text())
        assert card["n_train_loop_candidates"] == 0 and card["loop_pos_weight"] is None
        assert card["n_train_samples"] == len(_index(candidate_tiles, "loops", "train"))
        assert card["n_selection_samples"] == card["n_val_samples"]
    assert seen and all(w is None for w in seen)
    # tiles without candidates (default config): a warning, and training as before
    caplog.set_level("WARNING", logger="hicmix.finetune")
    finetune("loops", "bimodal", [genome["other"]], None, RUN, tmp_path / "none", 0, None,
             "cpu", max_epochs=1, progress=False)  # fmt: skip
    assert "have no loop_candidates" in caplog.text
    card = json.loads((tmp_path / "none" / "model" / "card.json").read_text())
    assert card["n_train_loop_candidates"] == 0 and card["loop_pos_weight"] is None
    with pytest.raises(ConfigError, match="loop_candidates"):
        FinetuneConfig.from_dict({"loop_candidates": "yes"})


def test_task_loss_pos_weight_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(7)
    label = torch.tensor([1.0, 0, 0, 1, 0, 0, 0])
    outputs, batch = {"logits": logits}, {"label": label}
    weighted = task_loss("loops", outputs, batch, None, 2.5)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, label, pos_weight=torch.tensor(2.5)
    )
    torch.testing.assert_close(weighted, want)
    manual = -(2.5 * label * torch.nn.functional.logsigmoid(logits)
               + (1 - label) * torch.nn.functional.logsigmoid(-logits)).mean()  # fmt: skip
    torch.testing.assert_close(weighted, manual)
    plain = task_loss("loops", outputs, batch, None, None)
    torch.testing.assert_close(
        plain, torch.nn.functional.binary_cross_entropy_with_logits(logits, label)
    )
    assert weighted > plain
    torch.testing.assert_close(task_loss("loops", outputs, batch, None, 1.0), plain)
