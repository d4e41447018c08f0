"""``hicmix baselines``: one baseline method of one downstream task, on the tiles the hicmix model
uses, with the same split and outputs (docs/baselines_and_metrics.md §1-§6).

Tasks and methods (:data:`TASK_METHODS`):

- ``loops`` (protocol A, loop tiles): ``peakachu`` (random forest on Peakachu features of the tile
  patches, observed / expected with the expected curve of the tile folder's training chromosomes;
  GridSearchCV on the training patches only) and ``dloopcaller`` (CNN on the Hi-C patch and a track
  outer product; best epoch by val AUROC). Output ``predictions.tsv`` (the hicmix finetune format).
- ``loops_genomewide`` (protocol B): ``peakachu`` (Poisson candidates + the ``loops`` run's forest
  + pooling) on the test chromosomes, the pooling threshold chosen on the training cell line's val
  chromosomes. Output ``calls.bedpe`` (see :mod:`hicmix.evaluate.run`). Also ours,
  ``hicmix-caller`` (:mod:`hicmix.predict.loops`: HICCUPS-like donut-enrichment candidates, a
  gradient-boosted scorer fitted on the training chromosomes' truth loops, threshold and pool
  radius chosen on the val chromosomes), run here because it needs no fine-tuned model.
- ``hicmap`` (tss tiles, the window's Hi-C from its tracks): ``distance_decay`` (mean per genomic
  diagonal of the training windows), ``track_outer`` (decay + ridge on track outer products) and
  ``epiphany_lite`` (conv + BiLSTM; best epoch by val mean r(d)). Output ``predictions.h5``.
- ``expression`` (tss tiles): ``linear`` (ridge; logistic regression for above / below the
  training median), ``deepchrome`` and ``simplechrome`` (regression + binary models; best epoch by
  val Pearson / AUROC), on the (genes, bins, marks) tensor of :func:`expression_tensor`; plus a
  learning curve (task ``expression_learning_curve``) at the configured training-gene counts.
  Output ``expression.tsv`` with ``prediction`` (regression) and ``probability`` (binary).
- ``expression_npz``: the same three methods on an external (genes, bins, marks) tensor such as
  ``deepchrome_like_GM12878_chr11.npz``, with k-fold cross-validation by gene (one chromosome, so no
  chromosome split is possible); rows with split ``cv`` (mean over folds).

Same cell line (``--test-tiles`` absent or equal to ``--tiles``): val and test rows. Another cell
line: test rows of that cell line only (the val rows belong to the same-cell run), the model being
refitted with the same seed. Each seed writes ``<out>/seed<N>/`` with ``metrics.tsv`` and, last,
``summary.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError, InputError

log = logging.getLogger(__name__)

TASK_METHODS: dict[str, tuple[str, ...]] = {
    "loops": ("peakachu", "dloopcaller"),
    "loops_genomewide": ("peakachu", "hicmix-caller"),
    "hicmap": ("distance_decay", "track_outer", "epiphany_lite"),
    "expression": ("linear", "deepchrome", "simplechrome"),
    "expression_npz": ("linear", "deepchrome", "simplechrome"),
}
#: Keyword arguments of each method's class (defaults: small and CPU-friendly).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "peakachu": {"w": 5, "grid": "small", "cv": 3, "n_jobs": 1, "p_value": 0.01},
    "hicmix-caller": {
        "min_enrichment": 1.25,
        "candidate_radius": 1,
        "label_radius": 1,
        "pool_radii": [1, 2, 3],
    },
    "dloopcaller": {"epochs": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 5e-4},
    "distance_decay": {},
    "track_outer": {"alpha": 1.0, "max_pixels": 500_000},
    "epiphany_lite": {"epochs": 5, "batch_size": 32, "lr": 1e-3},
    "linear": {"c": 1.0, "alpha": 1.0},
    "deepchrome": {"epochs": 10, "batch_size": 64, "lr": 1e-3},
    "simplechrome": {"vae_epochs": 5, "head_epochs": 5},
}
#: Keys of a method's settings that are not constructor arguments.
_NOT_KWARGS = {"p_value"}
#: Expression tensor and learning curve (baselines_and_metrics.md §4.5, §6.3).
EXPRESSION_DEFAULTS: dict[str, Any] = {
    "flank_bp": 5000,
    "bin_bp": 100,
    "learning_curve": [100, 1000, "all"],
    "gene_id_column": "gene_id",
    "tss_column": "tss",
    "strand_column": "strand",
}
NPZ_DEFAULTS: dict[str, Any] = {"folds": 5, "val_fraction": 0.15, "name": None}
LEARNING_CURVE_METRICS = (
    "pearson",
    "spearman",
    "r2",
    "above_median_auroc",
    "above_median_auprc",
)
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.tsv"
MODEL_FILE = "model.joblib"


# --------------------------------------------------------------------------------------------------
# run config


@dataclass(frozen=True)
class BaselinesConfig:
    """The run config of ``hicmix baselines``: per-method settings (``methods``), the expression
    tensor and learning curve (``expression``), genome-wide calling (``loops_genomewide``, see
    :class:`hicmix.evaluate.run.CallingSettings`), the external tensor's CV (``expression_npz``)
    and the torch ``device``."""

    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    expression: dict[str, Any] = field(default_factory=dict)
    loops_genomewide: dict[str, Any] = field(default_factory=dict)
    expression_npz: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def __post_init__(self) -> None:
        from hicmix.evaluate.run import CallingSettings

        unknown = sorted(set(self.methods) - set(METHOD_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"baselines run config: unknown method(s) {', '.join(unknown)}; use "
                f"{', '.join(METHOD_DEFAULTS)}"
            )
        for name, defaults in (
            ("expression", EXPRESSION_DEFAULTS),
            ("expression_npz", NPZ_DEFAULTS),
        ):
            extra = sorted(set(getattr(self, name)) - set(defaults))
            if extra:
                raise ConfigError(
                    f"baselines run config {name}: unknown key(s) {', '.join(extra)}; use "
                    f"{', '.join(defaults)}"
                )
        CallingSettings.from_dict(self.loops_genomewide)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"baselines run config device {self.device!r}: use auto, cpu or cuda")
        sizes = self.expression_settings()["learning_curve"]
        if any(s != "all" and (not isinstance(s, int) or s < 2) for s in sizes):
            raise ConfigError(
                f"baselines run config expression.learning_curve {sizes}: use gene counts >= 2 "
                "or 'all'"
            )

    def method_settings(self, method: str) -> dict[str, Any]:
        return {**METHOD_DEFAULTS[method], **(self.methods.get(method) or {})}

    def expression_settings(self) -> dict[str, Any]:
        return {**EXPRESSION_DEFAULTS, **self.expression}

    def npz_settings(self) -> dict[str, Any]:
        return {**NPZ_DEFAULTS, **self.expression_npz}

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": {m: self.method_settings(m) for m in METHOD_DEFAULTS},
            "expression": self.expression_settings(),
            "loops_genomewide": dict(self.loops_genomewide),
            "expression_npz": self.npz_settings(),
            "device": self.device,
        }

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, source: str = "run config"
    ) -> BaselinesConfig:
        values = dict(values or {})
        known = {"methods", "expression", "loops_genomewide", "expression_npz", "device"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"baselines {source}: unknown key(s) {', '.join(unknown)}; use "
                f"{', '.join(sorted(known))}"
            )
        values = {k: (v if v is not None else {}) for k, v in values.items()}
        return cls(**values)


def write_baselines_config(config: Mapping[str, Any] | BaselinesConfig, path: str | Path) -> Path:
    """Validate ``config`` and write it, defaults filled in, as YAML (for the Snakemake rule)."""
    cfg = config if isinstance(config, BaselinesConfig) else BaselinesConfig.from_dict(config)
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return Path(path)


def load_baselines_config(
    config: str | Path | Mapping[str, Any] | BaselinesConfig | None,
) -> BaselinesConfig:
    """A BaselinesConfig from a YAML path, a mapping, an instance or None (all defaults)."""
    if isinstance(config, BaselinesConfig):
        return config
    if config is None or isinstance(config, Mapping):
        return BaselinesConfig.from_dict(config)
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"baselines run config {path} does not exist; write it first")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"baselines run config {path} is not valid YAML ({error})") from None
    return BaselinesConfig.from_dict(values, source=f"run config {path}")


# --------------------------------------------------------------------------------------------------
# tiles as numpy arrays


@dataclass
class TileArrays:
    """Samples of one kind and split read in bulk: ``index`` rows, the first folder's manifest,
    and the arrays requested (``hic`` (N, W, W), ``mask`` bool (N, W, W), ``tracks``)."""

    index: pd.DataFrame
    manifests: list[dict[str, Any]]
    label: np.ndarray
    distance: np.ndarray
    bins: np.ndarray
    hic: np.ndarray | None = None
    mask: np.ndarray | None = None
    tracks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.manifests[0]

    def base(self) -> dict[str, np.ndarray]:
        """label, distance and bins: the keys every prediction set carries."""
        return {"label": self.label, "distance": self.distance, "bins": self.bins}

    def subset(self, keep: np.ndarray) -> TileArrays:
        def take(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x[keep]

        return TileArrays(
            self.index.iloc[keep].reset_index(drop=True),
            self.manifests, self.label[keep], self.distance[keep], self.bins[keep],
            take(self.hic), take(self.mask), take(self.tracks),
        )  # fmt: skip

    def cells(self) -> list[str]:
        return list(dict.fromkeys(self.index["cell_line"].astype(str)))


def load_tiles(
    tile_dirs: Sequence[str | Path],
    kind: str,
    split: str,
    fields: Sequence[str] = ("hic", "hic_mask", "tracks"),
    track_positions: tuple[int, int] | None = None,
) -> TileArrays:
    """Every ``kind`` sample of ``split`` in ``tile_dirs`` (TileDataset order), read shard by shard.

    ``track_positions`` = (start, stop) reads only those track positions (e.g. the row anchor).
    """
    import h5py

    from hicmix.tiles import TileDataset

    dirs = [Path(d) for d in tile_dirs]
    dataset = TileDataset(dirs, kind, [split])
    index = dataset.index.reset_index(drop=True)
    manifests = dataset.manifests
    dataset.close()
    n = len(index)
    out: dict[str, np.ndarray] = {}
    for (folder, shard), group in index.groupby(["tile_dir", "shard"], sort=False):
        positions = group.index.to_numpy()
        rows = group["row"].to_numpy(np.int64)
        with h5py.File(dirs[int(folder)] / kind / str(shard), "r") as handle:
            for name in ("label", "distance", "bins", *fields):
                data = handle[name]
                if name == "tracks" and track_positions is not None:
                    values = data[:, :, track_positions[0] : track_positions[1]]
                else:
                    values = data[()]
                values = values[rows]
                if name not in out:
                    out[name] = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
                out[name][positions] = values
    if n == 0:
        return TileArrays(index, manifests, np.zeros(0, np.float32), np.zeros(0, np.int64),
                          np.zeros((0, 2), np.int64))  # fmt: skip
    return TileArrays(
        index,
        manifests,
        out["label"].astype(np.float32),
        out["distance"].astype(np.int64),
        out["bins"].astype(np.int64),
        out.get("hic"),
        None if "hic_mask" not in out else out["hic_mask"].astype(bool),
        out.get("tracks"),
    )


@dataclass
class TaskData:
    """Training, validation and scored sets of one task: ``scored`` = [(split, cell, arrays)]."""

    train: TileArrays
    val: TileArrays
    scored: list[tuple[str, str, TileArrays]]
    same_cell: bool


def _same_dirs(a: Sequence[Path], b: Sequence[Path]) -> bool:
    return [p.resolve() for p in a] == [p.resolve() for p in b]


def task_data(
    train_dirs: Sequence[Path],
    test_dirs: Sequence[Path],
    kind: str,
    fields: Sequence[str],
    track_positions: tuple[int, int] | None = None,
) -> TaskData:
    """Train and val of the training folders; scored sets: val + test of the training folders
    (same cell line), else the test split of each test folder."""

    def load(dirs, split):
        return load_tiles(dirs, kind, split, fields, track_positions)

    train, val = load(train_dirs, "train"), load(train_dirs, "val")
    for name, data in (("train", train), ("val", val)):
        if len(data) == 0:
            raise InputError(
                f"tiles {', '.join(map(str, train_dirs))} hold no {kind} samples in the {name} "
                "split; baselines need both (val selects); retile with a split that leaves "
                "samples in train and val"
            )
    same = not test_dirs or _same_dirs(train_dirs, test_dirs)
    scored: list[tuple[str, str, TileArrays]] = []
    if same:
        for cell in val.cells():
            scored.append(
                ("val", cell, val.subset(val.index["cell_line"].astype(str).eq(cell).to_numpy()))
            )
        sets = [(d, load([d], "test")) for d in train_dirs]
    else:
        sets = [(d, load([d], "test")) for d in test_dirs]
    for folder, data in sets:
        if len(data) == 0:
            raise InputError(
                f"tiles {folder} hold no {kind} samples in the test split; retile with test "
                "chromosomes that hold samples of this kind"
            )
        scored.append(("test", str(data.manifest["cell_line"]), data))
    return TaskData(train, val, scored, same)


def training_chromosomes(manifest: Mapping[str, Any]) -> list[str]:
    """Chromosomes of a tile folder not wholly held out as val or test."""
    from hicmix.genome import SplitSpec

    spec = SplitSpec.from_mapping(manifest.get("splits") or {})
    whole = {r.chrom for r in [*spec.val, *spec.test] if r.start == 0 and r.end is None}
    chroms = [c for c in manifest.get("chromosomes") or [] if c not in whole]
    return chroms or list(manifest.get("chromosomes") or [])


# --------------------------------------------------------------------------------------------------
# loops (protocol A)


def _masked(data: TileArrays) -> np.ndarray:
    hic = data.hic.astype(np.float32)
    if data.mask is not None:
        hic = np.where(data.mask, hic, np.nan)
    return hic


def _peakachu_inputs(data: TileArrays, w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(row positions, patches, expected) per tile folder of ``data``: patches in a space linear in
    balanced contacts, and the folder's expected curve over its training chromosomes."""
    from hicmix.hic import read_expected

    parts = []
    folders = data.index["tile_dir"].to_numpy()
    patches_all = _masked(data)
    for number in np.unique(folders):
        keep = np.flatnonzero(folders == number)
        manifest = data.manifests[int(number)]
        patches = patches_all[keep]
        max_diag = int(data.distance[keep].max(initial=0)) + int(manifest["window_bins"]) + w + 2
        if manifest["hic_transform"] == "log1p_oe":  # back to O/E: the expected is then 1
            patches = np.expm1(patches)
            expected = np.ones(max_diag)
        else:  # clip_scale is linear in balanced contacts below the clip (features are scale-free)
            path = manifest.get("hic_expected")
            if not path or not Path(path).is_file():
                raise InputError(
                    f"tiles of {manifest['cell_line']}: expected file {path!r} not found; the "
                    "Peakachu baseline needs the balance stage's .expected.tsv"
                )
            expected = read_expected(path, training_chromosomes(manifest), max_diag)
        parts.append((keep, patches, np.asarray(expected, dtype=np.float64)))
    return parts


