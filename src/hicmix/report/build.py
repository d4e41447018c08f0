"""Assemble the run report (results/report/index.html) from metrics.tsv and the prediction files.

Each section degrades to a 'not run' note when its task, metrics or prediction files are absent;
a prediction file that cannot be read turns its figure into a note instead of stopping the page.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hicmix import __version__
from hicmix.atomic import atomic_path
from hicmix.evaluate.metrics_table import format_mean_sd, read_metrics, summarise
from hicmix.report import data, figures, peers, tables
from hicmix.report import html as H
from hicmix.report.data import PredictionRun, Stat, StatKey
from hicmix.report.reference import INFLATION_STATEMENT, REFERENCE_MARKDOWN, SOURCE
from hicmix.report.tables import Column, Table

TASK_TITLES = {"loops": "Loops", "hicmap": "Hi-C maps", "expression": "Expression"}
MAX_PAIRINGS = 4  # figures drawn per task (one per train → test pairing)
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, pd.errors.ParserError)


@dataclass
class ReportOptions:
    """What ``hicmix report`` was asked for."""

    metrics: Path
    out: Path
    results: Path = Path("results")
    config_file: Path | None = None
    snakemake_configfiles: Sequence[str] = ()
    cores: str | None = None
    split: str = "test"
    seed: int = 0
    windows: int = 3
    peers: Path | None = None  # bench/peers.py outputs; None: <results>/peers


@dataclass
class Context:
    """Everything the sections read: options, metrics, config and prediction folders."""

    options: ReportOptions
    table: pd.DataFrame
    stats: dict[StatKey, Stat]
    learning: pd.DataFrame
    config: dict[str, Any] | None
    runs: list[PredictionRun]
    raw_tasks: list[str] = field(default_factory=list)
    n_all: dict[tuple[str, str], int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def metrics_of(self, task: str) -> set[str]:
        return {k[5] for k in self.stats if k[0] == task}

    def has_task(self, task: str) -> bool:
        return bool((self.table["task"] == task).any()) if len(self.table) else False


def write_report(options: ReportOptions) -> Path:
    """Render the report page of one run to ``options.out`` (atomically) and return the path."""
    ctx = _context(options)
    body = [
        _header(ctx),
        _loops(ctx),
        _hicmap(ctx),
        _expression(ctx),
        *_other_tasks(ctx),
        _realdata_section(ctx),
        peers.section(_peers_folder(ctx.options)),
        _reference(ctx),
        _commands(ctx),
        H.paragraph(
            f"Every number of this run above comes from {options.metrics} (mean ± sd over "
            "seeds, sd with ddof = 1) or from the prediction files under "
            f"{options.results}; nothing is typed by hand.",
            "note",
        ),
    ]
    text = H.page("hicmix run report", body)
    with atomic_path(options.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return options.out


def _context(options: ReportOptions) -> Context:
    raw = read_metrics(options.metrics)
    table, n_all = data.fold_tasks(raw)
    summary = summarise(table)
    main, learning = tables.learning_curve_split(summary)
    return Context(
        options=options,
        table=table,
        stats=data.stats_index(main),
        learning=learning,
        config=data.load_config(options.config_file),
        runs=data.find_predictions(options.results),
        raw_tasks=sorted(set(raw["task"])) if len(raw) else [],
        n_all=n_all,
    )


# --------------------------------------------------------------------------------------------------
# header


def _header(ctx: Context) -> str:
    opts, table = ctx.options, ctx.table
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    run_date = dt.datetime.fromtimestamp(opts.metrics.stat().st_mtime, dt.UTC)
    seeds = sorted(set(table["seed"].tolist())) if len(table) else []
    tasks = ctx.raw_tasks
    meta = [
        ("run date (metrics.tsv written)", run_date.strftime("%Y-%m-%d %H:%M UTC")),
        ("report generated", now),
        ("hicmix version", __version__),
        ("metrics table", f"{opts.metrics} ({len(table)} rows)"),
        ("tasks in metrics.tsv", ", ".join(tasks) or "none"),
        ("seeds", ", ".join(map(str, seeds)) or "none"),
        ("main split of the tables", opts.split + " (val in collapsed blocks)"),
        ("prediction folders", f"{len(ctx.runs)} under {opts.results}"),
        ("config", str(opts.config_file) if opts.config_file else "not given (--config-file)"),
    ]
    parts = [
        "<h1>hicmix run report</h1>",
        _nav(ctx),
        H.key_values(meta),
        "<h3>Chromosome split</h3>",
        _split_table(ctx.config),
        "<h3>Package versions</h3>",
        H.key_values(list(data.package_versions().items())),
    ]
    if ctx.config is not None:
        dumped = yaml.safe_dump(ctx.config, sort_keys=False, default_flow_style=None)
        parts.append(H.details("Resolved config (YAML)", H.pre(dumped)))
    return "<header id='run'>" + "\n".join(parts) + "</header>"


def _nav(ctx: Context) -> str:
    links = [("loops", "Loops"), ("hicmap", "Hi-C maps"), ("expression", "Expression")]
    links += [(f"task-{t}", t) for t in _unknown_tasks(ctx)]
    if _realdata(ctx) or ctx.has_task(data.NPZ_TASK):
        links.append(("realdata", "Real data"))
    if (_peers_folder(ctx.options) / "peers.tsv").is_file():
        links.append(("peers", "Peer tools"))
    if _realdata(ctx):
        links.append(("reference", "Reference figures"))
    links.append(("commands", "Commands"))
    return "<nav>" + "".join(f"<a href='#{a}'>{H.esc(t)}</a>" for a, t in links) + "</nav>"


def _split_table(config: Mapping[str, Any] | None) -> str:
    splits = data.split_entries(config)
    if not splits:
        return H.not_run("no config given, so the split is unknown (pass --config-file)")
    rows = [(name, ", ".join(entries) or "none") for name, entries in splits.items()]
    chroms = (config or {}).get("chromosomes")
    scope = f" of {', '.join(map(str, chroms))}" if chroms else ""
    rows.append(("train", f"every other chromosome or region{scope}"))
    return H.key_values(rows)


# --------------------------------------------------------------------------------------------------
# task sections


def _task_tables(
    ctx: Context, task: str, columns: Sequence[Column], split: str, missing: Sequence[str] = ()
) -> str:
    table = tables.build_table(ctx.stats, task, split, columns)
    if not table.rows and not missing:
        return H.not_run(f"no {split} rows of these metrics for {task} in metrics.tsv")
    return H.metric_table(table, missing_rows=missing)


def _val_block(ctx: Context, task: str, groups: Sequence[tuple[str, Sequence[Column]]]) -> str:
    other = "val" if ctx.options.split != "val" else "test"
    parts = []
    for title, columns in groups:
        if columns:
            parts.append(f"<h4>{H.esc(title)}</h4>" if title else "")
            parts.append(_task_tables(ctx, task, columns, other))
    return H.details(f"{other} split (model selection)", "\n".join(parts))


def _all_metrics_block(ctx: Context, task: str) -> str:
    split = ctx.options.split
    rows = []
    for (t, s, method, train, test, metric), stat in sorted(ctx.stats.items()):
        if t == task and s == split and tables.distance_metric(metric) is None:
            rows.append(
                {
                    "method": method,
                    "train → test": f"{train} → {test}",
                    "metric": metric,
                    "mean ± sd": _number(stat),
                    "seeds": str(stat.n),
                }
            )
    if not rows:
        return ""
    body = H.long_table(rows, ["method", "train → test", "metric", "mean ± sd", "seeds"])
    return H.details(f"every {task} metric on the {split} split ({len(rows)} rows)", body)


def _number(stat: Stat) -> str:
    """Counts (n, n_pos, tp, ...) as integers, everything else as mean ± sd with 4 digits."""
    if stat.finite and float(stat.mean).is_integer() and not stat.sd > 0:
        return str(int(stat.mean))
    return format_mean_sd(stat.mean, stat.sd, 4)


def _sentences(ctx: Context, task: str, headlines: Sequence[Column]) -> str:
    names = ", then ".join(c.label for c in headlines) or "none found"
    intro = H.paragraph(
        f"Headline ({ctx.options.split} split): {names}. Ours = methods starting with 'hicmix'.",
        "note",
    )
    text = tables.comparison_sentences(ctx.stats, task, headlines, ctx.options.split)
    pointer = ""
    if _realdata(ctx):
        pointer = (
            "<p class='note'>Reference figures measured outside this run on the same split are "
            "in a <a href='#reference'>separate block</a> below.</p>"
        )
    return intro + H.bullets(text) + pointer


def _pairings(table: Table) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r.train, r.test) for r in table.rows))[:MAX_PAIRINGS]


def _loops(ctx: Context) -> str:
    if not ctx.has_task("loops"):
        return H.section("loops", "Loops", [H.not_run("metrics.tsv has no loops rows")])
    gw, patch = tables.loops_columns(ctx.metrics_of("loops"))
    headlines = tables.headline_columns("loops", ctx.metrics_of("loops"))
    split = ctx.options.split
    gw_part = [
        H.paragraph(
            "Every candidate pixel of the test region is scored, neighbouring hits are pooled "
            "into loops and the calls are matched one-to-one against the reference loops within "
            "±N bins. This is the protocol to lead with. Our fine-tuned models score the "
            "HICCUPS-like donut-enrichment maxima of the observed map; they train on the balanced "
            "patches plus those candidates of the training chromosomes (loop_candidates tiles), "
            "and their threshold is chosen on the validation chromosomes."
        ),
        _task_tables(ctx, "loops", gw, split)
        if gw
        else H.not_run("metrics.tsv has no genome-wide loop-calling metrics"),
    ]
    patch_part = [
        H.paragraph(
            f"Held-out off-diagonal patches, 1:1 negatives, threshold 0.5. The reference "
            f"document ({SOURCE}) states: “{INFLATION_STATEMENT}.” Read the F1 below as an "
            "upper bound of what calling achieves.",
            "note",
        ),
        H.bullets(tables.ratio_sentence(ctx.stats, split)),
        *_patch_tables(ctx, patch, split),
        *_roc_figures(ctx, patch),
    ]
    parts = [
        _sentences(ctx, "loops", headlines),
        H.section("loops-genomewide", "Genome-wide loop calling (protocol B)", gw_part, 3),
        H.section("loops-patch", "Balanced patch classification (protocol A)", patch_part, 3),
        _val_block(ctx, "loops", [("genome-wide calling", gw), ("patch classification", patch)]),
        _all_metrics_block(ctx, "loops"),
    ]
    return H.section("loops", "Loops", parts)


def _patch_tables(ctx: Context, patch: Sequence[Column], split: str) -> list[str]:
    """The 1:1 patch table, then the same patches at the 1:N prevalence columns (if any)."""
    if not patch:
        return [H.not_run("metrics.tsv has no patch-classification metrics")]
    balanced = [c for c in patch if "(1:" not in c.label]
    rare = [c for c in patch if "(1:" in c.label]
    out = [_task_tables(ctx, "loops", balanced, split)] if balanced else []
    if rare:
        ratio = rare[0].label[rare[0].label.index("(1:") + 1 : -1]
        out.append(
            H.paragraph(
                f"The same test patches with negatives drawn to {ratio} positives:negatives "
                "(mean over draws): F1 and AUPRC fall with the prevalence, AUROC does not.",
                "note",
            )
        )
        out.append(_task_tables(ctx, "loops", rare, split))
    return out


def _method_curves(
    ctx: Context,
    table: Table,
    task: str,
    pairing: tuple[str, str],
    read: Callable[[PredictionRun], figures.Scores],
) -> tuple[list[figures.Scores], list[str], list[PredictionRun]]:
    """Scores of every method of ``table`` for one (train, test) pairing, read from its picked
    run; a method without a run or with an unreadable one becomes a note instead."""
    train, test = pairing
    curves, notes, used = [], [], []
    methods = dict.fromkeys(r.method for r in table.rows if (r.train, r.test) == pairing)
    for method in methods:
        run = data.pick_run(ctx.runs, task, method, train, test, ctx.options.seed)
        if run is None:
            notes.append(f"{method}: no {data.PREDICTION_FILES[task]}")
            continue
        try:
            curves.append(read(run))
            used.append(run)
        except _READ_ERRORS as error:
            notes.append(f"{method} ({run.file}): {error}")
    return curves, notes, used


def _roc_figures(ctx: Context, patch: Sequence[Column]) -> list[str]:
    table = tables.build_table(ctx.stats, "loops", ctx.options.split, patch)
    out = []
    for train, test in _pairings(table):
        curves, notes, used = _method_curves(ctx, table, "loops", (train, test), _loop_scores)
        if curves:
            seeds = ", ".join(sorted({f"{c.method} seed {c.seed}" for c in curves}))
            png = figures.roc_pr_png(curves, f"{train} → {test}, test patches (1:1)")
            out.append(
                H.image(
                    png,
                    f"ROC and PR curves {train} to {test}",
                    f"Loop patches, protocol A. From {seeds}.",
                    _made_by(ctx, _run_targets(used)),
                )
            )
        if notes:
            skipped = f"ROC/PR of {train} → {test} skipped for " + "; ".join(notes) + "."
            out.append(H.paragraph(skipped, "note"))
    if not out:
        out.append(H.not_run("no loops predictions.tsv found for ROC/PR curves"))
    return out


def _loop_scores(run: PredictionRun) -> figures.Scores:
    frame = pd.read_csv(run.file, sep="\t")
    frame = _test_rows(frame, run)
    label = frame["label"].to_numpy(dtype=np.float64)
    score = frame["score"].to_numpy(dtype=np.float64)
    keep = np.isfinite(score) & np.isin(label, (0.0, 1.0))
    label, score = label[keep].astype(np.int64), score[keep]
    if not 0 < label.sum() < label.size:
        raise ValueError("the test rows need both positive and negative patches")
    return figures.Scores(run.method, run.seed, label, score)


def _test_rows(frame: pd.DataFrame, run: PredictionRun) -> pd.DataFrame:
    if "split" in frame:
        frame = frame[frame["split"].astype(str) == "test"]
    if "cell_line" in frame and (frame["cell_line"].astype(str) == run.test_cell).any():
        frame = frame[frame["cell_line"].astype(str) == run.test_cell]
    if frame.empty:
        raise ValueError("no test rows")
    return frame


def _hicmap(ctx: Context) -> str:
    if not ctx.has_task("hicmap"):
        return H.section("hicmap", "Hi-C maps", [H.not_run("metrics.tsv has no hicmap rows")])
    columns = tables.hicmap_columns(ctx.metrics_of("hicmap"))
    headlines = tables.headline_columns("hicmap", ctx.metrics_of("hicmap"))
    split = ctx.options.split
    table = tables.build_table(ctx.stats, "hicmap", split, columns)
    decay_missing = [] if any(tables.is_decay(r.method) for r in table.rows) else ["distance decay"]
    parts = [
        _sentences(ctx, "hicmap", headlines),
        H.paragraph(
            "Distance decay alone (expected contact per diagonal) scores high pixel Pearson and "
            "R² but 0 on per-distance Pearson, so its row is always shown: a method that does "
            "not beat it on r(d) has learned only P(s).",
            "note",
        ),
        _task_tables(ctx, "hicmap", columns, split, decay_missing)
        if columns
        else H.not_run("metrics.tsv has no Hi-C map metrics"),
        *_distance_figures(ctx),
        *_map_figures(ctx, table, headlines),
        _val_block(ctx, "hicmap", [("", columns)]),
        _all_metrics_block(ctx, "hicmap"),
    ]
    return H.section("hicmap", "Hi-C maps", parts)


def _distance_figures(ctx: Context) -> list[str]:
    by_pairing: dict[tuple[str, str], dict[str, list[tuple[int, Stat]]]] = {}
    for (task, split, method, train, test, metric), stat in ctx.stats.items():
        d = tables.distance_metric(metric)
        if task == "hicmap" and split == ctx.options.split and d is not None:
            by_pairing.setdefault((train, test), {}).setdefault(method, []).append((d, stat))
    out = []
    for (train, test), methods in list(sorted(by_pairing.items()))[:MAX_PAIRINGS]:
        curves = {}
        for method in sorted(methods, key=lambda m: (not tables.is_ours(m), m)):
            points = sorted(methods[method])
            d = np.array([p[0] for p in points])
            mean = np.array([p[1].mean for p in points])
            sd = np.array([p[1].sd for p in points])
            curves[method] = (d, mean, sd)
        png = figures.distance_pearson_png(curves, f"r(d), {train} → {test}", "")
        out.append(
            H.image(
                png,
                f"Pearson by distance {train} to {test}",
                "Pearson r per diagonal offset d (pearson_dNN metrics), mean over seeds, "
                "band = ±sd.",
                _made_by(ctx),
            )
        )
    return out or [H.not_run("no pearson_d<d> metrics for the r(d) curves")]


def _map_figures(ctx: Context, table: Table, headlines: Sequence[Column]) -> list[str]:
    if not headlines:
        return []
    key = headlines[0].metric
    out = []
    for train, test in _pairings(table)[:2]:
        rows = [r for r in table.rows if (r.train, r.test) == (train, test) and key in r.cells]
        ours = _best([r for r in rows if tables.is_ours(r.method)], key)
        base = _best([r for r in rows if not tables.is_ours(r.method)], key)
        methods = [m for m in (ours, base) if m]
        runs = {
            m: data.pick_run(ctx.runs, "hicmap", m, train, test, ctx.options.seed) for m in methods
        }
        runs = {m: r for m, r in runs.items() if r is not None}
        if not runs:
            continue
        try:
            panels = _map_panels(runs, ctx.options.windows)
        except _READ_ERRORS as error:
            out.append(H.paragraph(f"Contact maps skipped: {error}.", "note"))
            continue
        if not panels:
            continue
        seeds = ", ".join(f"{m} seed {r.seed}" for m, r in runs.items())
        png = figures.maps_png(panels, list(runs))
        out.append(
            H.image(
                png,
                f"predicted and observed maps {train} to {test}",
                f"{train} → {test}: observed vs predicted test windows ({seeds}; best of ours "
                f"and best baseline by {headlines[0].label}); model space, one colour scale per "
                "row, grey = masked.",
                _made_by(ctx, _run_targets(list(runs.values()))),
            )
        )
    return out or [H.not_run("no hicmap predictions.h5 found for the contact maps")]


def _best(rows: Sequence[tables.Row], metric: str) -> str | None:
    finite = [r for r in rows if metric in r.cells and r.cells[metric].finite]
    return max(finite, key=lambda r: r.cells[metric].mean).method if finite else None


def _h5_strings(handle: Any, name: str, n: int) -> np.ndarray | None:
    if name not in handle:
        return None
    values = handle[name][()]
    out = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])
    return out if out.size == n else None


def _window_index(handle: Any, test_cell: str) -> dict[tuple, int]:
    """(cell, chrom, bin_x, bin_y) -> row of the test windows of one predictions.h5."""
    bins = np.asarray(handle["bins"][()])
    n = bins.shape[0]
    split = _h5_strings(handle, "split", n)
    cells = _h5_strings(handle, "cell_line", n)
    chroms = _h5_strings(handle, "chrom", n)
    keep = np.ones(n, dtype=bool) if split is None else split == "test"
    if cells is not None and (keep & (cells == test_cell)).any():
        keep &= cells == test_cell
    index = {}
    for i in np.flatnonzero(keep):
        cell = "" if cells is None else cells[i]
        chrom = "" if chroms is None else chroms[i]
        index.setdefault((cell, chrom, int(bins[i, 0]), int(bins[i, -1])), int(i))
    return index


def _map_panels(runs: Mapping[str, PredictionRun], count: int) -> list[figures.MapPanel]:
    """Up to ``count`` test windows present in every file, spread along the sorted windows."""
    import h5py

    handles = {m: h5py.File(r.file, "r") for m, r in runs.items()}
    try:
        first = next(iter(runs.values()))
        indices = {m: _window_index(h, first.test_cell) for m, h in handles.items()}
        common = sorted(set.intersection(*(set(i) for i in indices.values())))
        lead = next(iter(handles))
        valid = [k for k in common if _valid_fraction(handles[lead], indices[lead][k]) >= 0.5]
        if not valid:
            return []
        picks = [valid[int(p)] for p in np.linspace(0, len(valid) - 1, min(count, len(valid)))]
        panels = []
        for key in dict.fromkeys(picks):
            i = indices[lead][key]
            mask = np.asarray(handles[lead]["mask"][i]).astype(bool)
            observed = np.where(mask, handles[lead]["true"][i], np.nan)
            predicted = {
                m: np.where(mask, handles[m]["pred"][indices[m][key]], np.nan) for m in handles
            }
            cell, chrom, x, _ = key
            title = " ".join(s for s in (cell, chrom, f"bin {x:,}") if s)
            panels.append(figures.MapPanel(title, observed, predicted))
        return panels
    finally:
        for handle in handles.values():
            handle.close()


def _valid_fraction(handle: Any, i: int) -> float:
    return float(np.mean(np.asarray(handle["mask"][i]) > 0))


def _expression(ctx: Context) -> str:
    if not ctx.has_task("expression"):
        return H.section(
            "expression", "Expression", [H.not_run("metrics.tsv has no expression rows")]
        )
    columns = tables.expression_columns(ctx.metrics_of("expression"))
    headlines = tables.headline_columns("expression", ctx.metrics_of("expression"))
    split = ctx.options.split
    parts = [
        _sentences(ctx, "expression", headlines),
        _task_tables(ctx, "expression", columns, split)
        if columns
        else H.not_run("metrics.tsv has no expression metrics"),
        "<h3>Learning curve</h3>",
        *_learning_curve(ctx, headlines),
        "<h3>Above-median class: ROC and PR curves</h3>",
        *_expression_roc(ctx, columns),
        "<h3>Predicted vs observed expression</h3>",
        *_scatter(ctx, columns),
        _val_block(ctx, "expression", [("", columns)]),
        _all_metrics_block(ctx, "expression"),
    ]
    return H.section("expression", "Expression", parts)


def _learning_curve(ctx: Context, headlines: Sequence[Column]) -> list[str]:
    lc = ctx.learning
    lc = lc[(lc["split"] == ctx.options.split)] if len(lc) else lc
    if lc.empty:
        return [
            H.not_run("metrics.tsv has no learning-curve rows (metric or method suffix n<genes>)")
        ]
    labels = {c.metric: c.label for c in headlines}
    wanted = [m for m in labels if m in set(lc["base_metric"])] or sorted(set(lc["base_metric"]))[
        :2
    ]
    pairing = next(iter(dict.fromkeys(zip(lc["train_cell_line"], lc["cell_line"], strict=True))))
    lc = lc[(lc["train_cell_line"] == pairing[0]) & (lc["cell_line"] == pairing[1])]
    sizes = sorted(set(lc["n_genes"].astype(int)))
    x_labels = [str(n) for n in sizes]
    points: dict[str, dict[str, list[tuple[str, float, float]]]] = {}
    rows = []
    for metric in wanted:
        label = labels.get(metric, metric)
        sub = lc[lc["base_metric"] == metric]
        for method, group in sub.groupby("base_method", sort=True):
            series = [
                (str(int(r.n_genes)), r.mean, r.sd)
                for r in group.sort_values("n_genes").itertuples()
            ]
            full = ctx.stats.get(("expression", ctx.options.split, method, *pairing, metric))
            if full is not None and full.finite:
                series.append(("all", full.mean, full.sd))
            points.setdefault(label, {})[method] = series
            rows.append(_curve_row(method, label, series))
        for method, stat in _ours_full(ctx, pairing, metric):
            if method in points.get(label, {}):
                continue  # has its own curve
            points.setdefault(label, {})[method] = [("all", stat.mean, stat.sd)]
            rows.append(_curve_row(method, label, points[label][method]))
    if any(x == "all" for per in points.values() for s in per.values() for x, _, _ in s):
        x_labels.append("all")
    png = figures.learning_curve_png(points, x_labels)
    n_all = ctx.n_all.get(pairing)
    caption = (
        f"{pairing[0]} → {pairing[1]}, {ctx.options.split} split, mean ± sd over seeds; "
        f"'all' = every training gene{f' ({n_all:,})' if n_all else ''}. Subsets are drawn "
        "with each seed; hicmix models (solid) are trained on all genes only, so they appear "
        "as one point at 'all'."
    )
    return [
        H.image(png, "expression learning curve", caption, _made_by(ctx)),
        H.long_table(rows, ["method", "metric", *x_labels]),
    ]


def _expression_roc(ctx: Context, columns: Sequence[Column]) -> list[str]:
    table = tables.build_table(ctx.stats, "expression", ctx.options.split, columns)
    out = []
    for train, test in _pairings(table)[:2]:
        curves, notes, used = _method_curves(
            ctx, table, "expression", (train, test), _expression_scores
        )
        if curves:
            seeds = ", ".join(sorted({f"{c.method} seed {c.seed}" for c in curves}))
            png = figures.roc_pr_png(curves, f"{train} → {test}, test genes, above median")
            caption = (
                "Class = observed expression above the training genes' median (the val genes' "
                "median where a run does not record it); score = the class probability where a "
                f"method has one, else the predicted expression. From {seeds}."
            )
            alt = f"expression ROC and PR curves {train} to {test}"
            out.append(H.image(png, alt, caption, _made_by(ctx, _run_targets(used))))
        if notes:
            text = f"Expression ROC/PR of {train} → {test} skipped for " + "; ".join(notes) + "."
            out.append(H.paragraph(text, "note"))
    return out or [H.not_run("no expression.tsv found for the ROC/PR curves")]


def _expression_scores(run: PredictionRun) -> figures.Scores:
    frame = pd.read_csv(run.file, sep="\t")
    threshold = data.train_median(run.path, run.train_cell)
    if threshold is None:
        val = frame[frame["split"].astype(str) == "val"] if "split" in frame else frame.iloc[:0]
        if val.empty:
            raise ValueError("no training median recorded and no val rows")
        threshold = float(np.nanmedian(val["truth"].to_numpy(dtype=np.float64)))
    frame = _test_rows(frame, run)
    truth = frame["truth"].to_numpy(dtype=np.float64)
    return _class_scores(run, truth, _score_column(frame), np.full(truth.shape, threshold))


def _score_column(frame: pd.DataFrame) -> np.ndarray:
    column = "probability" if "probability" in frame else "prediction"
    return frame[column].to_numpy(dtype=np.float64)


def _class_scores(
    run: PredictionRun, truth: np.ndarray, score: np.ndarray, threshold: np.ndarray
) -> figures.Scores:
    keep = np.isfinite(truth) & np.isfinite(score) & np.isfinite(threshold)
    label = (truth[keep] > threshold[keep]).astype(np.int64)
    if not 0 < label.sum() < label.size:
        raise ValueError("the scored genes need both classes")
    return figures.Scores(run.method, run.seed, label, score[keep])


def _curve_row(method: str, label: str, series: Sequence[tuple[str, float, float]]) -> dict:
    row = {"method": method, "metric": label}
    row.update({x: format_mean_sd(m, s) for x, m, s in series})
    return row


def _ours_full(ctx: Context, pairing: tuple[str, str], metric: str) -> list[tuple[str, Stat]]:
    """(method, stat) of every hicmix model on ``metric`` for the learning curve's pairing."""
    split = ctx.options.split
    return [
        (k[2], stat)
        for k, stat in sorted(ctx.stats.items())
        if k[0] == "expression"
        and k[1] == split
        and (k[3], k[4]) == pairing
        and k[5] == metric
        and tables.is_ours(k[2])
        and stat.finite
    ]


