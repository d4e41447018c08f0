"""Fine-tuned models for prediction: loading without tiles, card checks, batched inference."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from hicmix.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: Card fields that every model of one predict run must share (one set of track arrays).
SHARED_FIELDS = ("resolution", "subbin_bp", "channels", "track_transform", "assembly")
#: Loop distance range used when neither the card nor its tiles say (the tiles defaults).
DEFAULT_LOOP_RANGE_BP = (20_000, 2_000_000)
DEFAULT_THRESHOLD = 0.5


@dataclass
class LoadedModel:
    """A fine-tuned model (eval mode) with its card and checkpoint folder."""

    path: Path
    model: nn.Module
    card: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.card["task"])

    @property
    def window(self) -> int:
        return int(self.card["geometry"]["window_bins"])

    @property
    def positions(self) -> int:
        return int(self.card["geometry"]["positions_per_bin"])

    @property
    def resolution(self) -> int:
        return int(self.card["resolution"])

    @property
    def channels(self) -> list[str]:
        return list(self.card["channels"])


def card_value(card: Mapping[str, Any], name: str) -> Any:
    """A shared field of a card (``track_transform`` lives under ``transforms``)."""
    if name in ("track_transform", "hic_transform", "hic_clip"):
        return card.get("transforms", {}).get(name)
    return card.get(name)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A fine-tuned model from its checkpoint folder (model.pt + card.json), no tiles needed.

    The card alone describes what the model expects; :func:`check_tracks` checks the inputs
    against it. (:func:`hicmix.finetune.load_finetuned` needs a tile folder to check against.)
    """
    from hicmix.model import MixHiC, ModelConfig, ModelGeometry
    from hicmix.training.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"model folder {path} not found; pass the model/ folder of hicmix finetune"
        )
    ckpt = load_checkpoint(path)
    card = ckpt.card
    if "task" not in card:
        raise InputError(
            f"checkpoint {path} is not a fine-tuned model (no task in its card); point --model to "
            "the model/ folder written by `hicmix finetune`"
        )
    model = MixHiC(
        ModelGeometry(**card["geometry"]),
        ModelConfig.from_dict(card["model_config"]),
        hic_transform=card["transforms"]["hic_transform"],
        tasks=(card["task"],),
    )
    model.load_state_dict(ckpt.state["model"])
    device = torch.device(device) if isinstance(device, str) else device
    return LoadedModel(path, model.to(device).eval(), card)


def check_models_compatible(models: Sequence[LoadedModel]) -> None:
    """InputError when two models would need different track inputs or do the same task."""
    seen: dict[str, Path] = {}
    for item in models:
        if item.task in seen:
            raise InputError(
                f"models {seen[item.task]} and {item.path} both do task {item.task}; pass one "
                "--model per task"
            )
        seen[item.task] = item.path
    first = models[0]
    for other in models[1:]:
        for name in SHARED_FIELDS:
            a, b = card_value(first.card, name), card_value(other.card, name)
            if a != b:
                raise InputError(
                    f"models {first.path} and {other.path} differ in {name} ({a!r} vs {b!r}); "
                    "predict with models trained on the same tiles settings, or run them one "
                    "at a time"
                )


def check_tracks(
    item: LoadedModel,
    given: Sequence[str],
    *,
    assembly: str | None = None,
    resolution: int | None = None,
    allow_missing: bool = False,
) -> list[str]:
    """Check the user's channels, assembly and resolution against the card; return the missing
    channels (allowed only for a model trained with channel dropout and ``allow_missing``).

    Every refusal names the field that differs (channels, assembly, resolution).
    """
    card, where = item.card, f"model {item.path}"
    if resolution is not None and int(resolution) != item.resolution:
        raise InputError(
            f"{where} was trained at resolution {item.resolution} bp but the inputs are at "
            f"{resolution} bp; predict at the card's resolution or use a model trained at yours"
        )
    trained_on = card.get("assembly")
    if assembly is not None and trained_on is not None:
        if str(assembly).lower() != str(trained_on).lower():
            raise InputError(
                f"{where} was trained on assembly {trained_on} but the tracks are on assembly "
                f"{assembly}; lift the tracks over to {trained_on} or use a model of {assembly}"
            )
    expected = item.channels
    extra = [c for c in given if c not in expected]
    if extra:
        raise InputError(
            f"{where} has no input channels {', '.join(extra)} (its channels, in order: "
            f"{', '.join(expected)}); drop those tracks or rename them to the card's channels"
        )
    present = [c for c in expected if c in given]
    if list(given) != present:
        raise InputError(
            f"{where} expects the channels in the order {', '.join(expected)} but the tracks "
            f"come in the order {', '.join(given)}; pass --track in the card's channel order"
        )
    missing = [c for c in expected if c not in given]
    if missing:
        dropout = float(card.get("channel_dropout") or 0.0)
        if dropout <= 0:
            raise InputError(
                f"{where} needs the channels {', '.join(missing)}, which are missing, and was not "
                "trained with channel dropout; supply those tracks or fine-tune with "
                "channel_dropout > 0"
            )
        if not allow_missing:
            raise InputError(
                f"channels {', '.join(missing)} of {where} are missing; the model was trained "
                f"with channel dropout {dropout:g}, so pass --allow-missing-channels to zero-fill "
                "them"
            )
        log.warning("channels %s are missing: zero-filled (channel dropout %g)", missing, dropout)
    return missing