def _peakachu_features(data: TileArrays, w: int) -> tuple[np.ndarray, np.ndarray]:
    from hicmix.baselines.peakachu import peakachu_features

    features = np.zeros((len(data), (2 * w + 1) ** 2), dtype=np.float32)
    keep = np.zeros(len(data), dtype=bool)
    for rows, patches, expected in _peakachu_inputs(data, w):
        f, k = peakachu_features(patches, expected, w, data.distance[rows])
        features[rows], keep[rows] = f, k
    return features, keep


def _fit_peakachu(data: TaskData, settings: dict, seed: int, device: str):
    from hicmix.baselines.peakachu import PeakachuRF

    model = PeakachuRF(seed=seed, **settings)
    features, keep = _peakachu_features(data.train, model.w)
    model.fit(features[keep], data.train.label[keep])

    def score(arrays: TileArrays) -> np.ndarray:
        f, k = _peakachu_features(arrays, model.w)
        scores = np.zeros(len(arrays))
        scores[k] = model.predict_proba(f[k])
        return scores  # windows failing Peakachu's filters score 0, as upstream

    info = {
        "selection": f"GridSearchCV ({model.cv}-fold, MCC) on training patches",
        "selection_split": "train_cv",
        "best_params": model.best_params,
        "train_cv_mcc": model.cv_score,
        "n_train_kept": int(keep.sum()),
    }
    return model, score, info, {"train_cv_mcc": model.cv_score}


