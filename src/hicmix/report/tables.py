"""Which metrics each report table shows, the table rows, and the generated comparison sentences.

Every number comes from the metrics summary (mean ± sd over seeds); the metric names are those of
hicmix.evaluate / hicmix.finetune, matched loosely where the workflow adds prefixes or suffixes
(genome-wide calling radius, 1:10 prevalence, learning-curve sizes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from hicmix.evaluate.metrics_table import format_mean_sd
from hicmix.report.data import Stat, StatKey

# --------------------------------------------------------------------------------------------------
# columns


@dataclass(frozen=True)
class Column:
    """One table column: the metric name in metrics.tsv and its header."""

    metric: str
    label: str
    higher_is_better: bool = True


def is_ours(method: str) -> bool:
    """Methods of the hicmix model start with 'hicmix'; everything else is a baseline."""
    return method.lower().startswith("hicmix")


def is_decay(method: str) -> bool:
    """The distance-decay-only baseline (expected contact per diagonal)."""
    return "decay" in method.lower()


_LOOP_STATS = ("f1", "precision", "recall", "auroc", "auprc")
_GW_WORDS = {
    "gw",
    "genome",
    "genomewide",
    "wide",
    "calling",
    "call",
    "calls",
    "called",
    "loopcall",
    "bedpe",
}
_RADIUS = re.compile(r"(?:(r|radius|rad|n|pm|within|tol)(\d+)|(\d+)(bins?|kb))")
_STAT_LABEL = {"f1": "F1", "precision": "P", "recall": "R", "auroc": "AUROC", "auprc": "AUPRC"}
_PATCH_LABEL = {
    "f1": "F1@0.5",
    "precision": "precision",
    "recall": "recall",
    "auroc": "AUROC",
    "auprc": "AUPRC",
}


def classify_loop_metric(name: str) -> tuple[str, str, str] | None:
    """(protocol 'genomewide'|'patch', stat, qualifier) of a loops metric name, or None.

    Genome-wide calling: a radius token (``r1``, ``radius2``, ``pm1``, ``20kb``) or a word such as
    ``gw``/``genomewide``/``calling``; qualifier = the radius. Patch: plain ``f1``, ``auroc``,
    ..., optionally ``patch_``-prefixed; qualifier ``1:10`` for a ``1to10`` prevalence suffix.
    """
    lower = name.lower()
    tokens = [t for t in re.split(r"[_\-.@:\s]+", lower) if t]
    stats = [t for t in tokens if t in _LOOP_STATS]
    if len(stats) != 1:
        return None
    rest = [t for t in tokens if t != stats[0]]
    prevalence = re.search(r"1to(\d+)", lower)
    if prevalence:
        rest = [t for t in rest if not re.fullmatch(r"1to\d+", t)]
        return ("patch", stats[0], f"1:{prevalence[1]}") if set(rest) <= {"patch"} else None
    gw = any(t in _GW_WORDS for t in rest)
    radii, other = [], []
    for token in rest:
        match = _RADIUS.fullmatch(token)
        if match:
            radii.append(f"±{match[2]}" if match[2] else f"±{match[3]}{match[4].rstrip('s')}")
        elif gw and token.isdigit():
            radii.append(f"±{token}")
        elif token not in _GW_WORDS and token != "patch":
            other.append(token)
    if other or len(radii) > 1:
        return None
    if radii or gw:
        return "genomewide", stats[0], radii[0] if radii else ""
    return "patch", stats[0], ""


def _radius_order(qualifier: str) -> tuple[int, float, str]:
    """±1, ±2 (bins) first, then genomic radii such as ±20kb, then none."""
    match = re.fullmatch(r"±(\d+)(kb|bin)?", qualifier)
    if not match:
        return (2, 0.0, qualifier)
    return (1 if match[2] == "kb" else 0, float(match[1]), qualifier)


def _gw_label(stat: str, radius: str) -> str:
    unit = "" if not radius or radius.endswith("kb") else " bin" + ("s" if radius != "±1" else "")
    return f"{_STAT_LABEL[stat]} ({radius}{unit})" if radius else f"{_STAT_LABEL[stat]}"


def loops_columns(metrics: Iterable[str]) -> tuple[list[Column], list[Column]]:
    """(genome-wide columns, patch columns) present among ``metrics``, in display order."""
    gw: dict[tuple, Column] = {}
    patch: dict[tuple, Column] = {}
    stat_order = {"precision": 0, "recall": 1, "f1": 2, "auroc": 3, "auprc": 4}
    patch_order = {"f1": 0, "precision": 1, "recall": 2, "auroc": 3, "auprc": 4}
    for name in sorted(set(metrics)):
        kind = classify_loop_metric(name)
        if kind is None:
            continue
        protocol, stat, qualifier = kind
        if protocol == "genomewide":
            key = (_radius_order(qualifier), stat_order[stat])
            gw.setdefault(key, Column(name, _gw_label(stat, qualifier)))
        else:
            label = _PATCH_LABEL[stat]
            suffix = f" ({qualifier})" if qualifier else ""
            patch.setdefault((qualifier, patch_order[stat]), Column(name, label + suffix))
    return [gw[k] for k in sorted(gw)], [patch[k] for k in sorted(patch)]


def _first(metrics: set[str], candidates: Sequence[str], prefix: str | None = None) -> str | None:
    for name in candidates:
        if name in metrics:
            return name
    if prefix:
        starting = sorted(m for m in metrics if m.startswith(prefix))
        return starting[0] if starting else None
    return None


#: hicmap columns: (label, exact candidates, prefix fallback, higher is better)
_HICMAP = (
    ("r(d) mean, d ≥ 1", ("distance_pearson_mean", "mean_distance_pearson"), None, True),
    ("SCC", ("scc",), "scc", True),
    ("insulation r", ("insulation_pearson", "insulation"), "insulation", True),
    ("O/E Pearson", ("oe_pearson",), None, True),
    ("pixel Pearson", ("pixel_pearson",), None, True),
    ("pixel Spearman", ("pixel_spearman",), None, True),
    ("window R²", ("r2_window_mean",), None, True),
    ("pooled R²", ("r2_pooled",), None, True),
    ("pixel MSE", ("pixel_mse", "mse"), None, False),
)
_EXPRESSION = (
    ("Pearson", ("pearson",), None, True),
    ("Spearman", ("spearman",), None, True),
    ("R²", ("r2",), None, True),
    ("AUROC", ("above_median_auroc", "auroc"), None, True),
    ("AUPRC", ("above_median_auprc", "auprc"), None, True),
    ("accuracy", ("above_median_accuracy", "accuracy"), None, True),
)


def _resolve(metrics: Iterable[str], spec: Sequence[tuple]) -> list[Column]:
    names = set(metrics)
    columns = []
    for label, candidates, prefix, higher in spec:
        name = _first(names, candidates, prefix)
        if name is not None:
            columns.append(Column(name, label, higher))
    return columns


def hicmap_columns(metrics: Iterable[str]) -> list[Column]:
    """Hi-C map columns present: per-distance Pearson and SCC first, pixel scores after."""
    return _resolve(metrics, _HICMAP)


def expression_columns(metrics: Iterable[str]) -> list[Column]:
    """Expression columns present: regression (Pearson, Spearman, R²), then above-median AUROC."""
    return _resolve(metrics, _EXPRESSION)


def headline_columns(task: str, metrics: Iterable[str]) -> list[Column]:
    """The metrics the comparison sentence uses, most important first."""
    metrics = list(metrics)
    if task == "loops":
        gw, patch = loops_columns(metrics)
        f1_gw = [c for c in gw if c.label.startswith("F1 (±1")] or [
            c for c in gw if c.label.startswith("F1")
        ]
        auroc = [c for c in patch if c.label == "AUROC"]
        return [Column(c.metric, f"genome-wide {c.label}") for c in f1_gw[:1]] + [
            Column(c.metric, f"patch {c.label}") for c in auroc[:1]
        ]
    if task == "hicmap":
        wanted = {"r(d) mean, d ≥ 1": "mean per-distance Pearson (d ≥ 1)", "SCC": "SCC"}
        return [
            Column(c.metric, wanted[c.label]) for c in hicmap_columns(metrics) if c.label in wanted
        ]
    if task == "expression":
        wanted = {"Pearson": "Pearson", "AUROC": "AUROC (above median)"}
        return [
            Column(c.metric, wanted[c.label])
            for c in expression_columns(metrics)
            if c.label in wanted
        ]
    return []


# --------------------------------------------------------------------------------------------------
# learning curve and per-distance rows

_N_GENES = r"[_\-@.](?:n|ntrain|n_train|train|genes|ngenes|lc)?_?(\d+)(?:_?genes)?"
_LC_METRIC = re.compile(rf"(?P<base>[a-z][a-z0-9_]*?){_N_GENES}", re.IGNORECASE)
_LC_METHOD = re.compile(
    r"(?P<base>.+?)[_\-@.](?:n|ntrain|n_train|train|genes|ngenes|lc)_?(\d+)(?:_?genes)?",
    re.IGNORECASE,
)
_DISTANCE = re.compile(r"pearson_d(\d+)")


def learning_curve_split(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(main rows, learning-curve rows) of the expression summary.

    Learning-curve rows carry the number of training genes as a metric suffix (``pearson_n100``)
    or a method suffix (``deepchrome-n1000``); they get ``base_method``, ``base_metric`` and
    ``n_genes`` columns. Everything else is a main row.
    """
    expr = summary["task"] == "expression"
    base_method, base_metric, n_genes = [], [], []
    for method, metric, is_expr in zip(summary["method"], summary["metric"], expr, strict=True):
        m_metric = _LC_METRIC.fullmatch(metric) if is_expr else None
        m_method = _LC_METHOD.fullmatch(method) if is_expr else None
        if m_metric and m_metric["base"] in _expression_names():
            base_method.append(method)
            base_metric.append(m_metric["base"])
            n_genes.append(int(m_metric[2]))
        elif m_method:
            base_method.append(m_method["base"])
            base_metric.append(metric)
            n_genes.append(int(m_method[2]))
        else:
            base_method.append(None)
            base_metric.append(None)
            n_genes.append(-1)
    out = summary.assign(base_method=base_method, base_metric=base_metric, n_genes=n_genes)
    lc = out["n_genes"] >= 0
    return summary[~lc.to_numpy()], out[lc.to_numpy()]