def _scatter(ctx: Context, columns: Sequence[Column]) -> list[str]:
    key = next((c.metric for c in columns if c.label == "Pearson"), None)
    table = tables.build_table(ctx.stats, "expression", ctx.options.split, columns)
    out = []
    for train, test in _pairings(table)[:2]:
        rows = [r for r in table.rows if (r.train, r.test) == (train, test)]
        ours = [r for r in rows if tables.is_ours(r.method)]
        method = _best(ours, key) if key and any(key in r.cells for r in ours) else None
        method = method or (ours[0].method if ours else None)
        if method is None:
            continue
        run = data.pick_run(ctx.runs, "expression", method, train, test, ctx.options.seed)
        if run is None:
            out.append(H.paragraph(f"{method} {train} → {test}: no expression.tsv.", "note"))
            continue
        try:
            frame = _test_rows(pd.read_csv(run.file, sep="\t"), run)
            truth = frame["truth"].to_numpy(dtype=np.float64)
            pred = frame["prediction"].to_numpy(dtype=np.float64)
        except _READ_ERRORS as error:
            out.append(H.paragraph(f"{run.file}: {error}.", "note"))
            continue
        ok = np.isfinite(truth) & np.isfinite(pred)
        title = f"{method}, {train} → {test}, seed {run.seed}"
        png = figures.scatter_png(truth[ok], pred[ok], title)
        out.append(H.image(png, title, None, _made_by(ctx, _run_targets([run]))))
    return out or [H.not_run("no expression.tsv of a hicmix model found")]


