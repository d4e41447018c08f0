"""The embedded default genome: synthetic Hi-C, tracks, loops and expression in real-data formats.

One structural model per chromosome (TADs, A/B compartments, CTCF sites with motif orientation,
loops between convergent CTCF pairs, genes, enhancers) drives every output, so that each learning
task has a signal:

- Hi-C: P(s) ~ s^-1 decay x compartment checkerboard x within-TAD enrichment x per-bin visibility,
  plus a few-bin Gaussian dot per loop; Poisson counts sampled band-wise up to 3 Mb (never a dense
  N x N matrix) and sparsely beyond.
- Tracks (100 bp steps): CTCF/ATAC at CTCF sites (stronger at loop anchors), ATAC/H3K27ac/H3K4me3
  at active promoters, ATAC/H3K27ac at active enhancers, broad H3K27me3 in B compartments and at
  repressed promoters; over-dispersed Poisson noise.
- Expression (log2(TPM + 1)): promoter activity plus enhancers looped to the promoter in that cell
  line, so Hi-C carries information that the promoter marks do not.

Every random draw comes from ``numpy.random.default_rng([seed, chromosome index, stream])``: the
same seed gives byte-identical bigWig, BEDPE and TSV files and identical cooler pixel tables.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cooler
import h5py
import numpy as np
import pandas as pd
import pyBigWig
from tqdm import tqdm

from hicmix import __version__
from hicmix.atomic import atomic_dir
from hicmix.errors import ConfigError

log = logging.getLogger(__name__)

ASSEMBLY = "sim1"
DEFAULT_CELL_LINES = ("SIMA", "SIMB")
DEFAULT_CHROM_LENGTHS_MB = (20.0, 18.0, 16.0, 15.0, 14.0, 12.0, 12.0, 10.0)
ASSAYS = ("CTCF", "H3K27ac", "H3K4me3", "H3K27me3", "ATAC")
#: resolutions of hic.mcool, as multiples of the base resolution
ZOOM_FACTORS = (1, 2, 4)
_CELL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SimParams:
    """Parameters of the generative model (bp-valued ones are converted to bins at run time)."""

    depth_per_mb: float = 150_000.0  # cis contacts per Mb of chromosome per cell line
    max_distance_bp: int = 3_000_000  # contacts are sampled up to this distance from the diagonal
    decay_exponent: float = 1.0
    tad_mean_bp: int = 600_000
    tad_min_bp: int = 150_000
    tad_enrichment: float = 1.2  # within-TAD contacts x (1 + this)
    tads_per_compartment: float = 2.2
    compartment_strength: float = 0.35  # contacts x exp(strength * c_i * c_j), c = +1 (A) / -1 (B)
    bias_sigma: float = 0.3  # lognormal visibility, shared by cell lines
    bias_smooth_sigma: float = 0.25  # its smooth (~300 kb) part, shared by cell lines
    bias_cell_sigma: float = 0.12  # lognormal visibility, per cell line
    gap_fraction: float = 0.005  # bins with no contacts and no signal (unmappable)
    low_coverage_fraction: float = 0.01  # bins with 1-6 % of normal visibility
    ctcf_spacing_bp: int = 60_000  # mean spacing of CTCF sites inside TADs
    corner_loop_prob: float = 0.6
    extra_loops_per_tad: float = 1.6
    loop_min_bp: int = 50_000
    loop_max_bp: int = 2_000_000
    loop_fold: float = 4.0  # dot peak = fold x local background
    loop_sigma_bins: float = 0.7
    shared_loop_prob: float = 0.8
    genes_per_mb: float = 25.0
    enhancers_per_mb: float = 20.0
    ep_loop_prob: float = 0.45  # loops joining a promoter to an enhancer
    enhancer_gain: float = 1.5  # TPM x (1 + gain * looped enhancer activity)
    track_step_bp: int = 100
    track_unit: float = 0.5  # signal value of one simulated read


@dataclass
class _Chrom:
    """Structure of one chromosome shared by the cell lines (per-cell arrays: leading cell axis)."""

    name: str
    length: int
    n_bins: int
    gap: np.ndarray  # bool (n_bins,)
    low: np.ndarray  # bool (n_bins,)
    comp: np.ndarray  # float (n_bins,) +1 A / -1 B
    tad_id: np.ndarray  # int (n_bins,)
    tads: np.ndarray  # int (T, 2) [start_bin, end_bin)
    site_pos: np.ndarray
    site_strand: np.ndarray  # +1 forward / -1 reverse motif
    site_boundary: np.ndarray
    occupancy: np.ndarray  # (cells, sites)
    loops: np.ndarray  # int (L, 4): anchor bin 1, anchor bin 2, site 1, site 2
    loop_fold: np.ndarray
    loop_corner: np.ndarray
    present: np.ndarray  # bool (L, cells)
    gene_pos: np.ndarray
    gene_strand: np.ndarray
    gene_active: np.ndarray  # bool (cells, G)
    gene_strength: np.ndarray  # (cells, G)
    gene_repressed: np.ndarray  # bool (cells, G)
    enh_pos: np.ndarray
    enh_activity: np.ndarray  # (cells, E), 0 when inactive
    looped_enh: np.ndarray  # (cells, G) activity of enhancers looped to the promoter
    expression: np.ndarray  # (cells, G) log2(TPM + 1)


def _rng(seed: int, chrom_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, chrom_index, stream])


def _lognormal(rng: np.random.Generator, sigma: float, size) -> np.ndarray:
    return np.exp(rng.normal(-0.5 * sigma**2, sigma, size))


def _segments(rng: np.random.Generator, n: int, mean: float, minimum: int) -> np.ndarray:
    """Cut [0, n) into segments with gamma-distributed lengths; returns (K, 2) [start, end)."""
    draws = np.maximum(np.rint(rng.gamma(4.0, mean / 4.0, size=n // max(minimum, 1) + 2)), minimum)
    ends = np.cumsum(draws).astype(np.int64)
    ends = ends[ends < n]
    if len(ends) and n - ends[-1] < minimum:
        ends = ends[:-1]
    starts = np.concatenate([[0], ends])
    return np.stack([starts, np.concatenate([ends, [n]])], axis=1)


def _gaps(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    gap = np.zeros(n, dtype=bool)
    for start in rng.integers(2, max(n - 8, 3), size=rng.poisson(fraction * n / 3.0)):
        gap[start : start + rng.integers(1, 6)] = True
    return gap


def _positions_in_bins(rng, bins: np.ndarray, res: int, length: int) -> np.ndarray:
    width = np.minimum(res, length - bins * res)
    return bins * res + (rng.random(len(bins)) * width).astype(np.int64)


def _ctcf_sites(rng, tads: np.ndarray, gap: np.ndarray, res: int, length: int, p: SimParams):
    """Boundary sites ('+' opening each TAD, '-' closing it) plus random internal sites."""
    bins, strand, boundary = [], [], []
    for start, end in tads:
        bins += [start, end - 1]
        strand += [1, -1]
        boundary += [True, True]
        k = rng.poisson((end - start) * res / p.ctcf_spacing_bp)
        if end - start > 2 and k:
            bins += list(rng.integers(start + 1, end - 1, size=k))
            strand += list(rng.choice([-1, 1], size=k))
            boundary += [False] * k
    bins, strand, boundary = np.array(bins), np.array(strand), np.array(boundary)
    pos = _positions_in_bins(rng, bins, res, length)
    keep = ~gap[bins]
    order = np.argsort(pos[keep], kind="stable")
    return pos[keep][order], strand[keep][order], boundary[keep][order]


def _choose_loops(rng, tads, site_bin, strand, boundary, gap, res: int, p: SimParams):
    """Loops between convergent CTCF pairs ('+' left, '-' right) in a TAD: (L, 4), corner flags."""
    lo, hi = max(p.loop_min_bp // res, 2), p.loop_max_bp // res
    near_gap = np.convolve(gap, np.ones(5), mode="same") > 0
    loops, corner = [], []
    for start, end in tads:
        inside = np.flatnonzero((site_bin >= start) & (site_bin < end))
        plus, minus = inside[strand[inside] > 0], inside[strand[inside] < 0]
        pairs = [
            (i, j)
            for i in plus
            for j in minus
            if lo <= site_bin[j] - site_bin[i] <= hi
            and not (near_gap[site_bin[i]] or near_gap[site_bin[j]])
        ]
        if not pairs:
            continue
        is_corner = [boundary[i] and boundary[j] for i, j in pairs]
        wanted = []
        if any(is_corner) and rng.random() < p.corner_loop_prob:
            wanted.append(is_corner.index(True))
        n_extra = rng.poisson(p.extra_loops_per_tad)
        wanted += [k for k in rng.permutation(len(pairs)) if not is_corner[k]][: 3 * n_extra]
        chosen: list[tuple[int, int]] = []
        for k in wanted:
            if len(chosen) >= n_extra + (1 if wanted and is_corner[wanted[0]] else 0):
                break
            a, b = site_bin[pairs[k][0]], site_bin[pairs[k][1]]
            if all(max(abs(a - x), abs(b - y)) >= 4 for x, y in chosen):
                chosen.append((a, b))
                loops.append((a, b, *pairs[k]))
                corner.append(is_corner[k])
    if not loops:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=bool)
    return np.array(loops, dtype=np.int64), np.array(corner, dtype=bool)


def _presence(rng, n_loops: int, n_cells: int, shared_prob: float) -> np.ndarray:
    """Cell lines having each loop: all, or (with 1 - shared_prob) a random proper subset."""
    present = np.ones((n_loops, n_cells), dtype=bool)
    if n_cells < 2:
        return present
    for k in np.flatnonzero(rng.random(n_loops) >= shared_prob):
        n_on = rng.integers(1, n_cells)
        present[k] = False
        present[k, rng.choice(n_cells, size=n_on, replace=False)] = True
    return present


def _weighted_bins(rng, weights: np.ndarray, size: int) -> np.ndarray:
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


def _near(bins_a: np.ndarray, bins_b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) True where two bins are within one bin of each other."""
    return np.abs(bins_a[:, None] - bins_b[None, :]) <= 1


