"""Baseline methods re-implemented from docs (../shared/docs/baselines_and_metrics.md §2-§5), each
with a small fit / predict API on numpy arrays so that ``hicmix baselines`` runs them on the same
tiles and split as the hicmix model.

Loops: :mod:`.peakachu` (random forest on Peakachu features, protocols A and B) and
:mod:`.dloopcaller` (small 2-channel CNN). Expression: :mod:`.linear` (logistic / ridge on per-mark
means), :mod:`.deepchrome` (CNN), :mod:`.simplechrome` (VAE + MLP). Hi-C maps: :mod:`.decay`
(distance decay only; track outer product + P(s)) and :mod:`.epiphany` (Epiphany-lite).
Torch baselines share :mod:`.torch_fit` (seeded Adam loop with best-epoch selection).

Submodules are imported on demand (torch and scikit-learn are heavy).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PeakachuRF": "peakachu",
    "peakachu_features": "peakachu",
    "peakachu_expected": "peakachu",
    "poisson_candidates": "peakachu",
    "score_band": "peakachu",
    "DLoopCaller": "dloopcaller",
    "dloopcaller_inputs": "dloopcaller",
    "DeepChrome": "deepchrome",
    "SimpleChrome": "simplechrome",
    "LinearExpression": "linear",
    "DistanceDecay": "decay",
    "TrackOuterDecay": "decay",
    "EpiphanyLite": "epiphany",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hicmix.baselines' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hicmix.baselines.{_EXPORTS[name]}"), name)
