"""Fine-tuning MixHiC on the downstream tasks (method.md §5): loops, Hi-C maps, expression.

Protocol
--------
- Train on the ``train`` split of the training tile folders, select the epoch with the best
  validation metric on their ``val`` split (early stopping after ``patience`` epochs without
  improvement), and only then predict and score the ``test`` split of the test tile folders (the
  training ones by default; another cell line for cross-cell transfer). The test split is never
  read before the best epoch is fixed.
- Tasks: ``loops`` (``loops`` tiles; BCE-with-logits; selection by val AUROC), ``hicmap`` (``tss``
  tiles; the target is the window's own Hi-C patch, predicted from tracks only, so mode
  ``tracks_only`` is enforced and ``hic`` is never handed to the model; MSE on valid pixels, by
  default of per-diagonal z-scores against the training windows' mean and sd per diagonal
  (``hicmap_target``), so the model learns the deviation from P(s) and the output map is P(s) +
  sd · z; selection by the val mean per-distance Pearson over d ≥ 1, not the pixel Pearson that
  the distance decay inflates), ``expression`` (``tss`` tiles; MSE on the label standardised
  with the training genes' mean and sd; selection by val Pearson).
- The model only receives the modalities its mode uses (tracks_only: no ``hic``; hic_only: no
  ``tracks``). Augmentation (``augment: true``) is training-only; validation and test inputs are
  never perturbed (MIX-HIC defect D5).
- ``--pretrained``: the checkpoint card is checked against the tiles (geometry, channels,
  transforms) before its encoders are loaded; without it the run is the "NonPre" variant (method
  name suffix ``-nonpre``).

Output folder ``out``::

    model/            best-val-epoch checkpoint (model.pt + card.json, the checkpoint contract)
    history.csv       epoch, step, lr, train_loss, val_loss, val_metric, best
    predictions.tsv   loops: cell_line chrom bin_x bin_y distance split label score (val + test)
    predictions.h5    hicmap: pred / true / mask windows (N, W, W), bins, distance, split, ...
    expression.tsv    expression: gene_id cell_line chrom bin split prediction truth
    metrics.tsv       the metrics contract (task, method, cell_line, train_cell_line, split, ...)
    run_config.yaml   the effective run config
    summary.json      written last: best epoch, val metric, test headline, load report, ...
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from tqdm import tqdm

from hicmix import TILE_FORMAT_VERSION, __version__
from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError
from hicmix.training.checkpoint import (
    Checkpoint,
    capture_rng_state,
    load_checkpoint_for_tiles,
    save_checkpoint,
    transforms_from_manifest,
)
from hicmix.training.logs import write_json
from hicmix.training.runconfig import read_run_config
from hicmix.training.schedule import build_scheduler

log = logging.getLogger(__name__)

FINETUNE_TASKS = ("loops", "hicmap", "expression")
FINETUNE_MODES = ("bimodal", "tracks_only", "hic_only")
#: tile kind read by each task
TASK_KINDS = {"loops": "loops", "hicmap": "tss", "expression": "tss"}
#: validation metric that selects the epoch (higher is better)
SELECTION_METRICS = {
    "loops": "auroc",
    "hicmap": "distance_pearson_mean",
    "expression": "pearson",
}
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
#: hicmap training target: the tiles' values, or their per-diagonal z-scores (training statistics)
HICMAP_TARGETS = ("diagonal_zscore", "raw")
MODEL_DIR = "model"
HISTORY_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "val_metric", "best")
LOOP_PREDICTION_COLUMNS = (
    "cell_line",
    "chrom",
    "bin_x",
    "bin_y",
    "distance",
    "split",
    "label",
    "score",
)
EXPRESSION_COLUMNS = ("gene_id", "cell_line", "chrom", "bin", "split", "prediction", "truth")
#: model-config fields that only fine-tuning builds (free to differ from the pre-trained card)
_FINETUNE_ONLY_FIELDS = frozenset(
    {
        "dropout",
        "fusion_depth",
        "decoder_depth",
        "head_hidden",
        "head_dropout",
        "expression_hidden",
        "expression_center_bins",
    }
)


# --------------------------------------------------------------------------------------------------
# run config


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run (the RUN_CONFIG yaml); the seed comes from the command line.

    ``patience``: epochs without a better validation metric before stopping (0 = never stop
    early). ``eval_batch_size``: batch for validation and prediction (default ``batch_size``).
    ``augment``: training-only random strand flips (see :func:`flip_strand`). ``channel_dropout``:
    training-only probability of zeroing a whole track channel of a sample (a model trained with it
    accepts missing channels in ``hicmix predict --allow-missing-channels``). ``model``: overrides
    of the size's model config (with ``--pretrained`` only the fine-tuning parts may differ from the
    checkpoint's). ``hicmap_target``: ``diagonal_zscore`` (default) trains the hicmap head on each
    pixel's z-score within its genomic diagonal (mean and sd of the training windows, stored in the
    model) and de-standardises its output, so the map is decay + predicted deviation; ``raw``
    regresses the tile values directly (MIX-HIC), which mostly learns the decay.
    ``loop_candidates`` (loops task, modes that read Hi-C): also train on, and select the epoch
    with, the tiles' loop candidates (the observed-Hi-C enrichment maxima that genome-wide calling
    scores, see ``hicmix tiles --candidate-ratio``) when the training tiles have them, with
    positives weighted so that the classes weigh alike (a score of 0.5 still means 1:1 odds on
    balanced patches). A tracks_only model never sees those candidates when it calls, so it
    trains on the balanced patches alone.
    """

    size: str = "base"
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 32
    eval_batch_size: int | None = None
    max_epochs: int = 50
    patience: int = 10
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    num_workers: int = 4
    precision: str = "auto"
    augment: bool = False
    channel_dropout: float = 0.0
    hicmap_target: str = "diagonal_zscore"
    loop_candidates: bool = True
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"run config {name} is {getattr(self, name)}; it must be ≥ 1")
        for name in ("patience", "warmup_steps", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"run config {name} is {getattr(self, name)}; it must be ≥ 0")
        if self.eval_batch_size is not None and int(self.eval_batch_size) < 1:
            raise ConfigError(
                f"run config eval_batch_size is {self.eval_batch_size}; it must be ≥ 1 (or null)"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"run config precision {self.precision!r} is unknown; use one of "
                f"{', '.join(PRECISIONS)}"
            )
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError(
                "run config needs lr > 0, weight_decay ≥ 0 and grad_clip ≥ 0 (0 turns clipping off)"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"run config betas {list(self.betas)} must be two numbers in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"run config min_lr_ratio {self.min_lr_ratio} must lie in [0, 1]")
        if self.hicmap_target not in HICMAP_TARGETS:
            raise ConfigError(
                f"run config hicmap_target {self.hicmap_target!r} is unknown; use one of "
                f"{', '.join(HICMAP_TARGETS)}"
            )
        for name in ("augment", "loop_candidates"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"run config {name} is {getattr(self, name)!r}; use true or false"
                )
        if not 0 <= self.channel_dropout < 1:
            raise ConfigError(
                f"run config channel_dropout {self.channel_dropout} must lie in [0, 1)"
            )
        from hicmix.model import model_config

        model_config(self.size, **self.model)  # validates size and overrides

    @property
    def eval_batch(self) -> int:
        return int(self.eval_batch_size or self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["betas"] = list(values["betas"])
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "run config") -> FinetuneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; use only "
                f"{', '.join(sorted(known))}"
            )
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if values.get("model") is None:
            values["model"] = {}
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{source}: {str(err).removeprefix('run config ')}") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: invalid value ({err}); fix the run config") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> FinetuneConfig:
        values = read_run_config(path, "write_finetune_config")
        return cls.from_dict(values, source=f"run config {path}")


