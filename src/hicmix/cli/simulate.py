"""``hicmix simulate``: write the embedded default genome (Hi-C, tracks, loops, expression)."""

from __future__ import annotations

from pathlib import Path

import click

from hicmix.simulate import (
    DEFAULT_CELL_LINES,
    DEFAULT_CHROM_LENGTHS_MB,
    SimParams,
    simulate_genome,
)


def _comma_list(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise click.BadParameter("give at least one comma-separated value")
    return items


def _lengths(ctx: click.Context, param: click.Parameter, value: str) -> list[float]:
    try:
        return [float(item) for item in _comma_list(ctx, param, value)]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of Mb numbers") from None


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("resources/simulated"),
    show_default=True,
    help="Output folder (replaced atomically).",
)
@click.option(
    "--cell-lines",
    default=",".join(DEFAULT_CELL_LINES),
    show_default=True,
    callback=_comma_list,
    help="Comma-separated cell line names (one folder and one genes.tsv column each).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--n-chromosomes",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N chromosome lengths.",
)
@click.option(
    "--chrom-length-mb",
    default=",".join(f"{x:g}" for x in DEFAULT_CHROM_LENGTHS_MB),
    show_default=True,
    callback=_lengths,
    help="Comma-separated chromosome lengths in Mb (chr1, chr2, ...).",
)
@click.option(
    "--resolution", type=int, default=10_000, show_default=True, help="Base Hi-C bin size (bp)."
)
@click.option(
    "--depth-per-mb",
    type=click.FloatRange(min=1.0),
    default=SimParams.depth_per_mb,
    show_default=True,
    help="Cis contacts within 3 Mb per Mb of chromosome, per cell line.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes (default: one per cell line, at most the CPUs available); same output.",
)
def simulate(
    out: Path,
    cell_lines: list[str],
    seed: int,
    n_chromosomes: int | None,
    chrom_length_mb: list[float],
    resolution: int,
    depth_per_mb: float,
    jobs: int | None,
) -> None:
    """Write a synthetic genome (Hi-C .mcool, bigWig tracks, loops, genes, truth) into OUT."""
    if n_chromosomes is not None:
        if n_chromosomes > len(chrom_length_mb):
            raise click.BadParameter(
                f"{n_chromosomes} chromosomes asked but only {len(chrom_length_mb)} lengths given",
                param_hint="--n-chromosomes",
            )
        chrom_length_mb = chrom_length_mb[:n_chromosomes]
    paths = simulate_genome(
        out,
        cell_lines=cell_lines,
        seed=seed,
        chrom_lengths_mb=chrom_length_mb,
        resolution=resolution,
        params=SimParams(depth_per_mb=depth_per_mb),
        jobs=jobs,
    )
    click.echo(f"wrote {paths['truth'].parent}")
