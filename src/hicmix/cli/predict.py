"""``hicmix predict``: a new cell line's maps, loops and expression from its tracks."""

from __future__ import annotations

import click


@click.command("predict")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="Fine-tuned model folder (model/ of hicmix finetune); repeat for the hicmap, loops and "
    "expression models.",
)
@click.option(
    "--track", "tracks", multiple=True, help="NAME=PATH.bw, in the model's channel order."
)
@click.option("--tracks-sheet", default=None, help="Tracks sheet (config/tracks.tsv layout).")
@click.option("--cell-line", default=None, help="Cell line name (required with --tracks-sheet).")
@click.option("--chromosomes", default=None, help="Comma list (default: all but chrM/contigs).")
@click.option("--out", required=True, help="Output folder (replaced atomically).")
@click.option("--hic", default=None, help="Balanced .cool/.mcool: tracks + Hi-C loop calls.")
@click.option("--weight", default="weight", show_default=True, help="Balancing weight column.")
@click.option("--assembly", default=None, help="Assembly of the tracks (checked against cards).")
@click.option("--resolution", default=None, type=int, help="Resolution of the inputs (checked).")
@click.option(
    "--allow-missing-channels",
    is_flag=True,
    help="Zero-fill missing channels (only for models trained with channel dropout).",
)
@click.option("--genes", default=None, help="Gene table TSV (gene_id, chrom, tss columns).")
@click.option("--gene-id-column", default="gene_id", show_default=True)
@click.option("--tss-column", default="tss", show_default=True)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option(
    "--stride-bins",
    default=None,
    type=click.IntRange(min=1),
    help="Step between map windows (default W // 4).",
)
@click.option(
    "--threshold",
    default=None,
    type=float,
    help="Loop score threshold (default: the card's, else 0.5).",
)
@click.option("--pool-radius", default=2, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--prefilter",
    default="none",
    show_default=True,
    type=click.Choice(["none", "enrichment", "anchors"]),
    help="Cheap candidate rule before scoring: Hi-C local O/E maxima (needs --hic) or active "
    "anchors (tracks).",
)
@click.option(
    "--prefilter-min-oe",
    default=1.5,
    show_default=True,
    type=float,
    help="enrichment: smallest smoothed observed/expected of a kept local maximum.",
)
@click.option(
    "--prefilter-keep",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="anchors: fraction of the most active bins kept as anchors.",
)
@click.option("--loop-min-bp", default=None, type=int, help="Default: the card's range.")
@click.option("--loop-max-bp", default=None, type=int, help="Default: the card's range.")
@click.option("--html/--no-html", default=True, show_default=True)
@click.option("--progress/--no-progress", default=True, hidden=True)
def predict(**options: object) -> None:
    """Predict contact maps, loops and expression of a cell line from its tracks."""
    from hicmix.cli.tiles import _tracks
    from hicmix.predict import predict as run
    from hicmix.predict import tracks_from_sheet

    tracks = _tracks(options.pop("tracks"))
    sheet, cell_line = options.pop("tracks_sheet"), options["cell_line"]
    if sheet and tracks:
        raise click.UsageError("give either --track or --tracks-sheet, not both")
    if sheet:
        if not cell_line:
            raise click.UsageError("--tracks-sheet needs --cell-line")
        from hicmix.training.checkpoint import read_card

        channels = read_card(options["models"][0]).get("channels") or []
        tracks = tracks_from_sheet(sheet, str(cell_line), channels)
    from hicmix.predict import PrefilterSettings

    options["prefilter"] = PrefilterSettings(
        str(options["prefilter"]),
        min_oe=float(options.pop("prefilter_min_oe")),
        keep_fraction=float(options.pop("prefilter_keep")),
    )
    chromosomes = options.pop("chromosomes")
    summary = run(
        list(options.pop("models")),
        tracks,
        options.pop("out"),
        chromosomes=[c.strip() for c in chromosomes.split(",") if c.strip()]
        if chromosomes
        else None,
        cell_line=str(options.pop("cell_line") or "query"),
        **options,
    )
    outputs = ", ".join(f"{k}: {v}" for k, v in summary["outputs"].items())
    click.echo(
        f"predicted {summary['cell_line']} on {len(summary['chromosomes'])} chromosome(s) "
        f"in {summary['wall_time_s']:.1f} s -> {outputs}"
    )
