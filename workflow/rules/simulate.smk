# The embedded synthetic genome (hicmix simulate): the default run's "downloads" are local copies of
# these files, declared as the download rule's inputs so the DAG chains simulate -> download.

import os

#: assays the simulator writes for every cell line (hicmix simulate)
SIMULATED_ASSAYS = ["ATAC", "CTCF", "H3K27ac", "H3K4me3", "H3K27me3"]
SIM = config["simulate"]


if SIM["enabled"]:

    rule simulate:
        output:
            sizes=f"{SIM['out']}/genome.chrom.sizes",
            genes=f"{SIM['out']}/genes.tsv",
            truth=f"{SIM['out']}/truth.json",
            hic=expand(f"{SIM['out']}/{{cell}}/hic.mcool", cell=SIM["cell_lines"]),
            loops=expand(f"{SIM['out']}/{{cell}}/loops.bedpe", cell=SIM["cell_lines"]),
            tracks=expand(
                f"{SIM['out']}/{{cell}}/{{assay}}.bw",
                cell=SIM["cell_lines"],
                assay=SIMULATED_ASSAYS,
            ),
        log:
            "logs/simulate/simulate.log",
        benchmark:
            "benchmarks/simulate/simulate.tsv"
        conda:
            "../envs/hicmix.yaml"
        threads: len(SIM["cell_lines"])  # one process per cell line
        resources:
            mem_mb=lambda wc, attempt: 4000 * attempt,
            runtime=lambda wc, attempt: 30 * attempt,
        params:
            out=lambda wc, output: os.path.dirname(output.sizes),
            cell_lines=",".join(SIM["cell_lines"]),
            seed=SIM["seed"],
            n_chromosomes=SIM["n_chromosomes"],
            lengths=",".join(f"{length:g}" for length in SIM["chrom_length_mb"]),
            resolution=config["resolution"],
        shell:
            "hicmix simulate --out {params.out:q} --cell-lines {params.cell_lines:q}"
            " --seed {params.seed} --n-chromosomes {params.n_chromosomes}"
            " --chrom-length-mb {params.lengths:q} --resolution {params.resolution}"
            " > {log} 2>&1"
