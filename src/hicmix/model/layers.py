"""Building blocks shared by the encoders, fusion and decoder.

Every sequence tensor is (batch, tokens, width) and attention runs along the token axis through
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU). This is the fix for
MIX-HIC defect D1, where attention ran across the samples of a batch.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit L2 norm along the last axis (per token)."""
    return F.normalize(x, dim=-1, eps=eps)


def init_weights(module: nn.Module) -> None:
    """GPT-style init: normal (std 0.02) for linear layers and embeddings, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Fixed (length, dim) sinusoidal position table (Vaswani et al.)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table


class DistanceEmbedding(nn.Module):
    """Learned embedding of the anchor distance |y - x| (bins), bucketed on a log scale.

    Bucket 0 is distance 0 (diagonal windows); distance d ≥ 1 goes to 1 + floor(2·log2 d)
    (half-octave buckets: 1, 2, 3, 4–5, 6–7, 8–11, ...), capped at ``n_buckets - 1``.
    """

    def __init__(self, n_buckets: int, dim: int) -> None:
        super().__init__()
        self.n_buckets = n_buckets
        self.embedding = nn.Embedding(n_buckets, dim)

    def bucket(self, distance: torch.Tensor) -> torch.Tensor:
        d = distance.abs().to(torch.float32).clamp(min=1.0)
        idx = 1 + torch.floor(2.0 * torch.log2(d)).long()
        idx = torch.where(distance == 0, torch.zeros_like(idx), idx)
        return idx.clamp(max=self.n_buckets - 1)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        """(B,) integer distances → (B, dim)."""
        return self.embedding(self.bucket(distance))


class Attention(nn.Module):
    """Multi-head attention along tokens: self-attention, or cross-attention on ``context``."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        h = self.n_heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Sequential):
    """Linear(d → ratio·d) → activation → Linear(ratio·d → d)."""

    def __init__(self, dim: int, ratio: int, activation: str, dropout: float = 0.0) -> None:
        act = {"relu": nn.ReLU, "gelu": nn.GELU}[activation]
        super().__init__(
            nn.Linear(dim, ratio * dim),
            act(),
            nn.Dropout(dropout),
            nn.Linear(ratio * dim, dim),
            nn.Dropout(dropout),
        )


class TransformerBlock(nn.Module):
    """Pre-norm block: x += SA(LN x); [x += CA(LN x, LN_kv m)]; x += MLP(LN x).

    With ``cross=True`` the block attends from x (queries) to a context m (keys/values) after the
    self-attention; that is the fusion block. Without it this is a standard pre-norm encoder layer.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        mlp_ratio: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.norm_sa = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, n_heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.cross = cross
        if cross:
            self.norm_q = nn.LayerNorm(dim)
            self.norm_kv = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim, n_heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio, activation, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.self_attn(self.norm_sa(x)))
        if self.cross:
            x = x + self.drop(self.cross_attn(self.norm_q(x), self.norm_kv(context)))
        return x + self.mlp(self.norm_mlp(x))


def tokens_to_grid(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B, side², d) tokens → (B, d, side, side) image."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, d, h, w) image → (B, h·w, d) tokens (row-major)."""
    return x.flatten(2).transpose(1, 2)


def full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Context that turns autocast off on x's device, so losses are computed in float32."""
    if x.device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()