def _fit_dloopcaller(data: TaskData, settings: dict, seed: int, device: str):
    from hicmix.baselines.dloopcaller import (
        INPUT_SIZE,
        DLoopCaller,
        dloopcaller_inputs,
        pick_track_channel,
    )

    channel = pick_track_channel(data.train.manifest["channels"])
    window = int(data.train.manifest["window_bins"])
    size = min(INPUT_SIZE, window - 1 + window % 2)  # 23 x 23, or the largest odd crop that fits

    def inputs(arrays: TileArrays) -> np.ndarray:
        return dloopcaller_inputs(arrays.hic, arrays.tracks, channel, size)

    model = DLoopCaller(seed=seed, device=device, **settings)
    model.fit(inputs(data.train), data.train.label, inputs(data.val), data.val.label)
    info = {
        "selection": "best epoch by val AUROC",
        "selection_split": "val",
        "best_epoch": model.result.best_epoch,
        "track_channel": data.train.manifest["channels"][channel],
        "input_size": size,
    }
    return (
        model,
        lambda arrays: model.predict_proba(inputs(arrays)),
        info,
        {"best_epoch": float(model.result.best_epoch)},
    )


LOOP_FITS: dict[str, Callable] = {"peakachu": _fit_peakachu, "dloopcaller": _fit_dloopcaller}


# --------------------------------------------------------------------------------------------------
# Hi-C maps from tracks


def _fit_distance_decay(data: TaskData, settings: dict, seed: int, device: str):
    from hicmix.baselines.decay import DistanceDecay

    model = DistanceDecay().fit(data.train.hic, data.train.mask, data.train.distance)
    window = data.train.hic.shape[1]
    info = {"selection": "none (no hyper-parameter)", "selection_split": None}
    return model, lambda a: model.predict(len(a), window, a.distance), info, {}


def _fit_track_outer(data: TaskData, settings: dict, seed: int, device: str):
    from hicmix.baselines.decay import TrackOuterDecay

    train = data.train
    model = TrackOuterDecay(seed=seed, **settings).fit(
        train.hic, train.tracks, train.mask, train.distance
    )
    window = train.hic.shape[1]
    info = {"selection": "none (fixed ridge alpha)", "selection_split": None}
    return model, lambda a: model.predict(a.tracks, window, a.distance), info, {}


def _fit_epiphany(data: TaskData, settings: dict, seed: int, device: str):
    from hicmix.baselines.epiphany import EpiphanyLite

    train, val = data.train, data.val
    model = EpiphanyLite(seed=seed, device=device, **settings).fit(
        train.tracks, train.hic, train.mask, train.distance,
        tracks_val=val.tracks, maps_val=val.hic, mask_val=val.mask, distances_val=val.distance,
    )  # fmt: skip
    info = {
        "selection": "best epoch by val mean per-distance Pearson (d >= 1)",
        "selection_split": "val",
        "best_epoch": model.result.best_epoch,
    }
    return (
        model,
        lambda a: model.predict(a.tracks, a.distance),
        info,
        {"best_epoch": float(model.result.best_epoch)},
    )


MAP_FITS: dict[str, Callable] = {
    "distance_decay": _fit_distance_decay,
    "track_outer": _fit_track_outer,
    "epiphany_lite": _fit_epiphany,
}


# --------------------------------------------------------------------------------------------------
# expression


