"""Checkpoint folders (``model.pt`` + ``card.json``), RNG capture, and the card-against-tiles check.

``model.pt`` holds state dicts (model, optimiser, scheduler), the step, epoch and data position, and
the RNG states of python / numpy / torch (+ CUDA) of every rank. ``card.json`` describes what the
model was trained on (geometry W/P/C, channel names, transforms, tile format version, cell lines,
assembly, resolution, losses); anything that loads a checkpoint checks the card against its tiles
first (:func:`load_checkpoint` with ``expected_*``), so a model is never fed data shaped or
transformed another way.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hicmix.atomic import atomic_dir
from hicmix.errors import InputError

MODEL_FILE = "model.pt"
CARD_FILE = "card.json"
CHECKPOINT_FORMAT = "hicmix-checkpoint"
CHECKPOINT_VERSION = 1
#: Intermediate checkpoints live in ``<out>/checkpoints/step-XXXXXXXX``.
CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d{8})$")

GEOMETRY_FIELDS = ("window_bins", "positions_per_bin", "n_channels")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, its card and the content of ``model.pt``."""

    path: Path
    card: dict[str, Any]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


# --- RNG states --------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch, CUDA (``torch.load(weights_only=True)`` reads them)."""
    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [key, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    key, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((key, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- writing and finding -----------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_checkpoint(path: str | Path, state: dict[str, Any], card: dict[str, Any]) -> Path:
    """Write the checkpoint folder ``path`` atomically (complete or absent)."""
    card = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **card}
    with atomic_dir(path) as tmp:
        torch.save(state, tmp / MODEL_FILE)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    return Path(path)


def step_dir(root: str | Path, step: int) -> Path:
    """``<root>/checkpoints/step-XXXXXXXX``."""
    return Path(root) / CHECKPOINTS_DIR / f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete intermediate checkpoints under ``<root>/checkpoints``, oldest first."""
    folder = Path(root) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if _STEP_DIR.match(p.name) and (p / MODEL_FILE).is_file() and (p / CARD_FILE).is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``<root>/checkpoints``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest intermediate checkpoints (``keep`` ≤ 0 keeps all)."""
    if keep <= 0:
        return
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# --- reading and checking ----------------------------------------------------------------------


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of checkpoint folder ``path``; InputError when absent or unreadable."""
    card_path = Path(path) / CARD_FILE
    if not card_path.is_file():
        raise InputError(
            f"checkpoint {path} has no {CARD_FILE}; point to a folder written by `hicmix pretrain`"
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            f"checkpoint card {card_path} is unreadable ({err}); re-run the training"
        ) from None
    if card.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"{card_path} is not a hicmix checkpoint card; point to a folder written by "
            "`hicmix pretrain`"
        )
    return card


def _geometry_dict(geometry: Any) -> dict[str, int]:
    if isinstance(geometry, Mapping):
        return {k: int(geometry[k]) for k in GEOMETRY_FIELDS if k in geometry}
    if isinstance(geometry, Sequence):
        return dict(zip(GEOMETRY_FIELDS, (int(v) for v in geometry), strict=True))
    return {k: int(getattr(geometry, k)) for k in GEOMETRY_FIELDS}


def card_mismatches(
    card: Mapping[str, Any],
    expected_geometry: Any = None,
    expected_channels: Sequence[str] | None = None,
    expected_transforms: Mapping[str, Any] | None = None,
) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint value, expected value) for every field of the card that differs."""
    found: list[tuple[str, Any, Any]] = []
    if expected_geometry is not None:
        have = card.get("geometry", {})
        for field, value in _geometry_dict(expected_geometry).items():
            if have.get(field) != value:
                found.append((field, have.get(field), value))
    if expected_channels is not None and list(card.get("channels", [])) != list(expected_channels):
        found.append(("channels", card.get("channels"), list(expected_channels)))
    if expected_transforms is not None:
        have = card.get("transforms", {})
        for field, value in expected_transforms.items():
            if have.get(field) != value:
                found.append((field, have.get(field), value))
    return found


def check_card(
    path: str | Path,
    card: Mapping[str, Any],
    expected_geometry: Any = None,
    expected_channels: Sequence[str] | None = None,
    expected_transforms: Mapping[str, Any] | None = None,
) -> None:
    """Raise one InputError naming the checkpoint and every mismatching field with both values."""
    mismatches = card_mismatches(card, expected_geometry, expected_channels, expected_transforms)
    if not mismatches:
        return
    details = ", ".join(
        f"{field} is {have!r} in the checkpoint but {want!r} in the tiles"
        for field, have, want in mismatches
    )
    raise InputError(
        f"checkpoint {path} does not fit these tiles: {details}; use tiles built with the "
        "checkpoint's settings or a checkpoint pre-trained on tiles like these"
    )


def load_checkpoint(
    path: str | Path,
    *,
    expected_geometry: Any = None,
    expected_channels: Sequence[str] | None = None,
    expected_transforms: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Load checkpoint ``path`` after checking its card (geometry, channels, transforms).

    ``expected_geometry`` is a ``ModelGeometry``, a mapping with keys window_bins /
    positions_per_bin / n_channels, or a (W, P, C) tuple; ``expected_transforms`` a mapping such as
    ``{"hic_transform": "clip_scale", "hic_clip": 255.0, "track_transform": "log2p1"}`` (see
    :func:`expected_from_manifest`). Any mismatch raises one InputError before ``model.pt`` is read.
    """
    path = Path(path)
    card = read_card(path)
    check_card(path, card, expected_geometry, expected_channels, expected_transforms)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise InputError(f"checkpoint {path} has no {MODEL_FILE}; re-run the training")
    try:
        state = torch.load(model_path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise InputError(
            f"checkpoint {model_path} is unreadable ({type(err).__name__}); delete it and re-run "
            "the training"
        ) from None
    return Checkpoint(path=path, card=card, state=state)


# --- what the tiles say ------------------------------------------------------------------------

#: Manifest keys describing the transforms; compared between tiles and checkpoint card.
TRANSFORM_KEYS = ("hic_transform", "hic_clip", "track_transform")


def transforms_from_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The transform description stored in cards, from a tile manifest."""
    out: dict[str, Any] = {}
    for key in TRANSFORM_KEYS:
        if key in manifest:
            out[key] = manifest[key]
    params = manifest.get("hic_transform_params")
    if isinstance(params, Mapping) and "clip" in params and "hic_clip" not in out:
        out["hic_clip"] = params["clip"]
    if out.get("hic_transform") != "clip_scale":
        out.pop("hic_clip", None)
    if "hic_clip" in out:
        out["hic_clip"] = float(out["hic_clip"])
    return out


def expected_from_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``expected_geometry`` / ``expected_channels`` / ``expected_transforms`` keyword arguments for
    :func:`load_checkpoint`, from a tile manifest (``hicmix.tiles.load_manifest``)."""
    return {
        "expected_geometry": {
            "window_bins": int(manifest["window_bins"]),
            "positions_per_bin": int(manifest["positions_per_bin"]),
            "n_channels": len(manifest["channels"]),
        },
        "expected_channels": list(manifest["channels"]),
        "expected_transforms": transforms_from_manifest(manifest),
    }


def load_checkpoint_for_tiles(
    path: str | Path, tile_dir: str | Path, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """:func:`load_checkpoint` checked against the manifest of ``tile_dir``."""
    from hicmix.tiles import load_manifest

    return load_checkpoint(
        path, map_location=map_location, **expected_from_manifest(load_manifest(tile_dir))
    )
