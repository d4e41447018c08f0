"""Model cards: render a checkpoint's card.json as MODEL_CARD.md (with its test metrics)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hicmix.atomic import atomic_path

MODEL_CARD_FILE = "MODEL_CARD.md"
_PER_DISTANCE = re.compile(r"^pearson_d\d+$")


def _fmt(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "none"
    return str(value)


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value).replace('|', '/')} |" for name, value in rows]
    return lines


def _training_rows(card: Mapping[str, Any]) -> list[tuple[str, Any]]:
    geometry = card.get("geometry", {})
    transforms = card.get("transforms", {})
    res, w = card.get("resolution"), geometry.get("window_bins")
    channels = card.get("channels") or []
    hic = transforms.get("hic_transform")
    if hic == "clip_scale":
        hic = f"clip_scale (clip {transforms.get('hic_clip')})"
    dropout = float(card.get("channel_dropout") or 0.0)
    return [
        ("training cell lines", card.get("cell_lines")),
        ("assembly", card.get("assembly")),
        ("resolution", None if res is None else f"{int(res):,} bp"),
        (
            "window",
            None if w is None else f"{w} bins ({int(w) * int(res or 0):,} bp)",
        ),
        (
            "track sub-bin",
            f"{card.get('subbin_bp')} bp ({geometry.get('positions_per_bin')} positions per bin)",
        ),
        ("channels, in order", [f"{k + 1}. {c}" for k, c in enumerate(channels)]),
        ("Hi-C transform", hic),
        ("track transform", transforms.get("track_transform")),
        ("tile format version", card.get("tile_format_version")),
        ("tile splits", card.get("tile_splits")),
        (
            "channel dropout",
            f"{dropout:g}"
            + (
                " (missing channels may be zero-filled with --allow-missing-channels)"
                if dropout > 0
                else " (every channel is required)"
            ),
        ),
        ("label standardisation", card.get("label_standardisation")),
        (
            "training samples (train / val)",
            [card.get("n_train_samples"), card.get("n_val_samples")],
        ),
    ]


def _model_rows(card: Mapping[str, Any]) -> list[tuple[str, Any]]:
    config = card.get("model_config") or {}
    val = (card.get("metrics") or {}).get("val", {})
    selection = card.get("selection_metric")
    return [
        ("task", card.get("task")),
        ("mode", card.get("mode")),
        ("method", card.get("method")),
        ("variant", card.get("variant")),
        ("pre-trained checkpoint", card.get("pretrained") or "none (NonPre)"),
        ("model size", f"{card.get('size')} (embed_dim {config.get('embed_dim')})"),
        ("seed", card.get("seed")),
        (
            "selected epoch",
            f"{card.get('epoch')} by validation {selection} = {_fmt(val.get(selection))}",
        ),
        ("device / precision", f"{card.get('device')} / {card.get('precision')}"),
        ("hicmix version", card.get("hicmix_version")),
    ]


def metrics_frame(card: Mapping[str, Any], metrics_tsv: str | Path) -> pd.DataFrame:
    """The test rows of the card's method and task in a metrics table."""
    from hicmix.evaluate import read_metrics

    table = read_metrics(metrics_tsv)
    return table[
        (table["method"] == card.get("method"))
        & (table["task"] == card.get("task"))
        & (table["split"] == "test")
    ].reset_index(drop=True)


def _metric_lines(card: Mapping[str, Any], metrics_tsv: str | Path | None) -> list[str]:
    if metrics_tsv is None:
        return ["No metrics table was given (write_model_card(..., metrics_tsv=...))."]
    mine = metrics_frame(card, metrics_tsv)
    if mine.empty:
        return [f"`{metrics_tsv}` has no test rows for method {card.get('method')}."]
    per_distance = mine["metric"].str.match(_PER_DISTANCE)
    lines = [
        f"Test-split rows of method `{card.get('method')}` (task {card.get('task')}) in "
        f"`{metrics_tsv}`"
        + (" (per-distance pearson_dNN rows left out)." if per_distance.any() else "."),
        "",
        "| cell line | trained on | metric | value | seed |",
        "|---|---|---|---|---|",
    ]
    for row in mine[~per_distance].itertuples():
        lines.append(
            f"| {row.cell_line} | {row.train_cell_line} | {row.metric} | {row.value:.4g} | "
            f"{row.seed} |"
        )
    return lines


def render_model_card(card: Mapping[str, Any], metrics_tsv: str | Path | None = None) -> str:
    """The Markdown text of a model card."""
    channels = card.get("channels") or []
    tracks = " ".join(f"--track {c}=PATH" for c in channels)
    lines = [
        f"# Model card: {card.get('method')} ({card.get('task')})",
        "",
        "A fine-tuned hicmix checkpoint folder: `model.pt` + `card.json` (machine-readable; this "
        "file is rendered from it).",
        "",
        "## Model",
        "",
        *_table(_model_rows(card)),
        "",
        "## Training data and inputs",
        "",
        *_table(_training_rows(card)),
        "",
        "Inputs must match: `hicmix predict` refuses tracks whose channels (names and order), "
        "assembly or resolution differ from this card.",
        "",
        "## Test metrics",
        "",
        *_metric_lines(card, metrics_tsv),
        "",
        "## Use",
        "",
        "```",
        f"hicmix predict --model <this folder> {tracks} --chromosomes chr1 --out predicted/",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(ckpt_dir: str | Path, metrics_tsv: str | Path | None = None) -> Path:
    """Render ``ckpt_dir/card.json`` (+ test rows of its method in ``metrics_tsv``) into
    ``ckpt_dir/MODEL_CARD.md``; return its path."""
    from hicmix.training.checkpoint import read_card

    card = read_card(ckpt_dir)
    path = Path(ckpt_dir) / MODEL_CARD_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(render_model_card(card, metrics_tsv))
    return path
