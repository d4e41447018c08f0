"""Cross-modal interaction: shared and specific projections, InfoNCE, orthogonality loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hicmix.model.layers import full_precision, init_weights, l2_normalize


class Temperature(nn.Module):
    """Learnable InfoNCE temperature τ, used as a divisor and clamped to [low, high] in ``forward``.

    The clamp in ``forward`` bounds the value the loss sees; ``clamp_()`` (call it after each
    optimiser step) keeps the parameter itself inside the range so its gradient never dies at a
    bound. Keep τ out of weight decay (``parameter_groups`` does).
    """

    def __init__(self, init: float = 0.07, low: float = 0.001, high: float = 0.5) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.value = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> torch.Tensor:
        return self.value.clamp(self.low, self.high)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.value.clamp_(self.low, self.high)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch: logits = a·bᵀ / τ, positives on the diagonal, float32."""
    with full_precision(a):
        logits = a.float() @ b.float().T / temperature.float()
        labels = torch.arange(a.shape[0], device=a.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def orthogonality_loss(
    track_shared: torch.Tensor,
    track_specific: torch.Tensor,
    hic_shared: torch.Tensor,
    hic_specific: torch.Tensor,
) -> torch.Tensor:
    """Batch mean of ⟨S_E, I_E⟩² + ⟨S_M, I_M⟩² on token-mean features (B, d), float32."""
    with full_precision(track_shared):
        dot_e = (track_shared.float() * track_specific.float()).sum(-1)
        dot_m = (hic_shared.float() * hic_specific.float()).sum(-1)
        return (dot_e.square() + dot_m.square()).mean()


class InteractionBlock(nn.Module):
    """Per modality a shared and a specific Linear(8E → 4E), each token L2-normalised.

    ``concat`` = [shared, specific] per token (width 8E, norm √2): the space the mapping block works
    in. The pre-training losses use token means of the normalised features, not re-normalised (as
    MIX-HIC).
    """

    def __init__(self, dim: int, tau_init: float, tau_min: float, tau_max: float) -> None:
        super().__init__()
        half = dim // 2
        self.track_shared = nn.Linear(dim, half)
        self.track_specific = nn.Linear(dim, half)
        self.hic_shared = nn.Linear(dim, half)
        self.hic_specific = nn.Linear(dim, half)
        self.temperature = Temperature(tau_init, tau_min, tau_max)
        self.apply(init_weights)

    @staticmethod
    def _project(
        x: torch.Tensor, shared: nn.Linear, specific: nn.Linear
    ) -> dict[str, torch.Tensor]:
        s, i = l2_normalize(shared(x)), l2_normalize(specific(x))
        return {"shared": s, "specific": i, "concat": torch.cat([s, i], dim=-1)}

    def project_tracks(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Track tokens (B, Lt, 8E) → shared, specific (B, Lt, 4E) and concat (B, Lt, 8E)."""
        return self._project(tokens, self.track_shared, self.track_specific)

    def project_hic(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hi-C tokens (B, Lh, 8E) → shared, specific (B, Lh, 4E) and concat (B, Lh, 8E)."""
        return self._project(tokens, self.hic_shared, self.hic_specific)

    def forward(
        self, track_tokens: torch.Tensor | None = None, hic_tokens: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Features of the modalities given, keys ``{track,hic}_{shared,specific,concat}``."""
        out: dict[str, torch.Tensor] = {}
        if track_tokens is not None:
            out |= {f"track_{k}": v for k, v in self.project_tracks(track_tokens).items()}
        if hic_tokens is not None:
            out |= {f"hic_{k}": v for k, v in self.project_hic(hic_tokens).items()}
        return out

    def losses(
        self,
        features: dict[str, torch.Tensor],
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Contrastive and orthogonality losses (float32) plus the detached temperature.

        ``gather`` (e.g. an all-gather with gradient across ranks) is applied to the token-mean
        shared features before InfoNCE, so the negatives come from the global batch.
        """
        means = {k: v.mean(dim=1) for k, v in features.items() if not k.endswith("concat")}
        tracks, hic = means["track_shared"], means["hic_shared"]
        if gather is not None:
            tracks, hic = gather(tracks), gather(hic)
        tau = self.temperature()
        return {
            "contrastive": info_nce(tracks, hic, tau),
            "orthogonality": orthogonality_loss(
                means["track_shared"],
                means["track_specific"],
                means["hic_shared"],
                means["hic_specific"],
            ),
            "temperature": tau.detach().float(),
        }
