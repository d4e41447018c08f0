# The run report: one self-contained HTML page (results/report/index.html) with the tables, generated
# comparison sentences and figures of every task, from results/metrics.tsv and the prediction folders
# under results/finetune and results/baselines (found at run time: metrics.tsv is written after all of
# them, so it is the trigger). The resolved config is written to a YAML file first and embedded.
# The page shows the snakemake command line of every figure; only the --configfile flags are passed
# ("--cores N" is shown), so rerunning with another --cores does not redo the report.

import json
import os
import shlex


rule report_config:
    output:
        "results/report/config.yaml",
    log:
        "logs/report/config.log",
    localrule: True
    params:
        config=lambda wc: json.loads(json.dumps(config, default=str)),
    run:
        import yaml
        from hicmix.atomic import atomic_path

        with atomic_path(output[0]) as tmp:
            tmp.write_text(yaml.safe_dump(params.config, sort_keys=False))


rule report:
    input:
        metrics="results/metrics.tsv",
        config="results/report/config.yaml",
    output:
        "results/report/index.html",
    log:
        "logs/report/report.log",
    localrule: True
    conda:
        "../envs/hicmix.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        results=lambda wc, input: os.path.dirname(input.metrics),
        configfiles=lambda wc: " ".join(
            f"--snakemake-configfile {shlex.quote(os.path.relpath(path))}"
            for path in workflow.overwrite_configfiles or ()
        ),
    shell:
        "hicmix report --metrics {input.metrics:q} --results {params.results:q}"
        " --config-file {input.config:q} {params.configfiles} --out {output:q} > {log} 2>&1"
