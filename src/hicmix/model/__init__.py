"""hicmix.model: the MIX-HIC-style multimodal model (Hi-C + epigenomic tracks), PyTorch.

Public API
----------
Geometry and sizes (``config.py``)::

    geometry = ModelGeometry.from_manifest(manifest)   # W, P, C from tile metadata, never constants
    geometry = ModelGeometry(window_bins=50, positions_per_bin=50, n_channels=5)
    config = model_config("base", embed_dim=64)   # MODEL_SIZES: tiny (< 1 M), base, large
    config.to_dict(); ModelConfig.from_dict(d)    # for checkpoint cards

Pre-training (``mixhic.py``)::

    model = MixHiC(geometry, config, hic_transform="clip_scale", tasks=())   # () = pre-training
    losses = model.pretrain_losses(batch, gather=None)  # == model(batch); float32 scalars
        # "contrastive", "orthogonality", "mapping"; "temperature" (detached τ); gather: all-gather
        # with gradient under DDP, so InfoNCE sees the global batch's negatives
    model.clamp_temperature_()              # after every optimiser step: τ ∈ [tau_min, tau_max]
    opt = torch.optim.AdamW(parameter_groups(model, weight_decay=1e-6), lr=...)
    model.pretrained_state_dict()           # encoders + interaction (τ) + mapping

Building blocks::

    tokens, skips = model.encode_tracks(tracks, distance)  # (B, Lt, 8E), U-Net skips:
                                                           # [(B,2W,E), (B,W,2E), (B,W/2,4E)]
    hic_tokens = model.encode_hic(hic, distance)           # (B, Lh, 8E)
    feats = model.interaction(tokens, hic_tokens)          # {track,hic}_{shared,specific,concat}
    imputed = model.impute_hic_tokens(tokens)              # (B, Lh, 8E) from tracks only

Fine-tuning::

    model = MixHiC(geometry, config, hic_transform, tasks=("loops",))  # or "hicmap", "expression"
    report = model.load_pretrained(pretrain_state)   # LoadReport: loaded / missing / unexpected
    out = model.forward_task(batch, "loops", mode="bimodal")   # == model(batch, "loops", "bimodal")
    # loops → {"logits": (B,)} (BCE-with-logits); hicmap → {"map": (B, 1, W, W)};
    # expression → {"profile": (B, W), "scalar": (B,)}
    # mode: "bimodal" | "tracks_only" (imputed Hi-C) | "hic_only" (imputed tracks; loops only)

Utilities: ``count_parameters(module)``, ``model_flops_per_sample(geometry, config, task=None)``
(training FLOPs per sample for MFU), ``synthetic_batch(geometry, batch_size, seed)`` (paired fake
tiles for tests and smoke runs).

A batch is the tile contract (docs/architecture.md): ``hic`` (B,1,W,W), ``tracks`` (B,C,2·W·P)
channel-major, ``distance`` (B,) = y - x in bins; ``hic_mask``, ``label`` and ``bins`` are not read
by the model (losses use them). Every sequence tensor is batch-first and attention runs along the
tokens (MIX-HIC defect D1 fixed); all blocks are pre-norm. Under autocast, losses are float32.
"""

from hicmix.model.config import MODEL_SIZES, ModelConfig, ModelGeometry, model_config, pool_factors
from hicmix.model.flops import model_flops_per_sample
from hicmix.model.interaction import info_nce, orthogonality_loss
from hicmix.model.mixhic import (
    MODES,
    PRETRAINED_MODULES,
    TASKS,
    LoadReport,
    MixHiC,
    count_parameters,
    parameter_groups,
)
from hicmix.model.synthetic import synthetic_batch

__all__ = [
    "MODEL_SIZES",
    "MODES",
    "PRETRAINED_MODULES",
    "TASKS",
    "LoadReport",
    "MixHiC",
    "ModelConfig",
    "ModelGeometry",
    "count_parameters",
    "info_nce",
    "model_config",
    "model_flops_per_sample",
    "orthogonality_loss",
    "parameter_groups",
    "pool_factors",
    "synthetic_batch",
]
