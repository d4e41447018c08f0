"""Pre-training: contrastive + orthogonality + mapping losses on paired Hi-C/track windows (§4).

Entry points
------------
``pretrain(tile_dirs, config, out)`` builds the MixHiC pre-training model and the ``pretrain`` tile
datasets (train split for training, val split for the validation curve) and calls
``run_pretraining``, the model-agnostic loop: any ``nn.Module`` with ``pretrain_losses(batch) ->
{"contrastive", "orthogonality", "mapping", "temperature"}`` trains with it.

The loop: AdamW, linear warm-up then cosine decay (LambdaLR, stepped per optimiser step), gradient
clipping, τ clamped after every step, bf16 autocast on CUDA and float32 on CPU,
DistributedDataParallel under torchrun (see ``hicmix.training.distributed`` for why the loss curve
equals the single-process one), checkpoints every ``checkpoint_every`` steps that resume exactly.
Batches (train and val) are cut from windows that share no genomic bin (run config ``batching:
nonoverlapping``, ``hicmix.training.batching``): at stride 10 and W = 50 neighbouring windows
overlap by up to 80 %, and as in-batch InfoNCE negatives they would be false negatives. The data
position in a checkpoint records the batching and the batches per epoch.

Output folder ``out``::

    model.pt, card.json         the final checkpoint (the checkpoint contract; fine-tuning loads it)
    losses.csv, losses.png      per-step train rows and val rows; the loss curves
    summary.json                final losses, steps, samples seen, wall time (written last)
    run_config.yaml             the full effective run config
    checkpoints/step-XXXXXXXX/  intermediate checkpoints (the newest ``keep_checkpoints``)
    checkpoints/losses.csv      the live log (``losses.csv`` is its final copy)

Keep ``checkpoints/`` out of a Snakemake rule's outputs (declare the files above, not
``directory(out)``), so a failed job's checkpoints survive and the rerun resumes.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from hicmix import TILE_FORMAT_VERSION, __version__
from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError
from hicmix.training.batching import dataset_groups, largest_batch
from hicmix.training.checkpoint import (
    CARD_FILE,
    CHECKPOINTS_DIR,
    MODEL_FILE,
    Checkpoint,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    save_checkpoint,
    step_dir,
    transforms_from_manifest,
)
from hicmix.training.distributed import (
    DistContext,
    GlobalBatchSampler,
    all_gather_with_grad,
    all_reduce_mean,
    barrier,
    context_from_env,
    convert_batchnorm,
    gather_objects,
    init_distributed,
)
from hicmix.training.logs import LossLog, plot_losses, write_json
from hicmix.training.runconfig import read_run_config
from hicmix.training.schedule import LOSS_NAMES, LossSchedule, build_scheduler

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
BATCHINGS = ("nonoverlapping", "random")
DEVICES = ("auto", "cpu", "cuda")
LIVE_LOG = "losses.csv"

#: Config keys that may change between a run and its resumption (the rest must match the
#: checkpoint).
RESUMABLE_CHANGES = frozenset(
    {
        "max_steps",
        "epochs",
        "checkpoint_every",
        "keep_checkpoints",
        "log_every",
        "val_every",
        "val_batches",
        "num_workers",
        "precision",
    }
)


# --------------------------------------------------------------------------------------------------
# run config


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-training run (the RUN_CONFIG yaml). ``batch_size`` is global (split over processes).

    Exactly one of ``max_steps`` / ``epochs`` sets the run length (and the cosine schedule's
    length). ``schedule`` is "code" (contrastive only for ``contrastive_only_epochs`` epochs,
    default 10, or ``contrastive_only_steps`` steps; then ``loss_weights``, default 0.5 each) or
    "paper" (``loss_weights``, default 1 each, from the first step). ``val_batches`` caps batches
    per validation (0 = all). ``model`` overrides fields of the size's model config (e.g.
    ``{embed_dim: 64}``). ``batching`` "nonoverlapping" (default) cuts every batch, train and val,
    from windows that share no genomic bin (``hicmix.training.batching``), so InfoNCE has no
    overlapping false negatives; "random" draws batches from the whole shuffled set.
    """

    size: str = "base"
    seed: int = 0
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500
    min_lr_ratio: float = 0.0
    max_steps: int | None = None
    epochs: int | None = None
    grad_clip: float = 1.0
    schedule: str = "code"
    loss_weights: dict[str, float] = field(default_factory=dict)
    contrastive_only_steps: int | None = None
    contrastive_only_epochs: int | None = None
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 50
    val_every: int = 1000
    val_batches: int = 50
    num_workers: int = 4
    precision: str = "auto"
    train_splits: tuple[str, ...] = ("train",)
    val_splits: tuple[str, ...] = ("val",)
    batching: str = "nonoverlapping"
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive = ("batch_size", "checkpoint_every", "log_every")
        for name in _positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"run config {name} is {getattr(self, name)}; it must be ≥ 1")
        for name in ("warmup_steps", "val_every", "val_batches", "num_workers", "keep_checkpoints"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"run config {name} is {getattr(self, name)}; it must be ≥ 0")
        if self.batch_size < 2:
            raise ConfigError(
                "run config batch_size is 1, but InfoNCE needs in-batch negatives; set ≥ 2"
            )
        if (self.max_steps is None) == (self.epochs is None):
            raise ConfigError(
                "run config must set exactly one of max_steps and epochs (the run length)"
            )
        length = self.max_steps if self.max_steps is not None else self.epochs
        if length < 1:
            raise ConfigError(f"run config run length is {length}; set max_steps or epochs ≥ 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"run config precision {self.precision!r} is unknown; use one of "
                f"{', '.join(PRECISIONS)}"
            )
        if self.batching not in BATCHINGS:
            raise ConfigError(
                f"run config batching {self.batching!r} is unknown; use one of "
                f"{', '.join(BATCHINGS)}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"run config betas {list(self.betas)} must be two numbers in [0, 1)")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(
                "run config needs lr > 0, weight_decay ≥ 0 and grad_clip ≥ 0 (0 turns clipping off)"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"run config min_lr_ratio {self.min_lr_ratio} must lie in [0, 1]")
        if not self.train_splits:
            raise ConfigError("run config train_splits is empty; use [train]")
        overlap = set(self.train_splits) & set(self.val_splits)
        if overlap:
            raise ConfigError(
                f"run config uses split(s) {sorted(overlap)} for training and validation; "
                "keep them apart"
            )
        self.loss_schedule()  # validates the schedule keys

    def loss_schedule(self) -> LossSchedule:
        return LossSchedule.build(
            self.schedule,
            self.loss_weights,
            self.contrastive_only_steps,
            self.contrastive_only_epochs,
        )

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimiser steps: ``max_steps``, or ``epochs`` × full global batches per epoch."""
        if self.max_steps is not None:
            return int(self.max_steps)
        return int(self.epochs) * batches_per_epoch

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for key in ("betas", "train_splits", "val_splits"):
            values[key] = list(values[key])
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "run config") -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; use only "
                f"{', '.join(sorted(known))}"
            )
        values = dict(values)
        for key in ("betas", "train_splits", "val_splits"):
            if key in values:
                value = values[key]
                values[key] = tuple([value] if isinstance(value, str) else value)
        for key in ("loss_weights", "model"):
            if values.get(key) is None:
                values[key] = {}
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{source}: {str(err).removeprefix('run config ')}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: invalid value ({err}); fix the run config") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> PretrainConfig:
        values = read_run_config(path, "write_run_config")
        return cls.from_dict(values, source=f"run config {path}")


def write_run_config(config: Mapping[str, Any] | PretrainConfig, path: str | Path) -> Path:
    """Validate ``config``; write it with all defaults filled in as YAML at ``path`` (atomically).

    For the Snakemake rule: ``write_run_config(config["pretrain"], output.cfg)`` in a ``run:``
    block.
    """
    cfg = config if isinstance(config, PretrainConfig) else PretrainConfig.from_dict(config)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return Path(path)


def load_run_config(config: str | Path | Mapping[str, Any] | PretrainConfig) -> PretrainConfig:
    """A PretrainConfig from a YAML path, a mapping or a PretrainConfig."""
    if isinstance(config, PretrainConfig):
        return config
    if isinstance(config, Mapping):
        return PretrainConfig.from_dict(config)
    return PretrainConfig.from_yaml(config)


# --------------------------------------------------------------------------------------------------
# device, precision, objective


def resolve_device(device: str, ctx: DistContext | None = None) -> torch.device:
    """auto → CUDA when available (GPU ``local_rank`` under torchrun), else CPU with a warning."""
    ctx = ctx or DistContext()
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError(
            "--device cuda was asked for, but no CUDA GPU is visible; use --device cpu"
        )
    if device == "cuda" or (device == "auto" and cuda):
        if ctx.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {ctx.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "launch at most one process per GPU"
            )
        return torch.device("cuda", ctx.local_rank)
    if not cuda and ctx.is_main:
        log.warning(
            "no CUDA GPU found: pre-training runs on CPU in float32, which is slow; "
            "use a GPU node for real runs"
        )
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: auto → bf16 on CUDA (if supported); None (float32, no autocast) on CPU."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class PretrainObjective(nn.Module):
    """A model wrapped so DDP sees ``forward(batch) -> losses`` and InfoNCE sees the global batch.

    Under torchrun the contrastive loss must use in-batch negatives from every rank. The model gets
    a ``gather`` function (all-gather with gradient) when its ``pretrain_losses`` accepts one; for
    MixHiC, whose ``pretrain_losses`` does not, the interaction block's token features are captured
    with a forward hook and the contrastive loss is recomputed on the gathered token means.
    """

    def __init__(self, model: nn.Module, ctx: DistContext | None = None) -> None:
        super().__init__()
        self.model = model
        self.ctx = ctx = ctx or DistContext()
        params = inspect.signature(model.pretrain_losses).parameters
        self._accepts_gather = "gather" in params
        self._captured: dict[str, torch.Tensor] = {}
        self._hooked = False
        if ctx.is_distributed and not self._accepts_gather:
            interaction = getattr(model, "interaction", None)
            if interaction is None or not hasattr(interaction, "temperature"):
                log.warning(
                    "%s.pretrain_losses takes no gather function: the contrastive loss uses "
                    "per-rank negatives, so the loss curve differs from a single-process run",
                    type(model).__name__,
                )
            else:
                interaction.register_forward_hook(self._capture)
                self._hooked = True

    def _capture(self, module: nn.Module, args: Any, output: dict[str, torch.Tensor]) -> None:
        self._captured = output

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        return all_gather_with_grad(x, self.ctx)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.ctx.is_distributed:
            return self.model.pretrain_losses(batch)
        if self._accepts_gather:
            return self.model.pretrain_losses(batch, gather=self._gather)
        losses = self.model.pretrain_losses(batch)
        if self._hooked:
            from hicmix.model.interaction import info_nce

            features, self._captured = self._captured, {}
            tau = self.model.interaction.temperature()
            tracks = self._gather(features["track_shared"].mean(dim=1))
            hic = self._gather(features["hic_shared"].mean(dim=1))
            losses["contrastive"] = info_nce(tracks, hic, tau)
        return losses


def clamp_temperature(model: nn.Module) -> None:
    """Call the model's τ clamp (``clamp_temperature_``) if it has one."""
    clamp = getattr(model, "clamp_temperature_", None)
    if callable(clamp):
        clamp()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    try:
        from hicmix.model import parameter_groups

        return parameter_groups(model, weight_decay)
    except ImportError:  # pragma: no cover - the model package is part of hicmix
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0},
        ]


