"""The long-format metrics table (results/metrics.tsv): one row per metric, method, split, seed."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path
from hicmix.errors import InputError

METRIC_COLUMNS = (
    "task",
    "method",
    "cell_line",
    "train_cell_line",
    "split",
    "metric",
    "value",
    "seed",
)
IDENTITY_COLUMNS = ("task", "method", "cell_line", "train_cell_line", "split")
GROUP_COLUMNS = (*IDENTITY_COLUMNS, "metric")
SUMMARY_COLUMNS = (*GROUP_COLUMNS, "mean", "sd", "n")


def rows_from_dict(
    metrics: Mapping[str, Any],
    *,
    task: str,
    method: str,
    cell_line: str,
    train_cell_line: str,
    split: str,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per metric of ``metrics`` (name -> number; NaN kept) with the given identity."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    identity = {
        "task": task,
        "method": method,
        "cell_line": cell_line,
        "train_cell_line": train_cell_line,
        "split": split,
    }
    for name, value in identity.items():
        if not isinstance(value, str) or not value or any(c in value for c in "\t\n"):
            raise ValueError(f"{name} must be a non-empty string without tabs, got {value!r}")
    rows = []
    for metric, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"metric {metric!r} has a non-numeric value {value!r}")
        rows.append({**identity, "metric": str(metric), "value": float(value), "seed": int(seed)})
    return rows


def _frame(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if table.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in METRIC_COLUMNS}).astype(
            {"value": np.float64, "seed": np.int64}
        )
    missing = set(METRIC_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"metric rows lack columns {sorted(missing)}")
    table = table[list(METRIC_COLUMNS)]
    return table.astype({"value": np.float64, "seed": np.int64})


def write_metrics(
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame, path: str | os.PathLike[str]
) -> Path:
    """Write rows atomically as a TSV with the METRIC_COLUMNS header (NaN written as 'NaN')."""
    table = _frame(rows)
    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.10g")
    return path


def read_metrics(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Concatenate metric TSVs; a row key (identity, metric, seed) seen twice is an error."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(f"{path}: metrics file not found; run the evaluation step first")
        table = pd.read_csv(path, sep="\t", dtype={c: str for c in GROUP_COLUMNS})
        if tuple(table.columns) != METRIC_COLUMNS:
            raise InputError(
                f"{path}: columns are {list(table.columns)}, expected {list(METRIC_COLUMNS)}; "
                "rewrite it with hicmix.evaluate.write_metrics"
            )
        try:
            table = table.astype({"value": np.float64, "seed": np.int64})
        except (TypeError, ValueError) as error:
            raise InputError(
                f"{path}: a value is not a number or a seed not an integer ({error}); "
                "fix the file or rerun the evaluation"
            ) from error
        table["source"] = str(path)
        frames.append(table)
    if not frames:
        return _frame([])
    table = pd.concat(frames, ignore_index=True)
    key = [*GROUP_COLUMNS, "seed"]
    dup = table.duplicated(key, keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        sources = sorted(set(table[dup & (table[key] == first[key]).all(axis=1)]["source"]))
        raise InputError(
            f"{', '.join(sources)}: metric {first['metric']!r} of method {first['method']!r} "
            f"(split {first['split']}, seed {first['seed']}) appears more than once; "
            "pass each metrics file once and give every run its own seed"
        )
    return table.drop(columns="source")


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """mean ± sd over seeds per (task, method, cell_line, train_cell_line, split, metric).

    sd uses ddof=1 (NaN with one seed); n counts the seeds with a finite value (NaN values are
    left out of mean and sd).
    """
    table = _frame(table)
    if table.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in SUMMARY_COLUMNS})
    grouped = table.groupby(list(GROUP_COLUMNS), sort=True, dropna=False)["value"]
    out = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    out["n"] = out["n"].astype(np.int64)
    return out[list(SUMMARY_COLUMNS)]


def format_mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    """'0.812 ± 0.013' ('0.812' with one seed, 'NaN' without a value)."""
    if not math.isfinite(mean):
        return "NaN"
    if not math.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"