def _expression_names() -> set[str]:
    return {name for _, candidates, _, _ in _EXPRESSION for name in candidates}


def distance_metric(name: str) -> int | None:
    """The diagonal offset d of a ``pearson_d<d>`` metric, else None."""
    match = _DISTANCE.fullmatch(name)
    return int(match[1]) if match else None


# --------------------------------------------------------------------------------------------------
# tables


@dataclass
class Row:
    """One table row: a method on one train → test pairing."""

    method: str
    train: str
    test: str
    cells: dict[str, Stat] = field(default_factory=dict)
    note: str = ""

    @property
    def pairing(self) -> str:
        return f"{self.train} → {self.test}"


@dataclass
class Table:
    """Rows × columns with the best mean per column and pairing marked."""

    columns: list[Column]
    rows: list[Row]

    def best(self) -> set[tuple[int, str]]:
        """(row index, metric) of the best finite mean per column within each pairing."""
        marked: set[tuple[int, str]] = set()
        pairings = {(r.train, r.test) for r in self.rows}
        for pairing in pairings:
            members = [i for i, r in enumerate(self.rows) if (r.train, r.test) == pairing]
            if len(members) < 2:
                continue
            for column in self.columns:
                values = {
                    i: self.rows[i].cells[column.metric].mean
                    for i in members
                    if column.metric in self.rows[i].cells
                    and self.rows[i].cells[column.metric].finite
                }
                if len(values) < 2:
                    continue
                pick = max if column.higher_is_better else min
                top = pick(values.values())
                marked |= {(i, column.metric) for i, v in values.items() if v == top}
        return marked


