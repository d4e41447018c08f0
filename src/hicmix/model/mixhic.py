"""MixHiC: encoders, interaction, mapping and (fine-tuning) fusion, decoder and task heads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hicmix.errors import ConfigError
from hicmix.model.config import ModelConfig, ModelGeometry
from hicmix.model.encoders import HicEncoder, TrackEncoder
from hicmix.model.fusion import Fusion
from hicmix.model.heads import MAP_ACTIVATIONS, ExpressionHead, HicMapHead, LoopHead, UNetDecoder1D
from hicmix.model.interaction import InteractionBlock
from hicmix.model.layers import l2_normalize
from hicmix.model.mapping import MappingBlock
from hicmix.transforms import check_hic_transform

TASKS = ("loops", "hicmap", "expression")
MODES = ("bimodal", "tracks_only", "hic_only")
#: Sub-modules that pre-training trains and fine-tuning loads (τ lives in ``interaction``).
PRETRAINED_MODULES = ("track_encoder", "hic_encoder", "interaction", "mapping")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: keys loaded, absent, ignored, or skipped (other shape)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} pre-trained tensors; {len(self.missing)} missing, "
            f"{len(self.unexpected)} ignored, {len(self.mismatched)} with a different shape"
        )


class MixHiC(nn.Module):
    """MIX-HIC-style multimodal model for one tile geometry.

    ``tasks`` selects the fine-tuning parts to build: () is the pre-training model (encoders,
    interaction, mapping, τ); any task adds the fusion block and its head ("hicmap" and "expression"
    also the U-Net decoder). ``hic_transform`` sets the Hi-C-map head's activation (sigmoid for
    clip_scale, identity for log1p_oe). Fusion and heads work in the unit-normalised interaction
    space, where real Hi-C features n([shared, specific]) and imputed ones (the mapping block's
    outputs) live on the same sphere.
    """

    def __init__(
        self,
        geometry: ModelGeometry,
        config: ModelConfig,
        hic_transform: str = "clip_scale",
        tasks: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.geometry, self.config = geometry, config
        self.hic_transform = check_hic_transform(hic_transform)
        self.tasks = tuple(tasks)
        for task in self.tasks:
            _check_choice("task", task, TASKS)
        e, dim = config.embed_dim, 8 * config.embed_dim
        self.track_encoder = TrackEncoder(geometry, config)
        self.hic_encoder = HicEncoder(geometry, config)
        self.interaction = InteractionBlock(dim, config.tau_init, config.tau_min, config.tau_max)
        self.mapping = MappingBlock(dim, config.mapping_squared, config.mapping_detach_target)
        self.heads = nn.ModuleDict()
        if self.tasks:
            self.fusion = Fusion(
                dim, config.fusion_depth, config.n_heads, config.mlp_ratio, config.dropout
            )
        if "loops" in self.tasks:
            self.heads["loops"] = LoopHead(dim, config.head_hidden, config.head_dropout)
        if {"hicmap", "expression"} & set(self.tasks):
            self.decoder = UNetDecoder1D(
                e, config.decoder_depth, config.n_heads, config.mlp_ratio, config.dropout
            )
        if "hicmap" in self.tasks:
            self.heads["hicmap"] = HicMapHead(
                2 * e,
                config.head_hidden,
                config.head_dropout,
                MAP_ACTIVATIONS[hic_transform],
                geometry.window_bins,
            )
        if "expression" in self.tasks:
            self.heads["expression"] = ExpressionHead(
                2 * e,
                config.expression_hidden,
                config.expression_center_bins,
                geometry.n_channels,
                geometry.window_bins,
                geometry.positions_per_bin,
            )

    # ----------------------------------------------------------------- encoders and shared space
    def encode_tracks(
        self, tracks: torch.Tensor, distance: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Tracks (B, C, 2·W·P) → tokens (B, Lt, 8E) and U-Net skips (2W×E, W×2E, W/2×4E)."""
        return self.track_encoder(tracks, distance)

    def encode_hic(self, hic: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """Hi-C (B, 1, W, W) → tokens (B, Lh, 8E)."""
        return self.hic_encoder(hic, distance)

    def impute_hic_tokens(self, track_tokens: torch.Tensor) -> torch.Tensor:
        """Track encoder tokens (B, Lt, 8E) → imputed Hi-C features (B, Lh, 8E), unit norm per
        token.
        """
        concat = self.interaction.project_tracks(track_tokens)["concat"]
        return self.mapping.tracks_to_hic(concat, self.hic_encoder.n_tokens)

    def impute_track_tokens(self, hic_tokens: torch.Tensor) -> torch.Tensor:
        """Hi-C encoder tokens (B, Lh, 8E) → imputed track features (B, Lt, 8E), unit norm per
        token.
        """
        concat = self.interaction.project_hic(hic_tokens)["concat"]
        return self.mapping.hic_to_tracks(concat, self.track_encoder.n_tokens)

    # ----------------------------------------------------------------- pre-training
    def pretrain_losses(
        self,
        batch: Mapping[str, torch.Tensor],
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Float32 scalar losses "contrastive", "orthogonality", "mapping"; detached "temperature".

        Weighting and schedule (e.g. contrastive only for the first epochs) belong to the trainer;
        call ``clamp_temperature_()`` after each optimiser step. ``gather`` (an all-gather with
        gradient, under DDP) makes InfoNCE use the negatives of the global batch; the other losses
        are per-sample means and need no gathering.
        """
        track_tokens, _ = self.encode_tracks(batch["tracks"], batch["distance"])
        hic_tokens = self.encode_hic(batch["hic"], batch["distance"])
        features = self.interaction(track_tokens, hic_tokens)
        losses = self.interaction.losses(features, gather)
        losses["mapping"] = self.mapping.loss(features["track_concat"], features["hic_concat"])
        return losses

    def clamp_temperature_(self) -> None:
        """Clamp τ in place to [tau_min, tau_max] (MIX-HIC clamps before every step)."""
        self.interaction.temperature.clamp_()

    # ----------------------------------------------------------------- fine-tuning
    def forward_task(
        self, batch: Mapping[str, torch.Tensor], task: str, mode: str = "bimodal"
    ) -> dict[str, torch.Tensor]:
        """Task outputs for one batch.

        task "loops" → {"logits": (B,)}; "hicmap" → {"map": (B, 1, W, W)} (plus "map_scale", the
        per-pixel diagonal sd, after ``set_diagonal_standardisation`` of the head); "expression" →
        {"profile": (B, W), "scalar": (B,)}. mode "bimodal" uses tracks + Hi-C, "tracks_only" tracks
        + Hi-C imputed from them (no ``hic`` needed), "hic_only" Hi-C + tracks imputed from it (no
        ``tracks`` needed; loops only, because the decoder needs the track encoder's skips).
        Optional expression keys: ``tss_position`` (B,) (the TSS's sub-bin in the row-anchor track
        half) and ``strand`` (B,) (+1 / -1, 0 = unknown) give the head the exact TSS; without them
        it sees the TSS bin only.
        """
        _check_choice("mode", mode, MODES)
        if task not in self.heads:
            raise ConfigError(
                f"this model has no {task!r} head (built for tasks {list(self.tasks)}); construct "
                f"MixHiC with tasks=[{task!r}]"
            )
        if mode == "hic_only" and task != "loops":
            raise ConfigError(
                f"mode hic_only supports the loops task only, not {task!r}, because the decoder "
                "needs the track encoder's skips; use mode bimodal or tracks_only"
            )
        distance = batch["distance"]
        skips: list[torch.Tensor] = []
        if mode == "hic_only":
            hic_tokens = self.encode_hic(batch["hic"], distance)
            context = l2_normalize(self.interaction.project_hic(hic_tokens)["concat"])
            queries = self.impute_track_tokens(hic_tokens)
        else:
            track_tokens, skips = self.encode_tracks(batch["tracks"], distance)
            queries = l2_normalize(self.interaction.project_tracks(track_tokens)["concat"])
            if mode == "bimodal":
                hic_tokens = self.encode_hic(batch["hic"], distance)
                context = l2_normalize(self.interaction.project_hic(hic_tokens)["concat"])
            else:
                context = self.impute_hic_tokens(track_tokens)
        fused = self.fusion(queries, context)
        if task == "loops":
            return {"logits": self.heads["loops"](fused)}
        features = self.decoder(fused, skips)
        if task == "hicmap":
            return self.heads["hicmap"](features, distance)
        return self.heads["expression"](
            features, batch["tracks"], batch.get("tss_position"), batch.get("strand")
        )

    def forward(
        self, batch: Mapping[str, torch.Tensor], task: str | None = None, mode: str = "bimodal"
    ) -> dict[str, torch.Tensor]:
        """``pretrain_losses(batch)`` if task is None, else ``forward_task(batch, task, mode)``."""
        if task is None:
            return self.pretrain_losses(batch)
        return self.forward_task(batch, task, mode)

    # ----------------------------------------------------------------- checkpoints
    def pretrained_state_dict(self) -> dict[str, torch.Tensor]:
        """The state of the pre-trained parts: encoders, interaction (with τ) and mapping."""
        return {
            k: v for k, v in self.state_dict().items() if k.split(".", 1)[0] in PRETRAINED_MODULES
        }

    def load_pretrained(self, state_dict: Mapping[str, torch.Tensor]) -> LoadReport:
        """Load encoders + interaction + mapping + τ non-strictly; fusion, decoder and heads stay
        fresh.

        Accepts the state of a pre-training model (full or ``pretrained_state_dict()``), also when
        saved from a DistributedDataParallel or torch.compile wrapper.
        """
        own = self.pretrained_state_dict()
        report, to_load = LoadReport(), {}
        for key, value in state_dict.items():
            key = _strip_wrappers(key)
            if key not in own:
                report.unexpected.append(key)
            elif tuple(value.shape) != tuple(own[key].shape):
                report.mismatched.append(key)
            else:
                to_load[key] = value
        self.load_state_dict(to_load, strict=False)
        report.loaded = sorted(to_load)
        report.missing = sorted(set(own) - set(to_load) - set(report.mismatched))
        return report

    def describe(self) -> dict[str, Any]:
        """Geometry, config, transform and tasks, for a checkpoint card."""
        return {
            "geometry": self.geometry.to_dict(),
            "config": self.config.to_dict(),
            "hic_transform": self.hic_transform,
            "tasks": list(self.tasks),
            "parameters": count_parameters(self),
        }


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; use one of {', '.join(choices)}")


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices/kernels; none on biases, norms, embeddings and τ."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding | nn.LayerNorm | nn.BatchNorm1d):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, rest = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (rest if p.ndim < 2 or id(p) in no_decay else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
