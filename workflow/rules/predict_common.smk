# Settings and input functions of workflow/rules/predict.smk (included from there). No rules here.

#: HiCRep smoothing of the SCC (stated in the metrics table as scc_h)
PREDICT_SCC_H = 5


def predict_root(method, train, test, seed):
    return f"results/predict/map/{method}/{train}/{test}/seed{seed}"


def test_chromosomes(cell):
    """Chromosomes holding a test entry of the split (within the cell line's chromosomes)."""
    from hicmix.genome import SplitSpec

    chroms = SplitSpec.from_mapping(config["splits"]).chromosomes("test")
    mine = settings(cell)["chromosomes"]
    return [c for c in chroms if not mine or c in mine]


def chromosome_flag(cell):
    """--chromosomes of the cell line's chromosomes setting (none: every chromosome)."""
    chromosomes = settings(cell)["chromosomes"]
    return f"--chromosomes {q(','.join(chromosomes))}" if chromosomes else ""


def predict_runs():
    """Run folders of every (hicmap model, test cell line, seed) with test chromosomes."""
    if not task_enabled("hicmap"):
        return []
    return [
        predict_root(finetune_method(mode), train, test, seed)
        for mode in task_modes("hicmap")
        for train, test in task_pairs("hicmap")
        for seed in TASK_SEEDS
        if test_chromosomes(test)
    ]


def predict_metric_files(wildcards=None):
    """metrics.tsv of every predict evaluation (inputs of rule metrics)."""
    return [f"{run}/metrics.tsv" for run in predict_runs()]


def cell_tracks(cell):
    return [f"resources/{cell}/tracks/{t.track}.bw" for t in channel_tracks(cell)]


def cell_track_flags(cell, paths):
    """--track NAME=PATH in channel order."""
    names = [t.track for t in channel_tracks(cell)]
    return " ".join(f"--track {q(f'{n}={p}')}" for n, p in zip(names, paths))


def card_inputs(wildcards):
    w = wildcards
    files = {
        "run": f"{same_cell_run('finetune', w.task, w.method, w.cell, w.seed)}/summary.json",
        "metrics": "results/metrics.tsv",
    }
    calls = task_enabled("loops_genomewide") and finetune_mode(w.method) in task_modes(
        "loops_genomewide"
    )
    if w.task == "loops" and calls:
        run = same_cell_run("finetune", "loops_genomewide", w.method, w.cell, w.seed)
        files["threshold"] = f"{run}/summary.json"
    return files


def card_targets():
    """MODEL_CARD.md of every same-cell fine-tuning run (the runs whose model/ is saved)."""
    if not TASKS["enabled"]:
        return []
    return [
        f"{run}/model/MODEL_CARD.md"
        for run in finetune_runs()
        if Path(run).parts[2] != "loops_genomewide"
        and Path(run).parts[-3] == Path(run).parts[-2]
    ]


def tracks_only_cells():
    """Cell lines whose sheet row names tracks but no Hi-C source (role predict; the sheet
    check guarantees a track for every channel)."""
    return hicmix_config.tracks_only_cell_lines(CELL_LINES)


def cell_models(wildcards=None):
    """summary.json of the hicmap and loops models that predict a tracks-only cell line: per
    task the first mode that runs without Hi-C, first training cell line, first seed."""
    files = {}
    for task in ("hicmap", "loops"):
        pairs = task_pairs(task) if task_enabled(task) else []
        modes = [m for m in task_modes(task) if m != "hic_only"]
        if pairs and modes:
            method, train = finetune_method(modes[0]), pairs[0][0]
            files[task] = (
                f"{same_cell_run('finetune', task, method, train, TASK_SEEDS[0])}/summary.json"
            )
    return files


def predict_targets(wildcards=None):
    """Model cards and tracks-only cell lines' predictions (the map evaluations are inputs of
    results/metrics.tsv)."""
    targets = card_targets() if task_targets() else []
    if cell_models():
        targets += [f"results/predict/cell/{cell}" for cell in tracks_only_cells()]
    return targets
