"""Model geometry (from tile metadata) and model sizes (tiny / base / large)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hicmix.errors import ConfigError

#: Downsamplings (k4 s2 p1 convolutions) between the four encoder stages; fixed by the architecture.
N_DOWNSAMPLES = 3
#: Largest prime allowed in the track stem's max-pool factors (one pool per prime factor of P).
MAX_POOL_PRIME = 7
#: Hi-C encoder input modes (ModelConfig.hic_input).
HIC_INPUTS = ("diagonal_zscore", "raw")


def halve(n: int) -> int:
    """Length after Conv(k=4, s=2, p=1): floor((n + 2 - 4) / 2) + 1 = floor(n / 2)."""
    return (n - 2) // 2 + 1


def pool_factors(positions_per_bin: int) -> tuple[int, ...]:
    """Prime factors of P, ascending (50 → 2, 5, 5); their product is the stem's pooling."""
    if positions_per_bin < 1:
        raise ConfigError(
            f"positions_per_bin is {positions_per_bin}; it must be a positive integer"
        )
    factors, rest, p = [], positions_per_bin, 2
    while rest > 1:
        while rest % p == 0:
            factors.append(p)
            rest //= p
        p += 1
    if factors and max(factors) > MAX_POOL_PRIME:
        raise ConfigError(
            f"positions_per_bin {positions_per_bin} has the prime factor {max(factors)} > "
            f"{MAX_POOL_PRIME}, which the track stem cannot pool; choose subbin_bp so that "
            "resolution / subbin_bp factors into 2, 3, 5, 7 (e.g. 50)"
        )
    return tuple(factors)


