"""``hicmix finetune``: fine-tune MixHiC on loops, Hi-C maps or expression (see hicmix.finetune)."""

from __future__ import annotations

import click

from hicmix.cli.options import device_option, headline, progress_option, workers_option


@click.command("finetune")
@click.option(
    "--task",
    required=True,
    type=click.Choice(["loops", "hicmap", "expression"]),
    help="loops (loop tiles), hicmap (Hi-C of TSS windows from tracks) or expression (tss tiles).",
)
@click.option(
    "--mode",
    default=None,
    type=click.Choice(["bimodal", "tracks_only", "hic_only"]),
    help="Inputs: Hi-C + tracks, tracks + imputed Hi-C, or Hi-C + imputed tracks (loops only). "
    "Default: bimodal, and tracks_only for hicmap (the only mode it allows).",
)
@click.option(
    "--tiles",
    multiple=True,
    required=True,
    help="Training tile folder from `hicmix tiles` (repeat for several cell lines); its train "
    "split trains, its val split selects the epoch.",
)
@click.option(
    "--test-tiles",
    multiple=True,
    help="Tile folder whose test split is scored (repeatable; default: the --tiles folders). "
    "Another cell line gives cross-cell transfer.",
)
@click.option(
    "--pretrained",
    default=None,
    help="Pre-trained checkpoint folder (hicmix pretrain); without it the run is 'NonPre'.",
)
@click.option("--config", required=True, help="Run config YAML (write_finetune_config).")
@click.option("--seed", required=True, type=int, help="Seed of initialisation and data order.")
@click.option("--out", required=True, help="Output folder (model/, history, predictions, metrics).")
@device_option()
@click.option(
    "--max-epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Override the config's max_epochs.",
)
@workers_option(help="DataLoader workers (default: the config's num_workers).")
@progress_option()
def finetune(**options: object) -> None:
    """Fine-tune on the train split, select on val, score the test split."""
    from hicmix.finetune import finetune as run

    task = str(options["task"])
    mode = options["mode"] or ("tracks_only" if task == "hicmap" else "bimodal")
    summary = run(
        task,
        str(mode),
        list(options["tiles"]),
        list(options["test_tiles"]) or None,
        options["config"],
        options["out"],
        int(options["seed"]),
        pretrained=options["pretrained"],
        device=str(options["device"]),
        max_epochs=options["max_epochs"],
        num_workers=options["workers"],
        progress=bool(options["progress"]),
    )
    click.echo(
        f"{summary['method']} {summary['task']}: best epoch {summary['best_epoch']} of "
        f"{summary['epochs_run']} ({summary['selection_metric']}: {headline(summary)}) -> "
        f"{options['out']}"
    )