def _unknown_tasks(ctx: Context) -> list[str]:
    known = {*TASK_TITLES, data.NPZ_TASK}
    return sorted(set(ctx.table["task"]) - known) if len(ctx.table) else []


def _other_tasks(ctx: Context) -> list[str]:
    return [
        H.section(f"task-{task}", f"Task {task}", [_all_metrics_block(ctx, task)])
        for task in _unknown_tasks(ctx)
    ]


# --------------------------------------------------------------------------------------------------
# reference block and commands


def _cell_lines(ctx: Context) -> set[str]:
    cells = set(data.sheet_cell_lines(ctx.config))
    if len(ctx.table):
        cells |= set(ctx.table["cell_line"])
        for train in ctx.table["train_cell_line"]:
            cells |= set(str(train).split("+"))
    return cells


def _realdata(ctx: Context) -> bool:
    return data.is_realdata_run(ctx.config, _cell_lines(ctx))


def _realdata_section(ctx: Context) -> str:
    """Results of this run on real data: the external expression tensor (k-fold CV) and, for the
    real-data config, a pointer saying that the task sections are real data."""
    has_npz = ctx.has_task(data.NPZ_TASK)
    realdata = _realdata(ctx)
    if not has_npz and not realdata:
        return ""
    parts = []
    if realdata:
        parts.append(
            H.paragraph(
                "This run is the real-data configuration (GM12878, chr20 region split of "
                f"{SOURCE}): every table and figure of the task sections above is measured on real "
                "data, region A training and selecting models, region B testing."
            )
        )
    folder = _peers_folder(ctx.options)
    if realdata and not (folder / "peers.tsv").is_file():
        parts.append(
            H.paragraph(
                f"No peer-tool comparison here ({folder}/peers.tsv absent); run "
                f"{peers.bench_command(folder)} to add hicmix vs Peakachu, chromosight, "
                "mustache and pyHICCUPS.",
                "note",
            )
        )
    parts += _npz_part(ctx) if has_npz else []
    return H.section("realdata", "Real data", parts)


