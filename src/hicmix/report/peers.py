"""Real data: hicmix against the real peer tools (bench/peers.py outputs), read at report time.

``<peers>/peers.tsv`` (one row per tool: precision, recall, F1 at ±1 and ±2 bins, wall seconds,
peak RSS, scoring seconds, notes), ``peers_by_distance.tsv`` (recall per distance stratum) and
``versions.json`` (per peer environment: version, patch; ``_run``: machine and load) are optional:
a fresh clone has none, so the section is drawn only when peers.tsv exists.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hicmix.report import figures
from hicmix.report import html as H

#: the issue's bar: real Peakachu's F1 (±1) on region B, 0.386, plus the noise margin
BAR_F1 = 0.44
PEAKACHU_REFERENCE_F1 = 0.386
#: the bar after that: pyHICCUPS's reference F1 (±1)
HICCUPS_REFERENCE_F1 = 0.561
TITLE = "Real data: hicmix vs peer tools"
OURS = "hicmix"
PEAKACHU = "peakachu"
REQUIRED = ("tool", "precision", "recall", "f1")
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, pd.errors.ParserError)


@dataclass
class PeerResults:
    """The bench's outputs: one row per tool, recall by distance, environments and run info."""

    folder: Path
    table: pd.DataFrame
    by_distance: pd.DataFrame | None = None
    versions: dict[str, Any] = field(default_factory=dict)

    @property
    def run_info(self) -> dict[str, Any]:
        info = self.versions.get("_run")
        return info if isinstance(info, dict) else {}


def bench_command(folder: Path) -> str:
    """The command that writes ``folder``'s peers files."""
    args = ["python", "bench/peers.py", "--envs", str(folder / "envs"), "--out", str(folder)]
    return " ".join(shlex.quote(a) for a in args)


def load(folder: Path) -> PeerResults | None:
    """The bench outputs under ``folder``; None when peers.tsv is absent.

    Raises ValueError (naming the file) when peers.tsv lacks the tool/precision/recall/f1 columns.
    """
    path = folder / "peers.tsv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, sep="\t", dtype={"tool": str})
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}; rerun bench/peers.py")
    return PeerResults(folder, table, _read_distance(folder), _read_versions(folder))


def _read_distance(folder: Path) -> pd.DataFrame | None:
    path = folder / "peers_by_distance.tsv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, sep="\t", dtype={"tool": str, "stratum": str})
    return frame if {"tool", "stratum", "recall"} <= set(frame.columns) else None


def _read_versions(folder: Path) -> dict[str, Any]:
    path = folder / "versions.json"
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


# --------------------------------------------------------------------------------------------------
# numbers


def _value(row: Mapping[str, Any], column: str) -> float:
    try:
        value = float(row.get(column, math.nan))
    except (TypeError, ValueError):
        return math.nan
    return value