def write_finetune_config(config: Mapping[str, Any] | FinetuneConfig, path: str | Path) -> Path:
    """Validate ``config``; write it with all defaults filled in as YAML at ``path`` (atomically).

    For the Snakemake rule: ``write_finetune_config(config["finetune"], output.cfg)`` in a ``run:``
    block.
    """
    cfg = config if isinstance(config, FinetuneConfig) else FinetuneConfig.from_dict(config)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return Path(path)


def load_finetune_config(
    config: str | Path | Mapping[str, Any] | FinetuneConfig,
) -> FinetuneConfig:
    """A FinetuneConfig from a YAML path, a mapping or a FinetuneConfig."""
    if isinstance(config, FinetuneConfig):
        return config
    if isinstance(config, Mapping):
        return FinetuneConfig.from_dict(config)
    return FinetuneConfig.from_yaml(config)


def check_task_mode(task: str, mode: str) -> None:
    """ConfigError for an unknown task or mode, or a combination the task does not allow."""
    if task not in FINETUNE_TASKS:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(FINETUNE_TASKS)}")
    if mode not in FINETUNE_MODES:
        raise ConfigError(f"unknown mode {mode!r}; use one of {', '.join(FINETUNE_MODES)}")
    if task == "hicmap" and mode != "tracks_only":
        raise ConfigError(
            f"task hicmap predicts a window's Hi-C from its tracks, so it has no Hi-C input and "
            f"runs only in mode tracks_only (got {mode}); use --mode tracks_only"
        )
    if task == "expression" and mode == "hic_only":
        raise ConfigError(
            "task expression needs the track encoder (its decoder uses the track skips), so mode "
            "hic_only is not available; use --mode bimodal or tracks_only"
        )


def method_name(mode: str, pretrained: bool) -> str:
    """The metrics-table method: ``hicmix-<mode>``, plus ``-nonpre`` when not pre-trained."""
    return f"hicmix-{mode}" + ("" if pretrained else "-nonpre")


# --------------------------------------------------------------------------------------------------
# device, precision, seeds


def resolve_device(device: str) -> torch.device:
    """auto → CUDA when available, else CPU with a warning; cuda without a GPU → ConfigError."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible; use cpu")
    if device == "cuda" or (device == "auto" and cuda):
        return torch.device("cuda", 0)
    if not cuda:
        log.warning(
            "no CUDA GPU found: fine-tuning runs on CPU in float32, which is slow for the base "
            "and large models; use a GPU node for real runs"
        )
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: auto → bf16 on CUDA (if supported); None (float32) on CPU."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # the DataLoader's per-worker seed (from its generator)
    random.seed(seed)
    np.random.seed(seed)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# batches, augmentation, losses


def model_inputs(
    batch: Mapping[str, Any], mode: str, device: torch.device
) -> dict[str, torch.Tensor]:
    """The tensors the model may see in ``mode``: tracks_only drops ``hic``, hic_only ``tracks``.

    Labels and masks never reach the model; for the hicmap task this guarantees the target patch is
    not an input. The TSS keys (``tss_position``, ``strand``) pass through when the batch has them.
    """
    keys = ["distance", *(k for k in TSS_INPUTS if k in batch)]
    if mode != "hic_only":
        keys.append("tracks")
    if mode != "tracks_only":
        keys.append("hic")
    return {k: batch[k].to(device, non_blocking=True) for k in keys}


#: optional per-sample TSS inputs of the expression head (from TileDataset)
TSS_INPUTS = ("tss_position", "strand")


def flip_strand(batch: dict[str, Any], flip: torch.Tensor) -> dict[str, Any]:
    """Reverse the genome for the samples where ``flip`` (B,) is True (training augmentation).

    Hi-C: ``N[a, b] = M[W-1-b, W-1-a]`` (both axes reversed, then transposed; for symmetric
    diagonal windows the transpose is a no-op); ``hic_mask`` likewise; tracks: each half is reversed
    and the halves swap (the column anchor becomes the row anchor). Exact for diagonal windows; an
    off-diagonal patch's centre moves by one bin (W is even), which keeps a loop dot at the centre
    within one pixel. Labels and distance are unchanged; a TSS moves to the mirrored position of
    the row-anchor half (WP - 1 - position) and its strand turns over.
    """
    if not bool(flip.any()):
        return batch
    out = dict(batch)
    sel = flip.view(-1, 1, 1, 1)
    for key in ("hic", "hic_mask"):
        if key in batch:
            x = batch[key]
            out[key] = torch.where(sel, x.flip(-1, -2).transpose(-1, -2), x)
    tracks = batch["tracks"]
    half = tracks.shape[-1] // 2
    reversed_ = torch.cat([tracks[..., half:].flip(-1), tracks[..., :half].flip(-1)], dim=-1)
    out["tracks"] = torch.where(flip.view(-1, 1, 1), reversed_, tracks)
    if "tss_position" in batch:
        position = batch["tss_position"]
        out["tss_position"] = torch.where(flip, half - 1 - position, position)
    if "strand" in batch:
        out["strand"] = torch.where(flip, -batch["strand"], batch["strand"])
    return out


def masked_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the valid (mask = 1) pixels; 0 when none is valid.

    ``scale`` (broadcastable, > 0) divides the error first: with the per-diagonal sd this is the
    MSE of per-diagonal z-scores, so every distance weighs alike.
    """
    mask = mask.to(pred.dtype)
    diff = pred - target
    if scale is not None:
        diff = diff / scale.to(pred.dtype)
    return (diff**2 * mask).sum() / mask.sum().clamp_min(1.0)