def _peers_folder(options: ReportOptions) -> Path:
    return options.peers if options.peers is not None else options.results / "peers"


def _npz_part(ctx: Context) -> list[str]:
    task = data.NPZ_TASK
    splits = sorted({k[1] for k in ctx.stats if k[0] == task})
    columns = tables.expression_columns(ctx.metrics_of(task))
    runs = [r for r in ctx.runs if r.task == task]
    npz = data.run_setting(runs, "npz")
    intro = (
        f"Expression baselines on the external tensor{f' {npz}' if npz else ''} "
        "(DeepChrome-style binarised histone marks, TSS ± 5 kb), scored by k-fold cross-"
        "validation over genes (split 'cv'; one chromosome, so no chromosome split). hicmix "
        "models need Hi-C tiles, so only the baselines run here; mean ± sd over seeds."
    )
    parts = [f"<h3>Expression, external tensor ({H.esc(task)})</h3>", H.paragraph(intro)]
    for split in splits:
        parts.append(_task_tables(ctx, task, columns, split))
    parts += _npz_figures(ctx, runs)
    if _realdata(ctx) or runs:
        parts.append(
            H.paragraph(
                "The docs' own figures on this tensor (5-fold CV, seed 0) are in the reference "
                "block below.",
                "note",
            )
        )
    return parts


