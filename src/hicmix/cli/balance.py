"""``hicmix balance``: thin wrapper over :func:`hicmix.balance.balance_hic`."""

from __future__ import annotations

from pathlib import Path

import click

from hicmix.balance import MODES, IceParams, balance_hic


@click.command(name="balance")
@click.option(
    "--hic",
    required=True,
    help="Input .mcool, .cool, .hic or 'file.mcool::resolutions/N' URI.",
)
@click.option("--resolution", required=True, type=click.IntRange(min=1), help="Bin size in bp.")
@click.option("--weight", default="weight", show_default=True, help="Name of the weight column.")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="auto: keep an existing weight column, else ICE; ice: always ICE; keep: require the "
    "column; none: values already normalised (weight 1 for bins with contacts, NaN otherwise).",
)
@click.option("--ignore-diags", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--mad-max", default=5.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--min-nnz", default=10, show_default=True, type=click.IntRange(min=0))
@click.option("--min-count", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--max-iters", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--tol", default=1e-5, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option(
    "--chromosomes",
    default="",
    help="Comma-separated chromosomes to balance and compute expected on (default: all).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output .cool; OUT.expected.tsv and OUT.balance.json are written beside it.",
)
def balance(
    hic: str,
    resolution: int,
    weight: str,
    mode: str,
    ignore_diags: int,
    mad_max: float,
    min_nnz: int,
    min_count: int,
    max_iters: int,
    tol: float,
    chromosomes: str,
    out: Path,
) -> None:
    """Extract one resolution, balance it and write expected contacts per diagonal."""
    params = IceParams(ignore_diags, mad_max, min_nnz, min_count, max_iters, tol)
    chroms = [c.strip() for c in chromosomes.split(",") if c.strip()] or None
    report = balance_hic(hic, out, resolution, weight, mode, params, chroms)
    masked = sum(report["masked_bins"].values())
    total = sum(report["n_bins"].values())
    click.echo(
        f"{out}: mode {report['mode_used']}, {masked}/{total} bins masked, "
        f"scale {report['scale']:.4g}, converged {report['converged']}",
        err=True,
    )
