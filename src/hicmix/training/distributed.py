"""Distributed helpers: process-group setup, global-batch sharding, gradient-carrying collectives.

The rule that every helper here serves: a run on R processes with global batch B follows the same
loss curve as one process with batch B (same seed, up to float summation order). Three things make
that true:

- :class:`GlobalBatchSampler` draws one global permutation per epoch and gives rank r the r-th
  slice of every global batch, so the R ranks together see exactly the single-process batch;
- :func:`all_gather_with_grad` lets every rank compute the contrastive loss over the whole global
  batch (in-batch negatives from all ranks); its backward sums the gradients, so after DDP's
  averaging the gradient equals the single-process one;
- :func:`convert_batchnorm` replaces BatchNorm by a synchronised one (``nn.SyncBatchNorm`` on GPU,
  :class:`GlobalBatchNorm` on CPU, where ``SyncBatchNorm`` is not supported), so the statistics are
  those of the global batch.

Launch lines
------------
One node, N GPUs (what ``hicmix pretrain --gpus N`` runs for you)::

    python -m torch.distributed.run --standalone --nproc-per-node=N -m hicmix.cli.pretrain \\
        --tiles results/tiles/SIMA --config run_config.yaml --out results/models/pretrain/base

Slurm, K nodes with N GPUs each: one srun task per node, each task a torchrun that rendezvouses on
the first node of the allocation (c10d; torchrun then sets RANK / WORLD_SIZE / LOCAL_RANK)::

    head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 \\
        python -m torch.distributed.run --nnodes="$SLURM_NNODES" --nproc-per-node=N \\
        --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$head:29500" \\
        -m hicmix.cli.pretrain --tiles ... --config ... --out ...
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from hicmix.training.batching import group_batches

#: Environment variables that torchrun (and srun + torchrun) set in every worker.
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: rank, number of processes, local rank (GPU index)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True inside a torchrun (or equivalent) launch, i.e. when RANK and WORLD_SIZE are set."""
    return all(name in os.environ for name in LAUNCH_VARIABLES[:2])


def context_from_env() -> DistContext:
    """The process's place in the job from torchrun's environment (a single process when unset)."""
    if not launched_distributed():
        return DistContext()
    return DistContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device_type: str, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group when launched by torchrun: nccl on CUDA, gloo on CPU."""
    ctx = context_from_env()
    if not ctx.is_distributed or dist.is_initialized():
        return ctx
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(
        backend="nccl" if device_type == "cuda" else "gloo",
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return ctx


def shutdown_distributed() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_with_grad(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """``tensor`` (B_local, ...) of all ranks, concatenated in rank order; backward sums grads."""
    if not ctx.is_distributed:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (no gradient), for logging."""
    if not ctx.is_distributed:
        return tensor
    tensor = tensor.detach().clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / ctx.world_size


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


class GlobalBatchSampler:
    """Deterministic global batches, each rank taking its slice (a ``DataLoader`` batch sampler).

    Epoch e uses ``default_rng([seed, e]).permutation(n)`` (or ``arange(n)`` when ``shuffle`` is
    off); global batch k is ``perm[k·B:(k+1)·B]`` and rank r takes ``[r·B/R, (r+1)·B/R)`` of it.
    Only full global batches are used (the rest of the permutation is dropped), so every rank does
    the same number of steps. :meth:`set_position` selects the epoch and the first batch, which is
    how training resumes mid-epoch.

    With ``groups`` (one group id per sample, e.g. ``hicmix.training.batching.
    nonoverlapping_groups``) every global batch is cut from one group: the same generator shuffles
    the members of each group, then the batches (``batching.group_batches``); each group's
    remainder is dropped. The order is still a function of (seed, epoch) only.
    """

    def __init__(
        self,
        n_samples: int,
        global_batch: int,
        *,
        seed: int,
        ctx: DistContext = DistContext(),
        shuffle: bool = True,
        groups: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if global_batch % ctx.world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {ctx.world_size}")
        if groups is not None and len(groups) != n_samples:
            raise ValueError(f"{len(groups)} group ids for {n_samples} samples")
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        self.n_samples = n_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // ctx.world_size
        self.seed = seed
        self.ctx = ctx
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    @property
    def batches_per_epoch(self) -> int:
        if self.groups is None:
            return self.n_samples // self.global_batch
        return int(sum(n // self.global_batch for n in np.bincount(self.groups)))

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def global_order(self, epoch: int) -> np.ndarray:
        """Sample indices of epoch ``epoch``; global batch k is ``[k·B, (k+1)·B)`` of it."""
        rng = np.random.default_rng([self.seed, epoch]) if self.shuffle else None
        if self.groups is not None:
            batches = group_batches(self.groups, self.global_batch, rng)
            return np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        if rng is None:
            return np.arange(self.n_samples)
        return rng.permutation(self.n_samples)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.global_order(self.epoch)
        offset = self.ctx.rank * self.local_batch
        for k in range(self.start, self.batches_per_epoch):
            first = k * self.global_batch + offset
            yield order[first : first + self.local_batch].tolist()

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start, 0)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with the global batch's training statistics (CPU stand-in for SyncBatchNorm).

    Sums, sums of squares and counts are all-reduced with a gradient-carrying all-reduce; statistics
    are accumulated in float64 so the result matches single-process BatchNorm to float32 rounding.
    State-dict keys are those of ``nn.BatchNorm1d/2d``, so checkpoints move freely between the two.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, input.dim())]
        x64 = input.double()
        count = torch.tensor([input.numel() / input.shape[1]], dtype=torch.float64)
        stats = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count.to(input.device)])
        stats = all_reduce(stats)
        channels = input.shape[1]
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.item())
        shape = [1, channels] + [1] * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(input.dtype).view(shape)
        out = (input - mean.to(input.dtype).view(shape)) * scale
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / max(n - 1.0, 1.0))
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
        unbiased = unbiased.to(self.running_var.dtype)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)


def convert_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Synchronise BatchNorm across ranks: ``nn.SyncBatchNorm`` on CUDA, GlobalBatchNorm on CPU."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_to_global(module)


def _convert_to_global(module: nn.Module) -> nn.Module:
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, _convert_to_global(child))
    return converted


def torchrun_command(nproc_per_node: int, module: str, args: Sequence[str]) -> list[str]:
    """One node: ``python -m torch.distributed.run --standalone --nproc-per-node N -m MODULE``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        module,
        *args,
    ]