def _sort_key(row: Row) -> tuple:
    return (row.train, row.test, not is_ours(row.method), is_decay(row.method), row.method)


def build_table(
    stats: Mapping[StatKey, Stat],
    task: str,
    split: str,
    columns: Sequence[Column],
    methods: Iterable[str] | None = None,
) -> Table:
    """Rows of every (method, train, test) with at least one of ``columns`` on ``split``."""
    wanted = {c.metric for c in columns}
    allowed = set(methods) if methods is not None else None
    rows: dict[tuple[str, str, str], Row] = {}
    for (t, s, method, train, test, metric), stat in stats.items():
        if t != task or s != split or metric not in wanted:
            continue
        if allowed is not None and method not in allowed:
            continue
        row = rows.setdefault((method, train, test), Row(method, train, test))
        row.cells[metric] = stat
    return Table(list(columns), sorted(rows.values(), key=_sort_key))


def seeds_of(row: Row) -> int:
    """The largest number of seeds behind any cell of a row."""
    return max((s.n for s in row.cells.values()), default=0)


# --------------------------------------------------------------------------------------------------
# comparison sentences


def _clause(base: str, column: Column, ours: Stat, theirs: Stat, digits: int = 3) -> str:
    diff = ours.mean - theirs.mean
    if not column.higher_is_better:
        diff = -diff
    values = (
        f"{format_mean_sd(ours.mean, ours.sd, digits)} vs "
        f"{format_mean_sd(theirs.mean, theirs.sd, digits)}"
    )
    gap = round(abs(diff), digits)
    sds = [s for s in (ours.sd, theirs.sd) if math.isfinite(s)]
    noise = "; the gap is within one sd over seeds" if sds and gap <= max(sds) else ""
    if gap == 0:
        return f"ties with {base} on {column.label} ({values}{noise})"
    if diff > 0:
        return f"beats {base} on {column.label} by {gap:.{digits}f} ({values}{noise})"
    return (
        f"does not beat {base} on {column.label}: it trails by {gap:.{digits}f} ({values}{noise})"
    )