# --------------------------------------------------------------------------------------------------
# the loop


class _Meter:
    """Running sums of the losses since the last logged row (per rank; reduced when logged)."""

    KEYS = (*LOSS_NAMES, "total", "temperature")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.started = time.perf_counter()

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        vec = torch.stack([values[k].detach().float().reshape(()) for k in self.KEYS])
        self.sums = vec if self.sums is None else self.sums + vec
        self.count += 1

    def means(self, ctx: DistContext) -> dict[str, float]:
        assert self.sums is not None
        reduced = all_reduce_mean(self.sums, ctx) / self.count
        return dict(zip(self.KEYS, reduced.tolist(), strict=True))

    def state(self) -> dict[str, Any]:
        return {
            "sums": None if self.sums is None else self.sums.cpu(),
            "count": self.count,
            "elapsed": time.perf_counter() - self.started,
        }

    def load(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.sums = None if state["sums"] is None else state["sums"].to(device)
        self.count = int(state["count"])
        self.started = time.perf_counter() - float(state["elapsed"])


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {
        k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
    }


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32  # differs per worker and per epoch (DataLoader's base seed)
    random.seed(seed)
    np.random.seed(seed)


def _loader(
    dataset: torch.utils.data.Dataset,
    sampler: GlobalBatchSampler,
    workers: int,
    device: torch.device,
    seed: int,
) -> torch.utils.data.DataLoader:
    # A private generator: creating the loader's iterator must not consume the global torch RNG, or
    # a run resumed mid-epoch would diverge from the uninterrupted one.
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    wall_time_s: float = 0.0
    last_train: dict[str, float] = field(default_factory=dict)
    last_val: dict[str, float] = field(default_factory=dict)
    last_val_step: int = -1


class _Run:
    """One pre-training run on this process (rank); see :func:`run_pretraining`."""

    def __init__(
        self,
        model_factory: Callable[[], nn.Module],
        train_set: torch.utils.data.Dataset,
        val_set: torch.utils.data.Dataset | None,
        cfg: PretrainConfig,
        out: Path,
        card: Mapping[str, Any],
        device: str,
        progress: bool,
    ) -> None:
        self.cfg, self.out, self.progress = cfg, out, progress
        self.ctx = context_from_env()
        self.device = resolve_device(device, self.ctx)
        self.ctx = init_distributed(self.device.type)
        if cfg.batch_size % self.ctx.world_size:
            raise ConfigError(
                f"run config batch_size {cfg.batch_size} is not divisible by the "
                f"{self.ctx.world_size} processes; use a multiple of {self.ctx.world_size}"
            )
        self.dtype = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cuda":  # the float32 parts outside autocast
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.schedule = cfg.loss_schedule()

        self.train_groups = self._groups(train_set, "training")
        self.sampler = GlobalBatchSampler(
            len(train_set), cfg.batch_size, seed=cfg.seed, ctx=self.ctx, groups=self.train_groups
        )
        if self.sampler.batches_per_epoch < 1:
            largest = largest_batch(self.train_groups, len(train_set))
            raise ConfigError(
                f"run config batch_size {cfg.batch_size} exceeds the {largest} training samples "
                f"that can share a batch ({len(train_set)} in all"
                + (", batched without overlapping windows" if self.train_groups is not None else "")
                + "); lower batch_size or add tiles"
            )
        self.total_steps = cfg.total_steps(self.sampler.batches_per_epoch)
        self._warn_contrastive_only()
        self.loader = _loader(train_set, self.sampler, cfg.num_workers, self.device, cfg.seed)
        self.n_train = len(train_set)
        self.n_val = 0 if val_set is None else len(val_set)
        self.val_loader = self._val_loader(val_set)

        _seed_everything(cfg.seed)
        model = model_factory().to(self.device)
        if self.ctx.is_distributed:
            model = convert_batchnorm(model, self.device.type)
        self.model = model
        self.objective = PretrainObjective(model, self.ctx)
        self.step_module: nn.Module = self.objective
        if self.ctx.is_distributed:
            # depthwise conv kernels (C, 1, k, k) have equivalent strides; DDP warns anyway
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            self.step_module = nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,  # the contrastive-only phase leaves the mapping unused
            )
        self.optimizer = torch.optim.AdamW(
            _param_groups(model, cfg.weight_decay),
            lr=cfg.lr,
            betas=tuple(cfg.betas),
            fused=self.device.type == "cuda",
        )
        self.scheduler = build_scheduler(
            self.optimizer, cfg.warmup_steps, self.total_steps, cfg.min_lr_ratio
        )
        clamp_temperature(model)
        self.card_base = dict(card)
        self.state = _State()
        self.meter = _Meter()
        self.log = LossLog(out / CHECKPOINTS_DIR / LIVE_LOG)
        self.resumed_from: int | None = None

    def _warn_contrastive_only(self) -> None:
        last = self.total_steps - 1
        weights = self.schedule.weights_at(last, last // self.sampler.batches_per_epoch)
        if self.ctx.is_main and weights["mapping"] == 0 and weights["orthogonality"] == 0:
            log.warning(
                "the %s schedule's contrastive-only phase covers the whole run (%d steps): "
                "orthogonality and mapping are never trained; shorten contrastive_only_*",
                self.schedule.preset,
                self.total_steps,
            )

    def _groups(self, dataset: Any, what: str) -> np.ndarray | None:
        """Non-overlapping batch groups of ``dataset`` (None: plain batches)."""
        if self.cfg.batching != "nonoverlapping":
            return None
        groups = dataset_groups(dataset)
        if groups is None:
            if self.ctx.is_main:
                log.warning(
                    "the %s set has no index of loci (chrom, bin_x, bin_y) and window side: "
                    "batches may hold overlapping windows",
                    what,
                )
        elif self.ctx.is_main:
            log.info(
                "%s batches: %d groups of non-overlapping windows (%d to %d samples)",
                what,
                int(groups.max()) + 1 if len(groups) else 0,
                int(np.bincount(groups).min()) if len(groups) else 0,
                largest_batch(groups, len(dataset)),
            )
        return groups

    def _val_loader(self, val_set: Any) -> torch.utils.data.DataLoader | None:
        if val_set is None or len(val_set) == 0:
            return None
        world = self.ctx.world_size
        groups = self._groups(val_set, "validation")
        largest = largest_batch(groups, len(val_set))
        batch = min(self.cfg.batch_size, (largest // world) * world)
        if batch < 2:
            if self.ctx.is_main:
                log.warning(
                    "only %d validation samples can share a batch: no validation curve", largest
                )
            return None
        sampler = GlobalBatchSampler(
            len(val_set), batch, seed=self.cfg.seed, ctx=self.ctx, shuffle=False, groups=groups
        )
        return _loader(val_set, sampler, self.cfg.num_workers, self.device, self.cfg.seed)

    # ---------------------------------------------------------------- resume
    def start(self, resume: bool) -> None:
        path = latest_checkpoint(self.out) if resume else None
        ckpt = None if path is None else self._check_resumable(path)  # before touching any file
        if self.ctx.is_main:
            if not resume and (self.out / CHECKPOINTS_DIR).exists():
                shutil.rmtree(self.out / CHECKPOINTS_DIR)
            (self.out / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
            self.log.reset(0 if ckpt is None else ckpt.step)
        barrier(self.ctx)
        if ckpt is not None:
            self._restore(ckpt)

    def _check_resumable(self, path: Path) -> Checkpoint:
        """Load the checkpoint to resume; refuse other tiles, other data or another run config."""
        base = self.card_base
        ckpt = load_checkpoint(
            path,
            expected_geometry=base.get("geometry"),
            expected_channels=base.get("channels"),
            expected_transforms=base.get("transforms"),
            map_location=self.device,
        )
        saved_cfg = ckpt.card.get("config", {})
        current = self.cfg.to_dict()
        changed = sorted(
            k for k in current if k not in RESUMABLE_CHANGES and saved_cfg.get(k) != current[k]
        )
        if changed:
            key = changed[0]
            raise ConfigError(
                f"checkpoint {path} was written with {key} = {saved_cfg.get(key)!r} but the run "
                f"config says {current[key]!r}; restore the config, or use --no-resume (or a new "
                "--out) to start over"
            )
        n_saved = int(ckpt.state["data_position"]["n_samples"])
        if n_saved != self.n_train:
            raise InputError(
                f"checkpoint {path} was trained on {n_saved} samples but the tiles now hold "
                f"{self.n_train}; use the same tiles, or --no-resume to start over"
            )
        return ckpt

    def _restore(self, ckpt: Checkpoint) -> None:
        path = ckpt.path
        st = ckpt.state
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.scheduler.lr_lambdas[0].total_steps = self.total_steps  # max_steps/epochs may change
        pos = st["data_position"]
        self.state = _State(
            step=int(st["step"]),
            epoch=int(pos["epoch"]),
            batch_in_epoch=int(pos["batch"]),
            wall_time_s=float(st["wall_time_s"]),
            last_train=dict(st.get("last_train", {})),
            last_val=dict(st.get("last_val", {})),
            last_val_step=int(st.get("last_val_step", -1)),
        )
        ranks = st["ranks"]
        if len(ranks) != self.ctx.world_size and self.ctx.is_main:
            log.warning(
                "checkpoint %s was written by %d processes, this run has %d: data order is kept, "
                "RNG streams are not",
                path,
                len(ranks),
                self.ctx.world_size,
            )
        mine = ranks[self.ctx.rank] if self.ctx.rank < len(ranks) else ranks[0]
        restore_rng_state(mine["rng"])
        self.meter.load(mine["meter"], self.device)
        self.resumed_from = self.state.step
        if self.ctx.is_main:
            log.info("resuming from %s (step %d)", path, self.state.step)

    # ---------------------------------------------------------------- steps
    def _autocast(self) -> Any:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _train_step(self, batch: Mapping[str, torch.Tensor]) -> None:
        st = self.state
        weights = self.schedule.weights_at(st.step, st.epoch)
        with self._autocast():
            losses = self.step_module(_to_device(batch, self.device))
        total = sum(weights[k] * losses[k].float() for k in LOSS_NAMES if weights[k] > 0)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        clamp_temperature(self.model)
        self.meter.add({**losses, "total": total})

    @torch.no_grad()
    def _validate(self, epoch: int) -> dict[str, float]:
        assert self.val_loader is not None
        self.model.eval()
        weights = self.schedule.weights_at(max(self.state.step - 1, 0), epoch)
        sums: torch.Tensor | None = None
        n, started = 0, time.perf_counter()
        for k, batch in enumerate(self.val_loader):
            if self.cfg.val_batches and k >= self.cfg.val_batches:
                break
            with self._autocast():
                losses = self.objective(_to_device(batch, self.device))
            losses["total"] = sum(weights[name] * losses[name].float() for name in LOSS_NAMES)
            vec = torch.stack([losses[key].float().reshape(()) for key in _Meter.KEYS])
            sums = vec if sums is None else sums + vec
            n += 1
        self.model.train()
        assert sums is not None
        values = dict(zip(_Meter.KEYS, (all_reduce_mean(sums, self.ctx) / n).tolist(), strict=True))
        batch_size = self.val_loader.batch_sampler.global_batch
        values["samples_per_s"] = n * batch_size / max(time.perf_counter() - started, 1e-9)
        return values

    def _row(self, values: Mapping[str, float], split: str, epoch: int) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "epoch": epoch,
            "lr": self._lr_used,  # the rate of the step just taken (val rows: the last step's)
            **{k: values[k] for k in (*LOSS_NAMES, "total", "temperature", "samples_per_s")},
            "split": split,
        }

    def _log_train(self, epoch: int, bar: tqdm) -> None:
        values = self.meter.means(self.ctx)
        elapsed = max(time.perf_counter() - self.meter.started, 1e-9)
        values["samples_per_s"] = self.meter.count * self.cfg.batch_size / elapsed
        self.meter.reset()
        self.state.last_train = {k: v for k, v in values.items() if k != "samples_per_s"}
        if self.ctx.is_main:
            self.log.append(self._row(values, "train", epoch))
            bar.set_postfix(
                loss=f"{values['total']:.4f}",
                samples_s=f"{values['samples_per_s']:.1f}",
                lr=f"{self._lr_used:.2e}",
            )

    def _log_val(self, epoch: int) -> None:
        values = self._validate(epoch)
        self.state.last_val = {k: v for k, v in values.items() if k != "samples_per_s"}
        self.state.last_val_step = self.state.step
        if self.ctx.is_main:
            self.log.append(self._row(values, "val", epoch))

    # ---------------------------------------------------------------- checkpoints
    def _card(self) -> dict[str, Any]:
        st = self.state
        return {
            **self.card_base,
            "config": self.cfg.to_dict(),
            "step": st.step,
            "epoch": st.epoch,
            "total_steps": self.total_steps,
            "n_train_samples": self.n_train,
            "n_val_samples": self.n_val,
            "samples_seen": st.step * self.cfg.batch_size,
            "world_size": self.ctx.world_size,
            "device": self.device.type,
            "precision": "bf16" if self.dtype == torch.bfloat16 else "fp32",
            "losses": {"train": st.last_train, "val": st.last_val},
            "hicmix_version": __version__,
        }

    def _wall(self) -> float:
        return self.state.wall_time_s + (time.perf_counter() - self._session_started)

    def save(self) -> Path:
        st = self.state
        ranks = gather_objects({"rng": capture_rng_state(), "meter": self.meter.state()}, self.ctx)
        path = step_dir(self.out, st.step)
        if self.ctx.is_main:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": st.step,
                "epoch": st.epoch,
                "data_position": {
                    "epoch": st.epoch,
                    "batch": st.batch_in_epoch,
                    "global_batch": self.cfg.batch_size,
                    "n_samples": self.n_train,
                    "seed": self.cfg.seed,
                    "batching": self.cfg.batching,
                    "batches_per_epoch": self.sampler.batches_per_epoch,
                },
                "ranks": ranks,
                "wall_time_s": self._wall(),
                "last_train": st.last_train,
                "last_val": st.last_val,
                "last_val_step": st.last_val_step,
            }
            save_checkpoint(path, state, self._card())
            prune_checkpoints(self.out, self.cfg.keep_checkpoints)
        barrier(self.ctx)
        return path

    # ---------------------------------------------------------------- main loop
    def train(self, stop_at_step: int | None) -> dict[str, Any]:
        cfg, st = self.cfg, self.state
        self._session_started = time.perf_counter()
        stop = self.total_steps if stop_at_step is None else min(stop_at_step, self.total_steps)
        self._lr_used = self.scheduler.get_last_lr()[0]
        bar = tqdm(
            total=self.total_steps,
            initial=st.step,
            desc="pretrain",
            unit="step",
            disable=not (self.progress and self.ctx.is_main),
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self.model.train()
        last_saved = st.step if self.resumed_from is not None else -1
        while st.step < stop:
            self.sampler.set_position(st.epoch, st.batch_in_epoch)
            for batch in self.loader:
                self._lr_used = self.scheduler.get_last_lr()[0]
                self._train_step(batch)
                st.step += 1
                st.batch_in_epoch += 1
                epoch_of_step = st.epoch
                if st.batch_in_epoch == self.sampler.batches_per_epoch:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                bar.update(1)
                if st.step % cfg.log_every == 0 or st.step == self.total_steps:
                    self._log_train(epoch_of_step, bar)
                if self.val_loader is not None and cfg.val_every and st.step % cfg.val_every == 0:
                    self._log_val(epoch_of_step)
                if st.step % cfg.checkpoint_every == 0 and st.step < self.total_steps:
                    self.save()
                    last_saved = st.step
                if st.step >= stop or st.batch_in_epoch == 0:
                    break
        bar.close()
        if st.step < self.total_steps:  # stop_at_step: behave like an interruption
            if last_saved != st.step:
                self.save()
            return {"step": st.step, "finished": False}
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Final validation (unless the last step had one), final checkpoint and outputs."""
        st = self.state
        if self.val_loader is not None and st.last_val_step != st.step:
            self._log_val(max(st.epoch - (st.batch_in_epoch == 0), 0))
        self.save()
        summary = self._summary()
        if self.ctx.is_main:
            self._write_final(summary)
        barrier(self.ctx)
        return summary

    def _summary(self) -> dict[str, Any]:
        st = self.state
        return {
            "finished": True,
            "steps": st.step,
            "epochs": st.step / self.sampler.batches_per_epoch,
            "samples_seen": st.step * self.cfg.batch_size,
            "n_train_samples": self.n_train,
            "n_val_samples": self.n_val,
            "final_train": st.last_train,
            "final_val": st.last_val,
            "wall_time_s": self._wall(),
            "resumed_from_step": self.resumed_from,
            "world_size": self.ctx.world_size,
            "device": self.device.type,
            "precision": "bf16" if self.dtype == torch.bfloat16 else "fp32",
            "size": self.card_base.get("size"),
        }

    def _write_final(self, summary: dict[str, Any]) -> None:
        final = step_dir(self.out, self.state.step)
        for name in (MODEL_FILE, CARD_FILE):
            with atomic_path(self.out / name) as tmp:
                shutil.copyfile(final / name, tmp)
        with atomic_path(self.out / "losses.csv") as tmp:
            shutil.copyfile(self.log.path, tmp)
        plot_losses(self.log.rows(), self.out / "losses.png", title=_title(self.card_base))
        with atomic_path(self.out / "run_config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        write_json(self.out / "summary.json", summary)


def _title(card: Mapping[str, Any]) -> str:
    cells = ", ".join(card.get("cell_lines", [])) or "?"
    return f"pre-training {card.get('size', '')} on {cells}"


def run_pretraining(
    model_factory: Callable[[], nn.Module],
    train_set: torch.utils.data.Dataset,
    val_set: torch.utils.data.Dataset | None,
    config: PretrainConfig | Mapping[str, Any] | str | Path,
    out: str | Path,
    *,
    card: Mapping[str, Any] | None = None,
    device: str = "auto",
    resume: bool = True,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Pre-train ``model_factory()`` on ``train_set`` (validation: ``val_set``) into ``out``.

    The model needs ``pretrain_losses(batch) -> dict`` (keys contrastive, orthogonality, mapping,
    temperature; an optional ``gather`` keyword makes multi-process InfoNCE exact) and may have
    ``clamp_temperature_()``. The factory is called after seeding, on every rank. With ``resume``,
    training continues from the newest checkpoint in ``out/checkpoints``. ``stop_at_step`` stops
    after that step with a checkpoint, as an interruption would (no final outputs). Returns the
    summary (also in ``out/summary.json``). Under torchrun every rank calls this; only rank 0
    writes.
    """
    cfg = load_run_config(config)
    out = Path(out)
    run = _Run(model_factory, train_set, val_set, cfg, out, card or {}, device, progress)
    run.start(resume)
    return run.train(stop_at_step)


# --------------------------------------------------------------------------------------------------
# tiles → model


def tiles_card(manifests: Sequence[Mapping[str, Any]], tile_dirs: Sequence[Path]) -> dict[str, Any]:
    """Card fields describing the training tiles (geometry, channels, transforms, cells, ...)."""
    m = manifests[0]
    return {
        "kind": "pretrain",
        "geometry": {
            "window_bins": int(m["window_bins"]),
            "positions_per_bin": int(m["positions_per_bin"]),
            "n_channels": len(m["channels"]),
        },
        "channels": list(m["channels"]),
        "transforms": transforms_from_manifest(m),
        "tile_format_version": int(m.get("format_version", TILE_FORMAT_VERSION)),
        "cell_lines": [str(x.get("cell_line")) for x in manifests],
        "assembly": m.get("assembly"),
        "resolution": int(m["resolution"]),
        "subbin_bp": int(m["subbin_bp"]),
        "tile_splits": m.get("splits"),
        "tile_dirs": [str(d) for d in tile_dirs],
    }


def pretrain(
    tile_dirs: str | Path | Sequence[str | Path],
    config: PretrainConfig | Mapping[str, Any] | str | Path,
    out: str | Path,
    *,
    device: str = "auto",
    resume: bool = True,
    max_steps: int | None = None,
    workers: int | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Pre-train MixHiC on the ``pretrain`` tiles of ``tile_dirs`` (see :func:`run_pretraining`).

    ``max_steps`` overrides the config's run length (and so the schedule's); ``workers`` its
    num_workers.
    """
    from hicmix.model import MixHiC, ModelGeometry, model_config
    from hicmix.tiles import TileDataset, load_manifest

    cfg = load_run_config(config)
    if max_steps is not None:
        cfg = dataclasses.replace(cfg, max_steps=int(max_steps), epochs=None)
    if workers is not None:
        cfg = dataclasses.replace(cfg, num_workers=int(workers))
    dirs = [Path(tile_dirs)] if isinstance(tile_dirs, str | Path) else [Path(d) for d in tile_dirs]
    if not dirs:
        raise ConfigError("pretrain needs at least one tile folder (--tiles)")
    manifests = [load_manifest(d) for d in dirs]
    _check_assemblies(manifests, dirs)
    train_set = TileDataset(dirs, "pretrain", list(cfg.train_splits))
    if len(train_set) == 0:
        raise InputError(
            f"tile folders {', '.join(map(str, dirs))} hold no pretrain samples in split(s) "
            f"{list(cfg.train_splits)}; check the tiles' splits or train_splits"
        )
    val_set = TileDataset(dirs, "pretrain", list(cfg.val_splits)) if cfg.val_splits else None
    geometry = ModelGeometry.from_manifest(manifests[0])
    mcfg = model_config(cfg.size, **cfg.model)
    hic_transform = manifests[0]["hic_transform"]
    card = {**tiles_card(manifests, dirs), "size": cfg.size, "model_config": mcfg.to_dict()}

    def factory() -> nn.Module:
        return MixHiC(geometry, mcfg, hic_transform=hic_transform)

    return run_pretraining(
        factory,
        train_set,
        val_set,
        cfg,
        out,
        card=card,
        device=device,
        resume=resume,
        stop_at_step=stop_at_step,
        progress=progress,
    )


def _check_assemblies(manifests: Sequence[Mapping[str, Any]], dirs: Sequence[Path]) -> None:
    first = manifests[0].get("assembly")
    for folder, manifest in zip(dirs[1:], manifests[1:], strict=True):
        if manifest.get("assembly") != first:
            raise InputError(
                f"tile folders {dirs[0]} and {folder} are on different assemblies "
                f"({first!r} vs {manifest.get('assembly')!r}); pre-train on one assembly"
            )