def _npz_figures(ctx: Context, runs: Sequence[PredictionRun]) -> list[str]:
    curves, notes, used = [], [], []
    for method in sorted({r.method for r in runs}):
        pairs = sorted({(r.train_cell, r.test_cell) for r in runs if r.method == method})
        run = data.pick_run(runs, data.NPZ_TASK, method, *pairs[0], ctx.options.seed)
        if run is None:
            notes.append(f"{method}: no expression.tsv")
            continue
        try:
            curves.append(_npz_scores(run))
            used.append(run)
        except _READ_ERRORS as error:
            notes.append(f"{method} ({run.file}): {error}")
    out = []
    if curves:
        seeds = ", ".join(f"{c.method} seed {c.seed}" for c in curves)
        png = figures.roc_pr_png(curves, "external tensor, cross-validated genes, above median")
        caption = (
            "Each gene scored by the fold that held it out; class = above the median of the "
            f"fold's training genes. From {seeds}."
        )
        out.append(
            H.image(png, "external tensor ROC and PR", caption, _made_by(ctx, _run_targets(used)))
        )
    if notes:
        out.append(H.paragraph("Skipped: " + "; ".join(notes) + ".", "note"))
    return out


def _npz_scores(run: PredictionRun) -> figures.Scores:
    frame = pd.read_csv(run.file, sep="\t")
    truth = frame["truth"].to_numpy(dtype=np.float64)
    folds = frame["fold"].to_numpy()
    threshold = np.full(truth.shape, np.nan)
    for fold in np.unique(folds):
        held = folds == fold
        threshold[held] = np.nanmedian(truth[~held])
    return _class_scores(run, truth, _score_column(frame), threshold)