def resolve_mode(item: LoadedModel, with_hic: bool) -> str:
    """Inference mode: hicmap always tracks_only; others the card's mode when Hi-C is given
    (bimodal / hic_only), else tracks_only (Hi-C imputed from the tracks)."""
    trained = str(item.card.get("mode", "bimodal"))
    if item.task == "hicmap":
        return "tracks_only"
    if trained == "hic_only" and not with_hic:
        raise InputError(
            f"model {item.path} was fine-tuned in mode hic_only, so it needs Hi-C; pass --hic"
        )
    if with_hic and trained in ("bimodal", "hic_only"):
        return trained
    if trained == "bimodal":
        log.info("model %s (bimodal) runs tracks_only: Hi-C imputed from the tracks", item.path)
    return "tracks_only"


def _tile_options(card: Mapping[str, Any]) -> dict[str, Any]:
    """The tile options of the card's first tile folder, when it is still readable."""
    for folder in card.get("tile_dirs") or []:
        path = Path(folder) / "manifest.json"
        if path.is_file():
            try:
                return dict(json.loads(path.read_text()).get("options") or {})
            except (OSError, json.JSONDecodeError):
                return {}
    return {}


_RANGE_KEYS = ("loop_min_bp", "loop_max_bp")


def loop_range_bp(
    card: Mapping[str, Any], min_bp: int | None = None, max_bp: int | None = None
) -> tuple[int, int, str]:
    """(min, max) loop anchor distance in bp and where it came from.

    Each bound: the argument; else the card (``loop_min_bp`` / ``loop_max_bp``); else the options in
    the manifest of the card's training tiles (when still on disk); else the tiles defaults
    (20 kb - 2 Mb).
    """
    from_card = {k: card[k] for k in _RANGE_KEYS if card.get(k) is not None}
    from_tiles = {k: v for k, v in _tile_options(card).items() if k in _RANGE_KEYS}
    if len(from_card) == 2:
        base, source = from_card, "card"
    elif len(from_tiles) == 2:
        base, source = from_tiles, "training tiles manifest"
    else:
        base = dict(zip(_RANGE_KEYS, DEFAULT_LOOP_RANGE_BP, strict=True))
        source = "tiles defaults (not in the card)"
    if min_bp is not None and max_bp is not None:
        source = "arguments"
    lo = int(base["loop_min_bp"] if min_bp is None else min_bp)
    hi = int(base["loop_max_bp"] if max_bp is None else max_bp)
    if lo > hi or lo < 0:
        raise ConfigError(f"loop distance range {lo}-{hi} bp is empty; set 0 <= min <= max")
    return lo, hi, source


def loop_threshold(card: Mapping[str, Any], threshold: float | None = None) -> tuple[float, str]:
    """The score threshold for calls: the argument, else the card's validation-selected one
    (``loop_threshold``, ``threshold`` or ``metrics.val.threshold``), else 0.5."""
    if threshold is not None:
        return float(threshold), "arguments"
    for value in (
        card.get("loop_threshold"),
        card.get("threshold"),
        (card.get("metrics") or {}).get("val", {}).get("threshold"),
    ):
        if value is not None and math.isfinite(float(value)):
            return float(value), "card"
    return DEFAULT_THRESHOLD, "default (no validation-selected threshold in the card)"


def training_hic_scale(card: Mapping[str, Any]) -> float | None:
    """The training tiles' balancing scale (card ``hic_scale`` or the tile manifests), if known."""
    if card.get("hic_scale") is not None:
        return float(card["hic_scale"])
    scales = []
    for folder in card.get("tile_dirs") or []:
        path = Path(folder) / "manifest.json"
        if path.is_file():
            try:
                scale = json.loads(path.read_text()).get("hic_scale")
            except (OSError, json.JSONDecodeError):
                continue
            if scale is not None:
                scales.append(float(scale))
    return float(np.mean(scales)) if scales else None


# --------------------------------------------------------------------------------------------------
# inputs


