# Baselines of the downstream tasks (hicmix baselines) on the same tiles, split and seeds as the
# fine-tuned model: one job per task, method and (train, test) cell-line pair, writing every seed's
# run folder. Settings: config["tasks"]["baselines"] (+ expression tensor, genome-wide calling),
# written to a declared run config by hicmix.baselines.run.write_baselines_config.
# loops_genomewide also runs ours, hicmix-caller (tasks.loops_genomewide.baselines): it fits its own
# scorer on the training chromosomes, so it needs no loops run.


rule baselines_config:
    output:
        "results/baselines/run_config.yaml",
    log:
        "logs/baselines_config/baselines.log",
    localrule: True
    params:
        run=baselines_run_config,
    run:
        from hicmix.baselines.run import write_baselines_config

        write_baselines_config(
            params.run, output[0]
        )  # validates every method's settings


rule baselines:
    input:
        unpack(baseline_inputs),
    output:
        metrics=expand(
            "results/baselines/{{task}}/{{method}}/{{train}}/{{test}}/seed{seed}/metrics.tsv",
            seed=TASK_SEEDS,
        ),
        summary=expand(
            "results/baselines/{{task}}/{{method}}/{{train}}/{{test}}/seed{seed}/summary.json",
            seed=TASK_SEEDS,
        ),
    log:
        "logs/baselines/{task}/{method}/{train}/{test}.log",
    benchmark:
        "benchmarks/baselines/{task}/{method}/{train}/{test}.tsv"
    wildcard_constraints:
        task="loops|loops_genomewide|hicmap|expression",
        method="peakachu|hicmix-caller|dloopcaller|distance_decay|track_outer|epiphany_lite|linear|deepchrome|simplechrome",
        train=hicmix_config.regex_alternatives(CELL_LINES.index),
        test=hicmix_config.regex_alternatives(CELL_LINES.index),
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
    params:
        flags=baseline_flags,
        out=lambda wc: f"results/baselines/{wc.task}/{wc.method}/{wc.train}/{wc.test}",
    shell:
        "hicmix baselines --task {wildcards.task} --method {wildcards.method}"
        " --tiles {input.tiles:q} --config {input.config:q} {params.flags}"
        " --out {params.out:q} > {log} 2>&1"


rule baselines_npz:
    input:
        npz=lambda wc: npz_file(),
        config="results/baselines/run_config.yaml",
    output:
        metrics=expand(
            "results/baselines/expression_npz/{{method}}/{{name}}/{{name}}/seed{seed}/metrics.tsv",
            seed=TASK_SEEDS,
        ),
        summary=expand(
            "results/baselines/expression_npz/{{method}}/{{name}}/{{name}}/seed{seed}/summary.json",
            seed=TASK_SEEDS,
        ),
    log:
        "logs/baselines_npz/{method}/{name}.log",
    benchmark:
        "benchmarks/baselines_npz/{method}/{name}.tsv"
    wildcard_constraints:
        method="linear|deepchrome|simplechrome",
        name="[A-Za-z0-9_-]+",
    conda:
        "../envs/torch.yaml"
    threads: TASKS["threads"]
    resources:
        **task_resources(),
    params:
        seeds=" ".join(f"--seed {seed}" for seed in TASK_SEEDS),
        out=lambda wc: f"results/baselines/expression_npz/{wc.method}/{wc.name}/{wc.name}",
    shell:
        "hicmix baselines --task expression_npz --method {wildcards.method} --npz {input.npz:q}"
        " --name {wildcards.name} --config {input.config:q} {params.seeds}"
        " --out {params.out:q} > {log} 2>&1"
