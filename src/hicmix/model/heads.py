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


def _sync_standardised(module: nn.Module, incompatible_keys: object) -> None:
    """After load_state_dict: the Python flag follows the loaded ``standardised`` buffer."""
    module.is_standardised = bool(module.standardised)


class HicMapHead(nn.Module):
    """Decoder features (B, 2W, 2E) → Hi-C map (B, 1, W, W).

    u = row-anchor half, v = column-anchor half; F[i, j] = (u_i + v_j)/2 + u_i ⊙ v_j, then per pixel
    Linear(2E → hidden) → ReLU → Dropout → Linear(hidden → 1). For diagonal windows (distance 0) the
    pixel logits are symmetrised, (X + Xᵀ)/2, before the output step.

    Output step: by default the activation (sigmoid for clip_scale, identity for log1p_oe). After
    :meth:`set_diagonal_standardisation` the pixel values are per-diagonal z-scores instead, and the
    map is ``mean[s] + sd[s] · z`` with s = |distance + j - i| the pixel's genomic diagonal (capped
    at W - 1): the head then predicts the deviation from the training distance decay, which is what
    the per-distance Pearson scores, instead of a near-constant decay. In eval mode a sigmoid head's
    map is clamped to [0, 1], the clip_scale range. The statistics are buffers, so they travel with
    the checkpoint.
    """

    def __init__(
        self, dim: int, hidden: int, dropout: float, activation: str, window: int = 1
    ) -> None:
        super().__init__()
        self.mlp = _mlp(dim, hidden, dropout)
        self.apply(init_weights)
        self.activation = activation
        self.register_buffer("diag_mean", torch.zeros(window))
        self.register_buffer("diag_sd", torch.ones(window))
        self.register_buffer("standardised", torch.tensor(False))
        self.is_standardised = False  # mirrors the buffer (no .item() in forward: meta-safe)
        self.register_load_state_dict_post_hook(_sync_standardised)

    def set_diagonal_standardisation(self, mean: torch.Tensor, sd: torch.Tensor) -> None:
        """Predict per-diagonal z-scores de-standardised with ``mean``/``sd`` (W,) per diagonal."""
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        sd = torch.as_tensor(sd, dtype=torch.float32).flatten()
        if mean.shape != self.diag_mean.shape or sd.shape != self.diag_sd.shape:
            raise ValueError(
                f"diagonal statistics need {self.diag_mean.numel()} values, got "
                f"{mean.numel()} and {sd.numel()}"
            )
        if not bool(torch.isfinite(mean).all()) or not bool((sd > 0).all()):
            raise ValueError("diagonal statistics must be finite with sd > 0")
        self.diag_mean.copy_(mean)
        self.diag_sd.copy_(sd)
        self.standardised.fill_(True)
        self.is_standardised = True

    def _diagonal_index(self, distance: torch.Tensor, w: int) -> torch.Tensor:
        offsets = torch.arange(w, device=distance.device)
        diag = distance.view(-1, 1, 1) + offsets.view(1, 1, -1) - offsets.view(1, -1, 1)
        return diag.abs().clamp_max(self.diag_mean.numel() - 1)

    def forward(self, features: torch.Tensor, distance: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"map": (B, 1, W, W)}; standardised heads add "map_scale" (the per-pixel sd)."""
        w = features.shape[1] // 2
        u, v = features[:, :w, None, :], features[:, None, w:, :]
        out = self.mlp((u + v) * 0.5 + u * v).squeeze(-1)  # (B, W, W)
        symmetric = 0.5 * (out + out.transpose(1, 2))
        out = torch.where((distance == 0)[:, None, None], symmetric, out)
        if self.is_standardised:
            diag = self._diagonal_index(distance, w)
            scale = self.diag_sd[diag]
            out = self.diag_mean[diag] + scale * out.float()
            if self.activation == "sigmoid" and not self.training:
                out = out.clamp(0.0, 1.0)  # the range of clip_scale values
            return {"map": out.unsqueeze(1), "map_scale": scale.unsqueeze(1)}
        if self.activation == "sigmoid":
            out = torch.sigmoid(out)
        return {"map": out.unsqueeze(1)}


def _zero_missing_tss_out(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """Before load_state_dict: an older checkpoint of this branch (``conv`` and ``out`` without
    ``tss_out``) gets ``tss_out`` as zeros; a state without the branch (pre-trained parts) is left
    alone."""
    if f"{prefix}conv.weight" not in state_dict:
        return
    for name, param in module.tss_out.named_parameters():
        state_dict.setdefault(f"{prefix}tss_out.{name}", torch.zeros_like(param))


class TssTrackBranch(nn.Module):
    """Raw tracks around the TSS → (B, hidden): the sub-bin detail the encoder pools away.

    Bin level (always): the ``bins`` bins centred on bin W // 2 of the row-anchor half (P positions
    each; the TSS lies somewhere in bin W // 2) → Conv1d(C → hidden, k5) → ReLU → [max, mean] over
    positions → Linear(2·hidden → hidden).

    Exact TSS (for samples with ``strand`` ±1 and ``position``, the TSS's sub-bin in the row-anchor
    half): the ``2·(P//2) + 1`` positions centred on the TSS (± half a bin: ± 5 kb at 10 kb bins;
    zeros past the window edges), read in transcription direction (reversed for minus-strand
    genes) → the same Conv1d → ReLU → average pool to ``segments`` position-aware segments →
    Linear(hidden·segments → hidden), added to the bin-level term. Samples without a strand (0),
    or batches without ``position``/``strand``, get the bin-level term only (the branch as before).
    A final ReLU. Checkpoints saved before the exact-TSS term load with it zeroed (same outputs).
    """

    def __init__(
        self, n_channels: int, window: int, positions: int, bins: int, hidden: int
    ) -> None:
        super().__init__()
        self.window, self.positions = window, positions
        self.bins = max(1, min(bins, window))
        self.flank = positions // 2
        self.segments = max(1, (2 * self.flank + 1) // 3)
        self.conv = nn.Conv1d(n_channels, hidden, 5, padding=2)
        self.out = nn.Linear(2 * hidden, hidden)
        self.tss_out = nn.Linear(hidden * self.segments, hidden)
        self.apply(init_weights)
        self.register_load_state_dict_pre_hook(_zero_missing_tss_out)

    def crop(
        self, tracks: torch.Tensor, position: torch.Tensor, strand: torch.Tensor
    ) -> torch.Tensor:
        """(B, C, 2·flank + 1): row-anchor positions position ± flank, reversed where strand < 0."""
        length = self.window * self.positions
        steps = torch.arange(-self.flank, self.flank + 1, device=tracks.device)
        sign = torch.where(strand < 0, -1, 1).to(steps.dtype)
        index = position.view(-1, 1).to(steps.dtype) + sign.view(-1, 1) * steps.view(1, -1)
        inside = (index >= 0) & (index < length)
        index = index.clamp(0, length - 1)
        gathered = tracks[..., :length].gather(
            -1, index[:, None, :].expand(-1, tracks.shape[1], -1)
        )
        return gathered * inside[:, None, :].to(tracks.dtype)

    def forward(
        self,
        tracks: torch.Tensor,
        position: torch.Tensor | None = None,
        strand: torch.Tensor | None = None,
    ) -> torch.Tensor:
        start = (self.window // 2 - self.bins // 2) * self.positions
        x = torch.relu(self.conv(tracks[..., start : start + self.bins * self.positions]))
        h = self.out(torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=-1))
        if position is not None and strand is not None:
            near = torch.relu(self.conv(self.crop(tracks, position, strand)))
            pooled = nn.functional.adaptive_avg_pool1d(near, self.segments).flatten(1)
            exact = (strand != 0).to(h.dtype).view(-1, 1)
            h = h + exact * self.tss_out(pooled)
        return torch.relu(h)


class ExpressionHead(nn.Module):
    """Decoder features (B, 2W, 2E) (+ raw tracks) → {"profile": (B, W), "scalar": (B,)}.

    profile: per-token Linear(2E → hidden) → ReLU → Linear(hidden → 1), averaged over the two
    (identical, diagonal-window) halves. scalar (per-gene TSS value): a dedicated MLP on
    [the half-averaged features pooled over ``center_bins`` bins centred on bin W // 2, where
    TSS-centred windows put the TSS; the mean over the whole window (context); the
    :class:`TssTrackBranch` of the raw tracks when ``tracks`` is given (zeros otherwise; with the
    exact TSS when ``tss_position`` and ``strand`` are given)], so the
    scalar target does not have to compete with the profile for one output. No activation.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        center_bins: int,
        n_channels: int = 1,
        window: int = 2,
        positions: int = 1,
    ) -> None:
        super().__init__()
        self.profile_mlp = _mlp(dim, hidden)
        self.branch = TssTrackBranch(n_channels, window, positions, center_bins, hidden)
        self.scalar_mlp = _mlp(2 * dim + hidden, hidden)
        self.center_bins, self.hidden = center_bins, hidden
        self.apply(init_weights)

    def forward(
        self,
        features: torch.Tensor,
        tracks: torch.Tensor | None = None,
        tss_position: torch.Tensor | None = None,
        strand: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        b, n, d = features.shape
        w = n // 2
        profile = self.profile_mlp(features).squeeze(-1).view(b, 2, w).mean(dim=1)
        halves = features.view(b, 2, w, d).mean(dim=1)
        k = min(self.center_bins, w)
        start = max(0, w // 2 - k // 2)
        parts = [halves[:, start : start + k].mean(dim=1), halves.mean(dim=1)]
        if tracks is None:
            parts.append(features.new_zeros(b, self.hidden))
        else:
            parts.append(self.branch(tracks.to(features.dtype), tss_position, strand))
        scalar = self.scalar_mlp(torch.cat(parts, dim=-1)).squeeze(-1)
        return {"profile": profile, "scalar": scalar}
