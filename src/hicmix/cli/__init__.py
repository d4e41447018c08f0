"""The ``hicmix`` command: one subcommand per pipeline stage, each a thin wrapper over a module.

Subcommands are imported lazily so that ``hicmix download`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from hicmix import __version__
from hicmix.errors import HicmixError

#: subcommand name -> "module:attribute" of its click command, in pipeline order.
SUBCOMMANDS: dict[str, str] = {
    "simulate": "hicmix.cli.simulate:simulate",
    "resolve-sources": "hicmix.cli.download:resolve_sources",
    "download": "hicmix.cli.download:download",
    "balance": "hicmix.cli.balance:balance",
    "tiles": "hicmix.cli.tiles:tiles",
    "qc": "hicmix.cli.qc:qc",
    "pretrain": "hicmix.cli.pretrain:pretrain",
    "finetune": "hicmix.cli.finetune:finetune",
    "baselines": "hicmix.cli.baselines:baselines",
    "evaluate": "hicmix.cli.evaluate:evaluate",
    "predict": "hicmix.cli.predict:predict",
    "predict-eval": "hicmix.cli.predict_eval:predict_eval",
    "report": "hicmix.cli.report:report",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HicmixError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hicmix")
@click.option("-v", "--verbose", count=True, help="Debug log output.")
def cli(verbose: int) -> None:
    """hicmix: multimodal 3D-genome learning pipeline (see README.md)."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
