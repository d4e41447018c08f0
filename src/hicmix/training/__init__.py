"""Training infrastructure shared by pre-training and fine-tuning.

- ``checkpoint``: checkpoint folders (model.pt + card.json), RNG capture, card-against-tiles checks
  (:func:`load_checkpoint` refuses a checkpoint whose geometry, channels or transforms differ from
  the tiles);
- ``schedule``: warm-up + cosine LR (LambdaLR) and the pre-training loss-weight presets;
- ``distributed``: torchrun/DDP setup, global-batch sharding, gradient-carrying all-gather,
  synced BatchNorm;
- ``logs``: the loss CSV, the loss-curve PNG, JSON summaries.
"""

from hicmix.training.checkpoint import (
    Checkpoint,
    expected_from_manifest,
    latest_checkpoint,
    load_checkpoint,
    load_checkpoint_for_tiles,
    save_checkpoint,
)
from hicmix.training.distributed import DistContext, GlobalBatchSampler, launched_distributed
from hicmix.training.logs import LOSS_COLUMNS, LossLog, plot_losses
from hicmix.training.schedule import LOSS_NAMES, LossSchedule, WarmupCosine, build_scheduler

__all__ = [
    "LOSS_COLUMNS",
    "LOSS_NAMES",
    "Checkpoint",
    "DistContext",
    "GlobalBatchSampler",
    "LossLog",
    "LossSchedule",
    "WarmupCosine",
    "build_scheduler",
    "expected_from_manifest",
    "latest_checkpoint",
    "launched_distributed",
    "load_checkpoint",
    "load_checkpoint_for_tiles",
    "plot_losses",
    "save_checkpoint",
]
