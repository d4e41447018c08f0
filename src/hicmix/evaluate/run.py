"""``hicmix evaluate``: score trained models and gather every run's metrics (the evaluate stage).

- :func:`transfer`: a model fine-tuned on one cell line predicts the test split of another cell
  line's tiles (cross-cell transfer), with the same outputs and metrics as ``hicmix finetune``.
- :func:`call_loops`: genome-wide loop calling with a fine-tuned loops model (through
  :func:`hicmix.predict.predict`) on held-out chromosomes; the pooling threshold is chosen on the
  training cell line's validation chromosomes only, then applied to the test chromosomes.
- :func:`collect_metrics`: ``results/metrics.tsv`` (every run's rows, long format, plus the 1:10
  prevalence rows of loop patch predictions) and ``results/metrics_summary.tsv`` (mean ± sd over
  seeds).

The writers of prediction files (:func:`write_loop_predictions`,
:func:`write_expression_predictions`, :func:`write_map_predictions`) are shared with
``hicmix baselines``, so every method's outputs have one format. A prediction set is
``(split, cell_line, pred, index)``: ``pred`` holds numpy arrays as returned by
:func:`hicmix.finetune.predict_windows` and ``index`` the tiles' index rows.

Genome-wide calling (protocol B, docs/baselines_and_metrics.md §6.1): candidate pixels are scored,
pixels at or above a threshold are pooled (single linkage within ``pool_radius`` bins, one call per
cluster at its best pixel), and the calls are matched one-to-one to the truth loops of the same
chromosomes/regions and distance window within ``radius`` bins (1 and 2 by default).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError

log = logging.getLogger(__name__)

PredictionSet = tuple[str, str, Mapping[str, np.ndarray], pd.DataFrame]
#: (val pixels, val truth) -> (threshold, pool radius, table of the choice) of a calling method
Selector = Callable[[pd.DataFrame, pd.DataFrame], tuple[float, int, pd.DataFrame | None]]

#: The genome-wide calls, pixels and metrics of a loop-calling run folder.
CALLS_FILE = "calls.bedpe"
PIXELS_FILE = "pixels.tsv.gz"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.tsv"
#: Pooling thresholds tried on the validation chromosomes (probabilities).
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
#: Quantiles of the validation pixel scores also tried as thresholds (adapts the grid to a
#: model's score scale).
SCORE_QUANTILES = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
#: Matching radii (bins) of the genome-wide metrics; the threshold is chosen at the first.
RADII = (1, 2)
#: Headline metric of each task (what the report leads with; also checked by the tests).
HEADLINE_METRICS = {
    "loops": "auroc",
    "loops_genomewide": "f1_r1",
    "hicmap": "distance_pearson_mean",
    "expression": "pearson",
    "expression_learning_curve": "pearson_nall",
    "expression_npz": "above_median_auroc",
}
PREVALENCE_METRICS = ("f1", "precision", "recall", "auroc", "auprc")


# --------------------------------------------------------------------------------------------------
# prediction files (one format for hicmix finetune, hicmix baselines and transfer)


def write_loop_predictions(path: str | Path, sets: Sequence[PredictionSet]) -> Path:
    """``predictions.tsv`` of loop patches (cell_line chrom bin_x bin_y distance split label
    score)."""
    from hicmix.finetune import LOOP_PREDICTION_COLUMNS

    frames = [
        pd.DataFrame(
            {
                "cell_line": cell,
                "chrom": index["chrom"].astype(str).to_numpy(),
                "bin_x": np.asarray(pred["bins"])[:, 0],
                "bin_y": np.asarray(pred["bins"])[:, 1],
                "distance": np.asarray(pred["distance"]),
                "split": split,
                "label": np.asarray(pred["label"]).astype(np.int64),
                "score": np.asarray(pred["score"], dtype=np.float64),
            }
        )
        for split, cell, pred, index in sets
    ]
    with atomic_path(path) as tmp:
        table = pd.concat(frames, ignore_index=True)[list(LOOP_PREDICTION_COLUMNS)]
        table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
    return Path(path)


def write_expression_predictions(path: str | Path, sets: Sequence[PredictionSet]) -> Path:
    """``expression.tsv``: gene_id cell_line chrom bin split prediction truth, plus
    ``probability`` (P(above the training median)) when the method has a binary classifier."""
    from hicmix.finetune import EXPRESSION_COLUMNS

    columns = list(EXPRESSION_COLUMNS)
    frames = []
    for split, cell, pred, index in sets:
        frame = pd.DataFrame(
            {
                "gene_id": index["gene_id"].astype(str).to_numpy(),
                "cell_line": cell,
                "chrom": index["chrom"].astype(str).to_numpy(),
                "bin": np.asarray(pred["bins"])[:, 0],
                "split": split,
                "prediction": np.asarray(pred["prediction"], dtype=np.float64),
                "truth": np.asarray(pred["label"], dtype=np.float64),
            }
        )
        if "probability" in pred:
            frame["probability"] = np.asarray(pred["probability"], dtype=np.float64)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    if "probability" in table:
        columns.append("probability")
    with atomic_path(path) as tmp:
        table[columns].to_csv(tmp, sep="\t", index=False, float_format="%.8g")
    return Path(path)


def write_map_predictions(
    path: str | Path, sets: Sequence[PredictionSet], attrs: Mapping[str, Any]
) -> Path:
    """``predictions.h5`` in the layout of :func:`hicmix.finetune.write_map_predictions`."""
    from hicmix.finetune import write_map_predictions as write

    return write(path, sets, attrs)


def write_predictions(
    task: str, out: Path, sets: Sequence[PredictionSet], attrs: Mapping[str, Any]
) -> Path:
    """The task's prediction file in ``out`` (loops: predictions.tsv; expression: expression.tsv;
    hicmap: predictions.h5)."""
    if task == "loops":
        return write_loop_predictions(out / "predictions.tsv", sets)
    if task == "expression":
        return write_expression_predictions(out / "expression.tsv", sets)
    return write_map_predictions(out / "predictions.h5", sets, attrs)


def map_attrs(manifest: Mapping[str, Any], task: str, method: str) -> dict[str, Any]:
    """Attributes of a predictions.h5 (as hicmix finetune writes them)."""
    return {
        "task": task,
        "method": method,
        "hic_transform": manifest["hic_transform"],
        "window_bins": int(manifest["window_bins"]),
        "resolution": int(manifest["resolution"]),
    }


def write_summary(out: Path, summary: Mapping[str, Any]) -> Path:
    """``summary.json``, written last: its presence marks a complete run folder."""
    from hicmix.training.logs import write_json

    return write_json(out / SUMMARY_FILE, {"finished": True, **summary})


def headline(rows: Sequence[Mapping[str, Any]], task: str) -> dict[str, float]:
    """{"split:cell_line": value} of the task's headline metric."""
    name = HEADLINE_METRICS.get(task)
    return {
        f"{r['split']}:{r['cell_line']}": r["value"]
        for r in rows
        if r["task"] == task and r["metric"] == name
    }


