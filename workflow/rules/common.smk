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
        "--candidate-ratio": config["loops"]["candidate_ratio"],
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
    """Tiles and QC figure of every cell line with Hi-C, plus the pre-trained model when enabled
    (tracks-only cell lines get predictions: predict_targets)."""
    cells = hicmix_config.hic_cell_lines(CELL_LINES)
    targets = [f"results/tiles/{cell}" for cell in cells]
    targets += [f"results/qc/{cell}.png" for cell in cells]
    if config["pretrain"]["enabled"]:
        targets.append(pretrain_model())
    return targets


# ================================================================== tasks: finetune, baselines, evaluate
# Downstream tasks with their baselines (config["tasks"]). Run folders:
#   results/finetune/{task}/{method}/{train}/{test}/seed{seed}/   (ours; method hicmix-<mode>[-nonpre])
#   results/baselines/{task}/{method}/{train}/{test}/seed{seed}/  (baselines)
# each with metrics.tsv and summary.json (written last); results/metrics.tsv gathers them all.

TASKS = config["tasks"]
TASK_SEEDS = [int(seed) for seed in TASKS["seeds"]]
#: our fine-tuned tasks, the tile resource they need, and their baselines' task names
FINETUNE_TASKS = ("loops", "hicmap", "expression")
BASELINE_TASKS = ("loops", "loops_genomewide", "hicmap", "expression")
TASK_RESOURCE = {
    "loops": "loops.",
    "loops_genomewide": "loops.",
    "hicmap": "genes.",
    "expression": "genes.",
}


def tasks_pretrained():
    flag = TASKS["pretrained"]
    return config["pretrain"]["enabled"] if flag is None else bool(flag)


def finetune_method(mode):
    """Method name written by hicmix finetune (hicmix.finetune.method_name)."""
    return f"hicmix-{mode}" + ("" if tasks_pretrained() else "-nonpre")


def finetune_mode(method):
    return method.removeprefix("hicmix-").removesuffix("-nonpre")


def task_modes(task):
    if task == "loops_genomewide":
        return [m for m in TASKS[task]["modes"] if m in TASKS["loops"]["modes"]]
    return list(TASKS[task]["modes"])


def task_baselines(task):
    return list(TASKS[task]["baselines"])


def task_cells(task):
    """Cell lines the task trains and tests on: tasks.cell_lines (or the finetune role) that have
    Hi-C and the task's input (loops or genes table)."""
    cells = TASKS["cell_lines"] or hicmix_config.cell_lines_with_role(
        CELL_LINES, "finetune"
    )
    hic = hicmix_config.hic_cell_lines(CELL_LINES)
    return [c for c in cells if c in hic and resource(c, TASK_RESOURCE[task])]


def tile_geometry(cell):
    s = settings(cell)
    channels = [t.track for t in channel_tracks(cell)]
    return (s["assembly"], s["resolution"], s["track_subbin_bp"], tuple(channels))


def task_pairs(task):
    """(train, test) cell-line pairs: each training cell line (tasks.train_cell_lines, default
    all) with itself, then (cross_cell) with every other task cell line of the same assembly,
    resolution, sub-bin and channels."""
    cells = task_cells(task)
    wanted = TASKS["train_cell_lines"]
    # names that are not task cell lines are ignored; none left (a config layered on top with
    # other cell lines): every task cell line trains
    trains = [c for c in cells if wanted is None or c in wanted] or cells
    pairs = [(c, c) for c in trains]
    cross = TASKS["cross_cell"]
    if task == "loops_genomewide":
        cross = cross and TASKS["loops_genomewide"]["cross_cell"]
    if cross:
        pairs += [
            (a, b)
            for a in trains
            for b in cells
            if a != b and tile_geometry(a) == tile_geometry(b)
        ]
    return pairs


def task_enabled(task):
    if not TASKS["enabled"]:
        return False
    return task != "loops_genomewide" or TASKS["loops_genomewide"]["enabled"]


def run_dir(kind, task, method, train, test, seed):
    return f"results/{kind}/{task}/{method}/{train}/{test}/seed{seed}"


def finetune_runs():
    runs = []
    for task in FINETUNE_TASKS + ("loops_genomewide",):
        if not task_enabled(task):
            continue
        for mode in task_modes(task):
            for train, test in task_pairs(task):
                for seed in TASK_SEEDS:
                    method = finetune_method(mode)
                    runs.append(run_dir("finetune", task, method, train, test, seed))
    return runs


def baseline_runs():
    runs = []
    for task in BASELINE_TASKS:
        if not task_enabled(task):
            continue
        for method in task_baselines(task):
            for train, test in task_pairs(task):
                for seed in TASK_SEEDS:
                    runs.append(run_dir("baselines", task, method, train, test, seed))
    return runs


def npz_file():
    """The external expression tensor, when configured and present."""
    path = TASKS["expression"]["npz"]
    return path if TASKS["enabled"] and path and os.path.exists(path) else None


def npz_runs():
    if not npz_file() or not TASKS["expression"]["baselines"]:
        return []
    name = TASKS["expression"]["npz_name"]
    return [
        run_dir("baselines", "expression_npz", method, name, name, seed)
        for method in task_baselines("expression")
        for seed in TASK_SEEDS
    ]


