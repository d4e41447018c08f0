"""Reading run-config YAML files shared by pre-training and fine-tuning."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hicmix.errors import ConfigError


def read_run_config(path: str | Path, writer: str) -> dict[str, Any]:
    """The mapping in run config ``path``; ``writer`` names the function that writes such files."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"run config {path} does not exist; write it with {writer}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"run config {path} is not valid YAML ({err}); fix it") from None
    if not isinstance(values, Mapping):
        raise ConfigError(f"run config {path} must be a mapping of keys to values")
    return dict(values)