# --------------------------------------------------------------------------------------------------
# cross-cell transfer of a fine-tuned model


def transfer(
    model: str | Path,
    test_tile_dirs: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "auto",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Score the ``test`` split of other cell lines' tiles with a fine-tuned model.

    ``model`` is the ``model/`` folder (or the run folder holding it) of ``hicmix finetune``.
    Writes, in ``out``: the task's prediction file, ``metrics.tsv`` (test rows only: the
    validation rows belong to the training run) and, last, ``summary.json``. The label
    standardisation and the above-median threshold are the training run's (training genes only).
    """
    from hicmix.evaluate import rows_from_dict, write_metrics
    from hicmix.finetune import (
        TASK_KINDS,
        load_finetuned,
        predict_windows,
        prediction_loss,
        resolve_device,
        task_scores,
    )
    from hicmix.tiles import TileDataset, load_manifest

    model_dir = _model_dir(model)
    dirs = [Path(test_tile_dirs)] if isinstance(test_tile_dirs, str | Path) else test_tile_dirs
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise ConfigError("transfer needs at least one test tile folder (--test-tiles)")
    dev = resolve_device(device)
    net, card = load_finetuned(model_dir, dirs[0], dev)
    task, mode, method = card["task"], card["mode"], card["method"]
    stats = card.get("label_standardisation")
    from hicmix.finetune import LabelStats

    label_stats = None if stats is None else LabelStats(float(stats["mean"]), float(stats["sd"]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    sets: list[PredictionSet] = []
    for folder in dirs:
        manifest = load_manifest(folder)
        dataset = TileDataset([folder], TASK_KINDS[task], ["test"])
        if len(dataset) == 0:
            raise InputError(
                f"tiles {folder} hold no {TASK_KINDS[task]} samples in the test split; retile "
                "that cell line with the same split"
            )
        pred = predict_windows(
            net, dataset, task, mode, batch_size, dev, label_stats=label_stats,
            num_workers=num_workers, progress=progress,
        )  # fmt: skip
        sets.append(
            ("test", str(manifest["cell_line"]), pred, dataset.index.reset_index(drop=True))
        )
        dataset.close()
    train_cell = "+".join(str(c) for c in card.get("cell_lines", []))
    rows = []
    for split, cell, pred, _ in sets:
        scores = task_scores(task, pred, card.get("train_median"))
        scores["loss"] = prediction_loss(task, pred, label_stats)
        rows += rows_from_dict(
            scores, task=task, method=method, cell_line=cell, train_cell_line=train_cell,
            split=split, seed=int(card["seed"]),
        )  # fmt: skip
    predictions = write_predictions(
        task, out, sets, map_attrs(load_manifest(dirs[0]), task, method)
    )
    write_metrics(rows, out / METRICS_FILE)
    return write_summary_dict(
        out,
        {
            "kind": "transfer",
            "task": task,
            "mode": mode,
            "method": method,
            "seed": int(card["seed"]),
            "model": str(model_dir),
            "train_cell_lines": card.get("cell_lines", []),
            "test_cell_lines": [cell for _, cell, _, _ in sets],
            "selection": "epoch chosen on the training cell line's val split (training run)",
            "headline_scores": headline(rows, task),
            "n_test_samples": {cell: len(p["label"]) for _, cell, p, _ in sets},
            "outputs": {"predictions": predictions.name, "metrics": METRICS_FILE},
        },
    )


def write_summary_dict(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    write_summary(out, summary)
    return {"finished": True, **summary}


def _model_dir(model: str | Path) -> Path:
    path = Path(model)
    if (path / "model" / "card.json").is_file():
        return path / "model"
    if (path / "card.json").is_file():
        return path
    raise InputError(
        f"{path}: no fine-tuned model (card.json) here or in {path / 'model'}; point to the "
        "output folder of hicmix finetune"
    )


# --------------------------------------------------------------------------------------------------
# genome-wide loop calling: regions, truth, threshold, scores (shared with the Peakachu baseline)


@dataclass(frozen=True)
class CallingSettings:
    """Genome-wide calling: distance window (bp; None = the tiles' loop range), pooling radius
    (bins), matching radii (bins), the threshold (``"val"`` = chosen on validation chromosomes from
    ``grid``, or a number), distance strata (bp) and our caller's candidate pre-filter."""

    threshold: float | str = "val"
    grid: tuple[float, ...] = THRESHOLD_GRID
    quantiles: tuple[float, ...] = SCORE_QUANTILES
    pool_radius: int = 2
    radii: tuple[int, ...] = RADII
    min_bp: int | None = None
    max_bp: int | None = None
    strata_bp: tuple[int, ...] = (0, 100_000, 500_000, 2_000_000)
    prefilter: str = "enrichment"
    prefilter_dilate: int | None = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.threshold, str) and self.threshold != "val":
            raise ConfigError(
                f"loop-calling threshold {self.threshold!r} must be a number or 'val'"
            )
        if not self.grid or not self.radii:
            raise ConfigError("loop-calling needs a threshold grid and at least one radius")
        if self.pool_radius < 0 or min(self.radii) < 0:
            raise ConfigError("loop-calling radii must be >= 0")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CallingSettings:
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"loop-calling settings: unknown key(s) {', '.join(unknown)}; use "
                f"{', '.join(sorted(known))}"
            )
        for key in ("grid", "quantiles", "radii", "strata_bp"):
            if key in values:
                values[key] = tuple(values[key])
        if isinstance(values.get("threshold"), int | float):
            values["threshold"] = float(values["threshold"])
        return cls(**values)

    def window_bins(self, manifest: Mapping[str, Any]) -> tuple[int, int]:
        """(min, max) anchor distance in bins: these settings, else the tiles' loop range."""
        options = manifest.get("options") or {}
        res = int(manifest["resolution"])
        lo = self.min_bp if self.min_bp is not None else options.get("loop_min_bp", 20_000)
        hi = self.max_bp if self.max_bp is not None else options.get("loop_max_bp", 2_000_000)
        return max(1, math.ceil(int(lo) / res)), int(hi) // res


