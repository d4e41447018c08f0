"""Per-gene expression from an expression model: one TSS-centred diagonal window per gene."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

EXPRESSION_COLUMNS = ("gene_id", "cell_line", "prediction")


def read_gene_table(
    path: str | Path, chromsizes: Mapping[str, int], gene_id_column: str, tss_column: str
) -> pd.DataFrame:
    """(gene_id, chrom, tss) of a gene table (same checks as the tiles' gene reader)."""
    from hicmix.tiles import read_genes

    # read_genes wants an expression column; the TSS column stands in (its values are unused)
    genes = read_genes(path, chromsizes, gene_id_column, tss_column, tss_column)
    return genes[["gene_id", "chrom", "tss"]]


def predict_expression(
    runner: Callable[..., dict[str, np.ndarray]],
    genes: pd.DataFrame,
    track_bins: np.ndarray,
    n_bins: int,
    window: int,
    positions: int,
    resolution: int,
    batch_size: int,
    label_stats: Mapping[str, float] | None,
    *,
    hic: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[pd.DataFrame, int]:
    """(gene_id, prediction) of one chromosome's genes in label units, and how many genes were
    skipped because their window runs off the chromosome (as the tiles drop them)."""
    from hicmix.predict.models import cut_tracks

    stats = dict(label_stats or {"mean": 0.0, "sd": 1.0})
    start = genes["tss"].to_numpy(np.int64) // resolution - window // 2
    fits = (start >= 0) & (start + window <= n_bins)
    start = start[fits]
    out = np.zeros(len(start), dtype=np.float64)
    for lo in range(0, len(start), batch_size):
        part = start[lo : lo + batch_size]
        tracks = cut_tracks(track_bins, part, part, window, positions)
        patches = None if hic is None else hic(part, part)
        scalar = runner(tracks, np.zeros(len(part), dtype=np.int64), patches)["scalar"]
        out[lo : lo + len(part)] = scalar * float(stats["sd"]) + float(stats["mean"])
    table = pd.DataFrame({"gene_id": genes["gene_id"].to_numpy()[fits], "prediction": out})
    return table, int((~fits).sum())
