# Evaluation (hicmix evaluate): cross-cell transfer and genome-wide loop calling of the fine-tuned
# models, then every run's metrics gathered into results/metrics.tsv (long format) and
# results/metrics_summary.tsv (mean ± sd over seeds), which the report reads.


# Train on one cell line, score another one's test split with the same model (same-cell folders
# are made by rule finetune, which wins on {train} == {test}).
rule finetune_transfer:
    input:
        run="results/finetune/{task}/{method}/{train}/{train}/seed{seed}/summary.json",
        tiles="results/tiles/{test}",
    output:
        metrics="results/finetune/{task}/{method}/{train}/{test}/seed{seed}/metrics.tsv",
        summary="results/finetune/{task}/{method}/{train}/{test}/seed{seed}/summary.json",
    log:
        "logs/finetune_transfer/{task}/{method}/{train}/{test}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune_transfer/{task}/{method}/{train}/{test}/seed{seed}.tsv"
    wildcard_constraints:
        task="loops|hicmap|expression",
        method="hicmix-(bimodal|tracks_only|hic_only)(-nonpre)?",
        train=hicmix_config.regex_alternatives(CELL_LINES.index),
        test=hicmix_config.regex_alternatives(CELL_LINES.index),
        seed="[0-9]+",
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
        gpu=TASKS["gpus"],
    params:
        model=lambda wc, input: os.path.dirname(input.run),
        device=TASKS["device"],
        out=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "hicmix evaluate transfer --model {params.model:q} --test-tiles {input.tiles:q}"
        " --out {params.out:q} --device {params.device} > {log} 2>&1"


ruleorder: finetune > finetune_transfer


rule loop_calling_config:
    output:
        "results/evaluate/loop_calling.yaml",
    log:
        "logs/loop_calling_config/loop_calling.log",
    localrule: True
    params:
        run=calling_run_config,
    run:
        from hicmix.evaluate.run import write_calling_config

        write_calling_config(params.run, output[0])


# Genome-wide calls of a fine-tuned loops model (hicmix predict on every candidate pixel of the
# held-out chromosomes); the threshold is chosen on the training cell line's val chromosomes, and
# reused from the same-cell run for another test cell line.
rule loop_calling:
    input:
        unpack(loop_calling_inputs),
    output:
        metrics="results/finetune/loops_genomewide/{method}/{train}/{test}/seed{seed}/metrics.tsv",
        summary="results/finetune/loops_genomewide/{method}/{train}/{test}/seed{seed}/summary.json",
        calls="results/finetune/loops_genomewide/{method}/{train}/{test}/seed{seed}/calls.bedpe",
    log:
        "logs/loop_calling/{method}/{train}/{test}/seed{seed}.log",
    benchmark:
        "benchmarks/loop_calling/{method}/{train}/{test}/seed{seed}.tsv"
    wildcard_constraints:
        method="hicmix-(bimodal|tracks_only|hic_only)(-nonpre)?",
        train=hicmix_config.regex_alternatives(CELL_LINES.index),
        test=hicmix_config.regex_alternatives(CELL_LINES.index),
        seed="[0-9]+",
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
        gpu=TASKS["gpus"],
    params:
        model=lambda wc, input: os.path.dirname(input.run),
        threshold=threshold_flag,
        device=TASKS["device"],
        out=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "hicmix evaluate loop-calling --model {params.model:q} --tiles {input.tiles:q}"
        " --test-tiles {input.test_tiles:q} --config {input.config:q} {params.threshold}"
        " --out {params.out:q} --device {params.device} > {log} 2>&1"


rule metrics:
    input:
        task_metric_files,
        lambda wc: predict_metric_files(),  # workflow/rules/predict.smk
    output:
        table="results/metrics.tsv",
        summary="results/metrics_summary.tsv",
    log:
        "logs/metrics/metrics.log",
    localrule: True
    conda:
        "../envs/hicmix.yaml"
    params:
        prevalence=TASKS["loops"]["prevalence"],
        draws=TASKS["loops"]["prevalence_draws"],
    shell:
        "hicmix evaluate metrics {input:q} --out {output.table:q} --summary {output.summary:q}"
        " --prevalence {params.prevalence} --draws {params.draws} > {log} 2>&1"