def load_calling_settings(
    config: str | Path | Mapping[str, Any] | CallingSettings | None,
) -> CallingSettings:
    """CallingSettings from a YAML file (flat, or under a ``loops_genomewide`` key), a mapping, an
    instance or None (defaults)."""
    import yaml

    if isinstance(config, CallingSettings):
        return config
    if config is None or isinstance(config, Mapping):
        values = dict(config or {})
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"loop-calling config {path} does not exist; write it first")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"loop-calling config {path} is not valid YAML ({error})") from None
    if "loops_genomewide" in values:
        values = values["loops_genomewide"] or {}
    return CallingSettings.from_dict(values)


def write_calling_config(config: Mapping[str, Any] | None, path: str | Path) -> Path:
    """Validate calling settings and write them, defaults filled in, as YAML (Snakemake rule)."""
    import dataclasses

    import yaml

    settings = CallingSettings.from_dict(config)
    values = {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()
    }
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(values, sort_keys=False))
    return Path(path)


def split_regions(manifest: Mapping[str, Any], split: str) -> list[tuple[str, int, int | None]]:
    """(chrom, start_bp, end_bp or None) of a tile folder's ``split`` entries on its chromosomes."""
    from hicmix.genome import SplitSpec

    spec = SplitSpec.from_mapping(manifest.get("splits") or {})
    tiled = set(manifest.get("chromosomes") or [])
    regions = [(r.chrom, int(r.start), r.end) for r in getattr(spec, split)]
    return [r for r in regions if not tiled or r[0] in tiled]


