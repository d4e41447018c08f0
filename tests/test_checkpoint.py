"""Training infrastructure without data: checkpoints, card checks, RNG, schedule, sharding, logs."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hicmix import TILE_FORMAT_VERSION
from hicmix.errors import ConfigError, InputError
from hicmix.model import ModelGeometry
from hicmix.pretrain import PretrainConfig, load_run_config, write_run_config
from hicmix.training.batching import dataset_groups, largest_batch, nonoverlapping_groups
from hicmix.training.checkpoint import (
    capture_rng_state,
    expected_from_manifest,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_checkpoint_for_tiles,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    step_dir,
)
from hicmix.training.distributed import DistContext, GlobalBatchSampler
from hicmix.training.logs import LossLog, plot_losses
from hicmix.training.schedule import LossSchedule, WarmupCosine, build_scheduler

CARD = {
    "geometry": {"window_bins": 16, "positions_per_bin": 10, "n_channels": 2},
    "channels": ["CTCF", "ATAC"],
    "transforms": {"hic_transform": "clip_scale", "hic_clip": 255.0, "track_transform": "log2p1"},
}


def _manifest(**changes) -> dict:
    manifest = {
        "format_version": TILE_FORMAT_VERSION,
        "cell_line": "SIMA",
        "assembly": "sim1",
        "resolution": 10_000,
        "window_bins": 16,
        "subbin_bp": 1000,
        "positions_per_bin": 10,
        "channels": ["CTCF", "ATAC"],
        "hic_transform": "clip_scale",
        "hic_clip": 255.0,
        "track_transform": "log2p1",
    }
    manifest.update(changes)
    return manifest


def _saved(tmp_path: Path, step: int = 3) -> Path:
    model = nn.Linear(3, 2)
    path = step_dir(tmp_path, step)
    save_checkpoint(path, {"model": model.state_dict(), "step": step}, CARD)
    return path


# ----------------------------------------------------------------------------- checkpoints
def test_save_and_load_round_trip(tmp_path: Path):
    path = _saved(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "model.pt"]
    ckpt = load_checkpoint(path, **expected_from_manifest(_manifest()))
    assert ckpt.step == 3
    assert ckpt.card["format"] == "hicmix-checkpoint"
    assert ckpt.card["channels"] == ["CTCF", "ATAC"]
    assert set(ckpt.state["model"]) == {"weight", "bias"}


@pytest.mark.parametrize(
    ("changes", "field", "have", "want"),
    [
        ({"window_bins": 50}, "window_bins", "16", "50"),
        ({"positions_per_bin": 50, "subbin_bp": 200}, "positions_per_bin", "10", "50"),
        ({"channels": ["ATAC", "CTCF"]}, "channels", "['CTCF', 'ATAC']", "['ATAC', 'CTCF']"),
        ({"track_transform": "identity"}, "track_transform", "'log2p1'", "'identity'"),
        ({"hic_clip": 100.0}, "hic_clip", "255.0", "100.0"),
    ],
)
def test_mismatch_refused_naming_checkpoint_field_and_values(
    tmp_path: Path, changes: dict, field: str, have: str, want: str
):
    path = _saved(tmp_path)
    with pytest.raises(InputError) as info:
        load_checkpoint(path, **expected_from_manifest(_manifest(**changes)))
    message = str(info.value)
    assert str(path) in message
    assert f"{field} is {have} in the checkpoint but {want} in the tiles" in message
    assert "\n" not in message


def test_geometry_accepted_as_model_geometry_dict_or_tuple(tmp_path: Path):
    path = _saved(tmp_path)
    load_checkpoint(path, expected_geometry=ModelGeometry(16, 10, 2))
    load_checkpoint(path, expected_geometry=(16, 10, 2))
    with pytest.raises(InputError, match="n_channels is 2 in the checkpoint but 5 in the tiles"):
        load_checkpoint(path, expected_geometry=ModelGeometry(16, 10, 5))


def test_load_for_tiles_reads_the_manifest(tmp_path: Path):
    path = _saved(tmp_path)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    (tiles / "manifest.json").write_text(json.dumps(_manifest(window_bins=20)))
    with pytest.raises(InputError, match="window_bins is 16 in the checkpoint but 20"):
        load_checkpoint_for_tiles(path, tiles)
    (tiles / "manifest.json").write_text(json.dumps(_manifest()))
    assert load_checkpoint_for_tiles(path, tiles).step == 3


def test_unusable_checkpoints_raise_input_error(tmp_path: Path):
    with pytest.raises(InputError, match=r"has no card\.json"):
        load_checkpoint(tmp_path)
    path = _saved(tmp_path)
    (path / "model.pt").write_bytes(b"truncated")
    with pytest.raises(InputError, match="unreadable"):
        load_checkpoint(path)
    (path / "card.json").write_text("{")
    with pytest.raises(InputError, match="unreadable"):
        load_checkpoint(path)


def test_failed_save_leaves_nothing_and_latest_skips_partial(tmp_path: Path):
    _saved(tmp_path, 5)
    with pytest.raises(TypeError):  # not JSON serialisable: the write fails half-way
        save_checkpoint(step_dir(tmp_path, 10), {"step": 10}, {"bad": object()})
    assert not step_dir(tmp_path, 10).exists()
    partial = tmp_path / "checkpoints" / ".step-00000015.tmp"
    partial.mkdir()
    (step_dir(tmp_path, 20)).mkdir()  # no files: a folder from something else
    assert latest_checkpoint(tmp_path) == step_dir(tmp_path, 5)
    for step in (6, 7, 8):
        _saved(tmp_path, step)
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000007", "step-00000008"]


def test_rng_state_round_trip(tmp_path: Path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == first


# ----------------------------------------------------------------------------- schedule
def test_warmup_then_cosine():
    factor = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    values = [factor(s) for s in range(15)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(0.55)
    assert values[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))


def test_scheduler_state_round_trip():
    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1.0)
    sched = build_scheduler(opt, 2, 10)
    for _ in range(3):
        opt.step()
        sched.step()
    other_opt = torch.optim.AdamW(nn.Linear(2, 2).parameters(), lr=1.0)
    other = build_scheduler(other_opt, 0, 1)
    other.load_state_dict(sched.state_dict())
    assert other.lr_lambdas[0].warmup_steps == 2 and other.get_last_lr() == sched.get_last_lr()


def test_loss_schedule_presets():
    code = LossSchedule.build("code", contrastive_only_steps=3)
    assert code.weights_at(2, 0) == {"contrastive": 1.0, "orthogonality": 0.0, "mapping": 0.0}
    assert code.weights_at(3, 0) == {"contrastive": 0.5, "orthogonality": 0.5, "mapping": 0.5}
    by_epoch = LossSchedule.build("code")  # MIX-HIC: 10 contrastive-only epochs
    assert by_epoch.weights_at(10_000, 9)["mapping"] == 0.0
    assert by_epoch.weights_at(0, 10)["mapping"] == 0.5
    paper = LossSchedule.build("paper", {"mapping": 2.0})
    assert paper.weights_at(0, 0) == {"contrastive": 1.0, "orthogonality": 1.0, "mapping": 2.0}
    for bad in (
        {"preset": "nope"},
        {"preset": "paper", "contrastive_only_steps": 5},
        {"preset": "code", "contrastive_only_steps": 1, "contrastive_only_epochs": 1},
        {"preset": "code", "weights": {"mapp": 1.0}},
        {"preset": "code", "weights": {"contrastive": -1.0}},
    ):
        with pytest.raises(ConfigError):
            LossSchedule.build(**bad)


# ----------------------------------------------------------------------------- run config
def test_run_config_round_trip_and_errors(tmp_path: Path):
    path = write_run_config({"size": "tiny", "max_steps": 10, "batch_size": 4}, tmp_path / "c.yaml")
    cfg = load_run_config(path)
    assert cfg == PretrainConfig(size="tiny", max_steps=10, batch_size=4)
    assert cfg.to_dict()["betas"] == [0.9, 0.999]
    with pytest.raises(ConfigError, match="unknown key"):
        PretrainConfig.from_dict({"max_steps": 1, "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="exactly one of max_steps and epochs"):
        PretrainConfig.from_dict({"max_steps": 1, "epochs": 1})
    with pytest.raises(ConfigError, match="in-batch negatives"):
        PretrainConfig.from_dict({"max_steps": 1, "batch_size": 1})
    with pytest.raises(ConfigError, match="training and validation"):
        PretrainConfig.from_dict({"max_steps": 1, "val_splits": ["train"]})
    (tmp_path / "bad.yaml").write_text("size: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "bad.yaml")


# ----------------------------------------------------------------------------- sharding
def test_global_batches_split_exactly_across_ranks():
    single = GlobalBatchSampler(23, 6, seed=4)
    ranks = [GlobalBatchSampler(23, 6, seed=4, ctx=DistContext(r, 3, r)) for r in range(3)]
    for epoch in (0, 1):
        single.set_position(epoch)
        for sampler in ranks:
            sampler.set_position(epoch)
        batches = list(single)
        assert len(batches) == 3 and all(len(b) == 6 for b in batches)  # the rest is dropped
        per_rank = [list(s) for s in ranks]
        for k, batch in enumerate(batches):
            assert [i for r in range(3) for i in per_rank[r][k]] == batch
    single.set_position(0)
    epoch0 = list(single)
    single.set_position(1)
    assert list(single) != epoch0
    single.set_position(0, start=2)
    assert list(single) == epoch0[2:]
    assert len(single) == 1
    with pytest.raises(ValueError):
        GlobalBatchSampler(10, 5, seed=0, ctx=DistContext(0, 2, 0))


def _overlap(a: tuple, b: tuple, window: int) -> bool:
    """Do samples (chrom, x, y) a and b share a bin of their anchor windows?"""
    return a[0] == b[0] and any(abs(p - q) < window for p in a[1:] for q in b[1:])


def test_nonoverlapping_groups_for_strided_windows():
    # diagonal windows W=50 every 10 bins on two chromosomes, one locus repeated (2nd cell line)
    loci = [("chr1", s, s) for s in range(0, 400, 10)] + [("chr2", s, s) for s in range(5, 305, 10)]
    loci.append(("chr1", 100, 100))
    chroms, xs, ys = zip(*loci, strict=True)
    groups = nonoverlapping_groups(chroms, xs, ys, 50)
    assert groups.min() == 0 and groups.max() == 5  # ceil(50 / 10) = 5, + 1 for the repeat
    for i, j in itertools.combinations(range(len(loci)), 2):
        if groups[i] == groups[j]:
            assert not _overlap(loci[i], loci[j], 50), (loci[i], loci[j])
    assert [int(g) for g in groups[:7]] == [0, 1, 2, 3, 4, 0, 1]  # start bin / stride mod 5
    assert np.array_equal(groups, nonoverlapping_groups(chroms, xs, ys, 50))  # deterministic
    # off-diagonal pairs conflict through either anchor
    pairs = [("chr1", 0, 200), ("chr1", 200, 400), ("chr1", 100, 300), ("chr1", 60, 120)]
    groups = nonoverlapping_groups(*zip(*pairs, strict=True), window=50)
    assert groups.tolist() == [0, 1, 1, 0]  # 0-1 share bin 200, 2-3 overlap at 100-110
    assert largest_batch(groups, 4) == 2 and largest_batch(None, 4) == 4


def test_dataset_groups_needs_loci_and_window():
    class Indexed:
        def __init__(self) -> None:
            self.index = pd.DataFrame(
                {"chrom": ["c"] * 3, "bin_x": [0, 8, 16], "bin_y": [0, 8, 16]}
            )
            self.geometry = {"W": 16}

    assert dataset_groups(Indexed()).tolist() == [0, 1, 0]
    assert dataset_groups([{"hic": torch.zeros(1)}]) is None


def test_grouped_batches_come_from_one_group_and_split_across_ranks():
    groups = np.array([0, 1, 2] * 9 + [3])  # 28 samples: three groups of 9, one of 1
    single = GlobalBatchSampler(28, 4, seed=7, groups=groups)
    ranks = [
        GlobalBatchSampler(28, 4, seed=7, ctx=DistContext(r, 2, r), groups=groups) for r in range(2)
    ]
    assert single.batches_per_epoch == 6  # 2 full batches per group of 9; the rest dropped
    for epoch in (0, 1):
        single.set_position(epoch)
        batches = list(single)
        assert len(batches) == 6 and all(len(set(groups[b])) == 1 for b in batches)
        assert len({i for b in batches for i in b}) == 24
        for sampler in ranks:
            sampler.set_position(epoch)
        per_rank = [list(s) for s in ranks]
        assert [per_rank[0][k] + per_rank[1][k] for k in range(6)] == batches
    single.set_position(0)
    epoch0 = list(single)
    single.set_position(0, start=4)
    assert list(single) == epoch0[4:]
    single.set_position(1)
    assert list(single) != epoch0
    ordered = GlobalBatchSampler(28, 4, seed=7, groups=groups, shuffle=False)
    assert next(iter(ordered)) == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="group ids"):
        GlobalBatchSampler(10, 2, seed=0, groups=[0, 1])


# ----------------------------------------------------------------------------- logs
def _row(step: int, split: str = "train") -> dict:
    return {
        "step": step,
        "epoch": 0,
        "lr": 1e-3 / 3,
        "contrastive": 2.0 + step / 7,
        "orthogonality": 0.1,
        "mapping": 1.0,
        "total": 3.1,
        "temperature": 0.07,
        "samples_per_s": float("nan"),
        "split": split,
    }


def test_loss_log_reset_and_torn_rows(tmp_path: Path):
    log = LossLog(tmp_path / "losses.csv")
    for step in (1, 2, 3):
        log.append(_row(step))
    log.append(_row(3, "val"))
    rows = log.rows()
    assert [r["step"] for r in rows] == [1, 2, 3, 3]
    assert rows[0]["contrastive"] == 2.0 + 1 / 7  # exact round trip
    with open(log.path, "a") as handle:
        handle.write("4,0,0.1,2.5")  # a row cut short by a killed process
    assert len(log.rows()) == 4
    log.reset(2)
    assert [r["step"] for r in log.rows()] == [1, 2]
    png = plot_losses(log.rows(), tmp_path / "losses.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
