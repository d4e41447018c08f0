"""Contrastive batches without false negatives: windows that share genome never meet in a batch.

Pre-training windows are cut every ``stride_bins`` (10 by default) with side W (50), so a window
overlaps its neighbours by up to 80 %. In-batch InfoNCE treats every other sample of the batch as a
negative; an overlapping neighbour is nearly the same input, a false negative that pins the loss
near chance. :func:`nonoverlapping_groups` colours the samples so that no two samples of one colour
share a genomic bin (on either anchor, in any cell line of the same assembly); the batch sampler
then cuts every batch from one colour (``GlobalBatchSampler(groups=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: Index columns that place a sample on the genome: chromosome and the two anchor bins.
LOCUS_COLUMNS = ("chrom", "bin_x", "bin_y")


def nonoverlapping_groups(
    chroms: Sequence[str], bin_x: Sequence[int], bin_y: Sequence[int], window: int
) -> np.ndarray:
    """Group id per sample such that two samples of a group share no bin of their anchor windows.

    Sample i covers the bins [bin_x, bin_x + W) and [bin_y, bin_y + W) of its chromosome (the same
    shift for every sample, so overlaps are those of the real windows). Greedy colouring in genome
    order; for diagonal windows at a regular stride s this gives ceil(W / s) groups (start bin / s
    modulo that number), the fewest possible. Deterministic: depends only on the loci.
    """
    x = np.asarray(bin_x, dtype=np.int64)
    y = np.asarray(bin_y, dtype=np.int64)
    chroms = np.asarray(chroms, dtype=object)
    if not len(x) == len(y) == len(chroms):
        raise ValueError("chroms, bin_x and bin_y must have one entry per sample")
    groups = np.full(len(x), -1, dtype=np.int64)
    if len(x) == 0:
        return groups
    low = np.minimum(x, y)
    for chrom in sorted(set(chroms.tolist())):
        members = np.flatnonzero(chroms == chrom)
        members = members[np.lexsort((np.maximum(x, y)[members], low[members]))]
        groups[members] = _colour_chromosome(x[members], y[members], window)
    return groups


def _colour_chromosome(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Greedy colours for one chromosome's samples (given in genome order)."""
    offset = int(min(x.min(), y.min()))
    length = int(max(x.max(), y.max())) - offset + window
    occupied: list[np.ndarray] = []  # per colour: bins already covered by its samples
    colours = np.empty(len(x), dtype=np.int64)
    for i, (a, b) in enumerate(zip(x - offset, y - offset, strict=True)):
        spans = (slice(a, a + window), slice(b, b + window))
        colour = next(
            (c for c, used in enumerate(occupied) if not any(used[s].any() for s in spans)),
            len(occupied),
        )
        if colour == len(occupied):
            occupied.append(np.zeros(length, dtype=bool))
        for s in spans:
            occupied[colour][s] = True
        colours[i] = colour
    return colours


def dataset_groups(dataset: Any) -> np.ndarray | None:
    """Non-overlapping groups for a dataset that exposes its loci, else None (plain batches).

    A dataset qualifies when it has an ``index`` table with columns chrom, bin_x, bin_y (one row per
    item, as ``hicmix.tiles.TileDataset``) and a ``geometry`` mapping with the window side "W".
    """
    index = getattr(dataset, "index", None)
    geometry = getattr(dataset, "geometry", None)
    if index is None or not isinstance(geometry, Mapping) or "W" not in geometry:
        return None
    if not all(column in getattr(index, "columns", ()) for column in LOCUS_COLUMNS):
        return None
    return nonoverlapping_groups(
        index["chrom"].astype(str).tolist(),
        index["bin_x"].to_numpy(np.int64),
        index["bin_y"].to_numpy(np.int64),
        int(geometry["W"]),
    )


def group_batches(
    groups: Iterable[int], batch: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Full batches of ``batch`` sample indices, each from one group (remainders dropped).

    With ``rng``: members shuffled within each group, then the batches shuffled; without: members
    in index order and batches in group order (validation).
    """
    groups = np.asarray(groups, dtype=np.int64)
    batches: list[np.ndarray] = []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if rng is not None:
            members = rng.permutation(members)
        full = len(members) // batch
        batches.extend(members[: full * batch].reshape(full, batch))
    if rng is not None and batches:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


def largest_batch(groups: Iterable[int] | None, n_samples: int) -> int:
    """Size of the largest group (``n_samples`` when there are no groups)."""
    if groups is None:
        return n_samples
    counts = np.bincount(np.asarray(groups, dtype=np.int64))
    return int(counts.max()) if len(counts) else 0
