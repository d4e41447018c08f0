"""Per-gene expression from an expression model: one TSS-centred diagonal window per gene."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

EXPRESSION_COLUMNS = ("gene_id", "cell_line", "prediction")


def read_gene_table(
    path: str | Path, chromsizes: Mapping[str, int], gene_id_column: str, tss_column: str
) -> pd.DataFrame:
    """(gene_id, chrom, tss, strand) of a gene table (same checks as the tiles' gene reader;
    strand +1 / -1 from a '+' / '-' ``strand`` column, 0 without one)."""
    from hicmix.tiles import read_genes

    # read_genes wants an expression column; the TSS column stands in (its values are unused)
    genes = read_genes(path, chromsizes, gene_id_column, tss_column, tss_column)
    return genes[["gene_id", "chrom", "tss", "strand"]]


def tss_inputs(
    genes: pd.DataFrame, window: int, positions: int, resolution: int
) -> dict[str, np.ndarray]:
    """The expression head's exact-TSS inputs of TSS-centred windows, as TileDataset gives them:
    ``tss_position`` (the TSS's sub-bin in the row-anchor track half) and ``strand``."""
    offset = genes["tss"].to_numpy(np.int64) % resolution
    position = window // 2 * positions + offset // (resolution // positions)
    strand = genes["strand"] if "strand" in genes else pd.Series(0, index=genes.index)
    return {"tss_position": position, "strand": strand.to_numpy(np.int64)}


def _takes_tss(runner: Callable[..., object]) -> bool:
    try:
        return "tss" in inspect.signature(runner).parameters
    except (TypeError, ValueError):
        return False


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
    skipped because their window runs off the chromosome (as the tiles drop them). A runner with
    a ``tss`` keyword gets the exact TSS inputs (:func:`tss_inputs`); others the TSS bin only."""
    from hicmix.predict.models import cut_tracks

    stats = dict(label_stats or {"mean": 0.0, "sd": 1.0})
    start = genes["tss"].to_numpy(np.int64) // resolution - window // 2
    fits = (start >= 0) & (start + window <= n_bins)
    start = start[fits]
    tss = tss_inputs(genes[fits], window, positions, resolution) if _takes_tss(runner) else None
    out = np.zeros(len(start), dtype=np.float64)
    for lo in range(0, len(start), batch_size):
        part = start[lo : lo + batch_size]
        tracks = cut_tracks(track_bins, part, part, window, positions)
        patches = None if hic is None else hic(part, part)
        distance = np.zeros(len(part), dtype=np.int64)
        if tss is None:
            scalar = runner(tracks, distance, patches)["scalar"]
        else:
            mine = {k: v[lo : lo + len(part)] for k, v in tss.items()}
            scalar = runner(tracks, distance, patches, tss=mine)["scalar"]
        out[lo : lo + len(part)] = scalar * float(stats["sd"]) + float(stats["mean"])
    table = pd.DataFrame({"gene_id": genes["gene_id"].to_numpy()[fits], "prediction": out})
    return table, int((~fits).sum())
