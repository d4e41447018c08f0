"""Analytic-by-tracing FLOP count of one sample, for model FLOPs utilisation (MFU) on GPU."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from hicmix.model.config import ModelConfig, ModelGeometry
from hicmix.model.mixhic import MixHiC


def model_flops_per_sample(
    geometry: ModelGeometry,
    config: ModelConfig,
    task: str | None = None,
    mode: str = "bimodal",
    hic_transform: str = "clip_scale",
) -> float:
    """Training FLOPs per sample: 3 × forward matmul/conv/attention FLOPs (fwd + bwd ≈ 3× fwd).

    task None counts ``pretrain_losses``; otherwise ``forward_task(batch, task, mode)``. The model
    is traced on the meta device with ``torch.utils.flop_counter.FlopCounterMode``, so nothing is
    allocated.
    """
    batch_size = 2  # InfoNCE needs a batch; its B×B logits are negligible
    with torch.device("meta"):
        model = MixHiC(geometry, config, hic_transform, tasks=() if task is None else (task,))
    w = geometry.window_bins
    batch = {
        "hic": torch.zeros(batch_size, 1, w, w, device="meta"),
        "tracks": torch.zeros(
            batch_size, geometry.n_channels, geometry.track_length, device="meta"
        ),
        "distance": torch.zeros(batch_size, dtype=torch.int64, device="meta"),
    }
    with FlopCounterMode(display=False) as counter:
        model(batch, task, mode)
    return 3.0 * counter.get_total_flops() / batch_size
