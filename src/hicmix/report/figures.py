"""Report figures (matplotlib Agg) as PNG bytes, drawn only from metrics and predictions."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DPI = 90
_OURS_COLORS = ("#c0392b", "#e67e22", "#8e44ad", "#d35400")
_BASE_COLORS = ("#1f77b4", "#2ca02c", "#7f7f7f", "#17becf", "#bcbd22", "#9467bd", "#8c564b")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def method_styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Line style per method: ours (hicmix*) warm and solid, baselines cool and dashed."""
    from hicmix.report.tables import is_decay, is_ours

    styles, n_ours, n_base = {}, 0, 0
    for method in methods:
        if is_ours(method):
            color = _OURS_COLORS[n_ours % len(_OURS_COLORS)]
            styles[method] = {"color": color, "linestyle": "-", "linewidth": 2.2}
            n_ours += 1
        else:
            color = "black" if is_decay(method) else _BASE_COLORS[n_base % len(_BASE_COLORS)]
            styles[method] = {"color": color, "linestyle": "--", "linewidth": 1.5}
            n_base += not is_decay(method)
    return styles


@dataclass
class Scores:
    """Test labels and scores of one loops method (one seed)."""

    method: str
    seed: int
    label: np.ndarray
    score: np.ndarray


def roc_pr_png(curves: Sequence[Scores], title: str) -> bytes:
    """ROC and PR curves of every method side by side (AUROC / AP in the legend)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc

    plt = _pyplot()
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    styles = method_styles([c.method for c in curves])
    prevalence = []
    for c in curves:
        fpr, tpr, _ = sk_roc(c.label, c.score)
        precision, recall, _ = precision_recall_curve(c.label, c.score)
        auroc = roc_auc_score(c.label, c.score)
        ap = average_precision_score(c.label, c.score)
        roc_ax.plot(fpr, tpr, label=f"{c.method} (AUROC {auroc:.3f})", **styles[c.method])
        pr_ax.plot(recall, precision, label=f"{c.method} (AP {ap:.3f})", **styles[c.method])
        prevalence.append(float(np.mean(c.label)))
    roc_ax.plot([0, 1], [0, 1], color="0.75", linewidth=0.8)
    if prevalence:
        pr_ax.axhline(np.mean(prevalence), color="0.75", linewidth=0.8)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=7.5, loc="lower right" if ax is roc_ax else "lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def distance_pearson_png(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    title: str,
    resolution_note: str,
) -> bytes:
    """r(d) per method: mean over seeds with a ±sd band; d in bins."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    styles = method_styles(list(curves))
    for method, (d, mean, sd) in curves.items():
        ax.plot(d, mean, label=method, **styles[method])
        ok = np.isfinite(sd)
        if ok.any():
            ax.fill_between(
                d[ok], (mean - sd)[ok], (mean + sd)[ok], color=styles[method]["color"], alpha=0.15
            )
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set(xlabel=f"distance d (bins{resolution_note})", ylabel="Pearson r along diagonal d")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _png(fig)


@dataclass
class MapPanel:
    """One test window: observed map and each method's prediction (NaN = masked pixel)."""

    title: str
    observed: np.ndarray
    predicted: dict[str, np.ndarray]


def maps_png(panels: Sequence[MapPanel], methods: Sequence[str]) -> bytes:
    """Rows = windows; columns = observed, then each method; one colour scale per row."""
    plt = _pyplot()
    n_cols = 1 + len(methods)
    fig, axes = plt.subplots(
        len(panels), n_cols, figsize=(2.9 * n_cols, 2.9 * len(panels)), squeeze=False
    )
    cmap = plt.get_cmap("Reds").with_extremes(bad="0.85")
    for row, panel in enumerate(panels):
        finite = panel.observed[np.isfinite(panel.observed)]
        lo, hi = np.quantile(finite, (0.02, 0.98)) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1e-6
        images = [("observed", panel.observed)]
        images += [(m, panel.predicted.get(m)) for m in methods]
        for col, (name, image) in enumerate(images):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, "no prediction", ha="center", va="center", fontsize=8)
                continue
            shown = ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, interpolation="none")
            ax.set_title(name if row == 0 else "", fontsize=9)
            if col == 0:
                ax.set_ylabel(panel.title, fontsize=8)
        fig.colorbar(shown, ax=axes[row, :].tolist(), fraction=0.02, pad=0.01)
    return _png(fig)


