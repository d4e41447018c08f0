"""``hicmix baselines``: one baseline method of one downstream task (see hicmix.baselines.run)."""

from __future__ import annotations

import click

from hicmix.cli.options import device_option

TASKS = ["loops", "loops_genomewide", "hicmap", "expression", "expression_npz"]
METHODS = [
    "peakachu",
    "hicmix-caller",
    "dloopcaller",
    "distance_decay",
    "track_outer",
    "epiphany_lite",
    "linear",
    "deepchrome",
    "simplechrome",
]


@click.command("baselines")
@click.option("--task", required=True, type=click.Choice(TASKS), help="Downstream task.")
@click.option(
    "--method",
    required=True,
    type=click.Choice(METHODS),
    help="loops: peakachu, dloopcaller; loops_genomewide: peakachu, hicmix-caller; hicmap: "
    "distance_decay, track_outer, epiphany_lite; expression / expression_npz: linear, deepchrome, "
    "simplechrome.",
)
@click.option(
    "--tiles",
    multiple=True,
    help="Training tile folder (hicmix tiles; repeatable): train fits, val selects.",
)
@click.option(
    "--test-tiles",
    multiple=True,
    help="Tile folder whose test split is scored (default: the --tiles folders, with val rows); "
    "another cell line gives cross-cell transfer (test rows only).",
)
@click.option("--config", default=None, help="Run config YAML (write_baselines_config).")
@click.option("--seed", "seeds", multiple=True, required=True, type=int, help="Seed (repeatable).")
@click.option("--out", required=True, help="Output folder; each seed writes <out>/seed<N>/.")
@click.option(
    "--model-run",
    default=None,
    help="loops_genomewide: the loops/peakachu run folder (seed<N>/model.joblib) to call with.",
)
@click.option(
    "--threshold-run",
    default=None,
    help="loops_genomewide: a same-cell calling run whose val-chosen threshold is reused.",
)
@click.option("--genes", default=None, help="expression: gene table (default: the tiles').")
@click.option("--gene-id-column", default=None, help="expression: gene id column of the table.")
@click.option("--tss-column", default=None, help="expression: TSS column of the table.")
@click.option("--npz", default=None, help="expression_npz: the (genes, bins, marks) .npz.")
@click.option("--name", default=None, help="expression_npz: cell line name for the rows.")
@device_option(default=None, help="Torch device (default: the run config's).")
def baselines(**options: object) -> None:
    """Fit a baseline on the train split, select on val, score the test split."""
    from hicmix.baselines.run import run_baselines, run_npz

    task, method = str(options["task"]), str(options["method"])
    seeds = [int(s) for s in options["seeds"]]
    if task == "expression_npz":
        if not options["npz"]:
            raise click.UsageError("--task expression_npz needs --npz")
        summaries = run_npz(
            method,
            str(options["npz"]),
            str(options["out"]),
            seeds,
            options["config"],
            name=options["name"],
            device=options["device"],
        )
    else:
        if not options["tiles"]:
            raise click.UsageError(f"--task {task} needs --tiles")
        summaries = run_baselines(
            task,
            method,
            list(options["tiles"]),
            list(options["test_tiles"]) or None,
            options["config"],
            str(options["out"]),
            seeds,
            model_run=options["model_run"],
            threshold_run=options["threshold_run"],
            genes=options["genes"],
            gene_columns=(
                (str(options["gene_id_column"] or "gene_id"), str(options["tss_column"] or "tss"))
                if options["gene_id_column"] or options["tss_column"]
                else None
            ),
            device=options["device"],
        )
    for summary in summaries:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in summary["headline_scores"].items())
        click.echo(f"{method} {task} seed {summary['seed']}: {scores} -> {options['out']}")
