# Wildcard constraints and input functions from the validated config and sheets. No rules here.
# The root Snakefile validates config and sheets (hicmix.config) into CELL_LINES and TRACKS first.

import os
import shlex
from pathlib import Path

from hicmix import config as hicmix_config

#: cell line -> {file name under resources/{cell_line}/: (source, md5)}
DOWNLOADS = {
    cell: hicmix_config.downloads(config, CELL_LINES, TRACKS, cell)
    for cell in CELL_LINES.index
}


wildcard_constraints:
    cell_line=hicmix_config.regex_alternatives(CELL_LINES.index),
    file=hicmix_config.regex_alternatives(
        name for files in DOWNLOADS.values() for name in files
    ),
    size=hicmix_config.regex_alternatives([config["pretrain"]["size"]]),


def q(value):
    """Shell-quote one value for a params string."""
    return shlex.quote(str(value))


def settings(cell_line):
    """Effective settings of one cell line (sheet overrides on top of config)."""
    return hicmix_config.cell_settings(config, CELL_LINES, cell_line)


def channel_tracks(cell_line):
    return hicmix_config.channel_tracks(config, CELL_LINES, TRACKS, cell_line)


# ------------------------------------------------------------------ downloads


def downloads(cell_line):
    """resources/{cell_line}/<name> -> (source, md5) for one cell line."""
    return DOWNLOADS[cell_line]


def resource(cell_line, prefix):
    """Path of the downloaded file of a cell line whose name starts with prefix, or None."""
    for name in downloads(cell_line):
        if name.startswith(prefix):
            return f"resources/{cell_line}/{name}"
    return None


def download_source(wildcards):
    return downloads(wildcards.cell_line)[wildcards.file]


def made_by_workflow(path):
    """True for a file that a rule of this workflow writes (the simulated genome)."""
    sim = config["simulate"]
    return sim["enabled"] and Path(os.path.normpath(path)).is_relative_to(
        os.path.normpath(sim["out"])
    )


def download_input(wildcards):
    """A local source that exists, or that this workflow writes, is a declared input.

    So the DAG runs simulate first and redoes a copy whose source changed. A missing local file is
    left to hicmix download, which fails with one line at run time (a dry run still plans).
    """
    path = hicmix_config.local_path(download_source(wildcards)[0])
    if path and (os.path.exists(path) or made_by_workflow(path)):
        return [path]
    return []


def md5_flag(wildcards):
    md5 = download_source(wildcards)[1]
    return f"--md5 {q(md5)}" if md5 else ""


# ------------------------------------------------------------------ Hi-C and tracks


def hic_input(wildcards):
    return resource(wildcards.cell_line, "hic.")


def balanced(cell_line):
    """The balance outputs of a cell line, by role."""
    stem = f"results/hic/{cell_line}"
    return {
        "cool": f"{stem}.cool",
        "expected": f"{stem}.expected.tsv",
        "json": f"{stem}.balance.json",
    }


def track_inputs(wildcards):
    return [
        f"resources/{wildcards.cell_line}/tracks/{t.track}.bw"
        for t in channel_tracks(wildcards.cell_line)
    ]


def track_flags(wildcards, input):
    """--track NAME=PATH for every channel, in channel order."""
    names = [t.track for t in channel_tracks(wildcards.cell_line)]
    return " ".join(f"--track {q(f'{n}={p}')}" for n, p in zip(names, input.tracks))


def optional_inputs(wildcards):
    """Loops and genes tables of a cell line, when its sheet row names them."""
    files = {
        "loops": resource(wildcards.cell_line, "loops."),
        "genes": resource(wildcards.cell_line, "genes."),
    }
    return {name: path for name, path in files.items() if path}


def loops_flag(wildcards, input):
    return f"--loops {q(input.loops)}" if "loops" in input.keys() else ""