def tracks_from_sheet(
    sheet: str | Path, cell_line: str, channels: Sequence[str] | None = None
) -> dict[str, str]:
    """{channel: bigWig path} of one cell line from a tracks sheet (config/tracks.tsv layout).

    The channel is the assay plus a strand suffix (CAGE_plus); the source must be a local path
    (or file:// URL). With ``channels`` the result follows their order and leaves out the rest.
    """
    from hicmix.config import STRAND_SUFFIX, local_path

    sheet = Path(sheet)
    if not sheet.is_file():
        raise InputError(f"{sheet}: tracks sheet not found; check --tracks-sheet")
    table = pd.read_csv(sheet, sep="\t", dtype=str, comment=None).fillna("")
    needed = {"cell_line", "assay", "source"}
    if not needed <= set(table.columns):
        raise InputError(
            f"{sheet}: tracks sheet lacks column(s) {', '.join(sorted(needed - set(table)))}; "
            "use the config/tracks.tsv layout"
        )
    mine = table[table["cell_line"] == cell_line]
    if mine.empty:
        found = ", ".join(sorted(set(table["cell_line"])))
        raise InputError(f"{sheet}: no track rows for cell line {cell_line} (it has {found})")
    strand = mine["strand"] if "strand" in mine else pd.Series(".", index=mine.index)
    tracks: dict[str, str] = {}
    for assay, mark, source in zip(mine["assay"], strand, mine["source"], strict=True):
        path = local_path(source)
        if path is None:
            raise InputError(
                f"{sheet}: track {assay} of {cell_line} is a remote source ({source}); run "
                "`hicmix download` first and point the sheet at the local file"
            )
        tracks[assay + STRAND_SUFFIX.get(mark or ".", "")] = path
    if channels is not None:
        tracks = {c: tracks[c] for c in channels if c in tracks}
    return tracks


def read_track_bins(
    tracks: Mapping[str, str | Path],
    channels: Sequence[str],
    chrom: str,
    length: int,
    n_bins: int,
    resolution: int,
    positions: int,
    transform: str,
) -> np.ndarray:
    """(C, n_bins * P) transformed sub-bin means in the card's channel order; missing channels
    are zero (= the transformed value of no signal, what channel dropout feeds in training)."""
    from hicmix.tiles import _read_track_bins

    present = [c for c in channels if c in tracks]
    ctx = SimpleNamespace(
        resolution=resolution,
        positions=positions,
        track_paths=[str(tracks[c]) for c in present],
        track_transform=transform,
    )
    values = _read_track_bins(ctx, chrom, length, n_bins)
    if len(present) == len(channels):
        return values
    out = np.zeros((len(channels), values.shape[1]), dtype=np.float32)
    for row, name in enumerate(present):
        out[channels.index(name)] = values[row]
    return out


def cut_tracks(
    track_bins: np.ndarray, start_x: np.ndarray, start_y: np.ndarray, window: int, positions: int
) -> np.ndarray:
    """(N, C, 2·W·P) sample tracks (tile layout) by fancy indexing the chromosome's sub-bins."""
    offsets = np.arange(window * positions)
    rows = track_bins[:, np.asarray(start_x)[:, None] * positions + offsets]
    cols = track_bins[:, np.asarray(start_y)[:, None] * positions + offsets]
    return np.ascontiguousarray(np.concatenate([rows, cols], axis=2).transpose(1, 0, 2))


# --------------------------------------------------------------------------------------------------
# inference


def resolve_device(device: str) -> torch.device:
    """auto → CUDA when visible, else CPU; cuda without a GPU is a ConfigError."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible; use cpu")
    return torch.device("cuda", 0) if device != "cpu" and cuda else torch.device("cpu")


class Runner:
    """Runs one model on numpy batches (inference mode; bf16 autocast on CUDA)."""

    def __init__(self, item: LoadedModel, mode: str, device: torch.device) -> None:
        from hicmix.finetune import resolve_precision

        self.item, self.mode, self.device = item, mode, device
        self.dtype = resolve_precision("auto", device)

    @torch.inference_mode()
    def __call__(
        self,
        tracks: np.ndarray,
        distance: np.ndarray,
        hic: np.ndarray | None = None,
        tss: Mapping[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Task outputs of one batch; ``tss`` (tss_position, strand per sample) lets an expression
        model read the exact TSS, as in its training tiles."""
        batch = {"distance": torch.from_numpy(np.asarray(distance, dtype=np.int64))}
        for key, values in (tss or {}).items():
            batch[key] = torch.from_numpy(np.asarray(values, dtype=np.int64))
        if self.mode != "hic_only":
            batch["tracks"] = torch.from_numpy(tracks)
        if self.mode != "tracks_only":
            if hic is None:
                raise ValueError(f"mode {self.mode} needs Hi-C patches")
            batch["hic"] = torch.from_numpy(hic[:, None])
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.dtype is None:
            out = self.item.model.forward_task(batch, self.item.task, self.mode)
        else:
            with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                out = self.item.model.forward_task(batch, self.item.task, self.mode)
        return {k: v.float().cpu().numpy() for k, v in out.items()}