def _build_chrom(name: str, length: int, res: int, n_cells: int, rng, p: SimParams) -> _Chrom:
    n = -(-length // res)
    gap = _gaps(rng, n, p.gap_fraction)
    low = (rng.random(n) < p.low_coverage_fraction) & ~gap
    tads = _segments(rng, n, p.tad_mean_bp / res, max(p.tad_min_bp // res, 3))
    tad_id = np.repeat(np.arange(len(tads)), tads[:, 1] - tads[:, 0])
    # compartments are runs of whole TADs, so compartment borders are TAD borders
    runs = 1 + rng.poisson(p.tads_per_compartment - 1.0, size=len(tads))
    run_of_tad = np.repeat(np.arange(len(runs)), runs)[: len(tads)]
    sign = np.where((run_of_tad + rng.integers(2)) % 2 == 0, 1.0, -1.0)
    comp = sign[tad_id]
    is_a = comp > 0

    site_pos, strand, boundary = _ctcf_sites(rng, tads, gap, res, length, p)
    site_bin = site_pos // res
    loops, corner = _choose_loops(rng, tads, site_bin, strand, boundary, gap, res, p)
    fold = p.loop_fold * _lognormal(rng, 0.3, len(loops)) * np.where(corner, 1.3, 1.0)
    present = _presence(rng, len(loops), n_cells, p.shared_loop_prob)

    # promoter-enhancer loops: a gene TSS in one anchor bin, an enhancer in the other
    roll = rng.random(len(loops))
    side = rng.integers(2, size=len(loops))
    ep = roll < p.ep_loop_prob
    enh_only = (roll >= p.ep_loop_prob) & (roll < p.ep_loop_prob + 0.25)
    anchor_genes = np.where(side == 0, loops[:, 0], loops[:, 1])[ep]
    anchor_enh = np.concatenate(
        [
            np.where(side == 0, loops[:, 1], loops[:, 0])[ep],
            np.where(side == 0, loops[:, 0], loops[:, 1])[enh_only],
        ]
    )
    n_random_genes = max(rng.poisson(p.genes_per_mb * length / 1e6) - len(anchor_genes), 0)
    gene_bins = np.concatenate(
        [
            anchor_genes,
            _weighted_bins(rng, np.where(gap, 0.0, np.where(is_a, 3.0, 1.0)), n_random_genes),
        ]
    )
    n_random_enh = rng.poisson(p.enhancers_per_mb * length / 1e6)
    enh_bins = np.concatenate(
        [
            anchor_enh,
            _weighted_bins(rng, np.where(gap, 0.0, np.where(is_a, 2.0, 1.0)), n_random_enh),
        ]
    )
    enh_at_anchor = np.arange(len(enh_bins)) < len(anchor_enh)
    gene_pos = _positions_in_bins(rng, gene_bins, res, length)
    enh_pos = _positions_in_bins(rng, enh_bins, res, length)
    gene_order, enh_order = np.argsort(gene_pos, kind="stable"), np.argsort(enh_pos, kind="stable")
    gene_pos, enh_pos, enh_at_anchor = (
        gene_pos[gene_order],
        enh_pos[enh_order],
        enh_at_anchor[enh_order],
    )
    gene_bins, enh_bins = gene_pos // res, enh_pos // res
    gene_strand = rng.choice([-1, 1], size=len(gene_pos))
    gene_a, enh_a = is_a[gene_bins], is_a[enh_bins]

    # activity: mostly shared, a minority of genes / enhancers switch between cell lines
    base = rng.random(len(gene_pos)) < np.where(gene_a, 0.75, 0.2)
    gene_active = base[None, :] ^ (rng.random((n_cells, len(gene_pos))) < 0.1)
    gene_strength = _lognormal(rng, 0.5, len(gene_pos))[None, :] * _lognormal(
        rng, 0.15, (n_cells, len(gene_pos))
    )
    polycomb = rng.random(len(gene_pos)) < np.where(gene_a, 0.4, 0.7)
    gene_repressed = ~gene_active & polycomb[None, :]
    enh_base = rng.random(len(enh_pos)) < np.where(enh_at_anchor, 0.8, np.where(enh_a, 0.6, 0.25))
    enh_on = enh_base[None, :] ^ (rng.random((n_cells, len(enh_pos))) < 0.15)
    enh_activity = (
        enh_on
        * _lognormal(rng, 0.4, len(enh_pos))[None, :]
        * _lognormal(rng, 0.15, (n_cells, len(enh_pos)))
    )

    # enhancer activity reaching each promoter through the loops present in each cell line
    a_bins, b_bins = loops[:, 0], loops[:, 1]
    enh_near_a = _near(a_bins, enh_bins).astype(float)  # (L, E)
    enh_near_b = _near(b_bins, enh_bins).astype(float)
    gene_near_a = _near(gene_bins, a_bins).astype(float)  # (G, L)
    gene_near_b = _near(gene_bins, b_bins).astype(float)
    looped = np.stack(
        [
            (gene_near_a * present[:, c]) @ (enh_near_b @ enh_activity[c])
            + (gene_near_b * present[:, c]) @ (enh_near_a @ enh_activity[c])
            for c in range(n_cells)
        ]
    ).reshape(n_cells, len(gene_pos))

    tpm_on = (
        12.0 * gene_strength * (1.0 + p.enhancer_gain * looped) * _lognormal(rng, 0.4, looped.shape)
    )
    tpm_off = 0.4 * _lognormal(rng, 0.7, looped.shape) * np.where(gene_repressed, 0.25, 1.0)
    expression = np.round(np.log2(1.0 + np.where(gene_active, tpm_on, tpm_off)), 4)

    # CTCF occupancy: boundary sites strong, loop anchors stronger where the loop exists
    occupancy = np.tile(
        _lognormal(rng, 0.4, len(site_pos)) * np.where(boundary, 1.5, 1.0), (n_cells, 1)
    )
    for c in range(n_cells):
        used = np.zeros(len(site_pos), dtype=bool)
        used[loops[present[:, c], 2:].ravel()] = True
        unused = np.zeros(len(site_pos), dtype=bool)
        unused[loops[~present[:, c], 2:].ravel()] = True
        occupancy[c] *= np.where(used, 2.0, np.where(unused, 0.3, 1.0))

    return _Chrom(
        name=name,
        length=length,
        n_bins=n,
        gap=gap,
        low=low,
        comp=comp,
        tad_id=tad_id,
        tads=tads,
        site_pos=site_pos,
        site_strand=strand,
        site_boundary=boundary,
        occupancy=occupancy,
        loops=loops,
        loop_fold=fold,
        loop_corner=corner,
        present=present,
        gene_pos=gene_pos,
        gene_strand=gene_strand,
        gene_active=gene_active,
        gene_strength=gene_strength,
        gene_repressed=gene_repressed,
        enh_pos=enh_pos,
        enh_activity=enh_activity,
        looped_enh=looped,
        expression=expression,
    )


# -------------------------------------------------------------------------------------------- Hi-C


def _bin_bias(ch: _Chrom, res: int, rng, p: SimParams, shared: np.ndarray) -> np.ndarray:
    bias = shared * _lognormal(rng, p.bias_cell_sigma, ch.n_bins)
    bias[-1] *= (ch.length - (ch.n_bins - 1) * res) / res  # partial last bin
    return bias


def _background(ch: _Chrom, p: SimParams, d: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Expected contacts before visibility biases at pixels (i, i + d); i + d clipped to the end."""
    j = np.minimum(i + d, ch.n_bins - 1)
    decay = (d + 0.5) ** -p.decay_exponent
    same_tad = ch.tad_id[i] == ch.tad_id[j]
    return (
        decay
        * np.exp(p.compartment_strength * ch.comp[i] * ch.comp[j])
        * np.where(same_tad, 1.0 + p.tad_enrichment, 1.0)
    )


def _expected_band(
    ch: _Chrom, cell: int, res: int, bias: np.ndarray, p: SimParams
) -> tuple[np.ndarray, float]:
    """Expected contacts as a band, values[d, i] = E[i, i + d] for d <= max diagonal; and scale."""
    n = ch.n_bins
    max_d = min(p.max_distance_bp // res, n - 1)
    d = np.arange(max_d + 1)[:, None]
    i = np.arange(n)[None, :]
    j = np.minimum(i + d, n - 1)
    band = _background(ch, p, d, i) * bias[i] * bias[j] * (i + d < n)

    loops = ch.loops[ch.present[:, cell]]
    if len(loops):
        fold = ch.loop_fold[ch.present[:, cell]]
        offsets = np.arange(-2, 3)
        di, dj = (x.ravel() for x in np.meshgrid(offsets, offsets, indexing="ij"))
        kernel = np.exp(-(di**2 + dj**2) / (2 * p.loop_sigma_bins**2))
        peak = fold * _background(ch, p, loops[:, 1] - loops[:, 0], loops[:, 0])
        rows = loops[:, :1] + di[None, :]
        cols = loops[:, 1:2] + dj[None, :]
        ok = (rows >= 0) & (cols < n) & (cols - rows >= 0) & (cols - rows <= max_d)
        rows_c, cols_c = np.clip(rows, 0, n - 1), np.clip(cols, 0, n - 1)
        value = peak[:, None] * kernel[None, :] * bias[rows_c] * bias[cols_c]
        np.add.at(band, ((cols - rows)[ok], rows[ok]), value[ok])

    scale = p.depth_per_mb * ch.length / 1e6 / band.sum()
    return band * scale, scale


def _far_contacts(
    ch: _Chrom, bias: np.ndarray, scale: float, max_d: int, rng, p: SimParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contacts beyond the band: an exact Poisson sample of the same model, by thinning.

    Without them the matrix is banded and ICE needs thousands of iterations to converge. Proposals
    draw bin i by its visibility and the distance from the decay (continuous s^-alpha, floored);
    acceptance applies bin j and the compartment term. Trans contacts are not simulated.
    """
    n = ch.n_bins
    dist = np.arange(max_d + 1, n)
    if len(dist) == 0 or bias.max() <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    # proposals: Poisson per bin i (rate ~ visibility), distance from the continuous power law
    ceiling = bias.max() * np.exp(p.compartment_strength)
    lo, hi = max_d + 1.0, float(n)
    alpha = p.decay_exponent
    if abs(alpha - 1.0) < 1e-9:
        mass = np.log(hi / lo)
    else:
        mass = (hi ** (1 - alpha) - lo ** (1 - alpha)) / (1 - alpha)
    i = np.repeat(np.arange(n), rng.poisson(scale * bias * mass * ceiling))
    u = rng.random(len(i))
    if abs(alpha - 1.0) < 1e-9:
        d = np.floor(lo * (hi / lo) ** u).astype(np.int64)
    else:
        x = ((1 - u) * lo ** (1 - alpha) + u * hi ** (1 - alpha)) ** (1 / (1 - alpha))
        d = np.floor(x).astype(np.int64)
    j = np.minimum(i + d, n - 1)
    rate = bias[j] * np.exp(p.compartment_strength * ch.comp[i] * ch.comp[j])
    keep = (i + d < n) & (rng.random(len(i)) * ceiling < rate)
    keys = [i[keep] * n + j[keep]]
    key, count = np.unique(np.concatenate(keys), return_counts=True)
    return key // n, key % n, count


def _sample_pixels(ch: _Chrom, cell: int, res: int, bias: np.ndarray, rng, p: SimParams):
    """Poisson counts of one chromosome: sorted upper-triangle (rows, cols, counts), local bins."""
    expected, scale = _expected_band(ch, cell, res, bias, p)
    counts = rng.poisson(expected).T  # (n, max_d + 1): row-major order = sorted by (bin1, bin2)
    rows, diags = np.nonzero(counts)
    far = _far_contacts(ch, bias, scale, counts.shape[1] - 1, rng, p)
    rows = np.concatenate([rows, far[0]])
    cols = np.concatenate([rows[: len(diags)] + diags, far[1]])
    values = np.concatenate([counts[rows[: len(diags)], diags], far[2]])
    order = np.argsort(rows * ch.n_bins + cols, kind="stable")
    return rows[order], cols[order], values[order]


def _pixel_table(pixels, n_bins: int, offset: int, factor: int) -> pd.DataFrame:
    """Pixel table of one chromosome summed in factor x factor blocks, bin ids from ``offset``."""
    rows, cols, values = pixels
    if factor > 1:
        width = -(-n_bins // factor)
        key, inverse = np.unique((rows // factor) * width + cols // factor, return_inverse=True)
        rows, cols, values = key // width, key % width, np.bincount(inverse, weights=values)
    return pd.DataFrame(
        {
            "bin1_id": (rows + offset).astype(np.int64),
            "bin2_id": (cols + offset).astype(np.int64),
            "count": values.astype(np.int32),
        }
    )


def _write_mcool(path: Path, chromsizes: dict[str, int], res: int, pixels: dict[int, list]) -> None:
    """Write hic.mcool with one cooler per resolution under /resolutions/<r> (MCOOL v2 layout)."""
    sizes = pd.Series(chromsizes)
    for k, factor in enumerate(ZOOM_FACTORS):
        binsize = res * factor
        cooler.create_cooler(
            f"{path}::/resolutions/{binsize}",
            cooler.binnify(sizes, binsize),
            iter(pixels[factor]),
            dtypes={"count": np.int32},
            ordered=True,
            assembly=ASSEMBLY,
            metadata={"generated-by": f"hicmix.simulate {__version__}"},
            mode="w" if k == 0 else "a",
            dupcheck=False,  # pixels are unique by construction; the check costs a pandas pass
            h5opts={"compression": "gzip", "compression_opts": 1, "shuffle": True},
        )
    with h5py.File(path, "r+") as handle:
        handle.attrs.update({"format": "HDF5::MCOOL", "format-version": 2})


# ------------------------------------------------------------------------------------------ tracks


def _peaks(n_pos: int, step: int, pos: np.ndarray, amp: np.ndarray, sigma: float) -> np.ndarray:
    """Sum of Gaussian peaks (height ``amp`` per step, sd ``sigma`` bp) centred at ``pos`` bp."""
    if len(pos) == 0:
        return np.zeros(n_pos)
    half = int(np.ceil(3 * sigma / step))
    idx = pos[:, None] // step + np.arange(-half, half + 1)[None, :]
    dist = idx * step + step / 2 - pos[:, None]
    weight = amp[:, None] * np.exp(-0.5 * (dist / sigma) ** 2)
    ok = (idx >= 0) & (idx < n_pos)
    return np.bincount(idx[ok], weights=weight[ok], minlength=n_pos)


def _track_means(ch: _Chrom, cell: int, res: int, rng, p: SimParams) -> dict[str, np.ndarray]:
    """Mean simulated reads per step for every assay of one cell line on one chromosome."""
    step = p.track_step_bp
    n_pos = -(-ch.length // step)
    per_bin = res // step
    is_a = np.repeat(ch.comp > 0, per_bin)[:n_pos]

    def peaks(pos, amp, sigma):
        return _peaks(n_pos, step, pos, np.asarray(amp, dtype=float), sigma)

    active, strength = ch.gene_active[cell], ch.gene_strength[cell]
    prom_pos, prom_amp = ch.gene_pos[active], strength[active]
    enh_on = ch.enh_activity[cell] > 0
    enh_pos, enh_amp = ch.enh_pos[enh_on], ch.enh_activity[cell][enh_on]
    occ = ch.occupancy[cell]
    poised = ~active & ~ch.gene_repressed[cell]
    repressed = ch.gene_repressed[cell]
    domain = np.repeat(np.where(ch.comp > 0, 0.15, 0.9) * _lognormal(rng, 0.3, ch.n_bins), per_bin)[
        :n_pos
    ]
    h3k4me3_pos = ch.gene_pos + 400 * ch.gene_strand  # H3K4me3 sits just downstream of the TSS
    return {
        "CTCF": 0.15 + peaks(ch.site_pos, 30.0 * occ, 150.0),
        "H3K27ac": 0.1 * (1.0 + is_a)
        + peaks(prom_pos, 14.0 * prom_amp, 900.0)
        + peaks(enh_pos, 10.0 * enh_amp, 800.0),
        "H3K4me3": 0.08
        + peaks(h3k4me3_pos[active], 30.0 * prom_amp, 700.0)
        + peaks(h3k4me3_pos[poised], np.full(poised.sum(), 2.0), 700.0),
        "H3K27me3": 0.05
        + domain
        + peaks(ch.gene_pos[repressed], np.full(repressed.sum(), 6.0), 3000.0),
        "ATAC": 0.1 * (1.0 + 0.5 * is_a)
        + peaks(ch.site_pos, 8.0 * occ, 150.0)
        + peaks(prom_pos, 20.0 * prom_amp, 200.0)
        + peaks(enh_pos, 10.0 * enh_amp, 250.0),
    }


def _sample_track(mean: np.ndarray, gap_pos: np.ndarray, rng, unit: float) -> np.ndarray:
    """Over-dispersed (gamma-Poisson) reads per step, as signal values; unmappable gaps are 0."""
    reads = rng.poisson(mean * rng.gamma(2.0, 0.5, size=mean.shape))
    return np.where(gap_pos, 0.0, reads * unit)


def _add_track(bw, chrom: str, length: int, values: np.ndarray, step: int) -> None:
    full = length // step
    if full:
        bw.addEntries(chrom, 0, values=values[:full].astype(np.float64), span=step, step=step)
    if full < len(values):
        bw.addEntries([chrom], [full * step], ends=[length], values=[float(values[full])])


# ----------------------------------------------------------------------------------------- outputs


def _loops_bedpe(ch: _Chrom, cell: int, res: int) -> list[str]:
    lines = []
    for a, b, *_ in ch.loops[ch.present[:, cell]]:
        ends = (min((a + 1) * res, ch.length), min((b + 1) * res, ch.length))
        lines.append(f"{ch.name}\t{a * res}\t{ends[0]}\t{ch.name}\t{b * res}\t{ends[1]}\n")
    return sorted(lines, key=lambda line: tuple(int(x) for x in line.split("\t")[1::3]))


def _truth_records(ch: _Chrom, cells: Sequence[str], res: int) -> dict[str, list]:
    """JSON-ready structure of one chromosome (bp coordinates, half-open)."""
    name, end = ch.name, ch.length
    comp_edges = np.flatnonzero(np.diff(ch.comp)) + 1
    comp_starts = np.concatenate([[0], comp_edges])
    comp_ends = np.concatenate([comp_edges, [ch.n_bins]])
    return {
        "ctcf_sites": [
            {"chrom": name, "pos": int(pos), "strand": "+" if s > 0 else "-", "boundary": bool(bd)}
            | {
                f"occupancy_{c}": round(float(o), 4)
                for c, o in zip(cells, ch.occupancy[:, k], strict=True)
            }
            for k, (pos, s, bd) in enumerate(
                zip(ch.site_pos, ch.site_strand, ch.site_boundary, strict=True)
            )
        ],
        "tads": [
            {"chrom": name, "start": int(s * res), "end": int(min(e * res, end))}
            for s, e in ch.tads
        ],
        "compartments": [
            {
                "chrom": name,
                "start": int(s * res),
                "end": int(min(e * res, end)),
                "label": "A" if ch.comp[s] > 0 else "B",
            }
            for s, e in zip(comp_starts, comp_ends, strict=True)
        ],
        "loops": [
            {
                "chrom": name,
                "start1": int(a * res),
                "start2": int(b * res),
                "site1": int(ch.site_pos[s1]),
                "site2": int(ch.site_pos[s2]),
                "corner": bool(corner),
                "fold": round(float(fold), 4),
                "cell_lines": [c for c, on in zip(cells, present, strict=True) if on],
            }
            for (a, b, s1, s2), corner, fold, present in zip(
                ch.loops, ch.loop_corner, ch.loop_fold, ch.present, strict=True
            )
        ],
        "gaps": [
            {"chrom": name, "bin": int(b), "start": int(b * res)} for b in np.flatnonzero(ch.gap)
        ],
        "enhancers": [
            {"chrom": name, "pos": int(pos)}
            | {
                f"activity_{c}": round(float(a), 4)
                for c, a in zip(cells, ch.enh_activity[:, k], strict=True)
            }
            for k, pos in enumerate(ch.enh_pos)
        ],
    }


def _gene_table(ch: _Chrom, cells: Sequence[str]) -> pd.DataFrame:
    table = pd.DataFrame(
        {"chrom": ch.name, "tss": ch.gene_pos, "strand": np.where(ch.gene_strand > 0, "+", "-")}
    )
    for c, cell in enumerate(cells):
        table[cell] = ch.expression[c]
    return table


def _bin_offsets(chromsizes: dict[str, int], binsize: int) -> list[int]:
    """Genome-wide id of each chromosome's first bin at ``binsize``."""
    n_bins = [-(-length // binsize) for length in chromsizes.values()]
    return [int(x) for x in np.concatenate([[0], np.cumsum(n_bins)[:-1]])]


def _write_tables(out: Path, chromsizes: dict[str, int], cells: Sequence[str], genes: list) -> None:
    """genome.chrom.sizes and genes.tsv (gene ids numbered in genome order)."""
    sizes = "".join(f"{name}\t{length}\n" for name, length in chromsizes.items())
    (out / "genome.chrom.sizes").write_text(sizes)
    table = pd.concat(genes, ignore_index=True)
    table.insert(0, "gene_id", [f"SIMG{k + 1:05d}" for k in range(len(table))])
    table.to_csv(
        out / "genes.tsv",
        sep="\t",
        index=False,
        float_format="%.4f",
        columns=["gene_id", "chrom", "tss", "strand", *cells],
    )


def simulated_paths(out_dir: str | Path, cell_lines: Sequence[str] = DEFAULT_CELL_LINES) -> dict:
    """Paths of a simulated genome's files (same layout as :func:`simulate_genome` writes)."""
    out = Path(out_dir)
    return {
        "chrom_sizes": out / "genome.chrom.sizes",
        "genes": out / "genes.tsv",
        "truth": out / "truth.json",
        "hic": {cell: out / cell / "hic.mcool" for cell in cell_lines},
        "loops": {cell: out / cell / "loops.bedpe" for cell in cell_lines},
        "tracks": {
            cell: {assay: out / cell / f"{assay}.bw" for assay in ASSAYS} for cell in cell_lines
        },
    }


def _check_inputs(
    cells: Sequence[str], lengths_mb: Sequence[float], res: int, p: SimParams
) -> None:
    if not cells or len(set(cells)) != len(cells):
        raise ConfigError(f"cell lines {list(cells)!r} must be a non-empty list of distinct names")
    for cell in cells:
        if not _CELL_NAME.match(cell):
            raise ConfigError(
                f"cell line name {cell!r} is not usable as a folder name; "
                "use letters, digits, '_', '.', '-'"
            )
    if not lengths_mb or min(lengths_mb) < 1.0:
        raise ConfigError(
            f"chromosome lengths {list(lengths_mb)!r} Mb must be given and each >= 1 Mb"
        )
    if res <= 0 or res % p.track_step_bp or res > 100_000:
        raise ConfigError(
            f"resolution {res} must be a positive multiple of {p.track_step_bp} bp "
            "and at most 100000"
        )


@dataclass(frozen=True)
class _Job:
    """Everything one worker needs to write one cell line's files (picklable)."""

    out: Path
    cells: tuple[str, ...]
    cell: int
    seed: int
    chromsizes: dict[str, int]
    res: int
    params: SimParams
    progress: bool


def _visibility(rng, n: int, p: SimParams) -> np.ndarray:
    """Per-bin lognormal visibility with a smooth (~300 kb) component, as GC/mappability give.

    The smooth part keeps the spread of marginals at coarse resolutions, so ICE's MAD filter does
    not mask the (half-covered) bins at chromosome ends.
    """
    width = 31
    smooth = np.convolve(rng.normal(0.0, 1.0, n + width), np.ones(width) / np.sqrt(width), "same")
    smooth = smooth[width // 2 : width // 2 + n] * p.bias_smooth_sigma
    return _lognormal(rng, p.bias_sigma, n) * np.exp(smooth - 0.5 * p.bias_smooth_sigma**2)


def _chromosomes(job: _Job):
    """Yield (index, structure, shared visibility bias) per chromosome; same in every worker."""
    p = job.params
    for index, (name, length) in enumerate(job.chromsizes.items()):
        ch = _build_chrom(name, length, job.res, len(job.cells), _rng(job.seed, index, 0), p)
        shared = _visibility(_rng(job.seed, index, 1), ch.n_bins, p)
        shared[ch.gap] = 0.0
        shared[ch.low] *= _rng(job.seed, index, 2).uniform(0.01, 0.06, ch.low.sum())
        yield index, ch, shared


def _write_cell(job: _Job) -> int:
    """Write {cell}/hic.mcool, {cell}/{assay}.bw and {cell}/loops.bedpe; return the loop count."""
    p, c, res, cell = job.params, job.cell, job.res, job.cells[job.cell]
    folder = job.out / cell
    offsets = {f: _bin_offsets(job.chromsizes, res * f) for f in ZOOM_FACTORS}
    pixels: dict[int, list] = {f: [] for f in ZOOM_FACTORS}
    loops: list[str] = []
    writers = {assay: pyBigWig.open(str(folder / f"{assay}.bw"), "w") for assay in ASSAYS}
    try:
        for bw in writers.values():
            bw.addHeader(list(job.chromsizes.items()))
        chroms = tqdm(
            _chromosomes(job),
            total=len(job.chromsizes),
            desc=f"simulate {cell}",
            unit="chrom",
            position=c,
            disable=not job.progress,
        )
        for index, ch, shared in chroms:
            rng = _rng(job.seed, index, 10 + c)
            bias = _bin_bias(ch, res, rng, p, shared)
            sampled = _sample_pixels(ch, c, res, bias, rng, p)
            for factor in ZOOM_FACTORS:
                pixels[factor].append(
                    _pixel_table(sampled, ch.n_bins, offsets[factor][index], factor)
                )
            n_pos = -(-ch.length // p.track_step_bp)
            gap_pos = np.repeat(ch.gap, res // p.track_step_bp)[:n_pos]
            for assay, mean in _track_means(ch, c, res, rng, p).items():
                values = _sample_track(mean, gap_pos, rng, p.track_unit)
                _add_track(writers[assay], ch.name, ch.length, values, p.track_step_bp)
            loops += _loops_bedpe(ch, c, res)
    finally:
        for bw in writers.values():
            bw.close()
    _write_mcool(folder / "hic.mcool", job.chromsizes, res, pixels)
    (folder / "loops.bedpe").write_text("".join(loops))
    return len(loops)


def _n_jobs(jobs: int | None, n_cells: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(n_cells, jobs or available or 1))


def simulate_genome(
    out_dir: str | Path,
    cell_lines: Sequence[str] = DEFAULT_CELL_LINES,
    seed: int = 0,
    chrom_lengths_mb: Sequence[float] = DEFAULT_CHROM_LENGTHS_MB,
    resolution: int = 10_000,
    params: SimParams | None = None,
    progress: bool = True,
    jobs: int | None = None,
) -> dict:
    """Write the synthetic genome into ``out_dir`` (replaced atomically) and return its paths.

    Cell lines are written by up to ``jobs`` processes (default: one per cell line, at most the CPUs
    available); the output does not depend on ``jobs``. Returns ``{"chrom_sizes", "genes", "truth":
    Path, "hic", "loops": {cell: Path}, "tracks": {cell: {assay: Path}}}``.
    """
    p = params or SimParams()
    cells = tuple(cell_lines)
    lengths_mb = [float(x) for x in chrom_lengths_mb]
    _check_inputs(cells, lengths_mb, resolution, p)
    out_dir = Path(out_dir)
    holds_files = out_dir.exists() and any(path.is_file() for path in out_dir.rglob("*"))
    if holds_files and not (out_dir / "truth.json").exists():
        raise ConfigError(
            f"{out_dir}: folder exists and is not a simulated genome (no truth.json); "
            "choose an empty or new --out folder"
        )
    chromsizes = {f"chr{k + 1}": round(mb * 1e6) for k, mb in enumerate(lengths_mb)}

    with atomic_dir(out_dir) as tmp:
        tasks = [
            _Job(tmp, cells, c, seed, chromsizes, resolution, p, progress)
            for c in range(len(cells))
        ]
        for cell in cells:
            (tmp / cell).mkdir()
        n_jobs = _n_jobs(jobs, len(cells))
        if n_jobs > 1:
            with ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("fork")) as pool:
                n_loops = list(pool.map(_write_cell, tasks))
        else:
            n_loops = [_write_cell(task) for task in tasks]

        genes, truth = [], {}
        for _, ch, _ in _chromosomes(tasks[0]):
            genes.append(_gene_table(ch, cells))
            for key, records in _truth_records(ch, cells, resolution).items():
                truth.setdefault(key, []).extend(records)
        _write_tables(tmp, chromsizes, cells, genes)
        meta = {
            "generator": f"hicmix.simulate {__version__}",
            "assembly": ASSEMBLY,
            "seed": seed,
            "resolution": resolution,
            "resolutions": [resolution * f for f in ZOOM_FACTORS],
            "track_step_bp": p.track_step_bp,
            "cell_lines": list(cells),
            "assays": list(ASSAYS),
            "chromosomes": chromsizes,
            "params": asdict(p),
            "counts": {key: len(value) for key, value in truth.items()}
            | {f"loops_{cell}": n for cell, n in zip(cells, n_loops, strict=True)},
        }
        (tmp / "truth.json").write_text(json.dumps(meta | truth, indent=1) + "\n")
    log.info(
        "simulated %d chromosomes x %d cell lines into %s", len(chromsizes), len(cells), out_dir
    )
    return simulated_paths(out_dir, cells)