def _reference(ctx: Context) -> str:
    if not _realdata(ctx):
        return ""
    parts = [
        "<span class='refbadge'>reference, measured outside this run</span>",
        H.paragraph(
            f"These figures are copied from {SOURCE}. They were measured by the project docs "
            "with peer tools and plain baselines on the same GM12878 chr20 split, not by this "
            "run, and are kept out of the tables above on purpose. Compare them with this run's "
            "rows only on the same metric and protocol.",
            "note",
        ),
        H.markdown_blocks(REFERENCE_MARKDOWN),
        H.paragraph(
            "Published MIX-HIC numbers (method.md §6) were measured on other test chromosomes "
            "with other loop references, so they are not shown next to ours.",
            "note",
        ),
    ]
    title = "Reference figures (real data, measured by the docs on the same split)"
    return f"<aside class='reference'>{H.section('reference', title, parts)}</aside>"


def _snake_args(opts: ReportOptions, targets: Sequence[str] = ()) -> list[str]:
    """snakemake --cores N [targets] [--configfile ...]: --configfile takes every word after it,
    so it comes last."""
    snake = ["snakemake", "--cores", opts.cores or "N", *targets]
    if opts.snakemake_configfiles:
        snake += ["--configfile", *opts.snakemake_configfiles]
    return snake


