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
