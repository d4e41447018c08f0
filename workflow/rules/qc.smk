# One QC figure per cell line: balanced map of one region with loops and the track channels under it.


rule qc:
    input:
        unpack(qc_inputs),
    output:
        report(
            "results/qc/{cell_line}.png",
            caption="../report/qc.rst",
            category="Quality control",
            labels={"cell line": "{cell_line}"},
        ),
    log:
        "logs/qc/{cell_line}.log",
    conda:
        "../envs/hicmix.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        weight=config["balance"]["weight"],
        region=lambda wc: settings(wc.cell_line)["qc_region"],
        tracks=track_flags,
        loops=loops_flag,
    shell:
        "hicmix qc --hic {input.hic:q} --weight {params.weight} {params.tracks} {params.loops}"
        " --region {params.region:q} --cell-line {wildcards.cell_line} --out {output:q}"
        " > {log} 2>&1"
