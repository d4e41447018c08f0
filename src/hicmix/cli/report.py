"""``hicmix report``: the run's HTML report from results/metrics.tsv and the prediction files."""

from __future__ import annotations

from pathlib import Path

import click

from hicmix.report import ReportOptions, write_report


@click.command()
@click.option(
    "--metrics",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Long-format metrics table (results/metrics.tsv).",
)
@click.option(
    "--results",
    default=Path("results"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder holding finetune/ and baselines/ prediction folders.",
)
@click.option(
    "--config-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Resolved workflow config (YAML), embedded in the page; gives the split.",
)
@click.option(
    "--snakemake-configfile",
    "configfiles",
    multiple=True,
    help="--configfile of the snakemake run, repeatable (for the Commands block).",
)
@click.option("--cores", default=None, help="--cores of the snakemake run (Commands block).")
@click.option(
    "--split",
    type=click.Choice(["test", "val"]),
    default="test",
    show_default=True,
    help="Split of the main tables (the other one is collapsed).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed whose predictions are drawn (else the lowest).",
)
@click.option(
    "--windows",
    type=click.IntRange(min=1, max=12),
    default=3,
    show_default=True,
    help="Test windows drawn per contact-map figure.",
)
@click.option(
    "--peers",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="bench/peers.py output folder (peers.tsv, versions.json)  [default: <results>/peers].",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="HTML page written (results/report/index.html).",
)
def report(
    metrics: Path,
    results: Path,
    config_file: Path | None,
    configfiles: tuple[str, ...],
    cores: str | None,
    split: str,
    seed: int,
    windows: int,
    peers: Path | None,
    out: Path,
) -> None:
    """Write one self-contained HTML page: tables, comparisons and figures of every task."""
    options = ReportOptions(
        metrics=metrics,
        out=out,
        results=results,
        config_file=config_file,
        snakemake_configfiles=configfiles,
        cores=cores,
        split=split,
        seed=seed,
        windows=windows,
        peers=peers,
    )
    click.echo(f"wrote {write_report(options)}")
