"""Click options and echo helpers shared by several subcommands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

DEVICES = ("auto", "cpu", "cuda")


def device_option(default: str | None = "auto", help: str | None = None) -> Callable:
    """``--device auto|cpu|cuda`` (auto: CUDA when visible)."""
    return click.option(
        "--device",
        type=click.Choice(DEVICES),
        default=default,
        show_default=default is not None,
        help=help,
    )


def workers_option(default: int | None = None, help: str | None = None) -> Callable:
    """``--workers N``: DataLoader worker processes."""
    return click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=default,
        show_default=default is not None,
        help=help,
    )


def progress_option() -> Callable:
    """Hidden ``--progress/--no-progress`` (progress bars on by default)."""
    return click.option("--progress/--no-progress", default=True, hidden=True)


def headline(summary: Mapping[str, Any]) -> str:
    """'metric 0.1234, ...' from a run summary's ``headline_scores``."""
    return ", ".join(f"{k} {v:.4f}" for k, v in summary["headline_scores"].items())
