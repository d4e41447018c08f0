"""Training logs: the per-step loss CSV, the loss-curve figure, JSON summaries."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hicmix.atomic import atomic_path

LOSS_COLUMNS = (
    "step",
    "epoch",
    "lr",
    "contrastive",
    "orthogonality",
    "mapping",
    "total",
    "temperature",
    "samples_per_s",
    "split",
)
_INT_COLUMNS = {"step", "epoch"}
_STR_COLUMNS = {"split"}


def _format(column: str, value: Any) -> str:
    if column in _STR_COLUMNS:
        return str(value)
    if column in _INT_COLUMNS:
        return str(int(value))
    return repr(float(value))  # repr round-trips exactly, so resumed and fresh runs compare equal


class LossLog:
    """Append-only CSV of loss rows (:data:`LOSS_COLUMNS`), one per logged step and split."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as handle:
            parsed = [_parse(row) for row in csv.DictReader(handle)]
        return [row for row in parsed if row is not None]

    def reset(self, keep_through_step: int = 0) -> None:
        """Keep rows with step ≤ ``keep_through_step`` (a resumed run writes later ones again)."""
        kept = [row for row in self.rows() if row["step"] <= keep_through_step]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(LOSS_COLUMNS)
            for row in kept:
                writer.writerow(_format(c, row[c]) for c in LOSS_COLUMNS)

    def append(self, row: Mapping[str, Any]) -> None:
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(LOSS_COLUMNS)
            writer.writerow(_format(c, row[c]) for c in LOSS_COLUMNS)
            handle.flush()


def _parse(row: Mapping[str, str | None]) -> dict[str, Any] | None:
    """A typed row, or None for a row torn by a killed process (missing or malformed fields)."""
    out: dict[str, Any] = {}
    try:
        for column in LOSS_COLUMNS:
            text = row[column]
            if column in _STR_COLUMNS:
                out[column] = str(text)
            elif column in _INT_COLUMNS:
                out[column] = int(text)
            else:
                out[column] = float(text)
    except (KeyError, TypeError, ValueError):
        return None
    return out if out["split"] in ("train", "val") else None


def write_json(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return Path(path)


def plot_losses(rows: list[dict[str, Any]], path: str | Path, title: str = "pre-training") -> Path:
    """One panel per loss (train line, val markers), plus temperature and lr, as a PNG (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ("total", "contrastive", "orthogonality", "mapping", "temperature", "lr")
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), constrained_layout=True)
    for ax, column in zip(axes.flat, panels, strict=True):
        for split, style in (("train", "-"), ("val", "o-")):
            if split == "val" and column in ("temperature", "lr"):
                continue
            points = [
                (r["step"], r[column])
                for r in rows
                if r["split"] == split and math.isfinite(r[column])
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, label=split, markersize=3, linewidth=1)
        ax.set_title(column)
        ax.set_xlabel("step")
        if column in ("total", "contrastive", "orthogonality", "mapping"):
            ax.legend(fontsize=8)
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
