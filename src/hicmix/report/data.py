"""Inputs of the run report: metrics summary, resolved config, package versions, prediction files.

Prediction folders follow ``results/{finetune,baselines}/{task}/{method}/{train}/{test}/seed{n}/``;
each holds ``predictions.tsv`` (loops), ``predictions.h5`` (hicmap) or ``expression.tsv``.
"""

from __future__ import annotations

import importlib.metadata
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