def learning_curve_png(
    points: Mapping[str, Mapping[str, list[tuple[str, float, float]]]], x_labels: Sequence[str]
) -> bytes:
    """One panel per metric: mean ± sd vs number of training genes (categorical axis)."""
    plt = _pyplot()
    metrics = list(points)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    methods = sorted({m for per_metric in points.values() for m in per_metric})
    styles = method_styles(methods)
    position = {label: i for i, label in enumerate(x_labels)}
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method, series in points[metric].items():
            xs = [position[x] for x, _, _ in series]
            means = np.array([m for _, m, _ in series])
            sds = np.array([s if np.isfinite(s) else 0.0 for _, _, s in series])
            style = dict(styles[method])
            ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=method, **style)
        ax.set_xticks(range(len(x_labels)), list(x_labels))
        ax.set(xlabel="training genes", ylabel=metric, title=f"{metric} (test)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5)
    fig.tight_layout()
    return _png(fig)


def scatter_png(truth: np.ndarray, prediction: np.ndarray, title: str) -> bytes:
    """Predicted vs true expression with the identity line and Pearson r in the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(truth, prediction, s=7, alpha=0.5, color=_OURS_COLORS[0], linewidths=0)
    both = np.concatenate([truth, prediction])
    lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
    ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=0.8)
    r = np.corrcoef(truth, prediction)[0, 1] if truth.size > 1 else np.nan
    ax.set(xlabel="observed expression", ylabel="predicted expression")
    ax.set_title(f"{title}\nn = {truth.size} genes, Pearson r = {r:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


@dataclass
class PeerBars:
    """Per tool (bench/peers.py): F1 at ±1 and ±2 bins, wall and scoring seconds."""

    tools: list[str]
    f1: list[float]
    f1_r2: list[float]
    wall: list[float]
    score: list[float]


def _tool_colors(tools: Sequence[str]) -> list[str]:
    from hicmix.report.tables import is_ours

    colors, n_ours, n_base = [], 0, 0
    for tool in tools:
        if is_ours(tool):
            colors.append(_OURS_COLORS[n_ours % len(_OURS_COLORS)])
            n_ours += 1
        else:
            colors.append(_BASE_COLORS[n_base % len(_BASE_COLORS)])
            n_base += 1
    return colors


def peers_png(bars: PeerBars, recall: Mapping[str, Mapping[str, float]], bar_f1: float) -> bytes:
    """F1 (±1, ±2) and wall time per tool, and recall per distance stratum (when given)."""
    plt = _pyplot()
    panels = 3 if recall else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 0.35 * len(bars.tools) + 2.4))
    colors = _tool_colors(bars.tools)
    y = np.arange(len(bars.tools))
    _f1_panel(axes[0], bars, y, colors, bar_f1)
    _time_panel(axes[1], bars, y, colors)
    if recall:
        _recall_panel(axes[2], bars.tools, recall, colors)
    fig.tight_layout()
    return _png(fig)


def _f1_panel(ax: Any, bars: PeerBars, y: np.ndarray, colors: Sequence[str], bar: float) -> None:
    from matplotlib.patches import Patch as plt_patch

    ax.barh(y - 0.2, np.nan_to_num(bars.f1), height=0.4, color=colors)
    ax.barh(y + 0.2, np.nan_to_num(bars.f1_r2), height=0.4, color=colors, alpha=0.45)
    handles = [
        plt_patch(color="0.35", label="F1 ±1 (dark)"),
        plt_patch(color="0.35", alpha=0.45, label="F1 ±2 (light)"),
    ]
    for yi, value in zip(y, bars.f1, strict=True):
        if np.isfinite(value):
            ax.text(value + 0.01, yi - 0.2, f"{value:.3f}", va="center", fontsize=7)
    line = ax.axvline(bar, color="black", linestyle="--", linewidth=1, label=f"bar {bar:.2f}")
    ax.set_yticks(y, bars.tools, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="F1, region B")
    ax.set_title("accuracy", fontsize=10)
    ax.legend(handles=[*handles, line], fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def _time_panel(ax: Any, bars: PeerBars, y: np.ndarray, colors: Sequence[str]) -> None:
    ax.barh(y, np.nan_to_num(bars.wall), height=0.6, color=colors, alpha=0.5)
    score = np.asarray(bars.score, dtype=float)
    has = np.isfinite(score)
    ax.barh(y[has], score[has], height=0.6, color="none", edgecolor="black", hatch="///")
    for yi, wall, sc in zip(y, bars.wall, score, strict=True):
        label = f"{wall:.0f} s" + (f" (score {sc:.1f} s)" if np.isfinite(sc) else "")
        if np.isfinite(wall):
            ax.text(wall * 1.02, yi, label, va="center", fontsize=7)
    ax.set_yticks(y, [""] * len(y))
    ax.invert_yaxis()
    right = np.nanmax(np.asarray(bars.wall, dtype=float)) if np.isfinite(bars.wall).any() else 1
    ax.set(xlim=(0, right * 1.6), xlabel="seconds")
    ax.set_title("wall time (hatched: whole-chromosome scoring)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _recall_panel(
    ax: Any, tools: Sequence[str], recall: Mapping[str, Mapping[str, float]], colors: Sequence[str]
) -> None:
    strata = list(recall)
    x = np.arange(len(strata))
    width = 0.8 / max(len(tools), 1)
    for i, (tool, color) in enumerate(zip(tools, colors, strict=True)):
        values = [recall[s].get(tool, np.nan) for s in strata]
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(values), width, color=color, label=tool)
    ax.set_xticks(x, strata, fontsize=8)
    ax.set(ylim=(0, 1.4), ylabel="recall", xlabel="anchor distance")
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title("recall by distance stratum", fontsize=10)
    ax.legend(fontsize=6, ncol=3, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