def _made_by(ctx: Context, targets: Sequence[str | Path] = ()) -> str:
    """The snakemake command that makes a figure's inputs (its run folders, or metrics.tsv)."""
    files = [str(t) for t in targets] or [str(ctx.options.metrics)]
    return " ".join(shlex.quote(a) for a in _snake_args(ctx.options, files))


def _run_targets(runs: Sequence[PredictionRun]) -> list[Path]:
    return [r.path / "metrics.tsv" for r in runs]


def _commands(ctx: Context) -> str:
    opts = ctx.options
    snake = _snake_args(opts)
    report = ["hicmix", "report", "--metrics", str(opts.metrics), "--results", str(opts.results)]
    if opts.config_file:
        report += ["--config-file", str(opts.config_file)]
    report += ["--out", str(opts.out)]
    lines = [_shell_lines(snake), _shell_lines(report)]
    note = (
        "Run from the project folder. The first command reproduces the whole run (this page "
        "included); the second redraws only this page."
    )
    if not opts.cores:
        note += " N = the number of cores to use."
    return H.section("commands", "Commands", [H.paragraph(note, "note"), H.pre("\n".join(lines))])


def _shell_lines(args: Sequence[str], width: int = 80) -> str:
    """A command as shell text; longer than ``width``: one ``--option value`` per line."""
    quoted = [shlex.quote(a) for a in args]
    if len(" ".join(quoted)) <= width:
        return " ".join(quoted)
    lines: list[list[str]] = [[]]
    for token in quoted:
        if token.startswith("--") and lines[-1]:
            lines.append([])
        lines[-1].append(token)
    return " \\\n    ".join(" ".join(line) for line in lines)
