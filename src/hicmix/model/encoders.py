"""Modality encoders: tracks (1D conv stem + transformer stages) and Hi-C (hierarchical ViT)."""

from __future__ import annotations

import torch
from torch import nn

from hicmix.errors import InputError
from hicmix.model.config import ModelConfig, ModelGeometry, pool_factors
from hicmix.model.layers import (
    Attention,
    DistanceEmbedding,
    TransformerBlock,
    grid_to_tokens,
    init_weights,
    sinusoidal_table,
    tokens_to_grid,
)


def _check_shape(name: str, x: torch.Tensor, expected: tuple[int, ...]) -> None:
    if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise InputError(
            f"batch {name} has shape {tuple(x.shape)}, but the model geometry expects (B, "
            f"{', '.join(map(str, expected))}); build the model from the tiles' manifest "
            "(ModelGeometry.from_manifest)"
        )


class ConvBlock1d(nn.Sequential):
    """Conv1d(k=3, same) → BatchNorm → ReLU."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Conv1d(dim, dim, 3, padding=1), nn.BatchNorm1d(dim), nn.ReLU())


class TrackEncoder(nn.Module):
    """Tracks (B, C, 2·W·P) → tokens (B, L4, 8E) and skips [(B,2W,E), (B,W,2E), (B,W/2,4E)].

    1. Per-position Linear(C → E) + ReLU (a 1×1 convolution on the channel-major input).
    2. Stem: one Conv-BN-ReLU block per prime factor of P, each followed by MaxPool(factor), then a
       last Conv-BN-ReLU: 2·W·P positions → 2W tokens; token k lies over Hi-C row k (k < W), else
       over column k - W.
    3. Position: fixed sinusoidal position within each anchor half (amplitude
       ``track_position_scale``) + learned segment embedding (row anchor / column anchor) + learned
       embedding of the bucketed anchor distance |y - x|.
    4. Three stages of pre-norm transformer blocks (E, 2E, 4E) with Conv1d(d → 2d, k4, s2, p1) after
       each, a bottleneck of blocks at 8E and a final LayerNorm.
    """

    def __init__(self, geometry: ModelGeometry, config: ModelConfig) -> None:
        super().__init__()
        self.geometry = geometry
        e, w = config.embed_dim, geometry.window_bins
        self.input_proj = nn.Sequential(nn.Conv1d(geometry.n_channels, e, 1), nn.ReLU())
        stem: list[nn.Module] = []
        for factor in pool_factors(geometry.positions_per_bin):
            stem += [ConvBlock1d(e), nn.MaxPool1d(factor)]
        stem.append(ConvBlock1d(e))
        self.stem = nn.Sequential(*stem)
        position = config.track_position_scale * sinusoidal_table(w, e)
        self.register_buffer("position", position.repeat(2, 1), persistent=False)
        self.register_buffer("segment_ids", torch.arange(2).repeat_interleave(w), persistent=False)
        self.segment = nn.Embedding(2, e)
        self.distance = DistanceEmbedding(config.distance_buckets, e)

        def blocks(dim: int, n: int) -> nn.ModuleList:
            return nn.ModuleList(
                TransformerBlock(dim, config.n_heads, config.mlp_ratio, "relu", config.dropout)
                for _ in range(n)
            )

        widths = [e, 2 * e, 4 * e]
        self.stages = nn.ModuleList(blocks(d, config.depth) for d in widths)
        self.downsamples = nn.ModuleList(
            nn.Conv1d(d, 2 * d, 4, stride=2, padding=1) for d in widths
        )
        self.bottleneck = blocks(8 * e, config.bottleneck_depth)
        self.norm = nn.LayerNorm(8 * e)
        self.out_dim = 8 * e
        self.n_tokens = geometry.track_token_lengths[-1]
        self.apply(init_weights)

    def forward(
        self, tracks: torch.Tensor, distance: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        g = self.geometry
        _check_shape("tracks", tracks, (g.n_channels, g.track_length))
        x = self.stem(self.input_proj(tracks)).transpose(1, 2)  # (B, 2W, E)
        x = x + self.position + self.segment(self.segment_ids) + self.distance(distance)[:, None]
        skips = []
        for stage, down in zip(self.stages, self.downsamples, strict=True):
            for block in stage:
                x = block(x)
            skips.append(x)
            x = down(x.transpose(1, 2)).transpose(1, 2)
        for block in self.bottleneck:
            x = block(x)
        return self.norm(x), skips


class LeFF(nn.Module):
    """Locally-enhanced feed-forward: Linear → GELU → depthwise 3×3 on the grid → GELU → Linear."""

    def __init__(self, dim: int, ratio: int, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = ratio * dim
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = self.act(grid_to_tokens(self.dwconv(tokens_to_grid(x, side))))
        return self.drop(self.fc2(x))


class HicBlock(nn.Module):
    """Pre-norm Hi-C block: x += MHSA(LN x); x += LeFF(LN x); no (dead) cross-attention."""

    def __init__(self, dim: int, n_heads: int, ratio: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, n_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.leff = LeFF(dim, ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.leff(self.norm2(x), side)


class HicEncoder(nn.Module):
    """Hi-C (B, 1, W, W) → tokens (B, g4², 8E) (9 tokens at W=50).

    The input is first standardised per window and diagonal (``hic_input="diagonal_zscore"``), so
    the tokens carry contact patterns (loops, domains) rather than the shared distance decay.
    Non-overlapping 2×2 patches (a W/2 × W/2 grid; W must be even) → Linear(4 → E), plus a learned
    2D position embedding = row + column + diagonal-offset (j - i) embeddings (the offset carries
    the distance decay), plus the bucketed anchor-distance embedding. Four stages of pre-norm blocks
    at E, 2E, 4E, 8E with Conv2d(d → 2d, k4, s2, p1) between them (25 → 12 → 6 → 3 at W=50), then a
    final LayerNorm. The mask is not an input: masked pixels arrive as 0 and losses weigh them with
    ``hic_mask``.
    """

    def __init__(self, geometry: ModelGeometry, config: ModelConfig) -> None:
        super().__init__()
        self.geometry = geometry
        e = config.embed_dim
        self.sides = geometry.hic_grid_sizes
        g = self.sides[0]
        self.patch_embed = nn.Linear(4, e)
        self.row_pos = nn.Embedding(g, e)
        self.col_pos = nn.Embedding(g, e)
        self.offset_pos = nn.Embedding(2 * g - 1, e)
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        self.register_buffer("row_ids", rows.flatten(), persistent=False)
        self.register_buffer("col_ids", cols.flatten(), persistent=False)
        self.register_buffer("offset_ids", (cols - rows + g - 1).flatten(), persistent=False)
        self.distance = DistanceEmbedding(config.distance_buckets, e)
        self.hic_input = config.hic_input
        w = geometry.window_bins
        pixel_offsets = torch.arange(w)[None, :] - torch.arange(w)[:, None] + w - 1
        diagonal_onehot = nn.functional.one_hot(pixel_offsets.flatten(), 2 * w - 1).float()
        self.register_buffer("pixel_offsets", pixel_offsets.flatten(), persistent=False)
        self.register_buffer(
            "diagonal_mean_weights",
            diagonal_onehot / diagonal_onehot.sum(0, keepdim=True),
            persistent=False,
        )
        widths = [e, 2 * e, 4 * e, 8 * e]
        self.stages = nn.ModuleList(
            nn.ModuleList(
                HicBlock(d, config.n_heads, config.mlp_ratio, config.dropout)
                for _ in range(config.depth)
            )
            for d in widths
        )
        self.downsamples = nn.ModuleList(
            nn.Conv2d(d, 2 * d, 4, stride=2, padding=1) for d in widths[:-1]
        )
        self.norm = nn.LayerNorm(8 * e)
        self.out_dim = 8 * e
        self.n_tokens = self.sides[-1] ** 2
        self.apply(init_weights)
        # Standardised contacts have unit variance and fan-in is 4: LeCun scaling 1/sqrt(fan_in)
        # keeps them above the position embeddings (std 0.02 would invite representation collapse).
        nn.init.normal_(self.patch_embed.weight, std=0.5)

    def positions(self) -> torch.Tensor:
        """(g², E) position embedding of the patch grid."""
        return (
            self.row_pos(self.row_ids)
            + self.col_pos(self.col_ids)
            + self.offset_pos(self.offset_ids)
        )

    def standardise_diagonals(self, hic: torch.Tensor) -> torch.Tensor:
        """(B, 1, W, W) → the same, each diagonal of each window at mean 0, sd 1 (clamped ±8)."""
        flat = hic.reshape(hic.shape[0], -1).float()
        mean = flat @ self.diagonal_mean_weights
        var = (flat * flat) @ self.diagonal_mean_weights - mean * mean
        std = var.clamp_min(0).sqrt()
        z = (flat - mean[:, self.pixel_offsets]) / (std[:, self.pixel_offsets] + 1e-3)
        return z.clamp(-8, 8).reshape(hic.shape).to(hic.dtype)

    def forward(self, hic: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        w = self.geometry.window_bins
        _check_shape("hic", hic, (1, w, w))
        if self.hic_input == "diagonal_zscore":
            hic = self.standardise_diagonals(hic)
        b, g = hic.shape[0], self.sides[0]
        patches = hic.reshape(b, g, 2, g, 2).permute(0, 1, 3, 2, 4).reshape(b, g * g, 4)
        x = self.patch_embed(patches) + self.positions() + self.distance(distance)[:, None]
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, self.sides[i])
            if i < len(self.downsamples):
                x = grid_to_tokens(self.downsamples[i](tokens_to_grid(x, self.sides[i])))
        return self.norm(x)
