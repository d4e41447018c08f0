"""Run the installed, unmodified ``peakachu`` command on Python >= 3.11 (baselines doc §7).

Peakachu 2.3's training code calls ``random.sample`` on a *set*; Python 3.11 rejects that with a
TypeError, a bare ``except`` swallows it ("failed to gather fts" for every chromosome) and ``train``
dies stacking an empty list. This wrapper, run with the Python of Peakachu's own venv:

1. seeds ``random`` and numpy (Peakachu's negative sampling and its random forest, which has no
   ``random_state``, draw from the global generators; with ``--nproc 1`` a run is reproducible);
2. replaces the ``random`` module object referenced by ``peakachu.trainUtils`` with
   :class:`SortedSetRandom`, which turns a set into a sorted list before sampling (same population,
   deterministic order) and delegates everything else to the real module;
3. executes the installed ``peakachu`` entry point with the remaining arguments.

It imports nothing from hicmix (hicmix is not installed in that venv). Usage::

    <venv>/bin/python peakachu_train_wrapper.py [--seed 0] [--entry PATH] -- train -p x.cool ...
"""

from __future__ import annotations

import argparse
import random
import runpy
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class SortedSetRandom:
    """Stand-in for the ``random`` module: ``sample`` accepts sets (sorted first), all other
    attributes are the wrapped module's."""

    def __init__(self, module: Any = random) -> None:
        self._module = module

    def sample(self, population: Any, k: int, *, counts: Any = None) -> list:
        if isinstance(population, set | frozenset):
            population = sorted(population)
        return self._module.sample(population, k, counts=counts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and numpy's global generator."""
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - Peakachu's venv always has numpy
        return
    np.random.seed(seed)


def patch_train_utils(module: Any = None) -> Any:
    """Point ``module.random`` (default: ``peakachu.trainUtils``) at a :class:`SortedSetRandom`."""
    if module is None:
        import peakachu.trainUtils as module  # only inside Peakachu's venv
    current = getattr(module, "random", random)
    if not isinstance(current, SortedSetRandom):
        module.random = SortedSetRandom(current)
    return module


def find_entry(entry: str | None = None) -> Path:
    """The installed ``peakachu`` script: ``entry``, else next to this Python, else on PATH."""
    if entry:
        return Path(entry)
    beside = Path(sys.executable).parent / "peakachu"
    if beside.exists():
        return beside
    found = shutil.which("peakachu")
    if found is None:
        raise SystemExit("peakachu_train_wrapper: no 'peakachu' entry point; pip install peakachu")
    return Path(found)


def drop_own_folder_from_path() -> None:
    """Run as a script, this file's folder is ``sys.path[0]``; it holds hicmix's own
    ``peakachu.py``, which would shadow the installed package, so take it off the path."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    module = sys.modules.get("peakachu")
    if module is not None and Path(getattr(module, "__file__", "") or "").parent == here:
        del sys.modules["peakachu"]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        own, rest = argv[:split], argv[split + 1 :]
    else:
        own, rest = [], argv
    parser = argparse.ArgumentParser(prog="peakachu_train_wrapper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--entry", default=None, help="path of the peakachu script")
    options = parser.parse_args(own)
    drop_own_folder_from_path()
    seed_everything(options.seed)
    patch_train_utils()
    entry = find_entry(options.entry)
    sys.argv = [str(entry), *rest]
    runpy.run_path(str(entry), run_name="__main__")


if __name__ == "__main__":
    main()
