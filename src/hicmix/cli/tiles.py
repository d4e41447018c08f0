"""``hicmix tiles``: one cell line's balanced Hi-C + bigWigs (+ loops, genes) → tile folder."""

from __future__ import annotations

import click

from hicmix.transforms import HIC_TRANSFORMS, TRACK_TRANSFORMS


def _pairs(values: tuple[str, ...], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=option)
        pairs.append((name.strip(), rest.strip()))
    return pairs


def _tracks(values: tuple[str, ...]) -> dict[str, str]:
    tracks: dict[str, str] = {}
    for name, path in _pairs(values, "--track"):
        if name in tracks:
            raise click.BadParameter(f"channel {name} given twice", param_hint="--track")
        tracks[name] = path
    return tracks


def _splits(values: tuple[str, ...]) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {}
    for name, entries in _pairs(values, "--split"):
        splits.setdefault(name, []).extend(e.strip() for e in entries.split(",") if e.strip())
    return splits


@click.command("tiles")
@click.option("--cell-line", required=True, help="Cell line name (stored in every sample).")
@click.option("--assembly", required=True, help="Assembly name (hg38, sim1, ...).")
@click.option("--hic", required=True, help="Balanced .cool from hicmix balance.")
@click.option("--weight", default="weight", show_default=True, help="Balancing weight column.")
@click.option("--expected", default=None, help=".expected.tsv from hicmix balance (log1p_oe).")
@click.option(
    "--track", "tracks", multiple=True, required=True, help="NAME=PATH.bw; order = channels."
)
@click.option("--loops", default=None, help="Loops BEDPE (positives of the loops kind).")
@click.option("--genes", default=None, help="Gene table TSV (tss kind).")
@click.option("--gene-id-column", default="gene_id", show_default=True)
@click.option("--tss-column", default="tss", show_default=True)
@click.option("--expression-column", default=None, help="Default: the cell line name.")
@click.option("--chromosomes", default=None, help="Comma list (default: all but chrM/contigs).")
@click.option("--split", "splits", multiple=True, help="NAME=chr,chr:start-end,... (val, test).")
@click.option("--window-bins", default=50, show_default=True, type=int)
@click.option("--stride-bins", default=10, show_default=True, type=int)
@click.option("--max-offdiag-bp", default=0, show_default=True, type=int)
@click.option("--subbin-bp", default=200, show_default=True, type=int)
@click.option(
    "--hic-transform", default="clip_scale", show_default=True, type=click.Choice(HIC_TRANSFORMS)
)
@click.option("--hic-clip", default=255.0, show_default=True, type=float)
@click.option(
    "--track-transform", default="log2p1", show_default=True, type=click.Choice(TRACK_TRANSFORMS)
)
@click.option("--min-nonzero", default=0.1, show_default=True, type=float)
@click.option("--loop-min-bp", default=20_000, show_default=True, type=int)
@click.option("--loop-max-bp", default=2_000_000, show_default=True, type=int)
@click.option("--negative-ratio", default=1.0, show_default=True, type=float)
@click.option("--exclusion-bins", default=2, show_default=True, type=int)
@click.option(
    "--candidate-ratio",
    default=0.0,
    show_default=True,
    type=float,
    help="Also write loop_candidates tiles (train/val enrichment maxima) with this many negatives "
    "per loop; 0 = none.",
)
@click.option("--shard-size", default=1024, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, help="Tile folder to write (replaced atomically).")
def tiles(**options: object) -> None:
    """Cut paired Hi-C patches and track windows of one cell line into HDF5 shards."""
    from hicmix.tiles import tile_cell_line

    options["tracks"] = _tracks(options["tracks"])
    options["splits"] = _splits(options["splits"])
    chromosomes = options["chromosomes"]
    if chromosomes:
        options["chromosomes"] = [c.strip() for c in chromosomes.split(",") if c.strip()]
    manifest = tile_cell_line(**options)
    counts = ", ".join(
        f"{kind} " + "/".join(str(per_split[s]) for s in ("train", "val", "test"))
        for kind, per_split in manifest["counts"].items()
    )
    click.echo(f"tiled {manifest['cell_line']} into {options['out']}: {counts} (train/val/test)")
