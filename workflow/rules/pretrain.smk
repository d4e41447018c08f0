# Pre-training on the tiles of every cell line with role "pretrain" (GPU). In `rule all` only with
# pretrain.enabled: true; otherwise build it explicitly: snakemake results/models/pretrain/<size>
# The run config is config["pretrain"] less the workflow's own keys (enabled, gpus, threads, mem_mb,
# runtime), written by hicmix.pretrain.write_run_config to a YAML file that is a declared input: the
# only implicit config a rule reads. --gpus comes from params, not resources.gpu, because a gres-only
# cluster profile sets the gpu resource to 0 (docs: workflow_conventions.md §4).


rule pretrain_config:
    output:
        "results/models/pretrain/{size}.run_config.yaml",
    log:
        "logs/pretrain_config/{size}.log",
    localrule: True
    params:
        run=pretrain_run_config,
    run:
        from hicmix.pretrain import write_run_config

        write_run_config(params.run, output[0])  # validates; fills the run defaults


rule pretrain:
    input:
        tiles=pretrain_tiles,
        config="results/models/pretrain/{size}.run_config.yaml",
    output:
        # Files, not directory(): Snakemake deletes the outputs of a failed or incomplete job, and the
        # checkpoints/ folder beside them must survive so that the rerun resumes (hicmix pretrain --resume).
        model="results/models/pretrain/{size}/model.pt",
        card="results/models/pretrain/{size}/card.json",
        summary="results/models/pretrain/{size}/summary.json",
    log:
        "logs/pretrain/{size}.log",
    benchmark:
        "benchmarks/pretrain/{size}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        gpu=config["pretrain"]["gpus"],
        mem_mb=lambda wc, attempt: config["pretrain"]["mem_mb"] * attempt,
        runtime=lambda wc, attempt: config["pretrain"]["runtime"] * attempt,
    params:
        tiles=lambda wc, input: " ".join(f"--tiles {q(path)}" for path in input.tiles),
        gpus=config["pretrain"]["gpus"],
        out=lambda wc, output: os.path.dirname(output.model),
    shell:
        "hicmix pretrain {params.tiles} --config {input.config:q} --out {params.out:q}"
        " --gpus {params.gpus} > {log} 2>&1"
