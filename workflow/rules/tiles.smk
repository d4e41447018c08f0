# Cut the balanced map and the tracks into samples (pretrain windows, loop patches, TSS windows), one
# folder of HDF5 shards per cell line (docs/architecture.md, "Tile contract"). Every geometry,
# transform and split setting reaches the CLI as an explicit flag, so a changed value reruns the job.


rule tiles:
    input:
        unpack(tiles_inputs),
    output:
        directory("results/tiles/{cell_line}"),
    log:
        "logs/tiles/{cell_line}.log",
    benchmark:
        "benchmarks/tiles/{cell_line}.tsv"
    conda:
        "../envs/hicmix.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        flags=tiles_flags,
        tracks=track_flags,
        loops=loops_flag,
        genes=genes_flags,
    shell:
        "hicmix tiles --hic {input.hic:q} --expected {input.expected:q} {params.tracks}"
        " {params.loops} {params.genes} {params.flags} --out {output:q} > {log} 2>&1"