def genes_flags(wildcards, input):
    if "genes" not in input.keys():
        return ""
    s = settings(wildcards.cell_line)
    return (
        f"--genes {q(input.genes)} --gene-id-column {q(s['gene_id_column'])} "
        f"--tss-column {q(s['tss_column'])} --expression-column {q(s['expression_column'])}"
    )


def chromosomes_flag(wildcards):
    chromosomes = settings(wildcards.cell_line)["chromosomes"]
    return f"--chromosomes {q(','.join(chromosomes))}" if chromosomes else ""


def split_flags(wildcards=None):
    """--split val=chr2 --split test=chr3,chr6 (empty splits left out)."""
    splits = {
        name: ",".join(entries) for name, entries in config["splits"].items() if entries
    }
    return " ".join(
        f"--split {q(f'{name}={entries}')}" for name, entries in splits.items()
    )


# ------------------------------------------------------------------ download


def downloaded(path):
    """The download output, write-protected when download.protected is set."""
    return protected(path) if config["download"]["protected"] else path


# ------------------------------------------------------------------ tiles


def tiles_inputs(wildcards):
    cell = wildcards.cell_line
    return {
        "hic": balanced(cell)["cool"],
        "expected": balanced(cell)["expected"],
        "tracks": track_inputs(wildcards),
        **optional_inputs(wildcards),
    }


def tiles_flags(wildcards):
    """Geometry, transform, sampling and split flags of hicmix tiles for one cell line."""
    s = settings(wildcards.cell_line)
    flags = {
        "--cell-line": wildcards.cell_line,
        "--assembly": s["assembly"],
        "--weight": config["balance"]["weight"],
        "--window-bins": config["window_bins"],
        "--stride-bins": config["stride_bins"],
        "--max-offdiag-bp": config["max_offdiag_bp"],
        "--subbin-bp": s["track_subbin_bp"],
        "--hic-transform": config["hic_transform"],
        "--hic-clip": config["hic_clip"],
        "--track-transform": config["track_transform"],
        "--min-nonzero": config["tiles"]["min_nonzero"],
        "--loop-min-bp": config["loops"]["min_bp"],
        "--loop-max-bp": config["loops"]["max_bp"],
        "--negative-ratio": config["loops"]["negative_ratio"],
        "--exclusion-bins": config["loops"]["exclusion_bins"],
        "--shard-size": config["tiles"]["shard_size"],
        "--seed": config["seed"],
    }
    text = " ".join(f"{flag} {q(value)}" for flag, value in flags.items())
    return f"{text} {chromosomes_flag(wildcards)} {split_flags()}"


# ------------------------------------------------------------------ qc


def qc_inputs(wildcards):
    files = {
        "hic": balanced(wildcards.cell_line)["cool"],
        "tracks": track_inputs(wildcards),
    }
    loops = optional_inputs(wildcards).get("loops")
    return {**files, "loops": loops} if loops else files


# ------------------------------------------------------------------ pretrain


def pretrain_tiles(wildcards):
    cells = hicmix_config.cell_lines_with_role(CELL_LINES, "pretrain")
    if not cells:
        raise ValueError(
            f"{config['cell_lines']}: no cell line has role pretrain; add pretrain to a roles column"
        )
    return [f"results/tiles/{cell}" for cell in cells]


def pretrain_run_config(wildcards):
    """The run config of hicmix pretrain: config["pretrain"] less the workflow's own keys."""
    skip = {"enabled", "gpus", "threads", "mem_mb", "runtime"}
    run = {key: value for key, value in config["pretrain"].items() if key not in skip}
    run.setdefault("seed", config["seed"])
    return run


# ------------------------------------------------------------------ targets


def pretrain_model():
    return f"results/models/pretrain/{config['pretrain']['size']}/summary.json"


def all_targets(wildcards):
    """Tiles and QC figure of every cell line, plus the pre-trained model when enabled."""
    targets = [f"results/tiles/{cell}" for cell in CELL_LINES.index]
    targets += [f"results/qc/{cell}.png" for cell in CELL_LINES.index]
    if config["pretrain"]["enabled"]:
        targets.append(pretrain_model())
    return targets
