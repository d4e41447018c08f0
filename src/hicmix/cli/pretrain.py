"""``hicmix pretrain``: pre-train MixHiC on tile folders (``--gpus N``: relaunch under torchrun).

Multi-node (Slurm): run one task per node with srun, each a torchrun with a c10d rendezvous on the
first node, and this module as the program (see ``hicmix.training.distributed`` for the full line)::

    srun --nodes=K --ntasks-per-node=1 \\
        python -m torch.distributed.run --nnodes=K --nproc-per-node=N \\
        --rdzv-id=$SLURM_JOB_ID --rdzv-backend=c10d --rdzv-endpoint=$HEAD:29500 \\
        -m hicmix.cli.pretrain --tiles ... --config ... --out ...
"""

from __future__ import annotations

import subprocess
import sys

import click

from hicmix.cli.options import device_option, progress_option, workers_option

MODULE = "hicmix.cli.pretrain"


def _relaunch_args(options: dict) -> list[str]:
    args: list[str] = []
    for tile_dir in options["tiles"]:
        args += ["--tiles", str(tile_dir)]
    args += ["--config", str(options["config"]), "--out", str(options["out"])]
    args += ["--gpus", str(options["gpus"]), "--device", options["device"]]
    args.append("--resume" if options["resume"] else "--no-resume")
    for name in ("max_steps", "workers", "stop_at_step"):
        if options[name] is not None:
            args += [f"--{name.replace('_', '-')}", str(options[name])]
    if not options["progress"]:
        args.append("--no-progress")
    return args


@click.command("pretrain")
@click.option(
    "--tiles",
    multiple=True,
    required=True,
    help="Tile folder from `hicmix tiles` (repeat for several cell lines).",
)
@click.option("--config", required=True, help="Run config YAML (write_run_config).")
@click.option("--out", required=True, help="Output folder (checkpoint, losses, summary).")
@click.option(
    "--gpus",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes on this node; > 1 relaunches under torchrun (one per GPU, or CPU processes "
    "with --device cpu).",
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue from the newest checkpoint in --out.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Override the run length (and the LR schedule's).",
)
@device_option()
@workers_option(help="DataLoader workers per process (default: the config's num_workers).")
@click.option("--stop-at-step", type=click.IntRange(min=1), default=None, hidden=True)
@progress_option()
def pretrain(**options: object) -> None:
    """Pre-train the multimodal model (contrastive + orthogonality + mapping) on pretrain tiles."""
    from hicmix.training.distributed import launched_distributed, torchrun_command

    if int(options["gpus"]) > 1 and not launched_distributed():
        command = torchrun_command(int(options["gpus"]), MODULE, _relaunch_args(options))
        click.echo(f"launching {options['gpus']} processes: {' '.join(command)}", err=True)
        code = subprocess.call(command)
        if code:
            raise SystemExit(code)
        return

    from hicmix.pretrain import pretrain as run
    from hicmix.training.distributed import context_from_env, shutdown_distributed

    try:
        summary = run(
            list(options["tiles"]),
            options["config"],
            options["out"],
            device=str(options["device"]),
            resume=bool(options["resume"]),
            max_steps=options["max_steps"],
            workers=options["workers"],
            stop_at_step=options["stop_at_step"],
            progress=bool(options["progress"]),
        )
    finally:
        shutdown_distributed()
    if not context_from_env().is_main:
        return
    if summary.get("finished"):
        train = summary["final_train"].get("total", float("nan"))
        val = summary["final_val"].get("total", float("nan"))
        click.echo(
            f"pre-trained {summary['steps']} steps ({summary['samples_seen']} samples) into "
            f"{options['out']}: train loss {train:.4f}, val loss {val:.4f}"
        )
    else:
        click.echo(f"stopped at step {summary['step']}; checkpoint in {options['out']}")


def main() -> None:
    """Entry point for ``python -m hicmix.cli.pretrain`` (what torchrun runs on every rank)."""
    from hicmix.cli import cli

    cli.main(args=["pretrain", *sys.argv[1:]], prog_name="hicmix")


if __name__ == "__main__":
    main()