def _fmt(value: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


def _env_entry(versions: Mapping[str, Any], tool: str) -> Mapping[str, Any]:
    """versions.json entry of a tool: its own key, else the part before the first '-'."""
    for key in (tool, tool.split("-")[0]):
        entry = versions.get(key)
        if isinstance(entry, Mapping) and key != "_run":
            return entry
    return {}


def tool_version(row: Mapping[str, Any], versions: Mapping[str, Any]) -> str:
    """'distribution version' from versions.json, else peers.tsv's version column."""
    entry = _env_entry(versions, str(row["tool"]))
    if entry.get("version"):
        dist = str(entry.get("distribution") or row["tool"])
        return f"{dist} {entry['version']}"
    value = row.get("version")
    return "" if value is None or pd.isna(value) else str(value)


def tool_notes(
    row: Mapping[str, Any], versions: Mapping[str, Any], seen: set[str] | None = None
) -> str:
    """Patch of the tool's environment (when not 'none'; 'as above' when already in ``seen``)
    and the run's notes."""
    entry = _env_entry(versions, str(row["tool"]))
    parts = []
    patch = str(entry.get("patch") or "")
    if patch and patch.lower() != "none":
        parts.append("patch: as above" if seen is not None and patch in seen else f"patch: {patch}")
        if seen is not None:
            seen.add(patch)
    for key in ("notes", "status"):
        value = row.get(key)
        text = "" if value is None or pd.isna(value) else str(value)
        if seen is not None and key == "notes" and text in seen:
            text = "notes as above" if text else ""
        elif seen is not None and key == "notes":
            seen.add(text)
        if text and not (key == "status" and text == "ok"):
            parts.append(text if key == "notes" else f"status: {text}")
    return "; ".join(parts)


def table_rows(results: PeerResults) -> list[dict[str, str]]:
    """The table's string cells, one dict per tool, in peers.tsv order."""
    rows, seen = [], set()
    for row in results.table.to_dict("records"):
        rows.append(
            {
                "tool": str(row["tool"]),
                "version": tool_version(row, results.versions),
                "precision": _fmt(_value(row, "precision")),
                "recall": _fmt(_value(row, "recall")),
                "F1 ±1": _fmt(_value(row, "f1")),
                "F1 ±2": _fmt(_value(row, "f1_r2")),
                "wall s": _fmt(_value(row, "wall_s"), 1),
                "whole-chromosome scoring s": _fmt(_value(row, "score_s"), 2),
                "peak RSS MB": _fmt(_value(row, "peak_rss_mb"), 0),
                "notes / patches": tool_notes(row, results.versions, seen),
            }
        )
    return rows


COLUMNS = (
    "tool",
    "version",
    "precision",
    "recall",
    "F1 ±1",
    "F1 ±2",
    "wall s",
    "whole-chromosome scoring s",
    "peak RSS MB",
    "notes / patches",
)


def _row(table: pd.DataFrame, tool: str) -> dict[str, Any] | None:
    hits = table[table["tool"] == tool]
    return None if hits.empty else hits.iloc[0].to_dict()


def _is_peer(tool: str) -> bool:
    return not tool.lower().startswith(OURS)


def _reference_f1(table: pd.DataFrame, tool: str, default: float) -> float:
    row = _row(table, tool)
    value = _value(row, "reference_f1") if row else math.nan
    return value if math.isfinite(value) else default


def _versus(name: str, ours: float, theirs: float, show: bool = True) -> str:
    side = "above" if ours > theirs else "below" if ours < theirs else "level with"
    gap = f" by {abs(ours - theirs):.3f}" if side != "level with" else ""
    value = f" ({theirs:.3f})" if show else ""
    return f"{side} {name}{value}{gap}"


def sentences(results: PeerResults) -> list[str]:
    """Generated comparisons: hicmix's F1 (±1) against the best peer and the issue's bars, and
    its whole-chromosome scoring time against Peakachu's score_chromosome."""
    table = results.table
    ours = _row(table, OURS)
    if ours is None or not math.isfinite(_value(ours, "f1")):
        return [f"No '{OURS}' row in {results.folder / 'peers.tsv'}: nothing to compare."]
    f1 = _value(ours, "f1")
    out = [_f1_sentence(table, f1), _bar_sentence(table, f1), _peakachu_sentence(table)]
    out.append(_speed_sentence(table, ours))
    return [s for s in out if s]


def _peakachu_sentence(table: pd.DataFrame) -> str | None:
    runs = table[[str(t).startswith(PEAKACHU) for t in table["tool"]]]
    values = pd.to_numeric(runs["f1"], errors="coerce").dropna()
    if values.empty:
        return None
    spread = f"{values.min():.3f}" if len(values) == 1 else f"{values.min():.3f}–{values.max():.3f}"
    return (
        f"Real Peakachu in this run: F1 (±1) {spread} over {len(values)} training seed(s) "
        f"(reference {_reference_f1(table, PEAKACHU, PEAKACHU_REFERENCE_F1):.3f})."
    )


def _f1_sentence(table: pd.DataFrame, f1: float) -> str:
    peers = table[[_is_peer(str(t)) for t in table["tool"]]]
    peers = peers[pd.to_numeric(peers["f1"], errors="coerce").notna()]
    if peers.empty:
        return f"hicmix F1 (±1) = {f1:.3f} on region B; no peer tool has an F1 in this run."
    best = peers.loc[pd.to_numeric(peers["f1"]).idxmax()]
    return (
        f"hicmix F1 (±1) = {f1:.3f} on region B is "
        f"{_versus('the best peer tool of this run, ' + str(best['tool']), f1, float(best['f1']))}."
    )


def _bar_sentence(table: pd.DataFrame, f1: float) -> str:
    peakachu = _reference_f1(table, PEAKACHU, PEAKACHU_REFERENCE_F1)
    hiccups = _reference_f1(table, "hiccups", HICCUPS_REFERENCE_F1)
    verdict = "meets" if f1 > BAR_F1 else "falls short of"
    return (
        f"It {verdict} the issue's bar: {_versus(f'the bar {BAR_F1:.2f}', f1, BAR_F1, show=False)} "
        f"(real Peakachu's reference {peakachu:.3f} + noise margin), and is "
        f"{_versus('the next bar, pyHICCUPS reference', f1, hiccups)}."
    )


def _speed_sentence(table: pd.DataFrame, ours: Mapping[str, Any]) -> str | None:
    """hicmix's whole-chromosome scoring seconds against Peakachu's score_chromosome."""
    peakachu = _row(table, PEAKACHU)
    mine = _value(ours, "score_s")
    theirs = _value(peakachu, "score_s") if peakachu else math.nan
    if not (math.isfinite(mine) and math.isfinite(theirs)) or mine <= 0 or theirs <= 0:
        return None
    if mine < theirs:
        how = f"{theirs / mine:.1f}× faster than"
    elif mine > theirs:
        how = f"{mine / theirs:.1f}× slower than"
    else:
        how = "as fast as"
    return (
        f"Whole-chromosome scoring: hicmix {mine:.2f} s, {how} Peakachu's score_chromosome "
        f"({theirs:.2f} s), same machine, same run; end to end (training included) "
        f"hicmix {_fmt(_value(ours, 'wall_s'), 1)} s vs Peakachu "
        f"{_fmt(_value(peakachu or {}, 'wall_s'), 1)} s."
    )


def run_rows(results: PeerResults) -> list[tuple[str, str]]:
    """Machine and load of the bench run (versions.json ``_run``)."""
    info = results.run_info
    labels = {
        "started": "started",
        "machine": "machine",
        "cpu_count": "CPU cores",
        "threads": "threads per tool",
        "python": "python",
        "loadavg_start": "load average at start (1/5/15 min)",
        "loadavg_end": "load average at end (1/5/15 min)",
        "seed": "seed",
        "truth_region_b": "truth loops in region B",
    }
    rows = []
    for key, label in labels.items():
        if key in info:
            value = info[key]
            text = " / ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((label, text))
    return rows


# --------------------------------------------------------------------------------------------------
# section


def section(folder: Path) -> str:
    """The 'Real data: hicmix vs peer tools' section, or '' when ``folder`` has no peers.tsv."""
    try:
        results = load(folder)
    except _READ_ERRORS as error:
        return H.section("peers", TITLE, [H.paragraph(f"Unreadable: {error}", "note")])
    if results is None:
        return ""
    command = bench_command(folder)
    parts = [
        H.paragraph(
            "hicmix's genome-wide loop caller and the real peer tools, each in its own "
            "environment, on GM12878 chr20 region B (25 kb; region A trains and selects), "
            "measured in one bench run on one machine and scored by hicmix's loop evaluator "
            "(one-to-one matching within ±1 or ±2 bins). hicmix's caller here is the "
            "enrichment-candidate + learned (gradient-boosted) scorer "
            "(hicmix.predict.loops), not the deep multimodal model. Shaded rows run inside "
            "hicmix (hicmix-rf: hicmix's own Peakachu-style random forest); the best-peer "
            "comparison uses only the other rows."
        ),
        H.bullets(sentences(results)),
        _table_html(results),
        *_figure(results, command),
        "<h3>Machine and load of the bench run</h3>",
        H.key_values(run_rows(results)) if results.run_info else H.paragraph("not recorded"),
        H.paragraph(
            "Wall times are of this run on this machine under its load; they are not comparable "
            "with the reference block's timings, measured on an idle machine.",
            "note",
        ),
        _settings(results),
        H.paragraph(f"Files: {folder}/peers.tsv, peers_by_distance.tsv, versions.json.", "note"),
        H.pre(command),
    ]
    return H.section("peers", TITLE, parts)


def _table_html(results: PeerResults) -> str:
    rows = table_rows(results)
    head = "".join(f"<th class='l'>{H.esc(c)}</th>" for c in COLUMNS)
    body = []
    for row in rows:
        cls = " class='ours'" if not _is_peer(row["tool"]) else ""
        cells = "".join(_cell(c, row[c]) for c in COLUMNS)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<div class='tw'><table class='peers'><tr>{head}</tr>{''.join(body)}</table></div>"


def _cell(column: str, text: str) -> str:
    if column in ("tool", "version"):
        return f"<td class='l'>{H.esc(text)}</td>"
    if column == "notes / patches":
        return f"<td class='l wrap'>{H.esc(text)}</td>"
    return f"<td>{H.esc(text)}</td>"


def _settings(results: PeerResults) -> str:
    if "settings" not in results.table.columns:
        return ""
    rows = [
        (str(r["tool"]), "" if pd.isna(r["settings"]) else str(r["settings"]))
        for r in results.table.to_dict("records")
    ]
    return H.details("Settings of every tool (peers.tsv)", H.key_values(rows))


def _figure(results: PeerResults, command: str) -> list[str]:
    table = results.table
    bars = figures.PeerBars(
        tools=[str(t) for t in table["tool"]],
        f1=[_value(r, "f1") for r in table.to_dict("records")],
        f1_r2=[_value(r, "f1_r2") for r in table.to_dict("records")],
        wall=[_value(r, "wall_s") for r in table.to_dict("records")],
        score=[_value(r, "score_s") for r in table.to_dict("records")],
    )
    recall = _recall_by_stratum(results.by_distance, bars.tools)
    png = figures.peers_png(bars, recall, BAR_F1)
    caption = (
        f"Left: F1 at ±1 and ±2 bins per tool; dashed line: the issue's bar {BAR_F1:.2f}. "
        "Middle: wall seconds of the whole tool run (hatched: whole-chromosome scoring alone, "
        "where the tool reports it). Right: recall of the truth loops per anchor-distance "
        "stratum (peers_by_distance.tsv)."
    )
    return [H.image(png, "hicmix vs peer tools", caption, command)]


def _recall_by_stratum(
    frame: pd.DataFrame | None, tools: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{stratum: {tool: recall}} in file order of the strata."""
    if frame is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for row in frame.to_dict("records"):
        if str(row["tool"]) in tools:
            out.setdefault(str(row["stratum"]), {})[str(row["tool"])] = _value(row, "recall")
    return out