def read_gene_positions(
    path: str | Path, gene_id_column: str, tss_column: str, strand_column: str | None
) -> pd.DataFrame:
    """gene_id, tss (bp) and strand ('+' / '-'; '+' when the table has no strand column)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: gene table not found; pass --genes with the tiles' gene table")
    table = pd.read_csv(path, sep="\t", dtype={gene_id_column: str})
    missing = [c for c in (gene_id_column, tss_column) if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: gene table lacks column(s) {', '.join(missing)}; set the gene id and TSS "
            "columns of the expression baselines (tasks.expression in the config)"
        )
    strand = (
        table[strand_column].astype(str).to_numpy()
        if strand_column and strand_column in table.columns
        else np.full(len(table), "+")
    )
    return pd.DataFrame(
        {
            "gene_id": table[gene_id_column].astype(str).to_numpy(),
            "tss": pd.to_numeric(table[tss_column], errors="coerce").to_numpy(),
            "strand": strand,
        }
    ).drop_duplicates("gene_id")


def tensor_grid(subbin_bp: int, flank_bp: int, bin_bp: int) -> tuple[int, int, int]:
    """(sub-bins each side of the TSS, sub-bins per output bin, output bin size in bp): 100 bp
    bins where the sub-bin divides 100 bp, else the sub-bin grid itself."""
    half = max(1, round(flank_bp / subbin_bp))
    group = bin_bp // subbin_bp if subbin_bp <= bin_bp and bin_bp % subbin_bp == 0 else 1
    if (2 * half) % group:
        group = 1
    return half, group, subbin_bp * group


def expression_tensor(
    data: TileArrays, genes: pd.DataFrame, flank_bp: int = 5000, bin_bp: int = 100
) -> tuple[np.ndarray, dict[str, Any]]:
    """(genes, bins, marks) float32 from the tss tiles' row-anchor tracks (``data.tracks`` holds
    positions 0 … W·P-1): TSS ± ``flank_bp`` cropped around the sub-bin holding the TSS, averaged
    into ``bin_bp`` bins when the sub-bin allows (else the sub-bin grid), reversed on '-' strands,
    marks = the tile channels. Values are the tiles' transformed tracks (log2p1 by default);
    positions beyond the window are 0."""
    manifest = data.manifest
    subbin = int(manifest["subbin_bp"])
    length = int(manifest["window_bins"]) * int(manifest["positions_per_bin"])
    half, group, size = tensor_grid(subbin, flank_bp, bin_bp)
    table = data.index[["gene_id"]].astype(str).merge(genes, on="gene_id", how="left")
    if table["tss"].isna().any():
        gene = table.loc[table["tss"].isna(), "gene_id"].iloc[0]
        raise InputError(
            f"gene {gene} of the {manifest['cell_line']} tss tiles is not in the gene table; use "
            "the gene table the tiles were made from"
        )
    centre = (table["tss"].to_numpy(np.int64) - data.index["start_x"].to_numpy(np.int64)) // subbin
    pos = centre[:, None] + np.arange(-half, half)[None, :]
    valid = (pos >= 0) & (pos < length)
    tracks = data.tracks[:, :, :length]
    rows = np.arange(len(data))[:, None]
    cropped = tracks[rows, :, np.clip(pos, 0, length - 1)]  # (N, 2·half, C)
    cropped = np.where(valid[..., None], cropped, 0.0).astype(np.float32)
    if group > 1:
        cropped = cropped.reshape(len(data), -1, group, cropped.shape[-1]).mean(axis=2)
    minus = table["strand"].astype(str).eq("-").to_numpy()
    cropped[minus] = cropped[minus, ::-1]
    info = {
        "shape_per_gene": [int(cropped.shape[1]), int(cropped.shape[2])],
        "bin_bp": int(size),
        "flank_bp": int(half * subbin),
        "marks": list(manifest["channels"]),
        "values": f"tile tracks ({manifest['track_transform']}), mean per bin",
        "strand_oriented": bool(minus.any() or table["strand"].isin(["+", "-"]).any()),
        "positions_outside_window": int((~valid).sum()),
    }
    return np.ascontiguousarray(cropped), info


@dataclass
class ExpressionModel:
    """A fitted regression model (label units) and optional classifier (P(above median))."""

    predict: Callable[[np.ndarray], np.ndarray]
    probability: Callable[[np.ndarray], np.ndarray] | None
    info: dict[str, Any]
    backbone: Any = None  # SimpleChrome: the fitted regression model, whose VAE can be reused


def _standardiser(y: np.ndarray) -> tuple[float, float]:
    sd = float(np.std(y))
    return float(np.mean(y)), sd if sd > 0 else 1.0


def fit_expression(
    method: str,
    settings: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    median: float,
    seed: int,
    device: str,
    x_unlabeled: np.ndarray | None = None,
    backbone: Any = None,
) -> ExpressionModel:
    """Fit ``method`` on genes ``x`` (genes, bins, marks) with labels ``y``: a regression model
    (standardised target for the neural ones) and a classifier of ``y > median`` (the training
    median); the neural ones pick their best epoch on the val genes. SimpleChrome fits its VAE on
    ``x`` plus ``x_unlabeled`` (inputs only), or reuses the VAE of ``backbone``."""
    from hicmix.baselines.deepchrome import DeepChrome
    from hicmix.baselines.linear import LinearExpression
    from hicmix.baselines.simplechrome import SimpleChrome

    above, above_val = (y > median).astype(np.int64), (y_val > median).astype(np.int64)
    mean, sd = _standardiser(y)
    z, z_val = (y - mean) / sd, (y_val - mean) / sd
    two_classes = np.unique(above).size == 2
    settings = dict(settings)
    if method == "linear":
        reg = LinearExpression("regression", alpha=settings.get("alpha", 1.0)).fit(x, y)
        clf = (
            LinearExpression("binary", c=settings.get("c", 1.0), seed=seed).fit(x, above)
            if two_classes
            else None
        )
        info = {"selection": "none (fixed ridge alpha, logistic C)", "selection_split": None}
        return ExpressionModel(reg.predict, None if clf is None else clf.predict, info)
    if method == "deepchrome":
        reg = DeepChrome("regression", seed=seed, device=device, **settings)
        reg.fit(x, z, x_val, z_val)
        clf = DeepChrome("binary", seed=seed, device=device, **settings) if two_classes else None
        if clf is not None:
            clf.fit(x, above, x_val, above_val)
    elif method == "simplechrome":
        reg = SimpleChrome("regression", seed=seed, device=device, vae_from=backbone, **settings)
        reg.fit(x, z, x_val, z_val, x_unlabeled=x_unlabeled)
        clf = (
            SimpleChrome("binary", seed=seed, device=device, vae_from=reg, **settings)
            if two_classes
            else None
        )
        if clf is not None:
            clf.fit(x, above, x_val, above_val)
    else:
        raise ConfigError(f"unknown expression baseline {method!r}")
    info = {
        "selection": "best epoch by val Pearson (regression) and val AUROC (binary)",
        "selection_split": "val",
        "best_epoch": reg.result.best_epoch,
        "best_epoch_binary": None if clf is None else clf.result.best_epoch,
    }
    return ExpressionModel(
        lambda a: reg.predict(a).astype(np.float64) * sd + mean,
        None if clf is None else clf.predict,
        info,
        reg if method == "simplechrome" else None,
    )


def expression_scores(pred: Mapping[str, np.ndarray], median: float) -> dict[str, float]:
    """Regression metrics of ``prediction`` and above-median metrics: of ``probability`` (threshold
    0.5) when the method has a classifier, else of ``prediction`` (threshold = training median, as
    for the hicmix model)."""
    from hicmix.evaluate import classification_scores, regression_scores

    truth = np.asarray(pred["label"], dtype=np.float64)
    scores = regression_scores(truth, pred["prediction"])
    above = (truth > median).astype(np.int64)
    if "probability" in pred:
        binary = classification_scores(above, pred["probability"], threshold=0.5)
    else:
        binary = classification_scores(above, pred["prediction"], threshold=median)
    scores.update({f"above_median_{k}": v for k, v in binary.items()})
    return scores


def _expression_pred(model: ExpressionModel, x: np.ndarray, base: Mapping) -> dict[str, np.ndarray]:
    pred = {**base, "prediction": np.asarray(model.predict(x), dtype=np.float64)}
    if model.probability is not None:
        pred["probability"] = np.asarray(model.probability(x), dtype=np.float64)
    return pred


def learning_curve_sizes(sizes: Sequence[int | str], n_train: int) -> list[tuple[str, int]]:
    """(label, number of genes) for each size below ``n_train``, then ("all", n_train)."""
    out = [(str(s), int(s)) for s in sizes if s != "all" and int(s) < n_train]
    if "all" in sizes or not out:
        out.append(("all", n_train))
    return out


# --------------------------------------------------------------------------------------------------
# running one task


@dataclass
class _Context:
    task: str
    method: str
    settings: dict[str, Any]
    config: BaselinesConfig
    device: str
    train_cell: str
    out: Path


def _rows(ctx: _Context, task: str, scores: Mapping[str, float], split: str, cell: str, seed: int):
    from hicmix.evaluate import rows_from_dict

    return rows_from_dict(
        scores, task=task, method=ctx.method, cell_line=cell, train_cell_line=ctx.train_cell,
        split=split, seed=seed,
    )  # fmt: skip


def _finish(
    ctx: _Context,
    seed_dir: Path,
    rows: list[dict],
    sets: list,
    info: dict,
    seed: int,
    started: float,
    manifest: Mapping[str, Any],
    prediction_task: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    from hicmix.evaluate import write_metrics
    from hicmix.evaluate.run import headline, map_attrs, write_predictions, write_summary_dict

    task = prediction_task or ctx.task
    predictions = write_predictions(task, seed_dir, sets, map_attrs(manifest, task, ctx.method))
    write_metrics(rows, seed_dir / METRICS_FILE)
    return write_summary_dict(
        seed_dir,
        {
            "kind": "baseline",
            "task": ctx.task,
            "method": ctx.method,
            "seed": seed,
            "settings": ctx.settings,
            **info,
            "train_cell_lines": ctx.train_cell.split("+"),
            "test_cell_lines": sorted({cell for split, cell, *_ in sets if split == "test"}),
            "headline_scores": headline(rows, ctx.task),
            "n_samples": {f"{split}:{cell}": len(p["label"]) for split, cell, p, _ in sets},
            "wall_time_s": time.perf_counter() - started,
            "outputs": {"predictions": predictions.name, "metrics": METRICS_FILE},
            **(extra or {}),
        },
    )


def _seed_dir(out: Path, seed: int) -> Path:
    folder = out / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SUMMARY_FILE).unlink(missing_ok=True)  # a stale summary must not mark this run done
    return folder


def _run_patch_task(ctx: _Context, data: TaskData, seeds: Sequence[int]) -> list[dict]:
    """loops and hicmap: fit per seed, predict every scored set, score with finetune's metrics."""
    from hicmix.finetune import task_scores

    fits = LOOP_FITS if ctx.task == "loops" else MAP_FITS
    summaries = []
    for seed in seeds:
        started = time.perf_counter()
        folder = _seed_dir(ctx.out, seed)
        model, score, info, val_extra = fits[ctx.method](data, ctx.settings, seed, ctx.device)
        sets, rows = [], []
        for split, cell, arrays in data.scored:
            pred = dict(arrays.base())
            if ctx.task == "loops":
                pred["score"] = np.asarray(score(arrays), dtype=np.float64)
            else:
                pred.update(pred=score(arrays), true=arrays.hic, mask=arrays.mask.astype(np.uint8))
            scores = task_scores(ctx.task, pred)
            if split == "val":
                scores.update(val_extra)
            rows += _rows(ctx, ctx.task, scores, split, cell, seed)
            sets.append((split, cell, pred, arrays.index))
        if ctx.method == "peakachu":
            model.save(folder / MODEL_FILE)
        summaries.append(_finish(ctx, folder, rows, sets, info, seed, started, data.train.manifest))
    return summaries


