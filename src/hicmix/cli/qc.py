"""``hicmix qc``: one-region QC figure (balanced contact map, loops, tracks) per cell line."""

from __future__ import annotations

from pathlib import Path

import click

from hicmix.qc import qc_figure


def _tracks(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list:
    tracks = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r} is not NAME=PATH (e.g. CTCF=tracks/CTCF.bw)")
        tracks.append((name, Path(path)))
    return tracks


@click.command()
@click.option("--hic", required=True, help="Balanced .cool (or .mcool::/resolutions/N).")
@click.option(
    "--weight",
    default="weight",
    show_default=True,
    help="Balancing weight column; 'none' draws raw counts.",
)
@click.option(
    "--track",
    "tracks",
    multiple=True,
    callback=_tracks,
    help="NAME=PATH of a bigWig, repeatable; drawn top to bottom in this order.",
)
@click.option("--loops", type=click.Path(dir_okay=False, path_type=Path), help="Loops BEDPE.")
@click.option("--region", required=True, help="Region drawn, e.g. chr1:2000000-5000000.")
@click.option("--cell-line", default=None, help="Name in the title (default: from the file name).")
@click.option("--dpi", type=click.IntRange(min=30, max=600), default=120, show_default=True)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG written."
)
def qc(
    hic: str,
    weight: str,
    tracks: list,
    loops: Path | None,
    region: str,
    cell_line: str | None,
    dpi: int,
    out: Path,
) -> None:
    """Draw the contact map of REGION with loops and tracks below, as one PNG."""
    weight_column = None if weight.lower() in ("none", "") else weight
    qc_figure(hic, region, out, weight_column, tracks, loops, cell_line, dpi)
    click.echo(f"wrote {out}")