def truth_loops(manifest: Mapping[str, Any], source: str) -> pd.DataFrame:
    """The tile folder's loop BEDPE (its ``inputs.loops``) as bin pairs."""
    from hicmix.evaluate.loops import read_bedpe_loops

    path = ((manifest.get("inputs") or {}).get("loops") or {}).get("path")
    if not path:
        raise InputError(
            f"{source}: the tiles were made without --loops, so there is no truth loop list for "
            "genome-wide calling; tile the cell line with its loops"
        )
    return read_bedpe_loops(path, int(manifest["resolution"]), score_column=None)


def in_regions(
    loops: pd.DataFrame,
    regions: Sequence[tuple[str, int, int | None]],
    resolution: int,
    min_bins: int,
    max_bins: int,
) -> pd.DataFrame:
    """Loops inside any of ``regions`` (both anchors) and min_bins <= bin2 - bin1 <= max_bins."""
    from hicmix.evaluate.loops import empty_loops, restrict

    parts = [
        restrict(loops, chrom, (start, end), min_bins, max_bins, resolution=resolution)
        for chrom, start, end in regions
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        table = empty_loops()
        if "score" in loops:
            table["score"] = table["score"].astype(np.float64)
        return table
    return pd.concat(parts, ignore_index=True)


def select_threshold(
    pixels: pd.DataFrame, truth: pd.DataFrame, settings: CallingSettings
) -> tuple[float, pd.DataFrame]:
    """The threshold with the best F1 at the first radius (ties: the higher threshold, fewer
    calls) among the grid and the score quantiles of ``pixels``; pixels and truth are already
    restricted to the validation regions. Returns it and the table threshold, n_calls, f1."""
    from hicmix.evaluate.loops import loop_calling_scores, pool_calls

    scores = pixels["score"].to_numpy(np.float64)
    grid = set(settings.grid)
    if scores.size and settings.quantiles:
        grid |= {float(q) for q in np.quantile(scores, settings.quantiles)}
    rows = []
    for threshold in sorted(grid):
        calls = pool_calls(pixels, threshold, settings.pool_radius)
        scores = loop_calling_scores(calls, truth, settings.radii[0])
        rows.append({"threshold": threshold, "n_calls": len(calls), "f1": scores["f1"]})
    table = pd.DataFrame(rows)
    f1 = table["f1"].fillna(-1.0).to_numpy()
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return float(table["threshold"].iloc[best]), table


def calling_scores(
    calls: pd.DataFrame, truth: pd.DataFrame, settings: CallingSettings, resolution: int
) -> dict[str, float]:
    """Precision, recall, F1 and counts at every radius (suffix ``_r<N>``), recall and precision per
    distance stratum at the first radius, and the number of calls and truth loops."""
    from hicmix.evaluate.loops import loop_calling_scores, scores_by_distance

    scores: dict[str, float] = {"n_calls": float(len(calls)), "n_truth": float(len(truth))}
    for radius in settings.radii:
        values = loop_calling_scores(calls, truth, radius)
        for key in ("precision", "recall", "f1", "tp"):
            scores[f"{key}_r{radius}"] = values[key]
    strata = scores_by_distance(calls, truth, settings.radii[0], resolution, settings.strata_bp)
    for row in strata.itertuples():
        scores[f"recall_r{settings.radii[0]}_{row.stratum}"] = float(row.recall)
        scores[f"precision_r{settings.radii[0]}_{row.stratum}"] = float(row.precision)
    return scores


def threshold_from(folder: str | Path | None, seed: int) -> float | None:
    """The threshold recorded in a same-cell calling run (``folder``, or ``folder/seed<seed>``)."""
    return pooling_from(folder, seed)[0]


def pooling_from(folder: str | Path | None, seed: int) -> tuple[float | None, int | None]:
    """(threshold, pool radius) recorded in a same-cell calling run (``folder`` or
    ``folder/seed<seed>``); (None, None) without a folder."""
    if folder is None:
        return None, None
    folder = Path(folder)
    for path in (folder / f"seed{seed}" / SUMMARY_FILE, folder / SUMMARY_FILE):
        if path.is_file():
            summary = json.loads(path.read_text())
            if summary.get("threshold") is None:
                break
            radius = summary.get("pool_radius")
            return float(summary["threshold"]), None if radius is None else int(radius)
    raise InputError(
        f"{folder}: no finished loop-calling run with a threshold for seed {seed}; run the "
        "same-cell-line calling first"
    )


def calling_rows(
    scores: Mapping[str, float],
    *,
    method: str,
    cell_line: str,
    train_cell_line: str,
    split: str,
    seed: int,
) -> list[dict[str, Any]]:
    from hicmix.evaluate import rows_from_dict

    return rows_from_dict(
        scores, task="loops_genomewide", method=method, cell_line=cell_line,
        train_cell_line=train_cell_line, split=split, seed=seed,
    )  # fmt: skip


def write_calls(out: Path, calls: pd.DataFrame, pixels: pd.DataFrame, manifest: Mapping) -> None:
    """``calls.bedpe`` (headerless, score in column 7) and ``pixels.tsv.gz`` (scored pixels)."""
    from hicmix.evaluate.loops import write_bedpe

    write_bedpe(calls, int(manifest["resolution"]), out / CALLS_FILE)
    with atomic_path(out / PIXELS_FILE) as tmp:
        pixels[["chrom", "bin1", "bin2", "score"]].to_csv(
            tmp, sep="\t", index=False, float_format="%.5g", compression="gzip"
        )


def run_calling(
    score_regions: Any,
    *,
    method: str,
    train_manifest: Mapping[str, Any],
    test_manifest: Mapping[str, Any],
    settings: CallingSettings,
    out: Path,
    seed: int,
    threshold: float | None = None,
    pool_radius: int | None = None,
    select: Selector | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Genome-wide calling of one method and seed: ``score_regions(manifest, regions, min_bins,
    max_bins)`` returns the scored candidate pixels (chrom, bin1, bin2, score) of those regions.

    The threshold is ``threshold`` when given (a same-cell run's choice), else the settings' number,
    else the best grid value on the training cell line's val regions (whose rows are written too).
    ``select(pixels, truth)`` (val only) replaces the grid search and also chooses the pooling
    radius: it returns (threshold, pool_radius, table). ``pool_radius``: a same-cell run's radius
    (default: the settings'). Test calls are scored on the test cell line's test regions. Returns
    the summary.
    """
    from hicmix.evaluate import write_metrics
    from hicmix.evaluate.loops import pool_calls

    train_cell, test_cell = str(train_manifest["cell_line"]), str(test_manifest["cell_line"])
    res = int(test_manifest["resolution"])
    lo, hi = settings.window_bins(train_manifest)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    rows: list[dict[str, Any]] = []
    grid_table = None
    source = "given"
    radius = settings.pool_radius if pool_radius is None else int(pool_radius)
    if threshold is None and not isinstance(settings.threshold, str):
        threshold, source = float(settings.threshold), "config"
    if threshold is None:
        regions = split_regions(train_manifest, "val")
        if not regions:
            raise InputError(
                f"tiles of {train_cell} have no val split, so no threshold can be chosen for "
                "genome-wide calling; set a val split or a numeric threshold"
            )
        pixels = in_regions(score_regions(train_manifest, regions, lo, hi), regions, res, lo, hi)
        truth = in_regions(truth_loops(train_manifest, train_cell), regions, res, lo, hi)
        if select is None:
            threshold, grid_table = select_threshold(pixels, truth, settings)
        else:
            threshold, radius, grid_table = select(pixels, truth)
        source = f"val ({', '.join(_region_text(r) for r in regions)})"
        calls = pool_calls(pixels, threshold, radius)
        scores = {**calling_scores(calls, truth, settings, res), "threshold": threshold}
        if select is not None:
            scores["pool_radius"] = float(radius)
        rows += calling_rows(
            scores, method=method, cell_line=train_cell, train_cell_line=train_cell,
            split="val", seed=seed,
        )  # fmt: skip
    regions = split_regions(test_manifest, "test")
    if not regions:
        raise InputError(f"tiles of {test_cell} have no test split to call loops on")
    pixels = in_regions(score_regions(test_manifest, regions, lo, hi), regions, res, lo, hi)
    truth = in_regions(truth_loops(test_manifest, test_cell), regions, res, lo, hi)
    calls = pool_calls(pixels, threshold, radius)
    rows += calling_rows(
        calling_scores(calls, truth, settings, res), method=method, cell_line=test_cell,
        train_cell_line=train_cell, split="test", seed=seed,
    )  # fmt: skip
    write_calls(out, calls, pixels, test_manifest)
    if grid_table is not None:
        with atomic_path(out / "threshold_grid.tsv") as tmp:
            grid_table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_metrics(rows, out / METRICS_FILE)
    return write_summary_dict(
        out,
        {
            "kind": "loop_calling",
            "task": "loops_genomewide",
            "method": method,
            "seed": seed,
            "train_cell_line": train_cell,
            "test_cell_line": test_cell,
            "threshold": threshold,
            "threshold_source": source,
            "selection_split": "val" if grid_table is not None else None,
            "test_regions": [_region_text(r) for r in regions],
            "distance_bins": [lo, hi],
            "pool_radius": radius,
            "radii": list(settings.radii),
            "n_calls": len(calls),
            "n_truth": len(truth),
            "headline_scores": headline(rows, "loops_genomewide"),
            "outputs": {"calls": CALLS_FILE, "pixels": PIXELS_FILE, "metrics": METRICS_FILE},
            **(extra or {}),
        },
    )


def _region_text(region: tuple[str, int, int | None]) -> str:
    chrom, start, end = region
    if start == 0 and end is None:
        return chrom
    return f"{chrom}:{start}-{'' if end is None else end}"


# --------------------------------------------------------------------------------------------------
# our model's genome-wide caller (hicmix.predict)


def call_loops(
    model: str | Path,
    tile_dir: str | Path,
    test_tile_dir: str | Path | None,
    out: str | Path,
    *,
    settings: CallingSettings | Mapping[str, Any] | None = None,
    threshold_run: str | Path | None = None,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Genome-wide loop calls of a fine-tuned loops model on held-out chromosomes.

    ``tile_dir``: the training cell line's tiles (val chromosomes choose the threshold; its
    manifest gives the Hi-C, tracks and truth loops); ``test_tile_dir``: the cell line called on
    its test chromosomes (default: the same). ``threshold_run``: a finished same-cell run whose
    threshold is reused (cross-cell pairs). Candidates are scored by :func:`hicmix.predict.predict`
    (pre-filter ``settings.prefilter``; a bimodal model reads the cell line's balanced Hi-C, a
    tracks_only model only its tracks, plus the Hi-C for an ``enrichment`` pre-filter).
    """
    from hicmix.tiles import load_manifest

    settings = (
        settings if isinstance(settings, CallingSettings) else CallingSettings.from_dict(settings)
    )
    model_dir = _model_dir(model)
    card = json.loads((model_dir / "card.json").read_text())
    if card.get("task") != "loops":
        raise InputError(
            f"{model_dir}: a {card.get('task')} model; genome-wide calling needs loops"
        )
    train_manifest = load_manifest(tile_dir)
    test_manifest = load_manifest(test_tile_dir or tile_dir)
    seed = int(card["seed"])

    def score_regions(manifest, regions, lo, hi):
        return predicted_pixels(model_dir, card, manifest, regions, lo, hi, settings, device,
                                progress)  # fmt: skip

    uses_hic = card.get("mode") != "tracks_only"
    candidates = {
        "none": "every pixel in the distance window",
        "enrichment": "HICCUPS-like donut-enrichment maxima of the observed Hi-C"
        + ("" if uses_hic else " (the tracks_only model itself sees no Hi-C)"),
        "anchors": "pixels whose anchors are among the most active bins (tracks)",
    }[settings.prefilter]
    return run_calling(
        score_regions,
        method=str(card["method"]),
        train_manifest=train_manifest,
        test_manifest=test_manifest,
        settings=settings,
        out=Path(out),
        seed=seed,
        threshold=threshold_from(threshold_run, seed),
        extra={"candidates": candidates, "model_reads_hic": uses_hic, "model": str(model_dir)},
    )


def predicted_pixels(
    model_dir: Path,
    card: Mapping[str, Any],
    manifest: Mapping[str, Any],
    regions: Sequence[tuple[str, int, int | None]],
    min_bins: int,
    max_bins: int,
    settings: CallingSettings,
    device: str,
    progress: bool,
) -> pd.DataFrame:
    """Scored candidate pixels (score >= the smallest grid value or threshold) of the regions'
    chromosomes, from :func:`hicmix.predict.predict` run into a temporary folder."""
    from hicmix.predict import PrefilterSettings, predict

    res = int(manifest["resolution"])
    chroms = sorted({chrom for chrom, _, _ in regions})
    uses_hic = card.get("mode") != "tracks_only" or settings.prefilter == "enrichment"
    floor = min(settings.grid) if isinstance(settings.threshold, str) else settings.threshold
    weight = (manifest.get("options") or {}).get("weight", "weight")
    with tempfile.TemporaryDirectory(prefix="hicmix-calls-") as tmp:
        folder = Path(tmp) / "predict"
        predict(
            [model_dir],
            dict(manifest["track_files"]),
            folder,
            chromosomes=chroms,
            cell_line=str(manifest["cell_line"]),
            hic=manifest["hic_file"] if uses_hic else None,
            weight=weight,
            assembly=manifest.get("assembly"),
            resolution=res,
            batch_size=settings.batch_size,
            device=device,
            threshold=float(floor),
            pool_radius=settings.pool_radius,
            prefilter=PrefilterSettings(settings.prefilter, dilate=settings.prefilter_dilate),
            loop_min_bp=min_bins * res,
            loop_max_bp=max_bins * res,
            html=False,
            progress=progress,
        )
        pixels = pd.read_csv(folder / "loop_pixels.tsv.gz", sep="\t", dtype={"chrom": str})
    return pixels


# --------------------------------------------------------------------------------------------------
# aggregation


def prevalence_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    ratio: int,
    *,
    draws: int = 20,
    seed: int = 0,
    min_positives: int = 5,
) -> dict[str, float]:
    """Patch-classification metrics at ``1:ratio`` positives to negatives, averaged over ``draws``.

    With at least ``ratio`` negatives per positive, every positive is kept and negatives are drawn;
    otherwise (the tiles' usual 1:1) every negative is kept and ``n_neg // ratio`` positives are
    drawn. Fewer than ``min_positives`` positives per draw: the metrics are NaN (too few negatives
    in the tiles; tile with a larger negative ratio). Also ``n_pos`` and ``n`` per draw.
    """
    from hicmix.evaluate.loops import patch_classification_scores

    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    enough = len(neg) >= ratio * len(pos)
    n_pos = len(pos) if enough else len(neg) // ratio
    n_neg = ratio * n_pos if enough else len(neg)
    out = {f"{m}_1to{ratio}": math.nan for m in PREVALENCE_METRICS}
    out |= {f"n_pos_1to{ratio}": float(n_pos), f"n_1to{ratio}": float(n_pos + n_neg)}
    if n_pos < min_positives or n_neg == 0:
        return out
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in PREVALENCE_METRICS}
    for _ in range(draws):
        keep_pos = pos if enough else rng.choice(pos, n_pos, replace=False)
        keep_neg = rng.choice(neg, n_neg, replace=False) if enough else neg
        keep = np.concatenate([keep_pos, keep_neg])
        found = patch_classification_scores(labels[keep], scores[keep])
        for m in PREVALENCE_METRICS:
            values[m].append(found[m])
    for m in PREVALENCE_METRICS:
        finite = [v for v in values[m] if math.isfinite(v)]
        out[f"{m}_1to{ratio}"] = float(np.mean(finite)) if finite else math.nan
    return out


def prevalence_rows(
    metrics_file: Path,
    ratio: int,
    *,
    draws: int = 20,
    min_positives: int = 5,
) -> list[dict[str, Any]]:
    """1:ratio rows for the loop patch predictions next to a loops ``metrics.tsv`` (one set per
    split and cell line; the identity columns come from that file's rows)."""
    from hicmix.evaluate import rows_from_dict

    predictions = metrics_file.parent / "predictions.tsv"
    table = pd.read_csv(metrics_file, sep="\t", dtype=str)
    table = table[table["task"] == "loops"]
    if table.empty or not predictions.is_file():
        return []
    pred = pd.read_csv(predictions, sep="\t", dtype={"chrom": str, "cell_line": str})
    rows = []
    for (split, cell), part in pred.groupby(["split", "cell_line"], sort=True):
        ident = table[(table["split"] == split) & (table["cell_line"] == cell)]
        if ident.empty:
            continue
        first = ident.iloc[0]
        seed = int(first["seed"])
        scores = prevalence_scores(
            part["label"].to_numpy(), part["score"].to_numpy(), ratio, draws=draws,
            seed=seed, min_positives=min_positives,
        )  # fmt: skip
        if not math.isfinite(scores[f"auroc_1to{ratio}"]):
            log.warning(
                "%s: %s %s has too few negatives for 1:%d (%d positives per draw); NaN rows",
                predictions, split, cell, ratio, int(scores[f"n_pos_1to{ratio}"]),
            )  # fmt: skip
        rows += rows_from_dict(
            scores, task="loops", method=str(first["method"]), cell_line=str(cell),
            train_cell_line=str(first["train_cell_line"]), split=str(split), seed=seed,
        )  # fmt: skip
    return rows


def collect_metrics(
    metrics_files: Iterable[str | os.PathLike[str]],
    out: str | Path,
    summary_out: str | Path,
    *,
    prevalence: int | None = 10,
    draws: int = 20,
    min_positives: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate run ``metrics.tsv`` files (a duplicated row key is an error), add the 1:N
    prevalence rows of loop patch predictions, write ``out`` and the mean ± sd ``summary_out``."""
    from hicmix.evaluate import read_metrics, summarise, write_metrics
    from hicmix.evaluate.metrics_table import format_mean_sd

    files = [Path(p) for p in metrics_files]
    if not files:
        raise ConfigError("evaluate metrics needs at least one metrics.tsv (--metrics)")
    table = read_metrics(files)
    if prevalence:
        extra = []
        for path in files:
            extra += prevalence_rows(
                path, int(prevalence), draws=draws, min_positives=min_positives
            )
        if extra:
            table = read_metrics_frame(pd.concat([table, pd.DataFrame(extra)], ignore_index=True))
    table = table.sort_values(
        ["task", "method", "train_cell_line", "cell_line", "split", "metric", "seed"],
        kind="stable",
    ).reset_index(drop=True)
    write_metrics(table, out)
    summary = summarise(table)
    summary["mean_sd"] = [
        format_mean_sd(m, s) for m, s in zip(summary["mean"], summary["sd"], strict=True)
    ]
    with atomic_path(summary_out) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, na_rep="NaN", float_format="%.10g")
    return table, summary


def read_metrics_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the metrics columns and dtypes; a duplicated row key is an InputError."""
    from hicmix.evaluate.metrics_table import GROUP_COLUMNS, METRIC_COLUMNS

    table = table[list(METRIC_COLUMNS)].astype({"value": np.float64, "seed": np.int64})
    key = [*GROUP_COLUMNS, "seed"]
    dup = table.duplicated(key, keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        raise InputError(
            f"metric {first['metric']!r} of {first['task']} / {first['method']} (split "
            f"{first['split']}, seed {first['seed']}) appears more than once; each run must write "
            "its own rows"
        )
    return table


__all__ = [
    "CALLS_FILE",
    "HEADLINE_METRICS",
    "SCORE_QUANTILES",
    "THRESHOLD_GRID",
    "CallingSettings",
    "call_loops",
    "calling_scores",
    "collect_metrics",
    "in_regions",
    "load_calling_settings",
    "pooling_from",
    "prevalence_scores",
    "run_calling",
    "select_threshold",
    "split_regions",
    "threshold_from",
    "transfer",
    "truth_loops",
    "write_calling_config",
    "write_expression_predictions",
    "write_loop_predictions",
    "write_map_predictions",
]