def _run_expression(
    ctx: _Context, data: TaskData, seeds: Sequence[int], genes_path: str | None
) -> list[dict]:
    settings = ctx.config.expression_settings()
    tensors, tensor_info = {}, None
    arrays = {"train": data.train, "val": data.val}
    arrays.update({f"{split}:{cell}": a for split, cell, a in data.scored})
    gene_tables: dict[str, pd.DataFrame] = {}
    for key, part in arrays.items():
        path = genes_path or ((part.manifest.get("inputs") or {}).get("genes") or {}).get("path")
        if path is None:
            raise InputError(
                f"tiles of {part.manifest['cell_line']} record no gene table; pass --genes"
            )
        if path not in gene_tables:
            gene_tables[path] = read_gene_positions(
                path, settings["gene_id_column"], settings["tss_column"], settings["strand_column"]
            )
        tensors[key], tensor_info = expression_tensor(
            part, gene_tables[path], int(settings["flank_bp"]), int(settings["bin_bp"])
        )
    y, y_val = data.train.label.astype(np.float64), data.val.label.astype(np.float64)
    median = float(np.median(y))
    summaries = []
    for seed in seeds:
        started = time.perf_counter()
        folder = _seed_dir(ctx.out, seed)
        model = fit_expression(
            ctx.method, ctx.settings, tensors["train"], y, tensors["val"], y_val, median, seed,
            ctx.device,
        )  # fmt: skip
        sets, rows, preds = [], [], {}
        for split, cell, part in data.scored:
            pred = _expression_pred(model, tensors[f"{split}:{cell}"], part.base())
            preds[(split, cell)] = pred
            scores = expression_scores(pred, median)
            if split == "val" and model.info.get("best_epoch") is not None:
                scores["best_epoch"] = float(model.info["best_epoch"])
            rows += _rows(ctx, "expression", scores, split, cell, seed)
            sets.append((split, cell, pred, part.index))
        rows += _learning_curve(
            ctx, data, tensors, y, y_val, median, seed, preds, settings, model.backbone
        )
        summaries.append(
            _finish(
                ctx,
                folder,
                rows,
                sets,
                model.info,
                seed,
                started,
                data.train.manifest,
                extra={"tensor": tensor_info, "train_median": median},
            )
        )
    return summaries