@dataclass(frozen=True)
class ModelGeometry:
    """Tile geometry the model is built for; always read from tile metadata, never hard-coded.

    window_bins (W): Hi-C patch side; must be even (2×2 Hi-C patches) and ≥ 16 (three 2×
    downsamplings of the W/2 patch grid must leave at least one token). positions_per_bin (P): track
    positions per Hi-C bin, equal to the stem's pooling product. n_channels (C): number of track
    channels.
    """

    window_bins: int
    positions_per_bin: int
    n_channels: int

    def __post_init__(self) -> None:
        w = self.window_bins
        if w % 2:
            raise ConfigError(
                f"window_bins is {w}, but the Hi-C encoder cuts 2×2 patches; rebuild the tiles "
                "with an even window_bins"
            )
        if w < 16:
            raise ConfigError(
                f"window_bins is {w}, too small for three 2× downsamplings of the Hi-C patch grid; "
                "rebuild the tiles with window_bins ≥ 16"
            )
        if self.n_channels < 1:
            raise ConfigError(f"n_channels is {self.n_channels}; the tiles must hold ≥ 1 track")
        pool_factors(self.positions_per_bin)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ModelGeometry:
        """Geometry from a tile manifest (keys window_bins, positions_per_bin, channels)."""
        try:
            return cls(
                window_bins=int(manifest["window_bins"]),
                positions_per_bin=int(manifest["positions_per_bin"]),
                n_channels=len(manifest["channels"]),
            )
        except KeyError as err:
            raise ConfigError(
                f"tile manifest lacks {err.args[0]!r}; rebuild the tiles with `hicmix tiles`"
            ) from None

    @property
    def track_length(self) -> int:
        """Track positions per sample: 2·W·P (row-anchor half, then column-anchor half)."""
        return 2 * self.window_bins * self.positions_per_bin

    @property
    def track_token_lengths(self) -> tuple[int, ...]:
        """Track tokens per encoder stage: 2W, then halved three times (100, 50, 25, 12 at W=50)."""
        lengths = [2 * self.window_bins]
        for _ in range(N_DOWNSAMPLES):
            lengths.append(halve(lengths[-1]))
        return tuple(lengths)

    @property
    def hic_grid_sizes(self) -> tuple[int, ...]:
        """Hi-C token grid side per stage: W/2, halved three times (25, 12, 6, 3 at W=50)."""
        sizes = [self.window_bins // 2]
        for _ in range(N_DOWNSAMPLES):
            sizes.append(halve(sizes[-1]))
        return tuple(sizes)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and options of MixHiC (widths are E, 2E, 4E, 8E through the encoder stages)."""

    embed_dim: int = 128
    depth: int = 2  # transformer blocks per encoder stage (both encoders)
    bottleneck_depth: int = 2  # track-encoder blocks at 8E after the last downsampling
    n_heads: int = 4
    mlp_ratio: int = 2  # feed-forward width / model width (track, decoder, LeFF, fusion)
    dropout: float = 0.0  # inside encoders, fusion and decoder
    distance_buckets: int = (
        32  # bucket 0 = distance 0, then half-octave log2 buckets of |y - x| bins
    )
    fusion_depth: int = 2
    decoder_depth: int = 2  # transformer blocks per U-Net decoder level
    head_hidden: int = 32  # loop and Hi-C-map head hidden width
    head_dropout: float = 0.5
    expression_hidden: int = 128
    expression_center_bins: int = 3  # bins around W // 2 pooled for the per-gene expression scalar
    tau_init: float = 0.07
    tau_min: float = 0.001
    tau_max: float = 0.5
    mapping_squared: bool = False  # MIX-HIC code: plain (non-squared) L2 distance
    # Hi-C encoder input: "diagonal_zscore" standardises each diagonal of each window (removes the
    # distance decay, which otherwise saturates the input and makes every window embed alike);
    # "raw" feeds the transformed contacts as they are (MIX-HIC).
    hic_input: str = "diagonal_zscore"
    # Amplitude of the fixed sinusoidal track positions (1.0 = MIX-HIC-style unit table, which
    # swamps the track content at initialisation).
    track_position_scale: float = 0.02
    mapping_detach_target: bool = False  # MIX-HIC code: gradients reach both encoders

    def __post_init__(self) -> None:
        if self.embed_dim % self.n_heads:
            raise ConfigError(
                f"embed_dim {self.embed_dim} is not divisible by n_heads {self.n_heads}; "
                "set a multiple of n_heads"
            )
        if not self.tau_min <= self.tau_init <= self.tau_max:
            raise ConfigError(
                f"tau_init {self.tau_init} lies outside [tau_min, tau_max] = "
                f"[{self.tau_min}, {self.tau_max}]; move it inside"
            )
        if self.hic_input not in HIC_INPUTS:
            raise ConfigError(
                f"model hic_input is {self.hic_input!r}; use one of {', '.join(HIC_INPUTS)}"
            )
        for name in ("depth", "bottleneck_depth", "fusion_depth", "decoder_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model {name} is {getattr(self, name)}; it must be ≥ 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        return _build(cls, values, "model config")


MODEL_SIZES: dict[str, ModelConfig] = {
    # CPU tests: about 0.5 M parameters for the pre-training model at W=50, P=50, C=5.
    "tiny": ModelConfig(
        embed_dim=16,
        depth=1,
        bottleneck_depth=1,
        n_heads=2,
        fusion_depth=1,
        decoder_depth=1,
        head_hidden=16,
        expression_hidden=32,
    ),
    # Close to MIX-HIC's E=128 models (loops, Hi-C map), without the dead cross-attention.
    "base": ModelConfig(embed_dim=128),
    # MIX-HIC's E=256 model (CAGE).
    "large": ModelConfig(embed_dim=256),
}


def _build(cls: type, values: dict[str, Any], what: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown {what} key(s) {', '.join(unknown)}; use only {', '.join(sorted(known))}"
        )
    return cls(**values)


def model_config(size: str, **overrides: Any) -> ModelConfig:
    """The named size (tiny, base, large) with ``overrides`` applied (e.g. ``embed_dim=64``)."""
    if size not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {size!r}; use one of {', '.join(MODEL_SIZES)}")
    values = MODEL_SIZES[size].to_dict()
    values.update(overrides)
    return _build(ModelConfig, values, "model config")
