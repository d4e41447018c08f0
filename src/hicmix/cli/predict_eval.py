"""``hicmix predict-eval``: a ``hicmix predict`` map against the true map and distance decay."""

from __future__ import annotations

import click


def _regions(text: str | None) -> list[str] | None:
    return [r.strip() for r in text.split(",") if r.strip()] if text else None


@click.command("predict-eval")
@click.option("--pred", required=True, help="hicmix predict output folder or its predicted.mcool.")
@click.option("--truth", required=True, help="True balanced .cool (results/hic/{cell}.cool).")
@click.option("--out", required=True, help="Output folder: metrics.tsv, evaluation.json.")
@click.option("--h", "h", required=True, type=click.IntRange(min=0), help="SCC smoothing h.")
@click.option(
    "--max-dist-bins",
    default=None,
    type=click.IntRange(min=1),
    help="Largest distance scored (default: the predicted band's last diagonal).",
)
@click.option("--split", "splits", multiple=True, help="NAME=chr,chr:start-end,... (val, test).")
@click.option("--chromosomes", default=None, help="Comma list the split applies to (default all).")
@click.option("--test", default=None, help="Test regions (comma list); overrides --split.")
@click.option("--train", default=None, help="Training regions of the decay baseline (comma list).")
@click.option(
    "--space", default="balanced", show_default=True, type=click.Choice(["balanced", "model"])
)
@click.option("--weight", default="weight", show_default=True, help="Truth's weight column.")
@click.option("--task", default="predict_map", show_default=True, help="Task column of the rows.")
@click.option("--method", default=None, help="Method column (default: the model card's).")
@click.option("--cell-line", default=None, help="Cell line (default: the .mcool's).")
@click.option("--train-cell-line", default=None, help="Default: the model card's cell lines.")
@click.option("--seed", default=None, type=int, help="Default: the model card's seed.")
def predict_eval(**options: object) -> None:
    """Per-distance Pearson, SCC and insulation of a predicted map on the test regions, next to
    the distance-decay baseline (expected per diagonal of the training regions)."""
    from hicmix.cli.tiles import _splits
    from hicmix.predict.evaluation import evaluate_run

    chromosomes = _regions(options.pop("chromosomes"))
    result = evaluate_run(
        options.pop("pred"),
        options.pop("truth"),
        options.pop("out"),
        splits=_splits(options.pop("splits")) or None,
        chromosomes=chromosomes,
        test=_regions(options.pop("test")),
        train=_regions(options.pop("train")),
        **options,
    )
    model, decay = result["model"], result["decay"]
    click.echo(
        f"{result['identity']['method']} on {', '.join(result['test_regions'])} "
        f"(h {result['h']}, d <= {result['max_dist_bp']} bp, {result['space']}): "
        f"r(d) mean {model['distance_pearson_mean']:.3f} "
        f"(decay {decay['distance_pearson_mean']:.3f}), "
        f"SCC {model['scc']:.3f} (decay {decay['scc']:.3f})"
    )
