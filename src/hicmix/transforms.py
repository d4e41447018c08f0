"""The one registry of Hi-C and track transforms.

Every dataset (pre-training, fine-tuning, evaluation, prediction) calls these functions, and the
transform names are written into every shard and checkpoint, so a model is never fed data
transformed another way (MIX-HIC defect D3).
"""

from __future__ import annotations

import numpy as np

from hicmix.errors import ConfigError

HIC_TRANSFORMS = ("clip_scale", "log1p_oe")
TRACK_TRANSFORMS = ("log2p1", "identity")


def check_hic_transform(name: str) -> str:
    if name not in HIC_TRANSFORMS:
        raise ConfigError(
            f"unknown Hi-C transform {name!r}; "
            f"set hic_transform to one of {', '.join(HIC_TRANSFORMS)}"
        )
    return name


def check_track_transform(name: str) -> str:
    if name not in TRACK_TRANSFORMS:
        raise ConfigError(
            f"unknown track transform {name!r}; set track_transform to one of "
            f"{', '.join(TRACK_TRANSFORMS)}"
        )
    return name


def clip_scale(balanced: np.ndarray, clip: float, scale: float = 1.0) -> np.ndarray:
    """MIX-HIC's transform: balanced values back in count-like units (× ``scale``), clipped, scaled
    to [0, 1].

    ``scale`` is the ICE marginal that cooler divides out (the weight column's ``scale``
    attribute), so that
    a clip at 255 means what it means on KR-normalised counts. NaN stays NaN.
    """
    values = np.asarray(balanced, dtype=np.float32) * np.float32(scale)
    return np.minimum(values, np.float32(clip)) / np.float32(clip)


def log1p_oe(balanced: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """log(1 + observed / expected), ``expected`` broadcast to the shape of ``balanced`` (same
    diagonal).
    """
    expected = np.asarray(expected, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected > 0, np.asarray(balanced, dtype=np.float32) / expected, np.nan)
    return np.log1p(ratio).astype(np.float32)


def expected_for_patches(
    expected_by_diag: np.ndarray, row_starts: np.ndarray, col_starts: np.ndarray, size: int
) -> np.ndarray:
    """Expected value of every pixel of (N, size, size) patches from the per-diagonal expected
    curve.

    Diagonals beyond the curve take its last value.
    """
    offsets = np.arange(size)
    rows = np.asarray(row_starts)[:, None, None] + offsets[None, :, None]
    cols = np.asarray(col_starts)[:, None, None] + offsets[None, None, :]
    diagonals = np.minimum(np.abs(cols - rows), len(expected_by_diag) - 1)
    return np.asarray(expected_by_diag, dtype=np.float32)[diagonals]


def transform_hic(
    name: str,
    balanced: np.ndarray,
    *,
    clip: float = 255.0,
    scale: float = 1.0,
    expected: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the named Hi-C transform to balanced values (``expected`` is per pixel, for
    ``log1p_oe``).
    """
    check_hic_transform(name)
    if name == "clip_scale":
        return clip_scale(balanced, clip, scale)
    if expected is None:
        raise ConfigError("hic_transform log1p_oe needs the expected contacts per diagonal")
    return log1p_oe(balanced, expected)


def transform_tracks(name: str, values: np.ndarray) -> np.ndarray:
    """Apply the named track transform (default ``log2p1``: log2(x + 1), negatives clipped to 0)."""
    check_track_transform(name)
    values = np.asarray(values, dtype=np.float32)
    if name == "identity":
        return values
    return np.log2(np.maximum(values, 0) + 1).astype(np.float32)
