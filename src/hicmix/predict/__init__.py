"""Apply fine-tuned models to a new cell line: ``hicmix predict`` (docs/architecture.md).

From a cell line's tracks (and optionally its Hi-C), with the checkpoint folders of
``hicmix finetune`` (one per task):

- hicmap model → whole-chromosome maps stitched from overlapping diagonal windows
  (:mod:`hicmix.predict.stitch`), written as a multi-resolution ``predicted.mcool``;
- loops model → every candidate pixel scored in batches, pooled into ``loops.bedpe``
  (:mod:`hicmix.predict.loops`);
- expression model + gene table → ``expression.tsv`` (:mod:`hicmix.predict.expression`);
- ``summary.html`` (:mod:`hicmix.predict.report`) and ``summary.json``.

Public API::

    predict(models, tracks, out, chromosomes=..., hic=None, ...) -> summary dict
    write_model_card(ckpt_dir, metrics_tsv=None) -> Path of MODEL_CARD.md
    update_model_card(ckpt_dir, metrics_tsv=None, threshold_run=None) -> Path (card.json updated)
    evaluate_prediction(pred_cool, true_cool, test_regions, max_dist_bins, h, ...) -> dict
    evaluate_run(pred, truth, out, h=..., splits=...) -> dict (writes metrics.tsv, evaluation.json)
    load_model(ckpt_dir, device) -> LoadedModel; check_tracks(...); tracks_from_sheet(...)
"""

from __future__ import annotations

from hicmix.predict.card import (
    MODEL_CARD_FILE,
    render_model_card,
    update_model_card,
    write_model_card,
)
from hicmix.predict.evaluation import evaluate_prediction, evaluate_run, metric_rows
from hicmix.predict.loops import PREFILTERS, PrefilterSettings, count_candidates
from hicmix.predict.models import (
    LoadedModel,
    check_models_compatible,
    check_tracks,
    load_model,
    loop_range_bp,
    loop_threshold,
    tracks_from_sheet,
)
from hicmix.predict.run import (
    EXPRESSION_FILE,
    HTML_FILE,
    LOOPS_FILE,
    MCOOL_FILE,
    PIXELS_FILE,
    SUMMARY_FILE,
    predict,
)
from hicmix.predict.stitch import band_depth, pixel_weights, window_starts, write_mcool

__all__ = [
    "EXPRESSION_FILE",
    "HTML_FILE",
    "LOOPS_FILE",
    "MCOOL_FILE",
    "MODEL_CARD_FILE",
    "PIXELS_FILE",
    "PREFILTERS",
    "SUMMARY_FILE",
    "LoadedModel",
    "PrefilterSettings",
    "band_depth",
    "check_models_compatible",
    "check_tracks",
    "count_candidates",
    "evaluate_prediction",
    "evaluate_run",
    "load_model",
    "loop_range_bp",
    "loop_threshold",
    "metric_rows",
    "pixel_weights",
    "predict",
    "render_model_card",
    "tracks_from_sheet",
    "update_model_card",
    "window_starts",
    "write_mcool",
    "write_model_card",
]
