"""Cross-modal mapping: tracks → Hi-C and Hi-C → tracks in the interaction (concat) space."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hicmix.model.layers import full_precision, init_weights, l2_normalize


def pool_tokens(x: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Adaptive average pooling over tokens: (B, L, d) → (B, n_tokens, d); L < n upsamples."""
    return F.adaptive_avg_pool1d(x.transpose(1, 2), n_tokens).transpose(1, 2)


def mapping_distance(
    pred: torch.Tensor, target: torch.Tensor, squared: bool = False, detach_target: bool = False
) -> torch.Tensor:
    """Mean over batch and tokens of the per-token L2 distance (or its square), float32."""
    if detach_target:
        target = target.detach()
    with full_precision(pred):
        sq = (pred.float() - target.float()).square().sum(-1)
        return (sq if squared else torch.sqrt(sq + 1e-8)).mean()


class MappingBlock(nn.Module):
    """e2m and m2e: pool the source tokens to the target's token count, Linear(8E → 8E),
    L2-normalise.

    The token counts come from the inputs' shapes (12 → 9 and 9 → 12 at W=50). Targets are the
    other modality's concat features, L2-normalised per token. MIX-HIC's code variant is the
    default (plain L2 distance, target not detached); ``squared`` and ``detach_target`` switch to
    the paper's variants.
    """

    def __init__(self, dim: int, squared: bool = False, detach_target: bool = False) -> None:
        super().__init__()
        self.e2m = nn.Linear(dim, dim)
        self.m2e = nn.Linear(dim, dim)
        self.squared = squared
        self.detach_target = detach_target
        self.apply(init_weights)

    def tracks_to_hic(self, track_concat: torch.Tensor, n_hic_tokens: int) -> torch.Tensor:
        """(B, Lt, 8E) track concat → (B, Lh, 8E) imputed Hi-C features, unit norm per token."""
        return l2_normalize(self.e2m(pool_tokens(track_concat, n_hic_tokens)))

    def hic_to_tracks(self, hic_concat: torch.Tensor, n_track_tokens: int) -> torch.Tensor:
        """(B, Lh, 8E) Hi-C concat → (B, Lt, 8E) imputed track features, unit norm per token."""
        return l2_normalize(self.m2e(pool_tokens(hic_concat, n_track_tokens)))

    def loss(self, track_concat: torch.Tensor, hic_concat: torch.Tensor) -> torch.Tensor:
        """½ (d(e2m(tracks), n(Hi-C)) + d(m2e(Hi-C), n(tracks))), float32."""
        to_hic = self.tracks_to_hic(track_concat, hic_concat.shape[1])
        to_tracks = self.hic_to_tracks(hic_concat, track_concat.shape[1])
        d_hic = mapping_distance(to_hic, l2_normalize(hic_concat), self.squared, self.detach_target)
        d_tracks = mapping_distance(
            to_tracks, l2_normalize(track_concat), self.squared, self.detach_target
        )
        return 0.5 * (d_hic + d_tracks)
