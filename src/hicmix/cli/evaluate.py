"""``hicmix evaluate``: transfer and genome-wide loop calling of fine-tuned models, and the
metrics table of every run (see hicmix.evaluate.run)."""

from __future__ import annotations

import click

from hicmix.cli.options import device_option, headline, workers_option


@click.group("evaluate")
def evaluate() -> None:
    """Score trained models and gather all metrics (results/metrics.tsv)."""


@evaluate.command("transfer")
@click.option("--model", required=True, help="hicmix finetune output folder (or its model/).")
@click.option(
    "--test-tiles",
    multiple=True,
    required=True,
    help="Tile folder of another cell line whose test split is scored (repeatable).",
)
@click.option("--out", required=True, help="Output folder (predictions, metrics, summary).")
@device_option()
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@workers_option(default=0)
def transfer(**options: object) -> None:
    """Cross-cell transfer: a model fine-tuned on one cell line scores another one's test split."""
    from hicmix.evaluate.run import transfer as run

    summary = run(
        str(options["model"]),
        list(options["test_tiles"]),
        str(options["out"]),
        device=str(options["device"]),
        batch_size=int(options["batch_size"]),
        num_workers=int(options["workers"]),
    )
    click.echo(
        f"{summary['method']} {summary['task']} transfer: {headline(summary)} -> {options['out']}"
    )


@evaluate.command("loop-calling")
@click.option("--model", required=True, help="hicmix finetune output folder of a loops model.")
@click.option(
    "--tiles",
    required=True,
    help="Training cell line's tiles: its val chromosomes choose the threshold.",
)
@click.option(
    "--test-tiles",
    default=None,
    help="Cell line called on its test chromosomes (default: --tiles).",
)
@click.option(
    "--config",
    default=None,
    help="Calling settings YAML (CallingSettings keys; or a file with a loops_genomewide key).",
)
@click.option(
    "--threshold-run",
    default=None,
    help="A finished same-cell calling run whose threshold is reused (no val scoring).",
)
@click.option("--out", required=True, help="Output folder (calls.bedpe, metrics, summary).")
@device_option()
def loop_calling(**options: object) -> None:
    """Genome-wide loop calls of a fine-tuned model on held-out chromosomes (via hicmix predict)."""
    from hicmix.evaluate.run import call_loops, load_calling_settings

    summary = call_loops(
        str(options["model"]),
        str(options["tiles"]),
        options["test_tiles"],
        str(options["out"]),
        settings=load_calling_settings(options["config"]),
        threshold_run=options["threshold_run"],
        device=str(options["device"]),
    )
    click.echo(
        f"{summary['method']} loop calling (threshold {summary['threshold']:g}): "
        f"{headline(summary)} -> {options['out']}"
    )


@evaluate.command("metrics")
@click.argument("metrics", nargs=-1, required=True)
@click.option("--out", required=True, help="Long-format table (results/metrics.tsv).")
@click.option("--summary", required=True, help="Mean ± sd over seeds (metrics_summary.tsv).")
@click.option(
    "--prevalence",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Also score loop patches at 1:N positives:negatives (0 = off).",
)
@click.option("--draws", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--min-positives",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Fewer positives per 1:N draw give NaN rows (too few negatives in the tiles).",
)
def metrics(**options: object) -> None:
    """Gather run metrics.tsv files into one table and its mean ± sd summary."""
    from hicmix.evaluate.run import collect_metrics

    table, summary = collect_metrics(
        list(options["metrics"]),
        str(options["out"]),
        str(options["summary"]),
        prevalence=int(options["prevalence"]) or None,
        draws=int(options["draws"]),
        min_positives=int(options["min_positives"]),
    )
    click.echo(
        f"{len(table)} metric rows from {len(options['metrics'])} run(s) -> {options['out']}; "
        f"{len(summary)} summary rows -> {options['summary']}"
    )
