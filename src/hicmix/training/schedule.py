"""Learning-rate schedule (linear warm-up, cosine decay) and pre-training loss-weight presets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from hicmix.errors import ConfigError

#: The three pre-training losses, in logging order.
LOSS_NAMES = ("contrastive", "orthogonality", "mapping")

#: Loss-weight presets (method.md §4). "code": contrastive only for a first phase, then
#: 0.5·(con + orth) + 0.5·map; "paper": con + orth + map from the first step.
SCHEDULE_PRESETS: dict[str, dict[str, float]] = {
    "code": {"contrastive": 0.5, "orthogonality": 0.5, "mapping": 0.5},
    "paper": {"contrastive": 1.0, "orthogonality": 1.0, "mapping": 1.0},
}
#: Length of the contrastive-only phase of the "code" preset when none is configured (MIX-HIC: 10
#: epochs).
CODE_CONTRASTIVE_ONLY_EPOCHS = 10


class WarmupCosine:
    """LR factor: linear from 1/(warmup+1) to 1 over ``warmup`` steps, then cosine to ``min_ratio``.

    A callable object (not a lambda) so that ``LambdaLR.state_dict`` stores its settings.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.0
) -> LambdaLR:
    """LambdaLR with :class:`WarmupCosine`: step it once after every optimiser step."""
    return LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps, min_ratio))


@dataclass(frozen=True)
class LossSchedule:
    """Weights of the three losses at a given step/epoch.

    During the contrastive-only phase (``code`` preset: the first ``contrastive_only_steps`` steps,
    or the first ``contrastive_only_epochs`` epochs) the weights are (1, 0, 0); afterwards they are
    ``weights``.
    """

    preset: str
    weights: tuple[float, float, float]
    contrastive_only_steps: int = 0
    contrastive_only_epochs: int = 0

    @classmethod
    def build(
        cls,
        preset: str,
        weights: dict[str, float] | None = None,
        contrastive_only_steps: int | None = None,
        contrastive_only_epochs: int | None = None,
    ) -> LossSchedule:
        if preset not in SCHEDULE_PRESETS:
            raise ConfigError(
                f"unknown loss schedule {preset!r}; set schedule to one of "
                f"{', '.join(SCHEDULE_PRESETS)}"
            )
        merged = dict(SCHEDULE_PRESETS[preset])
        unknown = sorted(set(weights or {}) - set(LOSS_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown loss weight(s) {', '.join(unknown)}; use {', '.join(LOSS_NAMES)}"
            )
        merged.update({k: float(v) for k, v in (weights or {}).items()})
        if any(v < 0 for v in merged.values()) or not any(v > 0 for v in merged.values()):
            raise ConfigError(
                f"loss weights {merged} must be ≥ 0 with at least one > 0; fix loss_weights"
            )
        steps, epochs = contrastive_only_steps, contrastive_only_epochs
        if steps is not None and epochs is not None:
            raise ConfigError(
                "both contrastive_only_steps and contrastive_only_epochs are set; keep one"
            )
        if preset == "paper":
            if steps or epochs:
                raise ConfigError(
                    "the paper schedule has no contrastive-only phase; remove "
                    "contrastive_only_steps/epochs or use schedule: code"
                )
            steps, epochs = 0, 0
        elif steps is None and epochs is None:
            epochs = CODE_CONTRASTIVE_ONLY_EPOCHS
        return cls(
            preset=preset,
            weights=tuple(merged[name] for name in LOSS_NAMES),
            contrastive_only_steps=int(steps or 0),
            contrastive_only_epochs=int(epochs or 0),
        )

    def weights_at(self, step: int, epoch: int) -> dict[str, float]:
        """Loss weights for optimiser step ``step`` taken during epoch ``epoch`` (both 0-based)."""
        if step < self.contrastive_only_steps or epoch < self.contrastive_only_epochs:
            return {"contrastive": 1.0, "orthogonality": 0.0, "mapping": 0.0}
        return dict(zip(LOSS_NAMES, self.weights, strict=True))
