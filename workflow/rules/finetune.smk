# Fine-tuning MixHiC on the downstream tasks (hicmix finetune): one job per task, mode, cell line and
# seed. The model trains on the cell line's train split, val picks the epoch, the test split is
# scored last. Runs of another test cell line (cross-cell transfer) reuse this model: rule
# finetune_transfer in evaluate.smk. The run config of a task is config["tasks"]["finetune"] with
# config["tasks"][task]["finetune"] on top, written to a declared input by
# hicmix.finetune.write_finetune_config.


rule finetune_config:
    output:
        "results/finetune/{task}.run_config.yaml",
    log:
        "logs/finetune_config/{task}.log",
    wildcard_constraints:
        task="loops|hicmap|expression",
    localrule: True
    params:
        run=finetune_run_config,
    run:
        from hicmix.finetune import write_finetune_config

        write_finetune_config(
            params.run, output[0]
        )  # validates; fills the run defaults


rule finetune:
    input:
        unpack(finetune_inputs),
    output:
        metrics="results/finetune/{task}/{method}/{cell}/{cell}/seed{seed}/metrics.tsv",
        summary="results/finetune/{task}/{method}/{cell}/{cell}/seed{seed}/summary.json",
    log:
        "logs/finetune/{task}/{method}/{cell}/seed{seed}.log",
    benchmark:
        "benchmarks/finetune/{task}/{method}/{cell}/seed{seed}.tsv"
    wildcard_constraints:
        task="loops|hicmap|expression",
        method="hicmix-(bimodal|tracks_only|hic_only)(-nonpre)?",
        cell=hicmix_config.regex_alternatives(CELL_LINES.index),
        seed="[0-9]+",
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
        gpu=TASKS["gpus"],
    params:
        mode=lambda wc: finetune_mode(wc.method),
        pretrained=pretrained_flag,
        device=TASKS["device"],
        out=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "hicmix finetune --task {wildcards.task} --mode {params.mode} --tiles {input.tiles:q}"
        " --config {input.config:q} {params.pretrained} --seed {wildcards.seed}"
        " --out {params.out:q} --device {params.device} --no-progress > {log} 2>&1"
