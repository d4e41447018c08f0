# Tracks-only prediction (hicmix predict) and its evaluation (hicmix predict-eval):
#   - every fine-tuned hicmap model (trained on {train}) predicts the test chromosomes of each task
#     cell line {test} from its tracks alone; the stitched map is scored against the true balanced
#     map on the test regions (per-distance Pearson, SCC with h PREDICT_SCC_H up to the predicted
#     band's last diagonal), next to distance decay (expected per diagonal of the training regions
#     only). Rows (task predict_map) join results/metrics.tsv through rule metrics.
#   - every fine-tuned model's card is completed with its test rows of results/metrics.tsv (and, for
#     loops models that call genome-wide, the threshold chosen on the validation chromosomes).
#   - a cell line whose sheet row has tracks but no Hi-C source (roles predict) gets
#     results/predict/cell/{cell}/ (maps, loop calls) from the models of the first training cell
#     line (cell_models); it gets no tiles, QC or task runs.


include: "predict_common.smk"


rule predict_map:
    input:
        run="results/finetune/hicmap/{method}/{train}/{train}/seed{seed}/summary.json",
        tracks=lambda wc: cell_tracks(wc.test),
    output:
        directory("results/predict/map/{method}/{train}/{test}/seed{seed}/prediction"),
    log:
        "logs/predict_map/{method}/{train}/{test}/seed{seed}.log",
    benchmark:
        "benchmarks/predict_map/{method}/{train}/{test}/seed{seed}.tsv"
    wildcard_constraints:
        method="hicmix-tracks_only(-nonpre)?",
        train=hicmix_config.regex_alternatives(CELL_LINES.index),
        test=hicmix_config.regex_alternatives(CELL_LINES.index),
        seed="[0-9]+",
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
    params:
        model=lambda wc, input: os.path.join(os.path.dirname(input.run), "model"),
        tracks=lambda wc, input: cell_track_flags(wc.test, input.tracks),
        chromosomes=lambda wc: ",".join(test_chromosomes(wc.test)),
        assembly=lambda wc: settings(wc.test)["assembly"],
        resolution=lambda wc: settings(wc.test)["resolution"],
        device=TASKS["device"],
    shell:
        "hicmix predict --model {params.model:q} {params.tracks} --cell-line {wildcards.test}"
        " --chromosomes {params.chromosomes:q} --assembly {params.assembly:q}"
        " --resolution {params.resolution} --device {params.device} --no-html --no-progress"
        " --out {output:q} > {log} 2>&1"


rule predict_eval:
    input:
        pred="results/predict/map/{method}/{train}/{test}/seed{seed}/prediction",
        truth=lambda wc: balanced(wc.test)["cool"],
    output:
        metrics="results/predict/map/{method}/{train}/{test}/seed{seed}/metrics.tsv",
        evaluation="results/predict/map/{method}/{train}/{test}/seed{seed}/evaluation.json",
    log:
        "logs/predict_eval/{method}/{train}/{test}/seed{seed}.log",
    wildcard_constraints:
        method="hicmix-tracks_only(-nonpre)?",
        train=hicmix_config.regex_alternatives(CELL_LINES.index),
        test=hicmix_config.regex_alternatives(CELL_LINES.index),
        seed="[0-9]+",
    conda:
        "../envs/hicmix.yaml"
    resources:
        **task_resources(),
    params:
        splits=split_flags,
        chromosomes=lambda wc: chromosome_flag(wc.test),
        weight=config["balance"]["weight"],
        h=PREDICT_SCC_H,
        out=lambda wc, output: os.path.dirname(output.metrics),
    shell:
        "hicmix predict-eval --pred {input.pred:q} --truth {input.truth:q} --h {params.h}"
        " {params.splits} {params.chromosomes} --weight {params.weight:q}"
        " --task predict_map --method {wildcards.method} --cell-line {wildcards.test}"
        " --train-cell-line {wildcards.train} --seed {wildcards.seed}"
        " --out {params.out:q} > {log} 2>&1"


# Completes card.json (test_metrics, loop_threshold) and renders MODEL_CARD.md next to model.pt.
rule predict_card:
    input:
        unpack(card_inputs),
    output:
        "results/finetune/{task}/{method}/{cell}/{cell}/seed{seed}/model/MODEL_CARD.md",
    log:
        "logs/predict_card/{task}/{method}/{cell}/seed{seed}.log",
    wildcard_constraints:
        task="loops|hicmap|expression",
        method="hicmix-(bimodal|tracks_only|hic_only)(-nonpre)?",
        cell=hicmix_config.regex_alternatives(CELL_LINES.index),
        seed="[0-9]+",
    localrule: True
    params:
        model=lambda wc, output: os.path.dirname(output[0]),
        threshold=lambda wc, input: (
            os.path.dirname(input.threshold) if "threshold" in input.keys() else None
        ),
    run:
        from hicmix.predict import update_model_card

        update_model_card(params.model, input.metrics, params.threshold)


rule predict_cell:
    input:
        unpack(cell_models),
        tracks=lambda wc: cell_tracks(wc.cell),
    output:
        directory("results/predict/cell/{cell}"),
    log:
        "logs/predict_cell/{cell}.log",
    benchmark:
        "benchmarks/predict_cell/{cell}.tsv"
    wildcard_constraints:
        cell="[A-Za-z0-9_-]+",
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
    params:
        models=lambda wc, input: " ".join(
            f"--model {q(os.path.join(os.path.dirname(input[task]), 'model'))}"
            for task in ("hicmap", "loops")
            if task in input.keys()
        ),
        tracks=lambda wc, input: cell_track_flags(wc.cell, input.tracks),
        chromosomes=lambda wc: chromosome_flag(wc.cell),
        assembly=lambda wc: settings(wc.cell)["assembly"],
        device=TASKS["device"],
    shell:
        "hicmix predict {params.models} {params.tracks} --cell-line {wildcards.cell}"
        " {params.chromosomes} --assembly {params.assembly:q} --device {params.device}"
        " --no-progress --out {output:q} > {log} 2>&1"
