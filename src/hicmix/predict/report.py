"""A short self-contained HTML summary of a predict run (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path


@dataclass
class Region:
    """What one summary figure shows: bins [lo, hi) of a chromosome."""

    chrom: str
    lo: int
    hi: int
    resolution: int
    predicted: np.ndarray | None = None  # (m, m) dense, NaN outside the predicted band
    observed: np.ndarray | None = None  # (m, m) dense observed Hi-C in the model's space
    tracks: dict[str, np.ndarray] = field(default_factory=dict)  # channel → (m,) per-bin mean
    loops: pd.DataFrame | None = None  # calls inside the region (bin1, bin2, score)

    @property
    def title(self) -> str:
        start, end = self.lo * self.resolution, self.hi * self.resolution
        return f"{self.chrom}:{start:,}-{end:,}"


def pick_regions(
    n_bins: Mapping[str, int], size: int, count: int = 3
) -> list[tuple[str, int, int]]:
    """Up to ``count`` regions of ``size`` bins: spread over one chromosome, or the middle of the
    first chromosomes."""
    chroms = list(n_bins)
    if not chroms:
        return []
    if len(chroms) == 1:
        centres = [(chroms[0], int(n_bins[chroms[0]] * f)) for f in (0.25, 0.5, 0.75)[:count]]
    else:
        centres = [(c, n_bins[c] // 2) for c in chroms[:count]]
    regions = []
    for chrom, centre in centres:
        n = n_bins[chrom]
        lo = int(np.clip(centre - size // 2, 0, max(n - size, 0)))
        regions.append((chrom, lo, min(n, lo + size)))
    return list(dict.fromkeys(regions))


def dense_from_band(band: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """(m, m) symmetric block of bins [lo, hi) from a (depth, n) band; NaN beyond the band."""
    depth = band.shape[0]
    k = np.arange(hi - lo)
    diag = np.abs(k[None, :] - k[:, None])
    low = lo + np.minimum(k[None, :], k[:, None])
    ok = diag < depth
    out = np.full(diag.shape, np.nan, dtype=np.float32)
    out[ok] = band[diag[ok], low[ok]]
    return out


def _scaled(values: np.ndarray) -> np.ndarray:
    """log10 values mapped to [0, 1] between their 2nd and 98th percentiles (NaN kept)."""
    ok = np.isfinite(values) & (values > 0)
    if not ok.any():
        return np.full(values.shape, np.nan)
    logged = np.full(values.shape, np.nan)
    logged[ok] = np.log10(values[ok])
    logged[np.isfinite(values) & ~ok] = logged[ok].min()
    lo, hi = np.quantile(logged[ok], (0.02, 0.98))
    return np.clip((logged - lo) / max(hi - lo, 1e-9), 0, 1)


def region_png(region: Region, dpi: int = 72) -> bytes:
    """PNG of one region: predicted map (upper triangle), observed (lower), loop calls, tracks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = region.hi - region.lo
    n_tracks = len(region.tracks)
    fig = plt.figure(figsize=(6.0, 6.0 + 0.45 * n_tracks), dpi=dpi)
    grid = fig.add_gridspec(1 + n_tracks, 1, height_ratios=[12] + [1] * n_tracks, hspace=0.08)
    ax = fig.add_subplot(grid[0])
    upper = np.triu(np.ones((m, m), dtype=bool))
    image = np.full((m, m), np.nan)
    if region.predicted is not None:
        image[upper] = _scaled(region.predicted)[upper]
    if region.observed is not None:
        image[~upper] = _scaled(region.observed)[~upper]
    ax.imshow(image, cmap="Reds", vmin=0, vmax=1, interpolation="none", aspect="auto")
    if region.loops is not None and len(region.loops):
        ax.scatter(
            region.loops["bin2"] - region.lo,
            region.loops["bin1"] - region.lo,
            s=40,
            facecolors="none",
            edgecolors="tab:blue",
            linewidths=1.2,
        )
    label = "upper: predicted" if region.predicted is not None else "upper: (no map model)"
    if region.observed is not None:
        label += ", lower: observed"
    ax.set_title(
        f"{region.title}  ({label}; each log10, 2-98% range; circles: loop calls)", fontsize=9
    )
    ax.set_xticks([])
    ax.set_yticks([])
    for row, (name, values) in enumerate(region.tracks.items(), start=1):
        track_ax = fig.add_subplot(grid[row])
        track_ax.fill_between(np.arange(m) + 0.5, values, step="mid", color="0.3", linewidth=0)
        track_ax.set_xlim(0, m)
        track_ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        track_ax.set_yticks([])
        track_ax.set_xticks([])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _rows(table: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>" for k, v in table
    )
    return f"<table>{cells}</table>"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return str(value)


def write_html(path: str | Path, summary: Mapping[str, Any], regions: Sequence[Region]) -> Path:
    """Write the summary page: inputs, models, outputs, throughput and the region figures."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>hicmix predict: {html.escape(str(summary.get('cell_line')))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
        "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>hicmix predict: {html.escape(str(summary.get('cell_line')))}</h1>",
        "<h2>Run</h2>",
        _rows(
            [
                ("chromosomes", summary.get("chromosomes")),
                ("tracks", summary.get("tracks")),
                ("missing channels (zero-filled)", summary.get("missing_channels") or "none"),
                ("Hi-C input", summary.get("hic") or "none (tracks only)"),
                ("device", summary.get("device")),
                ("wall time (s)", summary.get("wall_time_s")),
                ("peak RSS (MB)", summary.get("peak_rss_mb")),
            ]
        ),
        "<h2>Models</h2>",
    ]
    for task, info in (summary.get("models") or {}).items():
        parts.append(f"<h3>{html.escape(task)}</h3>")
        parts.append(_rows(list(info.items())))
    parts.append("<h2>Outputs</h2>")
    parts.append(_rows(list((summary.get("outputs") or {}).items())))
    if summary.get("values"):
        parts.append(f"<p>{html.escape(str(summary['values']))}</p>")
    parts.append("<h2>Regions</h2>")
    for region in regions:
        encoded = base64.b64encode(region_png(region)).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(region.title)}' "
            f"src='data:image/png;base64,{encoded}'>"
            f"<figcaption>{html.escape(region.title)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
    return path
