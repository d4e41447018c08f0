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
        ("loop anchor range (bp)", [card.get("loop_min_bp"), card.get("loop_max_bp")]),
        ("Hi-C balancing scale", card.get("hic_scale")),
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
        (
            "loop score threshold",
            None
            if card.get("loop_threshold") is None
            else f"{_fmt(card['loop_threshold'])} ({card.get('loop_threshold_source')})",
        ),
        ("device / precision", f"{card.get('device')} / {card.get('precision')}"),
        ("hicmix version", card.get("hicmix_version")),
    ]


#: metrics-table tasks that score a fine-tuned task's model besides the task itself
RELATED_TASKS = {"hicmap": ("predict_map",), "loops": ("loops_genomewide",)}


def metrics_frame(card: Mapping[str, Any], metrics_tsv: str | Path) -> pd.DataFrame:
    """The test rows of the card's model in a metrics table: its method, its task (and the tasks
    that score the same model: :data:`RELATED_TASKS`), its training cell lines and its seed (each
    when the card names it)."""
    from hicmix.evaluate import read_metrics

    table = read_metrics(metrics_tsv)
    tasks = (card.get("task"), *RELATED_TASKS.get(str(card.get("task")), ()))
    keep = (
        (table["method"] == card.get("method"))
        & table["task"].isin(tasks)
        & (table["split"] == "test")
    )
    if card.get("cell_lines"):
        keep &= table["train_cell_line"] == "+".join(card["cell_lines"])
    if card.get("seed") is not None:
        keep &= table["seed"] == int(card["seed"])
    return table[keep].reset_index(drop=True)


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
        "| task | cell line | trained on | metric | value | seed |",
        "|---|---|---|---|---|---|",
    ]
    for row in mine[~per_distance].itertuples():
        lines.append(
            f"| {row.task} | {row.cell_line} | {row.train_cell_line} | {row.metric} | "
            f"{row.value:.4g} | {row.seed} |"
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


def test_metric_records(card: Mapping[str, Any], metrics_tsv: str | Path) -> list[dict[str, Any]]:
    """The card's test rows of ``metrics_tsv`` (per-distance rows left out) as JSON records."""
    mine = metrics_frame(card, metrics_tsv)
    mine = mine[~mine["metric"].str.match(_PER_DISTANCE)]
    columns = ["task", "cell_line", "train_cell_line", "metric", "value", "seed"]
    return [
        {k: (float(v) if k == "value" else int(v) if k == "seed" else str(v)) for k, v in r.items()}
        for r in mine[columns].to_dict("records")
    ]


def update_model_card(
    ckpt_dir: str | Path,
    metrics_tsv: str | Path | None = None,
    threshold_run: str | Path | None = None,
) -> Path:
    """Complete a fine-tuned checkpoint's card after evaluation: ``test_metrics`` (its test rows
    of ``metrics_tsv``) and, from a same-cell genome-wide loop-calling run, ``loop_threshold``
    (chosen there on the validation chromosomes); rewrite ``card.json`` atomically and render
    ``MODEL_CARD.md``. Returns the Markdown path."""
    import json

    from hicmix.evaluate.run import threshold_from
    from hicmix.training.checkpoint import read_card

    card = read_card(ckpt_dir)
    if threshold_run is not None:
        card["loop_threshold"] = threshold_from(threshold_run, int(card.get("seed") or 0))
        card["loop_threshold_source"] = f"validation chromosomes ({threshold_run})"
    if metrics_tsv is not None:
        card["test_metrics"] = test_metric_records(card, metrics_tsv)
        card["test_metrics_source"] = str(metrics_tsv)
    with atomic_path(Path(ckpt_dir) / "card.json") as tmp:
        tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    return write_model_card(ckpt_dir, metrics_tsv)
