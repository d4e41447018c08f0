"""The Snakemake workflow: lint, format, dry-runs of every shipped config, and end-to-end runs.

Snakemake runs as a subprocess (``python -m snakemake -s Snakefile -d <tmp>``), the contract users
have. Each run works in a temporary project folder holding a copy of ``config/`` (configs and sheets
use paths relative to the working directory); realdata paths (``../shared/...``) are made absolute.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
SNAKEFILE = REPO / "Snakefile"
ENCODE_4DN = REPO / "config/encode_4dn.yaml"

#: a small simulated genome for the end-to-end run (chr2 val, chr3 + chr6 test; QC region on chr1)
TINY = {"simulate": {"n_chromosomes": 6, "chrom_length_mb": [6, 3, 3, 3, 3, 3]}}
#: the downstream task DAG (finetune, baselines, evaluate) is run end to end in
#: tests/test_evaluate_stage.py with its own reduced config; the runs here stop at the tiles
NO_TASKS = {"tasks": {"enabled": False}}
#: jobs of the default task DAG: 5 (task, mode) models x 3 seeds trained on SIMA, each also
#: scored on SIMB (transfer), genome-wide calling of the bimodal loops models, and one baselines
#: job per (task, method, cell pair) running the 3 seeds; tracks-only map prediction of the held-out
#: chromosomes (3 seeds x SIMA, SIMB) with its evaluation, the model cards, and the report
TASK_JOBS = {
    "finetune_config": 3, "baselines_config": 1, "loop_calling_config": 1, "finetune": 15,
    "finetune_transfer": 15, "loop_calling": 3, "baselines": 18, "metrics": 1,
    "predict_map": 6, "predict_eval": 6, "predict_card": 15, "report_config": 1, "report": 1,
}  # fmt: skip


def run(
    args: list[str], cwd: Path = REPO, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {})}
    # the rules call the `hicmix` console script installed next to this interpreter
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir)]
    return run([*command, *args], cwd=workdir, env=env)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def project(tmp_path: Path, extra: dict | None = None) -> Path:
    """A project folder with a copy of config/ (realdata paths made absolute) and extra.yaml."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    for sheet in (tmp_path / "config").rglob("*.tsv"):
        text = sheet.read_text().replace("../shared/", f"{REPO.parent / 'shared'}/")
        sheet.write_text(text)
    (tmp_path / "config/extra.yaml").write_text(yaml.safe_dump(extra or {}))
    return tmp_path


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    table = text.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


# ----------------------------------------------------------------------------- static checks


def test_lint():
    result = run([sys.executable, "-m", "snakemake", "--lint"])
    assert result.returncode == 0, output(result)


def test_snakefmt():
    result = run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/"])
    assert result.returncode == 0, output(result)


def test_list_rules():
    result = run([sys.executable, "-m", "snakemake", "--list-rules"])
    assert result.returncode == 0, output(result)
    rules = set(result.stdout.split())
    assert {"all", "simulate", "download", "balance", "tiles", "qc", "pretrain"} <= rules


def test_simulate_rule_lists_the_simulators_files():
    """simulate.smk declares the files hicmix simulate writes (it cannot import the simulator)."""
    from hicmix import simulate

    text = (REPO / "workflow/rules/simulate.smk").read_text()
    declared = re.search(r"^SIMULATED_ASSAYS = (\[.*\])$", text, re.M)
    assert declared and set(yaml.safe_load(declared[1])) == set(simulate.ASSAYS)


def test_shipped_pretrain_section_is_a_valid_run_config():
    """What rule pretrain_config writes from config.yaml passes hicmix pretrain's own validation."""
    from hicmix.config import load_config
    from hicmix.pretrain import PretrainConfig

    config = load_config(REPO / "config/config.yaml")
    workflow_keys = {"enabled", "gpus", "threads", "mem_mb", "runtime"}
    run = {k: v for k, v in config["pretrain"].items() if k not in workflow_keys}
    assert PretrainConfig.from_dict({**run, "seed": config["seed"]}).size == "tiny"


# ----------------------------------------------------------------------------- dry runs


def test_dry_run_default(tmp_path):
    result = snakemake(project(tmp_path), "-n")
    assert result.returncode == 0, output(result)
    counts = job_counts(output(result))
    # 2 cell lines x (hic + loops + genes + 5 tracks) downloads
    assert counts == {
        "simulate": 1, "download": 16, "balance": 2, "tiles": 2, "qc": 2, "all": 1, **TASK_JOBS,
    }  # fmt: skip


