# One generic download rule. Its output names (under resources/{cell_line}/) come from the sheets:
#   hic.{mcool,cool,hic}  tracks/{track}.bw (CAGE_plus / CAGE_minus for stranded rows)
#   loops.bedpe[.gz]  genes.tsv[.gz]
# hicmix download checks the md5, writes atomically and appends to resources/{cell_line}/SOURCES.tsv
# (not a declared output: every download job of a cell line appends to it).
# Outputs are protected only with download.protected: true (see config/README.md for why the default
# is false).


rule download:
    input:
        download_input,
    output:
        downloaded("resources/{cell_line}/{file}"),
    log:
        "logs/download/{cell_line}/{file}.log",
    localrule: config["download"]["localrule"]
    conda:
        "../envs/hicmix.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 720 * attempt,
    params:
        source=lambda wc: download_source(wc)[0],
        md5=md5_flag,
        sources_log=lambda wc: f"resources/{wc.cell_line}/SOURCES.tsv",
        retries=config["download"]["retries"],
        timeout=config["download"]["timeout"],
    shell:
        "hicmix download --source {params.source:q} --out {output:q} {params.md5}"
        " --retries {params.retries} --timeout {params.timeout}"
        " --sources-log {params.sources_log:q} > {log} 2>&1"
