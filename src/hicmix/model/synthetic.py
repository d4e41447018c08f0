"""Synthetic paired tiles (tracks derived from the same latent activity as the Hi-C) for tests and
smoke runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hicmix.model.config import ModelGeometry


def synthetic_batch(
    geometry: ModelGeometry,
    batch_size: int,
    seed: int = 0,
    distance: torch.Tensor | int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """A batch in the tile contract whose two modalities share information.

    Each sample has a smooth latent activity per bin for the row and column anchors (identical when
    the distance is 0). Hi-C = distance decay × (0.3 + activity_i · activity_j), in [0, 1]; track
    channel c = activity^(c+1) repeated over the P positions of each bin, plus noise.
    """
    w, p, c = geometry.window_bins, geometry.positions_per_bin, geometry.n_channels
    gen = torch.Generator().manual_seed(seed)
    dist = torch.as_tensor(distance, dtype=torch.int64).expand(batch_size).clone()
    raw = torch.rand(batch_size, 1, 2 * w + 4, generator=gen)
    activity = F.avg_pool1d(raw, 5, stride=1).squeeze(1)  # (B, 2W), smooth
    activity = torch.where((dist == 0)[:, None], activity[:, :w].repeat(1, 2), activity)
    rows, cols = activity[:, :w], activity[:, w:]
    offsets = torch.arange(w)[None, :] - torch.arange(w)[:, None]  # j - i
    separation = (dist[:, None, None] + offsets).abs().float()
    hic = (0.3 + rows[:, :, None] * cols[:, None, :]) / (1.0 + separation)
    hic = hic.clamp(0, 1).unsqueeze(1)
    powers = torch.arange(1, c + 1, dtype=torch.float32)[None, :, None]
    tracks = activity[:, None, :].pow(powers).repeat_interleave(p, dim=2)
    tracks = tracks + 0.05 * torch.randn(tracks.shape, generator=gen)
    start = torch.randint(w, 10_000, (batch_size,), generator=gen)
    batch = {
        "hic": hic,
        "hic_mask": torch.ones_like(hic),
        "tracks": tracks,
        "label": torch.zeros(batch_size),
        "distance": dist,
        "bins": torch.stack([start, start + dist], dim=1),
    }
    return {k: v.to(device) for k, v in batch.items()}
