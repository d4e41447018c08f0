# Extract the configured resolution and balance it (ICE, or keep/trust existing weights), plus the
# expected contacts per diagonal that the tiles and QC use.


rule balance:
    input:
        hic_input,
    output:
        cool="results/hic/{cell_line}.cool",
        expected="results/hic/{cell_line}.expected.tsv",
        json="results/hic/{cell_line}.balance.json",
    log:
        "logs/balance/{cell_line}.log",
    benchmark:
        "benchmarks/balance/{cell_line}.tsv"
    conda:
        "../envs/hicmix.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        resolution=lambda wc: settings(wc.cell_line)["resolution"],
        mode=lambda wc: settings(wc.cell_line)["weight_mode"],
        chromosomes=chromosomes_flag,
        b=config["balance"],
    shell:
        "hicmix balance --hic {input:q} --resolution {params.resolution}"
        " --weight {params.b[weight]} --mode {params.mode}"
        " --ignore-diags {params.b[ignore_diags]} --mad-max {params.b[mad_max]}"
        " --min-nnz {params.b[min_nnz]} --max-iters {params.b[max_iters]} --tol {params.b[tol]}"
        " {params.chromosomes} --out {output.cool:q} > {log} 2>&1"