def test_dry_run_commands_carry_the_config(tmp_path):
    """Config values reach the CLI as explicit flags; local sources chain simulate -> download."""
    folder = project(tmp_path, {"window_bins": 40, "splits": {"test": ["chr3", "chr5"]}})
    result = snakemake(folder, "-n", "-p", "--configfile", "config/extra.yaml")
    assert result.returncode == 0, output(result)
    text = output(result)
    tiles = next(line for line in text.splitlines() if "hicmix tiles" in line and "SIMA" in line)
    for flag in (
        "--window-bins 40",
        "--split val=chr2",
        "--split test=chr3,chr5",
        "--track ATAC=resources/SIMA/tracks/ATAC.bw --track CTCF=resources/SIMA/tracks/CTCF.bw",
        "--loops resources/SIMA/loops.bedpe",
        "--genes resources/SIMA/genes.tsv --gene-id-column gene_id --tss-column tss",
        "--expression-column SIMA",
        "--assembly sim1",
        "--out results/tiles/SIMA",
    ):
        assert flag in tiles, (flag, tiles)
    assert "hicmix download --source resources/simulated/SIMB/hic.mcool" in text
    assert "--sources-log resources/SIMB/SOURCES.tsv" in text


def test_dry_run_pretrain_switch(tmp_path):
    folder = project(tmp_path, {"pretrain": {"enabled": True, "gpus": 2}})
    result = snakemake(folder, "-n", "-p", "--configfile", "config/extra.yaml")
    assert result.returncode == 0, output(result)
    counts = job_counts(output(result))
    assert counts["pretrain"] == 1 and counts["pretrain_config"] == 1
    command = next(line for line in output(result).splitlines() if "hicmix pretrain" in line)
    assert "--tiles results/tiles/SIMA --config" in command  # SIMA is the only pretrain line
    assert "--gpus 2" in command and "--out results/models/pretrain/tiny" in command


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_dry_run_realdata(tmp_path):
    result = snakemake(project(tmp_path), "-n", "-p", "--configfile", "config/realdata.yaml")
    assert result.returncode == 0, output(result)
    counts = job_counts(output(result))
    # tasks on the GM12878 row only (realdata.yaml tasks.cell_lines), so no cross pairs
    tasks = {**TASK_JOBS, "finetune": 15, "finetune_transfer": 0, "loop_calling": 3}
    tasks.update(predict_map=3, predict_eval=3)  # GM12878's region B, 3 seeds
    tasks["baselines"] = 10  # loops 2, loops_genomewide 2 (peakachu, hicmix-caller), 3 + 3
    tasks = {k: v for k, v in tasks.items() if v}
    assert counts == {"download": 16, "balance": 2, "tiles": 2, "qc": 2, "all": 1, **tasks}
    text = output(result)
    assert "--mode keep" in text and "--mode none" in text
    assert "--split val=chr20:30000000-37825000,chr21:29100000-29700000" in text


def test_dry_run_encode_4dn_offline(tmp_path):
    """Accession sources plan without the network (no storage plugin, no parse-time I/O)."""
    if not ENCODE_4DN.exists():
        pytest.skip("config/encode_4dn.yaml not written yet")
    no_network = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = snakemake(
        project(tmp_path), "-n", "--configfile", "config/encode_4dn.yaml", env=no_network
    )
    assert result.returncode == 0, output(result)
    counts = job_counts(output(result))
    assert counts["tiles"] == counts["qc"] == counts["balance"] >= 2
    assert "simulate" not in counts


def test_new_cell_line_is_rows_only(tmp_path):
    """A third cell line added to copies of both sheets plans its own jobs; no rule changes."""
    folder = project(tmp_path)
    cells = (folder / "config/cell_lines.tsv").read_text().splitlines()
    sima = next(line for line in cells if line.startswith("SIMA\t"))
    (folder / "config/cells3.tsv").write_text(
        "\n".join([*cells, sima.replace("SIMA\t", "SIMC\t", 1).replace("pretrain,", "")]) + "\n"
    )
    tracks = (folder / "config/tracks.tsv").read_text().splitlines()
    new = [line.replace("SIMA\t", "SIMC\t", 1) for line in tracks if line.startswith("SIMA\t")]
    (folder / "config/tracks3.tsv").write_text("\n".join([*tracks, *new]) + "\n")
    result = snakemake(
        folder, "-n", "-p", "--config", "cell_lines=config/cells3.tsv", "tracks=config/tracks3.tsv"
    )
    assert result.returncode == 0, output(result)
    counts = job_counts(output(result))
    assert (counts["download"], counts["balance"], counts["tiles"], counts["qc"]) == (24, 3, 3, 3)
    assert "--out results/tiles/SIMC" in output(result)
    assert "hicmix download --source resources/simulated/SIMA/hic.mcool --out resources/SIMC/" in (
        output(result)
    )


def test_bad_sheet_is_one_line(tmp_path):
    folder = project(tmp_path)
    sheet = folder / "config/tracks.tsv"
    sheet.write_text(sheet.read_text().replace("\tH3K27ac\t", "\tH3K27AC\t", 1))
    result = snakemake(folder, "-n")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config/tracks.tsv row 3 (line 4), column assay: 'H3K27AC' is not a known assay; "
        "use one of ATAC, DNase, CTCF, H3K27ac, H3K4me3, H3K4me1, H3K27me3, H3K36me3, H3K9me3, "
        "CAGE, RAD21, SMC3, ZNF143, YY1, P300, POL2, PU1"
    )
    assert "Traceback" not in output(result)


