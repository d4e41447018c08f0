"""A small, seeded training loop shared by the torch baselines (DLoopCaller, DeepChrome,
SimpleChrome, Epiphany-lite).

Everything random inside :func:`fit_torch` (initialisation, dropout, VAE noise) draws from torch's
RNG seeded with ``seed`` inside ``torch.random.fork_rng``, and the mini-batch order from
``numpy.random.default_rng(seed)``, so the caller's global RNG state is untouched and a fit is
repeatable: on CPU with a fixed thread count two fits with the same seed give identical weights.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hicmix.errors import ConfigError

log = logging.getLogger(__name__)

#: Samples per forward pass when predicting.
PREDICT_BATCH = 1024


@dataclass
class FitResult:
    """What a fit kept: the epoch of the best validation score (1-based), that score, and per-epoch
    ``history`` rows (epoch, train_loss, val_score). Without validation the last epoch is kept."""

    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None: CUDA when available, else CPU; otherwise the named device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device} was requested but CUDA is not available; use device: cpu"
        )
    return device


def _tensors(arrays: Sequence[np.ndarray]) -> list[torch.Tensor]:
    out = []
    for array in arrays:
        array = np.asarray(array)
        dtype = torch.int64 if np.issubdtype(array.dtype, np.integer) else torch.float32
        out.append(torch.as_tensor(array, dtype=dtype))
    return out


def _check_lengths(arrays: Sequence[np.ndarray], what: str) -> int:
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"{what} arrays have different numbers of samples: {sorted(lengths)}")
    return lengths.pop()


def predict_torch(
    model: nn.Module,
    inputs: Sequence[np.ndarray],
    *,
    device: str | torch.device | None = "auto",
    batch_size: int = PREDICT_BATCH,
    output_fn: Callable[[Any], torch.Tensor] | None = None,
) -> np.ndarray:
    """Run ``model(*inputs)`` in eval mode over mini-batches; ``output_fn`` maps the raw output
    (e.g. ``torch.sigmoid`` on logits) before it is gathered as float32 numpy."""
    device = resolve_device(device)
    tensors = _tensors(inputs)
    n = _check_lengths(tensors, "input")
    model = model.to(device)
    was_training = model.training
    model.eval()
    parts = []
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            out = model(*(t[lo : lo + batch_size].to(device) for t in tensors))
            out = output_fn(out) if output_fn is not None else out
            parts.append(out.detach().float().cpu().numpy())
    model.train(was_training)
    if not parts:
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _fork_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _better(score: float, best: float) -> bool:
    return math.isfinite(score) and (not math.isfinite(best) or score > best)


def fit_torch(
    build: Callable[[], nn.Module],
    train_arrays: Sequence[np.ndarray],
    loss_fn: Callable[..., torch.Tensor],
    *,
    n_inputs: int = 1,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    val_inputs: Sequence[np.ndarray] | None = None,
    val_score: Callable[[np.ndarray], float] | None = None,
    output_fn: Callable[[Any], torch.Tensor] | None = None,
    patience: int | None = None,
    desc: str = "fit",
) -> tuple[nn.Module, FitResult]:
    """Build a model under ``seed`` and train it with Adam on mini-batches.

    ``train_arrays[:n_inputs]`` are passed to ``model(*inputs)``, the rest to ``loss_fn(output,
    *targets)``. After each epoch, when ``val_inputs`` and ``val_score`` are given, the model
    predicts ``val_inputs`` (through ``output_fn``) and ``val_score(prediction)`` (higher is
    better, NaN counts as no improvement) picks the best epoch; training stops after ``patience``
    epochs without improvement. Returns the model (on ``device``, in eval mode) holding the
    weights of the best epoch, and a :class:`FitResult`.
    """
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs ({epochs}) and batch_size ({batch_size}) must be >= 1")
    device = resolve_device(device)
    tensors = _tensors(train_arrays)
    n = _check_lengths(tensors, "training")
    if n == 0:
        raise ValueError("no training samples")
    validate = val_inputs is not None and val_score is not None
    order_rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state = math.nan, 0, None
    with torch.random.fork_rng(devices=_fork_devices(device)):
        torch.manual_seed(seed)
        model = build().to(device)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        for epoch in tqdm(range(1, epochs + 1), desc=desc, disable=None, leave=False):
            model.train()
            order = torch.as_tensor(order_rng.permutation(n))
            total, seen = 0.0, 0
            for lo in range(0, n, batch_size):
                index = order[lo : lo + batch_size]
                if len(index) < 2 and n > 1:
                    continue  # a batch of one breaks BatchNorm and adds nothing
                batch = [t[index].to(device) for t in tensors]
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(model(*batch[:n_inputs]), *batch[n_inputs:])
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(index)
                seen += len(index)
            row = {"epoch": float(epoch), "train_loss": total / max(seen, 1), "val_score": math.nan}
            if validate:
                pred = predict_torch(model, val_inputs, device=device, output_fn=output_fn)
                row["val_score"] = float(val_score(pred))
                if _better(row["val_score"], best_score):
                    best_score, best_epoch = row["val_score"], epoch
                    best_state = copy.deepcopy(model.state_dict())
            history.append(row)
            log.debug("%s epoch %d: %s", desc, epoch, row)
            if validate and patience is not None and best_epoch and epoch - best_epoch >= patience:
                break
    if best_state is None:
        best_epoch = int(history[-1]["epoch"])
    else:
        model.load_state_dict(best_state)
    model.eval()
    return model, FitResult(best_epoch, best_score, history)


def auroc_or_nan(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """AUROC, NaN when only one class is present (a validation score for :func:`fit_torch`)."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).ravel()
    if np.unique(y_true).size < 2:
        return math.nan
    return float(roc_auc_score(y_true, np.asarray(y_score, dtype=np.float64).ravel()))


def pearson_or_nan(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson r, NaN for a constant truth or prediction."""
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_pred, dtype=np.float64).ravel()
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])
