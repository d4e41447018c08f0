"""Inputs of the run report: metrics summary, resolved config, package versions, prediction files.

Prediction folders follow ``results/{finetune,baselines}/{task}/{method}/{train}/{test}/seed{n}/``;
each holds ``predictions.tsv`` (loops), ``predictions.h5`` (hicmap) or ``expression.tsv``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import yaml

from hicmix.errors import InputError

PREDICTION_ROOTS = ("finetune", "baselines")
PREDICTION_FILES = {
    "loops": "predictions.tsv",
    "hicmap": "predictions.h5",
    "expression": "expression.tsv",
    "expression_npz": "expression.tsv",
}
PACKAGES = (
    "hicmix",
    "torch",
    "cooler",
    "cooltools",
    "numpy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "snakemake",
)


#: tasks of metrics.tsv shown inside another task's section: genome-wide calling in the loops
#: section (metrics prefixed ``gw_``), the baselines' learning curve in the expression section
FOLDED_TASKS = {"loops_genomewide": "loops", "expression_learning_curve": "expression"}
#: the external expression tensor (k-fold CV, split ``cv``): the real-data section
NPZ_TASK = "expression_npz"
_LC_COUNT = re.compile(r"n_train_genes_n(\w+)")
_LC_ALL = re.compile(r".+_nall")


class Stat(NamedTuple):
    """mean ± sd over seeds of one metric (sd NaN with one seed; n = seeds with a value)."""

    mean: float
    sd: float
    n: int

    @property
    def finite(self) -> bool:
        return math.isfinite(self.mean)


#: (task, split, method, train_cell_line, cell_line, metric) -> Stat
StatKey = tuple[str, str, str, str, str, str]


@dataclass(frozen=True)
class PredictionRun:
    """One prediction folder of one (task, method, train cell line, test cell line, seed)."""

    source: str
    task: str
    method: str
    train_cell: str
    test_cell: str
    seed: int
    path: Path

    @property
    def file(self) -> Path:
        return self.path / PREDICTION_FILES.get(self.task, "")


def stats_index(summary: pd.DataFrame) -> dict[StatKey, Stat]:
    """The summary table (hicmix.evaluate.summarise) as a dict keyed by identity and metric."""
    out: dict[StatKey, Stat] = {}
    for row in summary.itertuples(index=False):
        key = (row.task, row.split, row.method, row.train_cell_line, row.cell_line, row.metric)
        out[key] = Stat(float(row.mean), float(row.sd), int(row.n))
    return out


def find_predictions(results: Path) -> list[PredictionRun]:
    """Every ``seed{n}`` prediction folder under results/finetune and results/baselines."""
    runs = []
    for source in PREDICTION_ROOTS:
        root = results / source
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*/*/*/*/seed*")):
            match = re.fullmatch(r"seed(\d+)", path.name)
            if not match or not path.is_dir():
                continue
            task, method, train, test = path.relative_to(root).parts[:4]
            runs.append(PredictionRun(source, task, method, train, test, int(match[1]), path))
    return runs


def pick_run(
    runs: Iterable[PredictionRun],
    task: str,
    method: str,
    train: str,
    test: str,
    seed: int = 0,
) -> PredictionRun | None:
    """The run with ``seed`` (else the lowest seed) whose prediction file exists, or None."""
    found = [
        r
        for r in runs
        if (r.task, r.method, r.train_cell, r.test_cell) == (task, method, train, test)
        and r.file.is_file()
    ]
    if not found:
        return None
    return min(found, key=lambda r: (r.seed != seed, r.seed))


def load_config(path: Path | None) -> dict[str, Any] | None:
    """The resolved workflow config (YAML), or None when no file was given."""
    if path is None:
        return None
    if not path.is_file():
        raise InputError(f"{path}: config file not found; pass the resolved config YAML or omit it")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({error}); rewrite the config file") from error
    if not isinstance(config, dict):
        raise InputError(f"{path}: holds no mapping of config keys; pass the resolved config YAML")
    return config


def sheet_cell_lines(config: Mapping[str, Any] | None) -> list[str]:
    """Cell-line names of the config's cell_lines sheet when it is readable (else none)."""
    sheet = (config or {}).get("cell_lines")
    if not isinstance(sheet, str) or not Path(sheet).is_file():
        return []
    try:
        table = pd.read_csv(sheet, sep="\t", comment="#", dtype=str)
    except (OSError, ValueError, pd.errors.ParserError):
        return []
    return table["cell_line"].dropna().tolist() if "cell_line" in table else []


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution ('not installed' otherwise); nothing is imported."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def split_entries(config: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """{split: [chromosome or region, ...]} from the config's ``splits`` (empty without config)."""
    splits = (config or {}).get("splits") or {}
    return {str(k): [str(v) for v in (values or [])] for k, values in splits.items()}


def is_realdata_run(config: Mapping[str, Any] | None, cell_lines: Iterable[str]) -> bool:
    """True for the realdata configuration of the reference doc: cell line GM12878 and the chr20
    region split (test = chr20:37,825,000-end)."""
    tests = [e.replace(",", "").replace("_", "") for e in split_entries(config).get("test", [])]
    chr20_b = any(re.fullmatch(r"(chr)?20:37825000-", entry) for entry in tests)
    return chr20_b and "GM12878" in set(cell_lines)


def fold_tasks(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str], int]]:
    """(metrics table with FOLDED_TASKS renamed, {(train, test): training genes of "all"}).

    Genome-wide calling metrics become loops metrics named ``gw_<metric>`` (``gw_f1_r1``); the
    learning-curve rows become expression rows ``<metric>_n<size>``. Their ``_nall`` rows repeat
    the method's main expression rows (same model) and their ``n_train_genes_n<size>`` rows are
    counts, so both are dropped; the count of ``all`` labels the curve's last point.
    """
    table = table.copy()
    gw = table["task"] == "loops_genomewide"
    table.loc[gw, "metric"] = "gw_" + table.loc[gw, "metric"].astype(str)
    lc = table["task"] == "expression_learning_curve"
    counts = table[lc & (table["metric"] == "n_train_genes_nall")]
    n_all = {
        (str(train), str(test)): round(float(group["value"].median()))
        for (train, test), group in counts.groupby(["train_cell_line", "cell_line"])
        if group["value"].notna().any()
    }
    metric = table["metric"].astype(str)
    drop = lc & (metric.str.fullmatch(_LC_COUNT) | metric.str.fullmatch(_LC_ALL))
    table = table[~drop.to_numpy()].copy()
    table["task"] = table["task"].replace(FOLDED_TASKS)
    return table.reset_index(drop=True), n_all


def _summary(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def train_median(folder: Path, train_cell: str | None = None) -> float | None:
    """The training genes' median expression recorded in a run's summary.json, else in the
    summary of its same-cell run (``{train}/{train}/seed<n>`` next to a transfer run), or None."""
    value = _summary(folder).get("train_median")
    if value is None and train_cell and folder.parent.name != train_cell:
        value = _summary(folder.parent.parent / train_cell / folder.name).get("train_median")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def run_setting(runs: Iterable[PredictionRun], key: str) -> str | None:
    """The first value of ``key`` in the runs' summary.json files (e.g. the npz path)."""
    for run in runs:
        value = _summary(run.path).get(key)
        if value is not None:
            return str(value)
    return None
