"""Real peer loop callers run side by side with hicmix (baselines_and_metrics.md §7, §9).

Each peer (:mod:`.peakachu`, :mod:`.chromosight`, :mod:`.mustache`, :mod:`.hiccups`) runs its own
released command-line program in its own venv (:mod:`.envs`), and its native output is converted to
one BEDPE format: ``chrom1 start1 end1 chrom2 start2 end2 score`` (headerless, chr-named). Every
BEDPE is then scored by the one hicmix loop evaluator (:mod:`hicmix.evaluate.loops`) on the same
region, distance window and matching radii, so the rows of the table are comparable.

:func:`evaluate_calls` is the extension point for new rows (the hicmix model): a BEDPE plus the
timing of the run that made it gives one row of ``peers.tsv``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path
from hicmix.peers.envs import RunResult

BEDPE_COLUMNS = ("chrom1", "start1", "end1", "chrom2", "start2", "end2", "score")
#: The tools with a module here, in table order; "hicmix" is hicmix's genome-wide caller
#: (:mod:`.hicmix_caller`), "hicmix-rf" our own Peakachu-style forest (:mod:`.rf`).
TOOLS = ("hicmix", "chromosight", "mustache", "peakachu", "hiccups", "hicmix-rf")


@dataclass(frozen=True)
class Protocol:
    """Where and how calls are scored: a chromosome cut into a training region A (``[0, cut)``)
    and a test region B (``[cut, end)``), loops ``min_bins``..``max_bins`` apart, radii in bins."""

    chrom: str = "chr20"
    resolution: int = 25_000
    cut_bp: int = 37_825_000
    min_bins: int = 2
    max_bins: int = 80
    radii: tuple[int, ...] = (1, 2)

    def region(self, name: str) -> tuple[int, int | None]:
        """(start_bp, end_bp) of region "A" or "B" (end None = chromosome end)."""
        if name == "A":
            return (0, self.cut_bp)
        if name == "B":
            return (self.cut_bp, None)
        raise ValueError(f"region must be 'A' or 'B', got {name!r}")


@dataclass
class PeerRun:
    """The result of running one caller: its BEDPE, the measured steps and what was run."""

    tool: str
    bedpe: Path
    version: str
    settings: str
    steps: dict[str, RunResult] = field(default_factory=dict)
    env_create_s: float = 0.0
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        """Seconds of all measured steps (training included; environment creation excluded)."""
        return float(sum(step.wall_s for step in self.steps.values()))

    @property
    def peak_rss_mb(self) -> float:
        """The largest peak RSS of any step."""
        return max((step.peak_rss_mb for step in self.steps.values()), default=math.nan)

    def timing(self) -> dict[str, float]:
        """wall_s, peak_rss_mb and one ``<step>_s`` per step, for :func:`evaluate_calls`."""
        out = {"wall_s": self.wall_s, "peak_rss_mb": self.peak_rss_mb}
        out.update({f"{name}_s": step.wall_s for name, step in self.steps.items()})
        return out


def write_calls(calls: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a call table (columns :data:`BEDPE_COLUMNS`) as headerless BEDPE, atomically.

    Rows are sorted by position; a missing score is written as '.'.
    """
    table = calls.loc[:, list(BEDPE_COLUMNS)].copy()
    for column in ("start1", "end1", "start2", "end2"):
        table[column] = table[column].astype(np.int64)
    table = table.sort_values(["chrom1", "start1", "chrom2", "start2"], kind="stable")
    table["score"] = [("." if not np.isfinite(s) else f"{s:.6g}") for s in table["score"]]
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", header=False, index=False)
    return path


def calls_frame(rows: Iterable[tuple[Any, ...]]) -> pd.DataFrame:
    """A call table from (chrom1, start1, end1, chrom2, start2, end2, score) tuples."""
    table = pd.DataFrame(list(rows), columns=list(BEDPE_COLUMNS))
    if table.empty:
        return pd.DataFrame(
            {c: pd.Series([], dtype=object if c.startswith("chrom") else float) for c in table}
        )
    return table


def region_truth(
    truth_bedpe: str | os.PathLike[str], protocol: Protocol, region: str
) -> pd.DataFrame:
    """Reference loops of ``protocol.chrom`` in region A or B, ``min_bins``..``max_bins`` apart."""
    from hicmix.evaluate.loops import read_bedpe_loops, restrict

    truth = read_bedpe_loops(truth_bedpe, protocol.resolution, [protocol.chrom], score_column=None)
    return restrict(
        truth,
        protocol.chrom,
        protocol.region(region),
        protocol.min_bins,
        protocol.max_bins,
        resolution=protocol.resolution,
    )


def region_calls(
    bedpe: str | os.PathLike[str], protocol: Protocol, region: str, score_column: int = 6
) -> pd.DataFrame:
    """Calls of a BEDPE restricted exactly like :func:`region_truth`."""
    from hicmix.evaluate.loops import read_bedpe_loops, restrict

    chroms = [protocol.chrom]
    calls = read_bedpe_loops(bedpe, protocol.resolution, chroms, score_column=score_column)
    return restrict(
        calls,
        protocol.chrom,
        protocol.region(region),
        protocol.min_bins,
        protocol.max_bins,
        resolution=protocol.resolution,
    )


def evaluate_calls(
    tool: str,
    bedpe: str | os.PathLike[str],
    truth: pd.DataFrame,
    protocol: Protocol,
    timing: Mapping[str, float] | None = None,
    *,
    region: str = "B",
    version: str = "",
    settings: str = "",
    notes: str = "",
) -> dict[str, Any]:
    """One table row: the calls of ``bedpe`` in ``region`` scored against ``truth`` (already
    restricted, e.g. by :func:`region_truth`) at every radius of ``protocol``.

    Keys: tool, version, settings, n_calls, n_truth, then precision, recall, f1 and tp at the first
    radius (±1), ``f1_r<k>`` / ``precision_r<k>`` / ``recall_r<k>`` at the others, then the timing
    values (wall_s, peak_rss_mb, per-step seconds) and notes. Use it for any new caller.
    """
    from hicmix.evaluate.loops import loop_calling_scores

    calls = region_calls(bedpe, protocol, region)
    row: dict[str, Any] = {
        "tool": tool,
        "version": version,
        "settings": settings,
        "n_calls": len(calls),
        "n_truth": len(truth),
    }
    for k, radius in enumerate(protocol.radii):
        scores = loop_calling_scores(calls, truth, radius)
        suffix = "" if k == 0 else f"_r{radius}"
        row[f"tp{suffix}"] = int(scores["tp"])
        row[f"precision{suffix}"] = scores["precision"]
        row[f"recall{suffix}"] = scores["recall"]
        row[f"f1{suffix}"] = scores["f1"]
    timing = dict(timing or {})
    row["wall_s"] = float(timing.pop("wall_s", math.nan))
    row["peak_rss_mb"] = float(timing.pop("peak_rss_mb", math.nan))
    row.update({k: float(v) for k, v in timing.items()})
    row["notes"] = notes
    return row
