"""Task heads: loop logits, the shared 1D U-Net decoder, Hi-C map and expression heads."""

from __future__ import annotations

import torch
from torch import nn

from hicmix.model.layers import TransformerBlock, init_weights

#: Output activation of the Hi-C-map head per Hi-C transform (clip_scale values lie in [0, 1]).
MAP_ACTIVATIONS = {"clip_scale": "sigmoid", "log1p_oe": "identity"}


def _mlp(in_dim: int, hidden: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
    )


class LoopHead(nn.Module):
    """Token mean → Linear(8E → 32) → ReLU → Dropout → Linear(32 → 1): (B,) logits, no sigmoid."""

    def __init__(self, dim: int, hidden: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        self.mlp = _mlp(dim, hidden, dropout)
        self.apply(init_weights)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.mean(dim=1)).squeeze(-1)


class UNetDecoder1D(nn.Module):
    """Fused tokens (B, L4, 8E) + track skips → per-position features (B, 2W, 2E).

    Per level (skips deepest first, widths 4E, 2E, E): ConvTranspose1d(d_in → d_skip, k4, s2, p1)
    with the output length set to the skip's length (output_padding derived from shapes),
    concatenation with the skip, ``depth`` pre-norm transformer blocks at 2·d_skip. A final
    LayerNorm.
    """

    def __init__(
        self, embed_dim: int, depth: int, n_heads: int, mlp_ratio: int, dropout: float
    ) -> None:
        super().__init__()
        e = embed_dim
        skip_dims, in_dims = [4 * e, 2 * e, e], [8 * e, 8 * e, 4 * e]
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(i, s, 4, stride=2, padding=1)
            for i, s in zip(in_dims, skip_dims, strict=True)
        )
        self.levels = nn.ModuleList(
            nn.ModuleList(
                TransformerBlock(2 * s, n_heads, mlp_ratio, "relu", dropout) for _ in range(depth)
            )
            for s in skip_dims
        )
        self.norm = nn.LayerNorm(2 * e)
        self.out_dim = 2 * e
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for up, blocks, skip in zip(self.ups, self.levels, reversed(skips), strict=True):
            x = up(x.transpose(1, 2), output_size=[skip.shape[1]]).transpose(1, 2)
            x = torch.cat([x, skip], dim=-1)
            for block in blocks:
                x = block(x)
        return self.norm(x)


class HicMapHead(nn.Module):
    """Decoder features (B, 2W, 2E) → Hi-C map (B, 1, W, W).

    u = row-anchor half, v = column-anchor half; F[i, j] = (u_i + v_j)/2 + u_i ⊙ v_j, then per pixel
    Linear(2E → hidden) → ReLU → Dropout → Linear(hidden → 1). For diagonal windows (distance 0) the
    pixel logits are symmetrised, (X + Xᵀ)/2, before the activation: sigmoid for clip_scale,
    identity for log1p_oe.
    """

    def __init__(self, dim: int, hidden: int, dropout: float, activation: str) -> None:
        super().__init__()
        self.mlp = _mlp(dim, hidden, dropout)
        self.apply(init_weights)
        self.activation = activation

    def forward(self, features: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        w = features.shape[1] // 2
        u, v = features[:, :w, None, :], features[:, None, w:, :]
        out = self.mlp((u + v) * 0.5 + u * v).squeeze(-1)  # (B, W, W)
        symmetric = 0.5 * (out + out.transpose(1, 2))
        out = torch.where((distance == 0)[:, None, None], symmetric, out)
        if self.activation == "sigmoid":
            out = torch.sigmoid(out)
        return out.unsqueeze(1)


class ExpressionHead(nn.Module):
    """Decoder features (B, 2W, 2E) → {"profile": (B, W), "scalar": (B,)}, no activation.

    profile: per-token Linear(2E → hidden) → ReLU → Linear(hidden → 1), averaged over the two
    (identical, diagonal-window) halves. scalar (per-gene TSS value): a dedicated MLP of the same
    shape on the half-averaged features pooled over ``center_bins`` bins centred on bin W // 2,
    where TSS-centred windows put the TSS, so the scalar target does not have to compete with the
    profile for one output.
    """

    def __init__(self, dim: int, hidden: int, center_bins: int) -> None:
        super().__init__()
        self.profile_mlp = _mlp(dim, hidden)
        self.scalar_mlp = _mlp(dim, hidden)
        self.center_bins = center_bins
        self.apply(init_weights)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        b, n, d = features.shape
        w = n // 2
        profile = self.profile_mlp(features).squeeze(-1).view(b, 2, w).mean(dim=1)
        halves = features.view(b, 2, w, d).mean(dim=1)
        k = min(self.center_bins, w)
        start = max(0, w // 2 - k // 2)
        scalar = self.scalar_mlp(halves[:, start : start + k].mean(dim=1)).squeeze(-1)
        return {"profile": profile, "scalar": scalar}