def _learning_curve(
    ctx, data, tensors, y, y_val, median, seed, preds, settings, backbone
) -> list[dict]:
    """expression_learning_curve rows: each metric as ``<metric>_n<size>`` on val and test. The
    subsets are drawn with the seed; SimpleChrome keeps the VAE fitted on all training genes'
    inputs (no labels) and refits only its head (its low-data claim)."""
    rows = []
    n_train = len(y)
    rng = np.random.default_rng(seed)
    for label, size in learning_curve_sizes(settings["learning_curve"], n_train):
        if label == "all":
            found = preds
        else:
            keep = np.sort(rng.choice(n_train, size, replace=False))
            rest = np.setdiff1d(np.arange(n_train), keep)
            model = fit_expression(
                ctx.method, ctx.settings, tensors["train"][keep], y[keep], tensors["val"], y_val,
                median, seed, ctx.device, x_unlabeled=tensors["train"][rest], backbone=backbone,
            )  # fmt: skip
            found = {
                (split, cell): _expression_pred(model, tensors[f"{split}:{cell}"], part.base())
                for split, cell, part in data.scored
            }
        for (split, cell), pred in found.items():
            scores = expression_scores(pred, median)
            values = {f"{m}_n{label}": scores[m] for m in LEARNING_CURVE_METRICS}
            values[f"n_train_genes_n{label}"] = float(size)
            rows += _rows(ctx, "expression_learning_curve", values, split, cell, seed)
    return rows