def task_metric_files(wildcards=None):
    """Every run's metrics.tsv (the inputs of results/metrics.tsv)."""
    runs = finetune_runs() + baseline_runs() + npz_runs()
    return [f"{run}/metrics.tsv" for run in runs]


def task_targets(wildcards=None):
    """The metrics tables (and through them every task run) when tasks are enabled."""
    if not TASKS["enabled"] or not task_metric_files():
        return []
    return ["results/metrics.tsv", "results/metrics_summary.tsv"]


def report_targets(wildcards=None):
    """The run report (workflow/rules/report.smk) whenever the metrics tables are targets."""
    return ["results/report/index.html"] if task_targets() else []


def finetune_run_config(wildcards):
    """tasks.finetune with the task's own overrides (tasks.<task>.finetune) on top."""
    return {**TASKS["finetune"], **TASKS[wildcards.task]["finetune"]}


def baselines_run_config(wildcards=None):
    expression = TASKS["expression"]
    return {
        "methods": dict(TASKS["baselines"]),
        "expression": {
            "flank_bp": expression["flank_bp"],
            "bin_bp": expression["bin_bp"],
            "learning_curve": list(expression["learning_curve"]),
            "strand_column": expression["strand_column"],
        },
        "loops_genomewide": calling_run_config(),
        "expression_npz": {"folds": expression["npz_folds"]},
        "device": TASKS["device"],
    }


def calling_run_config(wildcards=None):
    calling = TASKS["loops_genomewide"]
    keys = ("threshold", "pool_radius", "radii", "min_bp", "max_bp", "prefilter")
    values = {key: calling[key] for key in keys}
    values["grid"] = list(calling["threshold_grid"])
    values["prefilter_dilate"] = calling["prefilter_dilate"]
    if values["min_bp"] is None:
        values["min_bp"] = config["loops"]["min_bp"]
    if values["max_bp"] is None:
        values["max_bp"] = config["loops"]["max_bp"]
    return values


def task_resources():
    return {
        "mem_mb": lambda wc, attempt: TASKS["mem_mb"] * attempt,
        "runtime": lambda wc, attempt: TASKS["runtime"] * attempt,
    }


def finetune_inputs(wildcards):
    files = {
        "tiles": f"results/tiles/{wildcards.cell}",
        "config": f"results/finetune/{wildcards.task}.run_config.yaml",
    }
    if tasks_pretrained():
        files["pretrained"] = pretrain_model()
    return files


def pretrained_flag(wildcards, input):
    if "pretrained" not in input.keys():
        return ""
    return f"--pretrained {q(os.path.dirname(input.pretrained))}"


def same_cell_run(kind, task, method, train, seed):
    return run_dir(kind, task, method, train, train, seed)


def loop_calling_inputs(wildcards):
    w = wildcards
    files = {
        "run": f"{same_cell_run('finetune', 'loops', w.method, w.train, w.seed)}/summary.json",
        "tiles": f"results/tiles/{w.train}",
        "test_tiles": f"results/tiles/{w.test}",
        "config": "results/evaluate/loop_calling.yaml",
    }
    if w.train != w.test:
        same = same_cell_run("finetune", "loops_genomewide", w.method, w.train, w.seed)
        files["threshold"] = f"{same}/summary.json"
    return files


def threshold_flag(wildcards, input):
    if "threshold" not in input.keys():
        return ""
    return f"--threshold-run {q(os.path.dirname(input.threshold))}"


def baseline_inputs(wildcards):
    w = wildcards
    files = {
        "tiles": f"results/tiles/{w.train}",
        "test_tiles": f"results/tiles/{w.test}",
        "config": "results/baselines/run_config.yaml",
    }
    # genome-wide calling reuses the loops/<method> models, except hicmix-caller (fits its own)
    if w.task == "loops_genomewide" and w.method != "hicmix-caller":
        files["model"] = [
            f"{same_cell_run('baselines', 'loops', w.method, w.train, seed)}/summary.json"
            for seed in TASK_SEEDS
        ]
    if w.task == "loops_genomewide":
        if w.train != w.test:
            files["threshold"] = [
                f"{same_cell_run('baselines', w.task, w.method, w.train, seed)}/summary.json"
                for seed in TASK_SEEDS
            ]
    return files


def baseline_flags(wildcards, input):
    """--test-tiles (another cell line), seeds, and the task's extra inputs."""
    w = wildcards
    flags = [f"--seed {seed}" for seed in TASK_SEEDS]
    if w.train != w.test:
        flags.append(f"--test-tiles {q(input.test_tiles)}")
    if "model" in input.keys():
        flags.append(
            f"--model-run {q(os.path.dirname(os.path.dirname(input.model[0])))}"
        )
    if "threshold" in input.keys():
        flags.append(
            f"--threshold-run {q(os.path.dirname(os.path.dirname(input.threshold[0])))}"
        )
    if w.task == "expression":
        s = settings(w.train)
        flags.append(
            f"--gene-id-column {q(s['gene_id_column'])} --tss-column {q(s['tss_column'])}"
        )
    return " ".join(flags)