def comparison_sentences(
    stats: Mapping[StatKey, Stat],
    task: str,
    headlines: Sequence[Column],
    split: str = "test",
) -> list[str]:
    """One sentence per (our method, baseline, pairing) on the headline metrics of ``task``."""
    if not headlines:
        return [f"No headline metric of {task} is in metrics.tsv, so there is nothing to compare."]
    table = build_table(stats, task, split, headlines)
    ours = [r for r in table.rows if is_ours(r.method)]
    theirs = [r for r in table.rows if not is_ours(r.method)]
    if not ours:
        return [f"No hicmix model has {split} metrics for {task}, so there is nothing to compare."]
    if not theirs:
        return [f"No baseline has {split} metrics for {task}, so there is nothing to compare."]
    sentences = []
    for mine in ours:
        for other in theirs:
            if (other.train, other.test) != (mine.train, mine.test):
                continue
            clauses = [
                _clause(other.method, col, mine.cells[col.metric], other.cells[col.metric])
                for col in headlines
                if col.metric in mine.cells
                and col.metric in other.cells
                and mine.cells[col.metric].finite
                and other.cells[col.metric].finite
            ]
            if not clauses:
                continue
            text = f"{mine.method} ({mine.pairing}) " + "; and ".join(clauses)
            decay_note = _decay_note(task, mine, other, headlines)
            sentences.append(text + "." + decay_note)
    return sentences or [
        f"No hicmix model and baseline share a train → test pairing and a headline metric "
        f"of {task} on the {split} split."
    ]


def _decay_note(task: str, mine: Row, other: Row, headlines: Sequence[Column]) -> str:
    if task != "hicmap" or not is_decay(other.method) or not headlines:
        return ""
    first = headlines[0]
    a, b = mine.cells.get(first.metric), other.cells.get(first.metric)
    if a is None or b is None or not (a.finite and b.finite) or a.mean > b.mean:
        return ""
    return (
        f" Not beating distance decay on {first.label} means {mine.method} has learned "
        "only the contact decay P(s) here."
    )


def ratio_sentence(stats: Mapping[StatKey, Stat], split: str = "test") -> list[str]:
    """Patch F1 / genome-wide F1 (±1) of each method and pairing of this run, from its metrics."""
    metrics = {k[5] for k in stats if k[0] == "loops"}
    gw, patch = loops_columns(metrics)
    f1_gw = next((c for c in gw if c.label.startswith("F1 (±1")), None)
    f1_patch = next((c for c in patch if c.label == "F1@0.5"), None)
    if f1_gw is None or f1_patch is None:
        return []
    table = build_table(stats, "loops", split, [f1_gw, f1_patch])
    out = []
    for row in table.rows:
        a, b = row.cells.get(f1_patch.metric), row.cells.get(f1_gw.metric)
        if a and b and a.finite and b.finite and b.mean > 0:
            out.append(
                f"{row.method} ({row.pairing}): patch F1 {a.mean:.3f} is "
                f"{a.mean / b.mean:.1f}× its genome-wide F1 (±1 bin) {b.mean:.3f}."
            )
    return out
