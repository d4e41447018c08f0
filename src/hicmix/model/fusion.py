"""Fusion block (fine-tuning): track tokens attend to Hi-C tokens (real or imputed)."""

from __future__ import annotations

import torch
from torch import nn

from hicmix.model.layers import TransformerBlock, init_weights


class Fusion(nn.Module):
    """Pre-norm blocks x += SA(LN x); x += CA(LN x, LN_kv m); x += MLP(LN x); final LayerNorm.

    Queries are the track tokens (B, Lt, 8E); keys/values the Hi-C tokens (B, Lh, 8E). GELU MLP,
    ratio 2.
    """

    def __init__(self, dim: int, depth: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, mlp_ratio, "gelu", dropout, cross=True)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.apply(init_weights)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = queries
        for block in self.blocks:
            x = block(x, context)
        return self.norm(x)