def run_npz(
    method: str,
    npz: str | Path,
    out: str | Path,
    seeds: Sequence[int],
    config: BaselinesConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    name: str | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """An expression baseline on an external ``.npz`` tensor (``X`` (genes, bins, marks), ``y_reg``;
    optional ``gene_id``) by k-fold CV over genes: within each fold's training genes, a stratified
    ``val_fraction`` picks the epoch; the above-median threshold is the median of the fold's
    training genes. Rows: split ``cv`` = mean over folds (``<metric>_fold_sd`` = sd over folds)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from hicmix.evaluate import write_metrics
    from hicmix.evaluate.run import headline, write_summary_dict

    cfg = load_baselines_config(config)
    if method not in TASK_METHODS["expression_npz"]:
        raise ConfigError(f"unknown expression baseline {method!r}")
    settings, npz_settings = cfg.method_settings(method), cfg.npz_settings()
    path = Path(npz)
    if not path.is_file():
        raise InputError(f"{path}: expression tensor not found; check tasks.expression.npz")
    with np.load(path, allow_pickle=False) as handle:
        if "X" not in handle or "y_reg" not in handle:
            raise InputError(f"{path}: needs arrays X (genes, bins, marks) and y_reg")
        x = handle["X"].astype(np.float32)
        y = handle["y_reg"].astype(np.float64)
        genes = (
            handle["gene_id"].astype(str) if "gene_id" in handle else np.arange(len(y)).astype(str)
        )
    cell = name or npz_settings.get("name") or path.stem
    folds = int(npz_settings["folds"])
    out = Path(out)
    dev = device or cfg.device
    ctx = _Context("expression_npz", method, settings, cfg, dev, cell, out)
    summaries = []
    for seed in seeds:
        started = time.perf_counter()
        folder = _seed_dir(out, seed)
        strata = (y > np.median(y)).astype(np.int64)  # balances folds only; no model sees it
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        fold_scores, frames = [], []
        for k, (train, test) in enumerate(splitter.split(x, strata), start=1):
            median = float(np.median(y[train]))
            fit, val = train_test_split(
                train, test_size=float(npz_settings["val_fraction"]), random_state=seed,
                stratify=(y[train] > median).astype(np.int64),
            )  # fmt: skip
            model = fit_expression(
                method, settings, x[fit], y[fit], x[val], y[val], median, seed, dev
            )
            pred = _expression_pred(model, x[test], {"label": y[test]})
            fold_scores.append(expression_scores(pred, median))
            frame = pd.DataFrame(
                {"gene_id": genes[test], "fold": k, "prediction": pred["prediction"],
                 "truth": y[test]}
            )  # fmt: skip
            if "probability" in pred:
                frame["probability"] = pred["probability"]
            frames.append(frame)
        table = pd.DataFrame(fold_scores)
        scores = table.mean().to_dict()
        scores |= {f"{k}_fold_sd": v for k, v in table.std(ddof=1).to_dict().items()}
        scores["n_folds"] = float(folds)
        rows = _rows(ctx, "expression_npz", scores, "cv", cell, seed)
        with atomic_path(folder / "expression.tsv") as tmp:
            pd.concat(frames).sort_values("fold", kind="stable").to_csv(
                tmp, sep="\t", index=False, float_format="%.8g"
            )
        with atomic_path(folder / "folds.tsv") as tmp:
            table.insert(0, "fold", np.arange(1, folds + 1))
            table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
        write_metrics(rows, folder / METRICS_FILE)
        summaries.append(
            write_summary_dict(
                folder,
                {
                    "kind": "baseline",
                    "task": "expression_npz",
                    "method": method,
                    "seed": seed,
                    "settings": settings,
                    "npz": str(path),
                    "cell_line": cell,
                    "protocol": f"{folds}-fold CV by gene (one chromosome: no chromosome split); "
                    f"{npz_settings['val_fraction']:g} of each fold's training genes pick the "
                    "epoch; above-median threshold from the fold's training genes",
                    "tensor_shape": list(x.shape),
                    "headline_scores": headline(rows, "expression_npz"),
                    "wall_time_s": time.perf_counter() - started,
                    "outputs": {"predictions": "expression.tsv", "metrics": METRICS_FILE},
                },
            )
        )
    return summaries


def _run_genomewide(
    ctx: _Context,
    train_dirs: Sequence[Path],
    test_dirs: Sequence[Path],
    seeds: Sequence[int],
    model_run: str | Path | None,
    threshold_run: str | Path | None,
) -> list[dict]:
    from hicmix.baselines.peakachu import PeakachuRF
    from hicmix.evaluate.run import CallingSettings, run_calling, threshold_from
    from hicmix.tiles import load_manifest

    if model_run is None:
        raise ConfigError(
            "loops_genomewide needs --model-run: the loops/peakachu run folder of the training "
            "cell line (its seed<N>/model.joblib)"
        )
    settings = CallingSettings.from_dict(ctx.config.loops_genomewide)
    p_value = float(ctx.settings.get("p_value", 0.01))
    train_manifest = load_manifest(train_dirs[0])
    test_manifest = load_manifest((test_dirs or train_dirs)[0])
    cache: dict[tuple[str, str], tuple[Any, pd.DataFrame, np.ndarray]] = {}
    summaries = []
    for seed in seeds:
        path = Path(model_run) / f"seed{seed}" / MODEL_FILE
        if not path.is_file():
            raise InputError(f"{path}: no Peakachu model for seed {seed}; run the loops task first")
        model = PeakachuRF.load(path)

        def score_regions(manifest, regions, lo, hi, model=model):
            return _peakachu_pixels(model, manifest, regions, lo, hi, p_value, cache)

        started = time.perf_counter()
        summary = run_calling(
            score_regions,
            method=ctx.method,
            train_manifest=train_manifest,
            test_manifest=test_manifest,
            settings=settings,
            out=_seed_dir(ctx.out, seed),
            seed=seed,
            threshold=threshold_from(threshold_run, seed),
            extra={
                "candidates": f"Poisson candidates (P < {p_value:g}, diagonals >= "
                f"{model.w + 1}: the {2 * model.w + 1}x{2 * model.w + 1} window needs them)",
                "model": str(path),
            },
        )
        summary["wall_time_s"] = time.perf_counter() - started
        summaries.append(summary)
    return summaries


def _peakachu_pixels(model, manifest, regions, lo, hi, p_value, cache) -> pd.DataFrame:
    """Scored Poisson candidates of the regions' chromosomes (band, candidates cached by seed)."""
    from hicmix.baselines.peakachu import peakachu_expected, poisson_candidates, score_band
    from hicmix.hic import native_chrom_name, open_hic, read_band

    res, w = int(manifest["resolution"]), model.w
    weight = (manifest.get("options") or {}).get("weight", "weight")
    parts = []
    for chrom in sorted({c for c, _, _ in regions}):
        key = (str(manifest["cell_line"]), chrom)
        if key not in cache:
            clr = open_hic(manifest["hic_file"], res)
            band = read_band(clr, chrom, hi + w + 2, weight=weight)
            weights = clr.bins().fetch(native_chrom_name(clr, chrom))[weight].to_numpy(np.float64)
            expected = peakachu_expected(band)
            candidates = poisson_candidates(
                band, weights, expected, lower=max(lo, w + 1), upper=hi, p=p_value
            )
            cache[key] = (band, candidates, expected)
        band, candidates, expected = cache[key]
        parts.append(score_band(model, band, candidates, expected))
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------------
# loops_genomewide: hicmix's learned enrichment caller (ours: method hicmix-caller)

CALLER = "hicmix-caller"
#: Extra diagonals read past the distance window: the widest enrichment kernel reaches
#: 2 * 5 + 2 of them (hicmix.predict.loops._prepare pads the band by as many).
_CALLER_DEPTH_PAD = 13


def region_bins(
    regions: Sequence[tuple[str, int, int | None]], chrom: str, n_bins: int, resolution: int
) -> np.ndarray:
    """bool per bin of ``chrom``: the bin's start lies in one of ``regions`` (half-open, bp), as in
    :func:`hicmix.evaluate.loops.restrict`."""
    keep = np.zeros(n_bins, dtype=bool)
    for name, start, end in regions:
        if name == chrom:
            stop = n_bins if end is None else min(n_bins, -(-int(end) // resolution))
            keep[-(-int(start) // resolution) : stop] = True
    return keep


def training_bins(manifest: Mapping[str, Any], chrom: str, n_bins: int) -> np.ndarray:
    """bool per bin: ``chrom``'s bins outside every val and test region of the tile folder."""
    from hicmix.evaluate.run import split_regions

    held = [*split_regions(manifest, "val"), *split_regions(manifest, "test")]
    return ~region_bins(held, chrom, n_bins, int(manifest["resolution"]))


def masked_band(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """float64 copy of a band (``[d, i]`` = M[i, i + d]) with every pixel that has an anchor
    outside ``keep`` (or past the chromosome end) set to NaN."""
    depth, n = values.shape
    d = np.arange(depth)[:, None]
    j = np.arange(n)[None, :] + d
    ok = keep[None, :] & (j < n) & keep[np.minimum(j, n - 1)]
    return np.where(ok, np.asarray(values, dtype=np.float64), np.nan)


@dataclass
class BandReader:
    """Observed bands of one tile folder's Hi-C, read once per chromosome."""

    manifest: Mapping[str, Any]
    depth: int
    cache: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, chrom: str) -> np.ndarray:
        from hicmix.hic import open_hic, read_band

        if chrom not in self.cache:
            clr = open_hic(self.manifest["hic_file"], int(self.manifest["resolution"]))
            weight = (self.manifest.get("options") or {}).get("weight", "weight")
            self.cache[chrom] = read_band(clr, chrom, self.depth, weight=weight).values
        return self.cache[chrom]


def caller_training_set(
    manifest: Mapping[str, Any], reader: Callable[[str], np.ndarray], caller: Any
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(features, labels, counts) of the candidates on the training part of every tiled
    chromosome: the band is cut to the training bins first (pixels reaching a val or test region
    are NaN), and positives are candidates within ``label_radius`` of a training truth loop."""
    from hicmix.evaluate.loops import restrict
    from hicmix.evaluate.run import truth_loops
    from hicmix.predict.loops import candidate_table, pixel_labels

    truth = truth_loops(manifest, str(manifest["cell_line"]))
    xs, ys, n_loops = [], [], 0
    for chrom in manifest.get("chromosomes") or []:
        values = reader(chrom)
        keep = training_bins(manifest, chrom, values.shape[1])
        if not keep.any():
            continue
        i, j, x = candidate_table(masked_band(values, keep), caller)
        loops = restrict(truth, chrom, None, caller.min_bins, caller.max_bins)
        loops = loops[keep[loops["bin1"].to_numpy()] & keep[loops["bin2"].to_numpy()]]
        inside = keep[i] & keep[j]
        xs.append(x[inside])
        ys.append(pixel_labels(i[inside], j[inside], loops, caller.label_radius))
        n_loops += len(loops)
    if not xs:
        raise InputError(
            f"tiles of {manifest['cell_line']}: no training chromosome left for {CALLER}; keep "
            "chromosomes outside the val and test splits"
        )
    y = np.concatenate(ys)
    counts = {"train_candidates": len(y), "train_positives": int(y.sum()), "train_loops": n_loops}
    return np.concatenate(xs), y, counts


def _caller_pixels(model, caller, reader, manifest, regions) -> pd.DataFrame:
    """Scored candidates of ``regions`` only: each chromosome's band cut to its regions' bins."""
    from hicmix.predict.loops import call_pixels

    res = int(manifest["resolution"])
    parts = []
    for chrom in sorted({c for c, _, _ in regions}):
        values = reader(chrom)
        keep = region_bins(regions, chrom, values.shape[1], res)
        parts.append(call_pixels(model, masked_band(values, keep), chrom, caller))
    return pd.concat(parts, ignore_index=True)


def _caller_selector(pool_radii: Sequence[int], match_radius: int):
    """(val pixels, val truth) -> (threshold, pool radius, one-row table) by
    :func:`hicmix.predict.loops.choose_pooling`."""
    from hicmix.predict.loops import choose_pooling

    def select(pixels: pd.DataFrame, truth: pd.DataFrame):
        best = choose_pooling(pixels, truth, radii=pool_radii, match_radius=match_radius)
        return best["threshold"], best["pool_radius"], pd.DataFrame([best])

    return select


def _run_caller(
    ctx: _Context,
    train_dirs: Sequence[Path],
    test_dirs: Sequence[Path],
    seeds: Sequence[int],
    threshold_run: str | Path | None,
) -> list[dict]:
    """hicmix-caller: candidates and features of :mod:`hicmix.predict.loops` on the observed Hi-C,
    the scorer fitted on the training cell line's training chromosomes (once per seed, the seed as
    the trees' random_state), threshold and pool radius chosen on its val chromosomes (or reused
    from the same-cell run: ``threshold_run``), calls on the test chromosomes."""
    import joblib

    from hicmix.evaluate.run import CallingSettings, pooling_from, run_calling
    from hicmix.predict.loops import FEATURE_NAMES, CallerSettings, fit_loop_scorer
    from hicmix.tiles import load_manifest

    settings = CallingSettings.from_dict(ctx.config.loops_genomewide)
    train_manifest = load_manifest(train_dirs[0])
    test_manifest = load_manifest((test_dirs or train_dirs)[0])
    lo, hi = settings.window_bins(train_manifest)
    options = ctx.settings
    caller = CallerSettings(
        min_bins=lo, max_bins=hi, min_enrichment=float(options["min_enrichment"]),
        candidate_radius=int(options["candidate_radius"]),
        label_radius=int(options["label_radius"]),
    )  # fmt: skip
    readers = {
        str(m["hic_file"]): BandReader(m, hi + _CALLER_DEPTH_PAD)
        for m in (train_manifest, test_manifest)
    }
    started = time.perf_counter()
    x, y, counts = caller_training_set(
        train_manifest, readers[str(train_manifest["hic_file"])], caller
    )
    features_s = time.perf_counter() - started
    summaries = []
    for seed in seeds:
        started = time.perf_counter()
        folder = _seed_dir(ctx.out, seed)
        model = fit_loop_scorer(x, y, seed)
        with atomic_path(folder / MODEL_FILE) as tmp:
            joblib.dump(model, tmp)

        def score_regions(manifest, regions, lo, hi, model=model):
            reader = readers[str(manifest["hic_file"])]
            return _caller_pixels(model, caller, reader, manifest, regions)

        threshold, radius = pooling_from(threshold_run, seed)
        summary = run_calling(
            score_regions,
            method=CALLER,
            train_manifest=train_manifest,
            test_manifest=test_manifest,
            settings=settings,
            out=folder,
            seed=seed,
            threshold=threshold,
            pool_radius=radius,
            select=_caller_selector(tuple(options["pool_radii"]), settings.radii[0]),
            extra={
                "candidates": "HICCUPS-like donut-enrichment maxima of the observed Hi-C "
                f"(O/E_donut >= {caller.min_enrichment:g}, largest within "
                f"{caller.candidate_radius} bin)",
                "features": list(FEATURE_NAMES),
                "caller_settings": {
                    k: v
                    for k, v in dataclasses.asdict(caller).items()
                    if k not in ("threshold", "pool_radius")  # chosen on val (above)
                },
                "pool_radii": list(options["pool_radii"]),
                "model": MODEL_FILE,
                "features_s": features_s,
                **counts,
            },
        )
        summary["wall_time_s"] = time.perf_counter() - started
        summaries.append(summary)
    return summaries


def run_baselines(
    task: str,
    method: str,
    tile_dirs: str | Path | Sequence[str | Path],
    test_tile_dirs: str | Path | Sequence[str | Path] | None,
    config: BaselinesConfig | Mapping[str, Any] | str | Path | None,
    out: str | Path,
    seeds: Sequence[int],
    *,
    model_run: str | Path | None = None,
    threshold_run: str | Path | None = None,
    genes: str | None = None,
    gene_columns: tuple[str, str] | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Run baseline ``method`` of ``task`` for every seed into ``out/seed<N>/``; returns the
    summaries. ``model_run`` / ``threshold_run``: for loops_genomewide, the loops/peakachu run of
    the training cell line and (cross-cell) the same-cell calling run whose threshold is reused.
    ``genes`` / ``gene_columns`` (gene id, TSS): the expression tensor's gene table (default: the
    tiles' own, with the run config's columns).
    """
    if task not in TASK_METHODS or task == "expression_npz":
        raise ConfigError(
            f"unknown task {task!r}; use one of loops, loops_genomewide, hicmap, expression "
            "(expression_npz: run_npz)"
        )
    if method not in TASK_METHODS[task]:
        raise ConfigError(
            f"task {task} has no baseline {method!r}; use one of {', '.join(TASK_METHODS[task])}"
        )
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("baselines need at least one --seed")
    cfg = load_baselines_config(config)
    if gene_columns is not None:
        gene_id, tss = gene_columns
        expression = {**cfg.expression, "gene_id_column": gene_id, "tss_column": tss}
        cfg = dataclasses.replace(cfg, expression=expression)
    train_dirs = (
        [Path(tile_dirs)] if isinstance(tile_dirs, str | Path) else [Path(d) for d in tile_dirs]
    )
    if not train_dirs:
        raise ConfigError("baselines need at least one training tile folder (--tiles)")
    test_dirs = [] if test_tile_dirs is None else (
        [Path(test_tile_dirs)] if isinstance(test_tile_dirs, str | Path)
        else [Path(d) for d in test_tile_dirs]
    )  # fmt: skip
    from hicmix.baselines.torch_fit import resolve_device
    from hicmix.tiles import load_manifest

    dev = str(resolve_device(device or cfg.device))
    train_cell = "+".join(str(load_manifest(d)["cell_line"]) for d in train_dirs)
    settings = cfg.method_settings(method)
    kwargs = {k: v for k, v in settings.items() if k not in _NOT_KWARGS}
    ctx = _Context(task, method, kwargs, cfg, dev, train_cell, Path(out))
    if task == "loops_genomewide":
        ctx.settings = settings
        if method == CALLER:
            return _run_caller(ctx, train_dirs, test_dirs, seeds, threshold_run)
        return _run_genomewide(ctx, train_dirs, test_dirs, seeds, model_run, threshold_run)
    if task == "expression":
        manifest = load_manifest(train_dirs[0])
        half = int(manifest["window_bins"]) * int(manifest["positions_per_bin"])
        data = task_data(train_dirs, test_dirs, "tss", ("tracks",), (0, half))
        return _run_expression(ctx, data, seeds, genes)
    kind = "loops" if task == "loops" else "tss"
    fields = ("hic", "hic_mask") if method in ("peakachu", "distance_decay") else (
        "hic", "hic_mask", "tracks"
    )  # fmt: skip
    data = task_data(train_dirs, test_dirs, kind, fields)
    return _run_patch_task(ctx, data, seeds)


__all__ = [
    "CALLER",
    "METHOD_DEFAULTS",
    "TASK_METHODS",
    "BandReader",
    "BaselinesConfig",
    "TileArrays",
    "caller_training_set",
    "expression_scores",
    "expression_tensor",
    "fit_expression",
    "learning_curve_sizes",
    "load_baselines_config",
    "load_tiles",
    "masked_band",
    "read_gene_positions",
    "region_bins",
    "run_baselines",
    "run_npz",
    "tensor_grid",
    "training_bins",
    "training_chromosomes",
    "write_baselines_config",
]
