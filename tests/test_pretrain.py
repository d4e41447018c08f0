"""Pre-training on a tiny simulated genome: losses, mapping, exact resume, SIGKILL, DDP, CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.model import MixHiC, ModelGeometry, model_config
from hicmix.pretrain import pretrain, run_pretraining, write_run_config
from hicmix.simulate import simulate_genome
from hicmix.tiles import TileDataset, tile_cell_line
from hicmix.training.batching import dataset_groups
from hicmix.training.checkpoint import load_checkpoint, load_checkpoint_for_tiles, step_dir
from hicmix.training.distributed import GlobalBatchSampler

RES, W, SUBBIN = 10_000, 16, 1000  # P = 10
LOSSES = ("contrastive", "orthogonality", "mapping")
COMPARED = ("step", "epoch", "lr", *LOSSES, "total", "temperature", "split")
RUN = {
    "size": "tiny",
    "seed": 0,
    "batch_size": 8,
    "lr": 3e-4,
    "warmup_steps": 3,
    "max_steps": 30,
    "schedule": "code",
    "contrastive_only_steps": 10,
    "checkpoint_every": 5,
    "keep_checkpoints": 10,
    "log_every": 1,
    "val_every": 10,
    "val_batches": 4,
    "num_workers": 0,
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: fast for a tiny model on a busy runner, as in the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 chromosomes × 3 Mb (train chr1, val chr2, test chr3), balanced, tiled with W=16, P=10."""
    root = tmp_path_factory.mktemp("pretrain_genome")
    sim = simulate_genome(
        root / "sim", cell_lines=["SIMA"], seed=0, chrom_lengths_mb=[3, 3, 3], progress=False
    )
    balance_hic(sim["hic"]["SIMA"], root / "SIMA.cool", RES)
    out = root / "tiles" / "SIMA"
    tile_cell_line(
        cell_line="SIMA",
        assembly="sim1",
        hic=root / "SIMA.cool",
        expected=root / "SIMA.expected.tsv",
        tracks=sim["tracks"]["SIMA"],
        out=out,
        splits={"val": ["chr2"], "test": ["chr3"]},
        window_bins=W,
        stride_bins=2,
        subbin_bp=SUBBIN,
        kinds=["pretrain"],
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def config(tiles: Path) -> Path:
    return write_run_config(RUN, tiles.parent.parent / "run_config.yaml")


@pytest.fixture(scope="module")
def reference(tiles: Path, config: Path) -> Path:
    """The uninterrupted single-process run every other run is compared with."""
    out = tiles.parent.parent / "reference"
    summary = pretrain([tiles], config, out, device="cpu", progress=False)
    assert summary["finished"] and summary["steps"] == RUN["max_steps"]
    return out


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def compared(rows: list[dict], up_to: int | None = None) -> list[tuple]:
    return [tuple(r[c] for c in COMPARED) for r in rows if up_to is None or int(r["step"]) <= up_to]


# ----------------------------------------------------------------------------- learning
def test_losses_finite_and_decreasing(reference: Path):
    rows = [r for r in read_rows(reference / "losses.csv") if r["split"] == "train"]
    assert [int(r["step"]) for r in rows] == list(range(1, RUN["max_steps"] + 1))
    for name in (*LOSSES, "total", "temperature", "lr"):
        assert all(math.isfinite(float(r[name])) for r in rows), name
    for name in LOSSES:
        values = [float(r[name]) for r in rows]
        first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
        assert last < first, (name, values)
    temperatures = [float(r["temperature"]) for r in rows]
    assert all(0.001 <= t <= 0.5 for t in temperatures)
    val = [r for r in read_rows(reference / "losses.csv") if r["split"] == "val"]
    assert [int(r["step"]) for r in val] == [10, 20, 30]


def test_batches_never_pair_overlapping_windows(reference: Path, tiles: Path):
    """Every training and validation batch holds windows that share no bin (no false negatives)."""
    position = load_checkpoint(reference).state["data_position"]
    assert position["batching"] == "nonoverlapping"
    for split, shuffle in (("train", True), ("val", False)):
        dataset = TileDataset([tiles], "pretrain", [split])
        groups = dataset_groups(dataset)
        sampler = GlobalBatchSampler(len(dataset), 8, seed=0, groups=groups, shuffle=shuffle)
        assert 0 < sampler.batches_per_epoch < len(dataset) // 8  # each group drops its remainder
        if split == "train":
            assert position["batches_per_epoch"] == sampler.batches_per_epoch
        starts = dataset.index["bin_x"].to_numpy()
        for epoch in (0, 1):
            sampler.set_position(epoch)
            for batch in sampler:
                gaps = np.diff(np.sort(starts[batch]))  # one chromosome per split here
                assert gaps.min() >= W, (split, batch)
    random = GlobalBatchSampler(len(dataset), 8, seed=0, shuffle=False)
    starts_random = np.sort(starts[next(iter(random))])
    assert np.diff(starts_random).min() < W  # plain batches would pair overlapping windows


@torch.no_grad()
def mapping_cosine(model: MixHiC, dataset: TileDataset) -> float:
    """Mean per-token cosine between the tracks→Hi-C mapping and the real Hi-C features."""
    model.eval()
    batch = torch.utils.data.default_collate([dataset[i] for i in range(0, len(dataset), 3)])
    tokens, _ = model.encode_tracks(batch["tracks"], batch["distance"])
    imputed = model.impute_hic_tokens(tokens)
    hic = model.interaction.project_hic(model.encode_hic(batch["hic"], batch["distance"]))
    target = torch.nn.functional.normalize(hic["concat"], dim=-1)
    return float((imputed * target).sum(-1).mean())


def test_mapping_beats_untrained_mapping_on_val_tiles(reference: Path, tiles: Path):
    geometry = ModelGeometry(W, RES // SUBBIN, 5)
    trained = MixHiC(geometry, model_config("tiny"))
    trained.load_state_dict(load_checkpoint_for_tiles(reference, tiles).state["model"])
    torch.manual_seed(RUN["seed"])
    untrained = MixHiC(geometry, model_config("tiny"))
    fresh_mapping = MixHiC(geometry, model_config("tiny"))
    fresh_mapping.load_state_dict(trained.state_dict())
    fresh_mapping.mapping.load_state_dict(untrained.mapping.state_dict())
    val = TileDataset([tiles], "pretrain", ["val"])
    cosine = mapping_cosine(trained, val)
    assert cosine > mapping_cosine(fresh_mapping, val) + 0.05
    assert cosine > mapping_cosine(untrained, val) + 0.05


def test_card_describes_the_tiles(reference: Path):
    card = json.loads((reference / "card.json").read_text())
    assert card["geometry"] == {"window_bins": W, "positions_per_bin": 10, "n_channels": 5}
    assert card["channels"] == ["CTCF", "H3K27ac", "H3K4me3", "H3K27me3", "ATAC"]
    assert card["transforms"]["track_transform"] == "log2p1"
    assert card["cell_lines"] == ["SIMA"] and card["assembly"] == "sim1"
    assert card["resolution"] == RES and card["size"] == "tiny"
    assert card["n_train_samples"] > 0 and card["samples_seen"] == 30 * 8
    assert card["config"]["lr"] == RUN["lr"] and set(card["losses"]) == {"train", "val"}
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["samples_seen"] == 240
    assert set(summary["final_val"]) >= set(LOSSES)


# ----------------------------------------------------------------------------- resume
def test_stop_and_resume_reproduces_the_uninterrupted_run(reference: Path, tiles, config, tmp_path):
    out = tmp_path / "resumed"
    first = pretrain([tiles], config, out, device="cpu", stop_at_step=15, progress=False)
    assert first == {"step": 15, "finished": False}
    assert not (out / "summary.json").exists()
    second = pretrain([tiles], config, out, device="cpu", progress=False)
    assert second["resumed_from_step"] == 15
    assert compared(read_rows(out / "losses.csv")) == compared(read_rows(reference / "losses.csv"))
    ours = load_checkpoint(out).state["model"]
    theirs = load_checkpoint(reference).state["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_sigkill_mid_run_then_resume(reference: Path, tiles, config, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "hicmix.cli.pretrain", "--tiles", str(tiles)]
    command += ["--config", str(config), "--out", str(out), "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(command, env=ENV, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not step_dir(out, 5).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "summary.json").exists()
    summary = pretrain([tiles], config, out, device="cpu", progress=False)
    assert 5 <= summary["resumed_from_step"] < RUN["max_steps"]
    assert compared(read_rows(out / "losses.csv")) == compared(read_rows(reference / "losses.csv"))


def test_resume_refuses_a_changed_config(reference: Path, tiles, tmp_path):
    out = tmp_path / "changed"
    config = write_run_config(RUN, tmp_path / "a.yaml")
    pretrain([tiles], config, out, device="cpu", stop_at_step=5, progress=False)
    other = write_run_config({**RUN, "lr": 1e-3}, tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match=r"lr = 0\.0003 but the run config says 0\.001"):
        pretrain([tiles], other, out, device="cpu", progress=False)


# ----------------------------------------------------------------------------- distributed
def test_two_gloo_processes_follow_the_single_process_curve(
    reference: Path, tiles, config, tmp_path
):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "hicmix.cli.pretrain", "--tiles", str(tiles)]
    command += ["--config", str(config), "--out", str(out)]
    command += ["--gpus", "2", "--device", "cpu", "--stop-at-step", "6", "--no-progress"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch.distributed.run" in result.stderr
    ddp = [r for r in read_rows(out / "checkpoints" / "losses.csv")]
    single = [r for r in read_rows(reference / "losses.csv") if int(r["step"]) <= 6]
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == [str(s) for s in range(1, 7)]
    for ours, theirs in zip(ddp, single, strict=True):
        for name in ("lr", *LOSSES, "total", "temperature"):
            assert float(ours[name]) == pytest.approx(float(theirs[name]), rel=1e-4, abs=1e-7)
    card = json.loads((step_dir(out, 6) / "card.json").read_text())
    assert card["world_size"] == 2


# ----------------------------------------------------------------------------- CLI
def test_cli_writes_checkpoint_losses_and_figure(tiles: Path, config: Path, tmp_path: Path):
    out = tmp_path / "cli"
    args = ["pretrain", "--tiles", str(tiles), "--config", str(config), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu", "--max-steps", "4"])
    assert result.exit_code == 0, result.output
    assert "pre-trained 4 steps (32 samples)" in result.output
    for name in ("model.pt", "card.json", "losses.csv", "summary.json", "run_config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load((out / "run_config.yaml").read_text())["max_steps"] == 4
    assert [r["split"] for r in read_rows(out / "losses.csv")] == ["train"] * 4 + ["val"]
    assert load_checkpoint_for_tiles(out, tiles).step == 4


def test_cli_reports_bad_input_in_one_line(tiles: Path, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**RUN, "precision": "fp8"}))
    args = ["pretrain", "--tiles", str(tiles), "--config", str(bad), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.output.startswith("error: run config") and "fp8" in result.output
    big = write_run_config({**RUN, "batch_size": 4096}, tmp_path / "big.yaml")
    result = CliRunner().invoke(cli, [*args[:4], str(big), *args[5:], "--device", "cpu"])
    assert result.exit_code == 1 and "exceeds the" in result.output
    result = CliRunner().invoke(cli, [*args[:2], str(tmp_path), *args[3:4], str(big), *args[5:]])
    assert result.exit_code == 1 and "manifest.json" in result.output


def test_checkpoint_refused_for_tiles_of_another_geometry(reference: Path, tmp_path: Path):
    manifest = json.loads((reference.parent / "tiles" / "SIMA" / "manifest.json").read_text())
    manifest["window_bins"] = 50
    other = tmp_path / "other_tiles"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="window_bins is 16 in the checkpoint but 50 in the tiles"):
        load_checkpoint_for_tiles(reference, other)


# ----------------------------------------------------------------------------- model-agnostic loop
class ToyModel(nn.Module):
    """Two small encoders with a BatchNorm, shared/specific heads, a mapping and τ."""

    def __init__(self, channels: int = 2, length: int = 40, hic: int = 8, dim: int = 8) -> None:
        super().__init__()
        self.tracks = nn.Sequential(
            nn.Conv1d(channels, dim, 3, padding=1), nn.BatchNorm1d(dim), nn.ReLU(), nn.Flatten()
        )
        self.track_proj = nn.Linear(dim * length, 2 * dim)
        self.hic = nn.Sequential(nn.Flatten(), nn.Linear(hic * hic, 2 * dim))
        self.e2m = nn.Linear(2 * dim, 2 * dim)
        self.tau = nn.Parameter(torch.tensor(0.07))

    def pretrain_losses(self, batch: dict, gather=None) -> dict:
        gather = gather or (lambda x: x)
        e = self.track_proj(self.tracks(batch["tracks"]))
        m = self.hic(batch["hic"])
        e_shared, e_spec = nn.functional.normalize(e, dim=-1).chunk(2, dim=-1)
        m_shared, m_spec = nn.functional.normalize(m, dim=-1).chunk(2, dim=-1)
        logits = gather(e_shared) @ gather(m_shared).T / self.tau
        labels = torch.arange(logits.shape[0])
        contrastive = 0.5 * (
            nn.functional.cross_entropy(logits, labels)
            + nn.functional.cross_entropy(logits.T, labels)
        )
        orth = ((e_shared * e_spec).sum(-1) ** 2 + (m_shared * m_spec).sum(-1) ** 2).mean()
        mapped = nn.functional.normalize(self.e2m(e), dim=-1)
        mapping = (mapped - nn.functional.normalize(m, dim=-1)).norm(dim=-1).mean()
        return {
            "contrastive": contrastive,
            "orthogonality": orth,
            "mapping": mapping,
            "temperature": self.tau.detach(),
        }

    def clamp_temperature_(self) -> None:
        with torch.no_grad():
            self.tau.clamp_(0.001, 0.5)


def toy_data(n: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 8, generator=gen)
    tracks = latent.repeat_interleave(5, dim=1).reshape(n, 1, 40).repeat(1, 2, 1)
    hic = (latent[:, :, None] * latent[:, None, :]).reshape(n, 1, 8, 8)
    return [
        {"tracks": tracks[i] + 0.1 * torch.randn(2, 40, generator=gen), "hic": hic[i]}
        for i in range(n)
    ]


def test_loop_trains_any_module_with_pretrain_losses(tmp_path: Path):
    config = {**RUN, "max_steps": 40, "lr": 3e-3, "schedule": "paper", "val_every": 20}
    config.pop("contrastive_only_steps")
    summary = run_pretraining(
        ToyModel, toy_data(512, 0), toy_data(32, 1), config, tmp_path, device="cpu", progress=False
    )
    rows = [r for r in read_rows(tmp_path / "losses.csv") if r["split"] == "train"]
    for name in LOSSES:
        values = [float(r[name]) for r in rows]
        assert sum(values[-5:]) < sum(values[:5]), (name, values)
    assert summary["final_val"]["contrastive"] < math.log(8) - 0.1  # beats chance on held-out data