def test_bad_config_is_one_line(tmp_path):
    result = snakemake(project(tmp_path), "-n", "--config", "resolution=10001")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config key resolution: resolution 10001 is not a multiple of track_subbin_bp 200; "
        "choose a sub-bin that divides the resolution"
    )


# ----------------------------------------------------------------------------- end to end


def read_index(tile_dir: Path, kind: str) -> pd.DataFrame:
    return pd.read_csv(tile_dir / kind / "index.tsv", sep="\t")


def shard_path(tile_dir: Path, kind: str, row: pd.Series) -> Path:
    shard = str(row["shard"])
    name = shard if shard.endswith(".h5") else f"{row['split']}-{int(shard):03d}.h5"
    return tile_dir / kind / Path(name).name


def check_tiles(tile_dir: Path, window: int, channels: list[str], test: set[str]) -> dict:
    """Shapes from manifest + shards, and no test-chromosome sample in a training shard."""
    manifest = json.loads((tile_dir / "manifest.json").read_text())
    assert manifest["window_bins"] == window
    assert manifest["channels"] == channels
    positions = 2 * window * manifest["positions_per_bin"]
    assert manifest["positions_per_bin"] == manifest["resolution"] // manifest["subbin_bp"]
    counts = {}
    for kind in ("pretrain", "loops", "tss"):
        if not (tile_dir / kind / "index.tsv").exists():
            continue
        index = read_index(tile_dir, kind)
        counts[kind] = len(index)
        shards = [shard_path(tile_dir, kind, row) for _, row in index.iterrows()]
        for shard, rows in index.groupby(shards):
            assert Path(shard).name.startswith(f"{rows['split'].iloc[0]}-")
            assert rows["split"].nunique() == 1  # one split per shard
            if rows["split"].iloc[0] == "train":
                assert not set(rows["chrom"]) & test, (shard, set(rows["chrom"]) & test)
            with h5py.File(shard) as h5:
                n = h5["hic"].shape[0]
                assert h5["hic"].shape == (n, window, window)
                assert h5["hic_mask"].shape == (n, window, window)
                assert h5["tracks"].shape == (n, len(channels), positions)
                assert h5["label"].shape == (n,) and h5["bins"].shape == (n, 2)
                assert h5["distance"].shape == (n,)
                assert n >= len(rows)
    return counts


def test_end_to_end_default(tmp_path):
    """simulate -> download -> balance -> tiles + qc for SIMA and SIMB on a small genome."""
    folder = project(tmp_path, {**TINY, **NO_TASKS})
    result = snakemake(
        folder, "--cores", "2", "--show-failed-logs", "--configfile", "config/extra.yaml"
    )
    assert result.returncode == 0, output(result)[-6000:]
    for cell in ("SIMA", "SIMB"):
        counts = check_tiles(
            folder / "results/tiles" / cell,
            window=50,
            channels=["ATAC", "CTCF", "H3K27ac", "H3K4me3", "H3K27me3"],
            test={"chr3", "chr6"},
        )
        assert counts["pretrain"] > 0 and counts.get("loops", 0) > 0 and counts.get("tss", 0) > 0
        png = folder / "results/qc" / f"{cell}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / "resources" / cell / "SOURCES.tsv").exists()
        assert json.loads((folder / "results/hic" / f"{cell}.balance.json").read_text())
    # a second run has nothing to do
    again = snakemake(folder, "-n", "--configfile", "config/extra.yaml")
    assert again.returncode == 0 and "Nothing to be done" in output(again), output(again)
    # the Snakemake report holds the QC figures under their caption
    report = snakemake(folder, "--configfile", "config/extra.yaml", "--report", "report.zip")
    assert report.returncode == 0, output(report)
    with zipfile.ZipFile(folder / "report.zip") as archive:
        names = archive.namelist()
    assert sum(name.endswith(("SIMA.png", "SIMB.png")) for name in names) == 2, names


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_end_to_end_realdata(tmp_path):
    folder = project(tmp_path, NO_TASKS)
    result = snakemake(
        # one --configfile with both files: a repeated flag replaces the earlier one
        folder, "--cores", "2", "--show-failed-logs",
        "--configfile", "config/realdata.yaml", "config/extra.yaml",
    )  # fmt: skip
    assert result.returncode == 0, output(result)[-6000:]
    check_tiles(
        folder / "results/tiles/GM12878",
        window=50,
        channels=["CTCF", "RAD21", "SMC3", "ZNF143", "YY1", "P300", "POL2", "PU1"],
        test=set(),  # the chr20 test split is a region (37.825 Mb-): checked below
    )
    check_tiles(folder / "results/tiles/GM12878_chr21", 50, ["CTCF", "H3K27ac"], set())
    index = read_index(folder / "results/tiles/GM12878", "pretrain")
    test_rows = index[index["split"] == "test"]
    assert len(test_rows) and (test_rows["start_x"] >= 37_825_000).all()
    for cell in ("GM12878", "GM12878_chr21"):
        assert (folder / "results/qc" / f"{cell}.png").stat().st_size > 0