def pixel_diagonals(distance: torch.Tensor, window: int) -> torch.Tensor:
    """Genomic diagonal |distance + j - i| of every pixel of (B,) windows: (B, W, W) int64."""
    offsets = torch.arange(window)
    diag = distance.view(-1, 1, 1).long() + offsets.view(1, 1, -1) - offsets.view(1, -1, 1)
    return diag.abs()


@torch.no_grad()
def diagonal_stats(
    dataset: torch.utils.data.Dataset, window: int, batch_size: int = 256, min_sd: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd (W,) of the valid Hi-C pixels of each genomic diagonal 0 … W-1 (farther
    diagonals pooled into W-1) over ``dataset`` (the training windows); sd floored at ``min_sd``,
    diagonals without a valid pixel take the nearest lower diagonal's values.
    """
    total = torch.zeros(window, dtype=torch.float64)
    squares, count = torch.zeros_like(total), torch.zeros_like(total)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        hic = batch["hic"][:, 0].double()
        valid = batch["hic_mask"][:, 0].bool() & torch.isfinite(hic)
        diag = pixel_diagonals(batch["distance"], window).clamp_max(window - 1)[valid]
        values = hic[valid]
        total.index_add_(0, diag, values)
        squares.index_add_(0, diag, values**2)
        count.index_add_(0, diag, torch.ones_like(values))
    if not bool((count > 0).any()):
        raise InputError("the training windows hold no valid Hi-C pixel; check the tiles' masks")
    mean = total / count.clamp_min(1)
    sd = (squares / count.clamp_min(1) - mean**2).clamp_min(0).sqrt().clamp_min(min_sd)
    for d in range(1, window):  # fill empty diagonals from the nearest lower one
        if count[d] == 0:
            mean[d], sd[d] = mean[d - 1], sd[d - 1]
    first = int(torch.nonzero(count > 0)[0])
    mean[:first], sd[:first] = mean[first], sd[first]
    return mean.float(), sd.float()


@dataclass(frozen=True)
class LabelStats:
    """Standardisation of the expression label (mean and sd of the training genes)."""

    mean: float = 0.0
    sd: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "sd": self.sd}


def task_loss(
    task: str,
    outputs: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    stats: LabelStats | None = None,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """Float32 training loss of one batch (``batch`` on the outputs' device); ``pos_weight``
    weighs the positives of the loops task."""
    if task == "loops":
        logits = outputs["logits"].float()
        weight = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
        return nn.functional.binary_cross_entropy_with_logits(
            logits, batch["label"].float(), pos_weight=weight
        )
    if task == "hicmap":
        scale = outputs.get("map_scale")
        return masked_mse(
            outputs["map"].float(),
            batch["hic"].float(),
            batch["hic_mask"],
            None if scale is None else scale.float(),
        )
    stats = stats or LabelStats()
    target = (batch["label"].float() - stats.mean) / stats.sd
    return nn.functional.mse_loss(outputs["scalar"].float(), target)


# --------------------------------------------------------------------------------------------------
# prediction (reused by genome-wide calling and predict)


def _eval_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, workers: int, device: torch.device
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_worker_init if workers > 0 else None,
    )


@torch.no_grad()
def predict_windows(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    task: str,
    mode: str,
    batch_size: int,
    device: str | torch.device,
    *,
    label_stats: LabelStats | Mapping[str, float] | None = None,
    precision: str = "auto",
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Predict every sample of ``dataset`` in order, in eval mode, unperturbed.

    Returns numpy arrays with one entry per sample: always ``label``, ``distance``, ``bins``
    (N, 2); loops → ``logit`` and ``score`` (probability); hicmap → ``pred``, ``true`` (the
    window's Hi-C) and ``mask`` (N, W, W); expression → ``prediction`` (in label units, undoing
    ``label_stats``; the card's ``label_standardisation`` for a fine-tuned checkpoint),
    ``standardised`` (the raw model output) and ``profile`` (N, W).
    """
    check_task_mode(task, mode)
    device = torch.device(device) if isinstance(device, str) else device
    dtype = resolve_precision(precision, device)
    if isinstance(label_stats, Mapping):
        label_stats = LabelStats(float(label_stats["mean"]), float(label_stats["sd"]))
    stats = label_stats or LabelStats()
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    loader = _eval_loader(dataset, batch_size, num_workers, device)
    bar = tqdm(loader, desc=f"predict {task}", unit="batch", disable=not progress, file=sys.stderr)
    for batch in bar:
        with _autocast(device, dtype):
            outputs = model.forward_task(model_inputs(batch, mode, device), task, mode)
        found = {
            "label": batch["label"].numpy(),
            "distance": batch["distance"].numpy(),
            "bins": batch["bins"].numpy(),
        }
        if task == "loops":
            logits = outputs["logits"].float().cpu()
            found["logit"] = logits.numpy()
            found["score"] = torch.sigmoid(logits).numpy()
        elif task == "hicmap":
            found["pred"] = outputs["map"].float().cpu()[:, 0].numpy()
            found["true"] = batch["hic"][:, 0].numpy()
            found["mask"] = batch["hic_mask"][:, 0].numpy().astype(np.uint8)
        else:
            scalar = outputs["scalar"].float().cpu().numpy()
            found["standardised"] = scalar
            found["prediction"] = scalar * stats.sd + stats.mean
            found["profile"] = outputs["profile"].float().cpu().numpy()
        for key, value in found.items():
            parts.setdefault(key, []).append(value)
    model.train(was_training)
    if not parts:
        raise InputError("predict_windows got an empty dataset; check the tiles' splits")
    return {key: np.concatenate(values) for key, values in parts.items()}


def prediction_loss(
    task: str, pred: Mapping[str, np.ndarray], stats: LabelStats | None = None
) -> float:
    """The task loss over a whole prediction set (same definition as in training)."""
    if task == "loops":
        logits = torch.from_numpy(pred["logit"]).double()
        labels = torch.from_numpy(pred["label"]).double()
        return float(nn.functional.binary_cross_entropy_with_logits(logits, labels))
    if task == "hicmap":
        mask = pred["mask"].astype(bool)
        diff = (pred["pred"].astype(np.float64) - pred["true"])[mask]
        return float(np.mean(diff**2)) if diff.size else math.nan
    stats = stats or LabelStats()
    target = (pred["label"].astype(np.float64) - stats.mean) / stats.sd
    return float(np.mean((pred["standardised"].astype(np.float64) - target) ** 2))


def task_scores(
    task: str,
    pred: Mapping[str, np.ndarray],
    train_median: float | None = None,
) -> dict[str, float]:
    """Metrics of one prediction set with hicmix.evaluate (the selection metric included).

    loops: F1/precision/recall at 0.5, AUROC, AUPRC; hicmap: pixel Pearson/Spearman/MSE, R²,
    mean r(d) over d ≥ 1 and ``pearson_d<d>`` per diagonal; expression: Pearson, Spearman, R², MSE
    and ``above_median_*`` AUROC/AUPRC/accuracy against ``train_median`` (training genes only).
    """
    from hicmix import evaluate

    if task == "loops":
        return evaluate.patch_classification_scores(pred["label"], pred["score"])
    if task == "hicmap":
        scores = evaluate.map_scores(pred["true"], pred["pred"], pred["mask"])
        r_by_distance = evaluate.pearson_by_distance(pred["true"], pred["pred"], pred["mask"])
        width = len(str(len(r_by_distance) - 1))
        for d, r in enumerate(r_by_distance):
            scores[f"pearson_d{d:0{width}d}"] = float(r)
        return scores
    scores = evaluate.regression_scores(pred["label"], pred["prediction"])
    if train_median is not None:
        above = (np.asarray(pred["label"], dtype=np.float64) > train_median).astype(np.int64)
        binary = evaluate.classification_scores(above, pred["prediction"], threshold=train_median)
        scores.update({f"above_median_{k}": v for k, v in binary.items()})
    return scores


def selection_score(task: str, pred: Mapping[str, np.ndarray]) -> float:
    """The validation metric that selects the epoch (:data:`SELECTION_METRICS`), computed alone."""
    from hicmix import evaluate

    if task == "hicmap":  # skip the pixel metrics: per-epoch cost on large validation sets
        r_by_distance = evaluate.pearson_by_distance(pred["true"], pred["pred"], pred["mask"])
        return evaluate.mean_distance_pearson(r_by_distance, min_distance=1)
    return float(task_scores(task, pred)[SELECTION_METRICS[task]])


def _subset(pred: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[keep] for key, value in pred.items()}


# --------------------------------------------------------------------------------------------------
# tiles and checkpoints


def _tile_dirs(dirs: str | Path | Sequence[str | Path] | None) -> list[Path]:
    if dirs is None:
        return []
    return [Path(dirs)] if isinstance(dirs, str | Path) else [Path(d) for d in dirs]


def _compat_fields(manifest: Mapping[str, Any]) -> dict[str, Any]:
    from hicmix.tiles import COMPAT_FIELDS

    fields = {key: manifest.get(key) for key in COMPAT_FIELDS}
    if fields.get("hic_transform") != "clip_scale":
        fields.pop("hic_clip", None)
    return fields


def check_test_tiles(
    train_dir: Path, train_manifest: Mapping[str, Any], test_dir: Path, manifest: Mapping[str, Any]
) -> None:
    """InputError when test tiles differ from the training tiles in geometry or transforms; a
    warning when their split or assembly differs (test chromosomes may then overlap training ones).
    """
    want, have = _compat_fields(train_manifest), _compat_fields(manifest)
    for key, value in want.items():
        if have.get(key) != value:
            raise InputError(
                f"test tiles {test_dir} differ from the training tiles {train_dir} in {key} "
                f"({have.get(key)!r} vs {value!r}); tile the test cell line with the same settings"
            )
    if manifest.get("splits") != train_manifest.get("splits"):
        log.warning(
            "test tiles %s use the split %s but the training tiles %s use %s: test chromosomes "
            "may overlap the training ones",
            test_dir,
            manifest.get("splits"),
            train_dir,
            train_manifest.get("splits"),
        )
    if manifest.get("assembly") != train_manifest.get("assembly"):
        log.warning(
            "test tiles %s are on assembly %r, the training tiles on %r",
            test_dir,
            manifest.get("assembly"),
            train_manifest.get("assembly"),
        )


def finetune_card(
    manifests: Sequence[Mapping[str, Any]], tile_dirs: Sequence[Path], kind: str
) -> dict[str, Any]:
    """Card fields describing the training tiles (geometry, channels, transforms, cell lines), and
    what ``hicmix predict`` needs without the tiles: the loop anchor range of the tiles
    (``loop_min_bp``/``loop_max_bp``), their balancing scale ``hic_scale`` (mean over the folders)
    and ``loop_threshold`` (None here: chosen on the validation chromosomes by genome-wide calling,
    and written into the card by the workflow's predict_card rule)."""
    m = manifests[0]
    options = m.get("options") or {}
    scales = [float(x["hic_scale"]) for x in manifests if x.get("hic_scale") is not None]
    return {
        "kind": kind,
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
        "loop_min_bp": None if options.get("loop_min_bp") is None else int(options["loop_min_bp"]),
        "loop_max_bp": None if options.get("loop_max_bp") is None else int(options["loop_max_bp"]),
        "loop_threshold": None,
        "hic_scale": float(np.mean(scales)) if scales else None,
    }


def _check_pretrained_config(ckpt: Checkpoint, size: str, overrides: Mapping[str, Any]) -> None:
    from hicmix.model import model_config

    card = ckpt.card
    saved = card.get("model_config")
    if saved is None:
        return
    wanted = model_config(size, **overrides).to_dict()
    differ = sorted(
        k for k in wanted if k not in _FINETUNE_ONLY_FIELDS and saved.get(k) != wanted[k]
    )
    if differ:
        key = differ[0]
        raise ConfigError(
            f"checkpoint {ckpt.path} was pre-trained with {key} = {saved.get(key)!r} (size "
            f"{card.get('size')!r}) but the fine-tuning run config gives {wanted[key]!r}; set "
            f"size: {card.get('size')} (and the same model overrides) in the run config"
        )


def check_pretrained(
    checkpoint: str | Path, tile_dir: str | Path, size: str, overrides: Mapping[str, Any] | None
) -> Checkpoint:
    """Load a pre-trained checkpoint after checking its card against the tiles (geometry,
    channels, transforms) and its model config against the fine-tuning size."""
    ckpt = load_checkpoint_for_tiles(checkpoint, tile_dir)
    _check_pretrained_config(ckpt, size, overrides or {})
    return ckpt


def load_pretrained_into(model: nn.Module, ckpt: Checkpoint) -> Any:
    """Load the encoders of ``ckpt`` into ``model`` (non-strict); return the LoadReport."""
    state = ckpt.state.get("model", ckpt.state)
    report = model.load_pretrained(state)
    if report.mismatched or not report.loaded:
        raise InputError(
            f"checkpoint {ckpt.path} does not fit this model ({report}); pre-train with the "
            "same model size as the fine-tuning run config"
        )
    log.info("pre-trained weights from %s: %s", ckpt.path, report)
    return report


def load_finetuned(
    checkpoint: str | Path, tile_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """A fine-tuned model (eval mode) and its card, after checking the card against ``tile_dir``.

    Use with :func:`predict_windows` (pass ``label_stats=card.get("label_standardisation")`` for
    expression models).
    """
    from hicmix.model import MixHiC, ModelConfig, ModelGeometry

    ckpt = load_checkpoint_for_tiles(checkpoint, tile_dir)
    card = ckpt.card
    if "task" not in card:
        raise InputError(
            f"checkpoint {checkpoint} is not a fine-tuned model (no task in its card); point to "
            "the model/ folder written by `hicmix finetune`"
        )
    geometry = ModelGeometry(**card["geometry"])
    model = MixHiC(
        geometry,
        ModelConfig.from_dict(card["model_config"]),
        hic_transform=card["transforms"]["hic_transform"],
        tasks=(card["task"],),
    )
    model.load_state_dict(ckpt.state["model"])
    device = torch.device(device) if isinstance(device, str) else device
    return model.to(device).eval(), card


# --------------------------------------------------------------------------------------------------
# the run


def write_map_predictions(
    path: str | Path, sets: Sequence[tuple], attrs: Mapping[str, Any]
) -> Path:
    """``predictions.h5`` (the hicmix finetune layout): ``pred``/``true``/``mask`` (N, W, W),
    ``bins``, ``distance`` and string datasets ``split``, ``cell_line``, ``chrom``, ``gene_id``."""
    import h5py

    def cat(key: str) -> np.ndarray:
        return np.concatenate([np.asarray(pred[key]) for _, _, pred, _ in sets])

    strings = h5py.string_dtype()
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        gz = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        pred = cat("pred").astype(np.float32)
        chunks = (1, *pred.shape[1:])
        handle.create_dataset("pred", data=pred, chunks=chunks, **gz)
        handle.create_dataset("true", data=cat("true").astype(np.float32), chunks=chunks, **gz)
        handle.create_dataset("mask", data=cat("mask").astype(np.uint8), chunks=chunks, **gz)
        handle.create_dataset("bins", data=cat("bins").astype(np.int64))
        handle.create_dataset("distance", data=cat("distance").astype(np.int64))
        columns: dict[str, list[str]] = {"split": [], "cell_line": [], "chrom": []}
        genes: list[str] = []
        for split, cell, _, index in sets:
            columns["split"] += [split] * len(index)
            columns["cell_line"] += [cell] * len(index)
            columns["chrom"] += index["chrom"].astype(str).tolist()
            genes += index["gene_id"].astype(str).tolist() if "gene_id" in index else []
        if len(genes) == len(columns["split"]):
            columns["gene_id"] = genes
        for key, values in columns.items():
            handle.create_dataset(key, data=np.asarray(values, dtype=object), dtype=strings)
        handle.attrs.update(
            {
                **dict(attrs),
                "layout": "pred/true/mask (N, W, W): rows = bins bin_x - W//2 ... of each "
                "window (diagonal TSS windows); mask 1 = valid pixel",
            }
        )
    return Path(path)


@dataclass
class _Best:
    epoch: int = 0
    step: int = 0
    score: float = -math.inf
    metric: float = math.nan
    state: dict[str, Any] | None = None


def _cpu_copy(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: _cpu_copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_cpu_copy(v) for v in state]
    if isinstance(state, tuple):
        return tuple(_cpu_copy(v) for v in state)
    return copy.deepcopy(state)


def _score(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _label_stats(train_set: Any) -> tuple[LabelStats, float]:
    """(standardisation, median) of the training genes' expression."""
    values = train_set.index["expression"].to_numpy(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError("the training tss tiles hold no finite expression value; check genes.tsv")
    sd = float(values.std())
    return LabelStats(float(values.mean()), sd if sd > 0 else 1.0), float(np.median(values))


class _Run:
    """One fine-tuning run (see :func:`finetune`)."""

    def __init__(
        self,
        task: str,
        mode: str,
        train_dirs: list[Path],
        test_dirs: list[Path],
        cfg: FinetuneConfig,
        out: Path,
        seed: int,
        pretrained: Path | None,
        device: str,
        progress: bool,
    ) -> None:
        from hicmix.tiles import TileDataset, load_manifest

        self.task, self.mode, self.cfg, self.out, self.seed = task, mode, cfg, out, int(seed)
        self.kind = TASK_KINDS[task]
        self.progress = progress
        self.train_dirs, self.test_dirs = train_dirs, test_dirs
        self.manifests = [load_manifest(d) for d in train_dirs]
        self.test_manifests = [load_manifest(d) for d in test_dirs]
        for folder, manifest in zip(test_dirs, self.test_manifests, strict=True):
            check_test_tiles(train_dirs[0], self.manifests[0], folder, manifest)
            if not (folder / self.kind / "index.tsv").is_file():  # fail now, not after training
                raise InputError(
                    f"test tiles {folder} have no {self.kind} tiles (missing "
                    f"{self.kind}/index.tsv); rerun hicmix tiles with the inputs for {self.kind}"
                )
        self.train_cells = [str(m["cell_line"]) for m in self.manifests]
        self.test_cells = [str(m["cell_line"]) for m in self.test_manifests]
        self.train_set = TileDataset(train_dirs, self.kind, ["train"])
        self.val_set = TileDataset(train_dirs, self.kind, ["val"])
        for name, data in (("train", self.train_set), ("val", self.val_set)):
            if len(data) == 0:
                raise InputError(
                    f"tile folders {', '.join(map(str, train_dirs))} hold no {self.kind} samples "
                    f"in the {name} split; fine-tuning needs both (val selects the epoch); "
                    "retile with a split that leaves samples in train and val"
                )
        self.select_set, self.pos_weight, self.n_candidates = self.val_set, None, 0
        if task == "loops" and cfg.loop_candidates and mode != "tracks_only":
            self._add_loop_candidates()
        self.stats, self.train_median = LabelStats(), None
        if task == "expression":
            self.stats, self.train_median = _label_stats(self.train_set)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.pretrained = pretrained
        self.method = method_name(mode, pretrained is not None)
        self._build_model()

    # ------------------------------------------------------------------ setup
    def _add_loop_candidates(self) -> None:
        """Train on the loop tiles plus the callers' candidates; select on both val sets."""
        from hicmix.tiles import TileDataset

        have = [
            d for d, m in zip(self.train_dirs, self.manifests, strict=True)
            if "loop_candidates" in m.get("kinds", [])
        ]  # fmt: skip
        if not have:
            log.warning(
                "tiles %s have no loop_candidates: training on the balanced loop patches only "
                "(retile with --candidate-ratio > 0 for genome-wide calling)",
                ", ".join(map(str, self.train_dirs)),
            )
            return
        train = TileDataset(have, "loop_candidates", ["train"])
        val = TileDataset(have, "loop_candidates", ["val"])
        labels = np.concatenate(
            [self.train_set.index["label"].to_numpy(), train.index["label"].to_numpy()]
        )
        n_pos = int((labels > 0.5).sum())
        self.pos_weight = float((len(labels) - n_pos) / max(n_pos, 1))
        self.n_candidates = len(train)
        self.train_set = torch.utils.data.ConcatDataset([self.train_set, train])
        if len(val):
            self.select_set = torch.utils.data.ConcatDataset([self.val_set, val])

    def _build_model(self) -> None:
        from hicmix.model import MixHiC, ModelGeometry, model_config, parameter_groups

        ckpt = None
        if self.pretrained is not None:  # checked before building a possibly large model
            ckpt = check_pretrained(
                self.pretrained, self.train_dirs[0], self.cfg.size, self.cfg.model
            )
        seed_everything(self.seed)
        manifest = self.manifests[0]
        self.model_config = model_config(self.cfg.size, **self.cfg.model)
        model = MixHiC(
            ModelGeometry.from_manifest(manifest),
            self.model_config,
            hic_transform=manifest["hic_transform"],
            tasks=(self.task,),
        )
        self.load_report = None if ckpt is None else load_pretrained_into(model, ckpt)
        if self.task == "hicmap" and self.cfg.hicmap_target == "diagonal_zscore":
            mean, sd = diagonal_stats(self.train_set, int(manifest["window_bins"]))
            model.heads["hicmap"].set_diagonal_standardisation(mean, sd)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, self.cfg.weight_decay),
            lr=self.cfg.lr,
            betas=tuple(self.cfg.betas),
            fused=self.device.type == "cuda",
        )
        workers = self.cfg.num_workers
        self.loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=_worker_init if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed),
        )
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.cfg.max_epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(
            self.optimizer, self.cfg.warmup_steps, self.total_steps, self.cfg.min_lr_ratio
        )
        # augmentation draws from its own generator, so switching it on leaves the rest unchanged
        self.augment_rng = torch.Generator().manual_seed(self.seed + 1)
        self.dropout_rng = torch.Generator().manual_seed(self.seed + 2)

    # ------------------------------------------------------------------ training
    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.model.train()
        total, count, lr = 0.0, 0, self.scheduler.get_last_lr()[0]
        bar = tqdm(
            self.loader,
            desc=f"{self.task} epoch {epoch}/{self.cfg.max_epochs}",
            unit="batch",
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
        for batch in bar:
            if self.cfg.augment:
                flip = torch.rand(len(batch["label"]), generator=self.augment_rng) < 0.5
                batch = flip_strand(batch, flip)
            if self.cfg.channel_dropout > 0:  # zero whole channels, so predict can drop some
                drop = torch.rand(batch["tracks"].shape[:2], generator=self.dropout_rng)
                keep = (drop >= self.cfg.channel_dropout).to(batch["tracks"].dtype)
                batch = {**batch, "tracks": batch["tracks"] * keep[..., None]}
            targets = {
                k: batch[k].to(self.device, non_blocking=True) for k in ("label", "hic", "hic_mask")
            }
            with _autocast(self.device, self.dtype):
                outputs = self.model.forward_task(
                    model_inputs(batch, self.mode, self.device), self.task, self.mode
                )
            loss = task_loss(self.task, outputs, targets, self.stats, self.pos_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            n = len(batch["label"])
            total += float(loss.detach()) * n
            count += n
            bar.set_postfix(loss=f"{total / count:.4f}", lr=f"{lr:.2e}")
        bar.close()
        return total / max(count, 1), lr

    def _predict(self, dataset: Any) -> dict[str, np.ndarray]:
        return predict_windows(
            self.model,
            dataset,
            self.task,
            self.mode,
            self.cfg.eval_batch,
            self.device,
            label_stats=self.stats,
            precision=self.cfg.precision,
            num_workers=self.cfg.num_workers,
        )

    def _validate(self) -> tuple[float, float]:
        pred = self._predict(self.select_set)
        return prediction_loss(self.task, pred, self.stats), selection_score(self.task, pred)

    def train(self) -> None:
        """Epoch loop with early stopping; keeps the best-validation state in memory."""
        cfg, self.history, self.best = self.cfg, [], _Best()
        self.started = time.perf_counter()
        step, waited, self.stopped_early = 0, 0, False
        outer = tqdm(
            range(1, cfg.max_epochs + 1),
            desc=f"finetune {self.task} ({self.method})",
            unit="epoch",
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for epoch in outer:
            train_loss, lr = self._train_epoch(epoch)
            step += self.steps_per_epoch
            val_loss, metric = self._validate()
            better = self.best.state is None or _score(metric) > self.best.score
            if better:
                self._keep_best(epoch, step, metric)
                waited = 0
            else:
                waited += 1
            self.history.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "lr": lr,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_metric": metric,
                    "best": int(better),
                }
            )
            self._write_history()
            name = SELECTION_METRICS[self.task]
            outer.set_postfix(train=f"{train_loss:.4f}", **{f"val_{name}": f"{metric:.4f}"})
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f, val %s %.4f%s",
                epoch,
                train_loss,
                val_loss,
                name,
                metric,
                " (best)" if better else "",
            )
            if cfg.patience and waited >= cfg.patience:
                self.stopped_early = True
                log.info("no val improvement for %d epochs: stopping at epoch %d", waited, epoch)
                break
        outer.close()
        self.wall_time_s = time.perf_counter() - self.started

    def _keep_best(self, epoch: int, step: int, metric: float) -> None:
        self.best = _Best(
            epoch=epoch,
            step=step,
            score=_score(metric),
            metric=metric,
            state={
                "model": _cpu_copy(self.model.state_dict()),
                "optimizer": _cpu_copy(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(),
                "rng": capture_rng_state(),
            },
        )

    def _write_history(self) -> None:
        with atomic_path(self.out / "history.csv") as tmp:
            frame = pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS))
            frame.to_csv(tmp, index=False, float_format="%.10g", na_rep="NaN")

    # ------------------------------------------------------------------ outputs
    def _card(self) -> dict[str, Any]:
        return {
            **finetune_card(self.manifests, self.train_dirs, self.kind),
            "task": self.task,
            "mode": self.mode,
            "method": self.method,
            "variant": "pretrained" if self.pretrained is not None else "NonPre",
            "seed": self.seed,
            "pretrained": None if self.pretrained is None else str(self.pretrained),
            "load_report": None
            if self.load_report is None
            else {
                "loaded": len(self.load_report.loaded),
                "missing": self.load_report.missing,
                "unexpected": self.load_report.unexpected,
                "mismatched": self.load_report.mismatched,
            },
            "size": self.cfg.size,
            "model_config": self.model_config.to_dict(),
            "config": self.cfg.to_dict(),
            "channel_dropout": float(self.cfg.channel_dropout),
            "epoch": self.best.epoch,
            "step": self.best.step,
            "selection_metric": SELECTION_METRICS[self.task],
            "selection_set": "val loops + val loop candidates" if self.n_candidates else "val",
            "metrics": {"val": {SELECTION_METRICS[self.task]: self.best.metric}},
            "label_standardisation": self.stats.to_dict() if self.task == "expression" else None,
            "train_median": self.train_median,
            "n_train_samples": len(self.train_set),
            "n_val_samples": len(self.val_set),
            "n_train_loop_candidates": self.n_candidates,
            "n_selection_samples": len(self.select_set),
            "loop_pos_weight": self.pos_weight,
            "device": self.device.type,
            "precision": "bf16" if self.dtype == torch.bfloat16 else "fp32",
            "hicmix_version": __version__,
        }

    def _restore_best(self) -> None:
        assert self.best.state is not None
        self.model.load_state_dict(self.best.state["model"])

    def _save_model(self) -> None:
        state = self.best.state
        assert state is not None
        save_checkpoint(
            self.out / MODEL_DIR,
            {
                "model": state["model"],
                "optimizer": state["optimizer"],
                "scheduler": state["scheduler"],
                "step": self.best.step,
                "epoch": self.best.epoch,
                "data_position": {
                    "epoch": self.best.epoch,
                    "batch": 0,
                    "global_batch": self.cfg.batch_size,
                    "n_samples": len(self.train_set),
                    "seed": self.seed,
                },
                "rng": state["rng"],
            },
            self._card(),
        )

    def _prediction_sets(self) -> list[tuple[str, str, dict[str, np.ndarray], pd.DataFrame]]:
        """(split, cell line, predictions, index rows): val per training cell line, then test per
        test cell line. The test split is read here for the first time."""
        from hicmix.tiles import TileDataset

        sets = []
        val = self._predict(self.val_set)
        val_index = self.val_set.index.reset_index(drop=True)
        for cell in dict.fromkeys(val_index["cell_line"].astype(str)):
            keep = (val_index["cell_line"].astype(str) == cell).to_numpy()
            sets.append(("val", cell, _subset(val, keep), val_index[keep]))
        for folder, cell in zip(self.test_dirs, self.test_cells, strict=True):
            dataset = TileDataset([folder], self.kind, ["test"])
            if len(dataset) == 0:
                log.warning("test tiles %s hold no %s test samples; skipped", folder, self.kind)
                continue
            pred = self._predict(dataset)
            sets.append(("test", cell, pred, dataset.index.reset_index(drop=True)))
            dataset.close()
        return sets

    def _metric_rows(self, sets: Sequence[tuple]) -> list[dict[str, Any]]:
        from hicmix.evaluate import rows_from_dict

        rows = []
        train_cell = "+".join(self.train_cells)
        for split, cell, pred, _ in sets:
            scores = task_scores(self.task, pred, self.train_median)
            scores["loss"] = prediction_loss(self.task, pred, self.stats)
            if split == "val":
                scores["best_epoch"] = float(self.best.epoch)
            rows += rows_from_dict(
                scores,
                task=self.task,
                method=self.method,
                cell_line=cell,
                train_cell_line=train_cell,
                split=split,
                seed=self.seed,
            )
        return rows

    def _write_predictions(self, sets: Sequence[tuple]) -> Path:
        if self.task == "loops":
            frames = []
            for split, cell, pred, index in sets:
                frames.append(
                    pd.DataFrame(
                        {
                            "cell_line": cell,
                            "chrom": index["chrom"].to_numpy(),
                            "bin_x": pred["bins"][:, 0],
                            "bin_y": pred["bins"][:, 1],
                            "distance": pred["distance"],
                            "split": split,
                            "label": pred["label"].astype(np.int64),
                            "score": pred["score"].astype(np.float64),
                        }
                    )
                )
            path = self.out / "predictions.tsv"
            with atomic_path(path) as tmp:
                table = pd.concat(frames, ignore_index=True)[list(LOOP_PREDICTION_COLUMNS)]
                table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
            return path
        if self.task == "expression":
            frames = []
            for split, cell, pred, index in sets:
                frames.append(
                    pd.DataFrame(
                        {
                            "gene_id": index["gene_id"].astype(str).to_numpy(),
                            "cell_line": cell,
                            "chrom": index["chrom"].to_numpy(),
                            "bin": pred["bins"][:, 0],
                            "split": split,
                            "prediction": pred["prediction"].astype(np.float64),
                            "truth": pred["label"].astype(np.float64),
                        }
                    )
                )
            path = self.out / "expression.tsv"
            with atomic_path(path) as tmp:
                table = pd.concat(frames, ignore_index=True)[list(EXPRESSION_COLUMNS)]
                table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
            return path
        return self._write_map_predictions(sets)

    def _write_map_predictions(self, sets: Sequence[tuple]) -> Path:
        attrs = {
            "task": self.task,
            "method": self.method,
            "hic_transform": self.manifests[0]["hic_transform"],
            "window_bins": int(self.manifests[0]["window_bins"]),
            "resolution": int(self.manifests[0]["resolution"]),
        }
        return write_map_predictions(self.out / "predictions.h5", sets, attrs)

    def finish(self) -> dict[str, Any]:
        self._restore_best()
        self._save_model()
        sets = self._prediction_sets()
        predictions = self._write_predictions(sets)
        rows = self._metric_rows(sets)
        from hicmix.evaluate import write_metrics

        write_metrics(rows, self.out / "metrics.tsv")
        with atomic_path(self.out / "run_config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        summary = self._summary(sets, rows, predictions)
        for data in (self.train_set, self.select_set, self.val_set):
            for part in getattr(data, "datasets", [data]):  # the parts of a ConcatDataset
                part.close()
        write_json(self.out / "summary.json", summary)
        return summary

    def _summary(self, sets: Sequence[tuple], rows: list[dict], predictions: Path) -> dict:
        name = SELECTION_METRICS[self.task]
        headline = {
            f"{split}:{cell}": r["value"]
            for split, cell, *_ in sets
            for r in rows
            if r["split"] == split and r["cell_line"] == cell and r["metric"] == name
        }
        return {
            "finished": True,
            "task": self.task,
            "mode": self.mode,
            "method": self.method,
            "variant": "pretrained" if self.pretrained is not None else "NonPre",
            "pretrained": None if self.pretrained is None else str(self.pretrained),
            "load_report": None if self.load_report is None else str(self.load_report),
            "seed": self.seed,
            "selection_metric": name,
            "best_epoch": self.best.epoch,
            "best_val_metric": self.best.metric,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
            "headline_scores": headline,
            "train_cell_lines": self.train_cells,
            "test_cell_lines": self.test_cells,
            "n_train_samples": len(self.train_set),
            "n_val_samples": len(self.val_set),
            "n_test_samples": {
                cell: len(p["label"]) for split, cell, p, _ in sets if split == "test"
            },
            "label_standardisation": self.stats.to_dict() if self.task == "expression" else None,
            "train_median": self.train_median,
            "augment": self.cfg.augment,
            "device": self.device.type,
            "precision": "bf16" if self.dtype == torch.bfloat16 else "fp32",
            "wall_time_s": self.wall_time_s,
            "outputs": {
                "model": MODEL_DIR,
                "history": "history.csv",
                "predictions": predictions.name,
                "metrics": "metrics.tsv",
            },
        }


def finetune(
    task: str,
    mode: str,
    tile_dirs: str | Path | Sequence[str | Path],
    test_tile_dirs: str | Path | Sequence[str | Path] | None,
    config: FinetuneConfig | Mapping[str, Any] | str | Path,
    out: str | Path,
    seed: int,
    pretrained: str | Path | None = None,
    device: str = "auto",
    *,
    max_epochs: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune on ``tile_dirs`` (train split; val selects the epoch), score ``test_tile_dirs``.

    ``test_tile_dirs`` None or empty = the training folders. ``max_epochs`` / ``num_workers``
    override the config. Returns the summary (also ``out/summary.json``, written last).
    """
    check_task_mode(task, mode)
    cfg = load_finetune_config(config)
    if max_epochs is not None:
        cfg = dataclasses.replace(cfg, max_epochs=int(max_epochs))
    if num_workers is not None:
        cfg = dataclasses.replace(cfg, num_workers=int(num_workers))
    train_dirs = _tile_dirs(tile_dirs)
    if not train_dirs:
        raise ConfigError("finetune needs at least one training tile folder (--tiles)")
    test_dirs = _tile_dirs(test_tile_dirs) or list(train_dirs)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    out = Path(out)
    run = _Run(
        task,
        mode,
        train_dirs,
        test_dirs,
        cfg,
        out,
        int(seed),
        None if pretrained is None else Path(pretrained),
        device,
        progress,
    )  # validates tiles, config and checkpoint; writes nothing
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # a stale summary must not mark this run done
    run.train()
    return run.finish()


__all__ = [
    "FINETUNE_MODES",
    "FINETUNE_TASKS",
    "SELECTION_METRICS",
    "TASK_KINDS",
    "FinetuneConfig",
    "LabelStats",
    "check_pretrained",
    "check_task_mode",
    "finetune",
    "flip_strand",
    "load_finetune_config",
    "load_finetuned",
    "load_pretrained_into",
    "method_name",
    "model_inputs",
    "predict_windows",
    "selection_score",
    "task_loss",
    "task_scores",
    "write_finetune_config",
]
