"""Bad input through the real CLI: one ``error:`` line naming the file, the problem and the fix,
exit status 1, and no output (nor its temporary sibling) left behind. Cases and outcomes are
tabulated in docs/reliability.md.

Progress bars (tqdm, on stderr) are not error output; ``error_line`` sets them aside.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cooler
import h5py
import numpy as np
import pandas as pd
import pyBigWig
import pytest
from click.testing import CliRunner, Result

from hicmix import config as hc
from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.simulate import simulate_genome
from hicmix.training.checkpoint import (
    expected_from_manifest,
    load_checkpoint_for_tiles,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "workflow" / "schemas"
RES, W, SUBBIN = 10_000, 20, 500
SPLITS = ["--split", "val=chr2", "--split", "test=chr3"]
PROGRESS = re.compile(r"\d+%\|")


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """chr1 3 Mb, chr2 2 Mb (val), chr3 2 Mb (test): raw .mcool, balanced .cool, bigWigs."""
    root = tmp_path_factory.mktemp("reliability")
    sim = simulate_genome(
        root / "sim", cell_lines=["SIMA"], seed=0, chrom_lengths_mb=[3, 2, 2], progress=False
    )
    balance_hic(sim["hic"]["SIMA"], root / "SIMA.cool", RES)
    return {
        "root": root,
        "mcool": sim["hic"]["SIMA"],
        "cool": root / "SIMA.cool",
        "tracks": sim["tracks"]["SIMA"],
        "loops": sim["loops"]["SIMA"],
        "genes": sim["genes"],
    }


@pytest.fixture(scope="module")
def reference(genome: dict) -> Path:
    """Tiles of the intact inputs (CTCF + ATAC channels, loops), what the good cases match."""
    out = genome["root"] / "tiles_ref"
    result = invoke(tile_args(genome, out, loops=genome["loops"]))
    assert result.exit_code == 0, result.output
    return out


# ----------------------------------------------------------------------------- helpers


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def tile_args(genome: dict, out: Path, hic: Path | None = None, **inputs: Path) -> list:
    """`hicmix tiles` on the small genome; ``ctcf=``/``atac=`` replace a track, ``loops=`` and
    ``genes=`` add those inputs."""
    args = ["tiles", "--cell-line", "SIMA", "--assembly", "sim1", "--hic", hic or genome["cool"]]
    for name in ("CTCF", "ATAC"):
        args += ["--track", f"{name}={inputs.get(name.lower(), genome['tracks'][name])}"]
    if "loops" in inputs:
        args += ["--loops", inputs["loops"]]
    if "genes" in inputs:
        args += ["--genes", inputs["genes"]]
    return [*args, *SPLITS, "--window-bins", W, "--stride-bins", 5, "--subbin-bp", SUBBIN,
            "--shard-size", 64, "--out", out]  # fmt: skip


def error_line(result: Result, *fragments: object) -> str:
    """The one error line of a failed command (exit 1, no traceback), checked for fragments."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not PROGRESS.search(line)]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


def assert_absent(*paths: Path) -> None:
    """Neither the outputs nor their temporary siblings (.name.part, .name.tmp) exist."""
    for path in paths:
        for candidate in (path, path.with_name(f".{path.name}.part")):
            assert not candidate.exists(), candidate
        assert not path.with_name(f".{path.name}.tmp").exists(), path


def assert_no_balance_output(out: Path) -> None:
    stem = out.with_suffix("")
    assert_absent(out, Path(f"{stem}.expected.tsv"), Path(f"{stem}.balance.json"))
    assert not list(out.parent.glob(".hicmix-balance-*")), list(out.parent.iterdir())


def damage(src: Path, dst: Path, obj: str, where: str) -> Path:
    """Copy ``src`` with 64 bytes of an HDF5 object destroyed: its first data chunk
    (``where="chunk"``, a gzip chunk that no longer inflates) or its object header."""
    with h5py.File(src, "r") as h5:
        node = h5[obj] if obj else h5["/"]
        if where == "chunk":
            info = node.id.get_chunk_info(0)
            start = info.byte_offset + info.size // 3
        else:
            start = h5py.h5o.get_info(node.id).addr
    data = bytearray(src.read_bytes())
    data[start : start + 64] = b"\xff" * 64
    dst.write_bytes(bytes(data))
    return dst


def write_bigwig(
    src: Path,
    dst: Path,
    sizes: dict[str, int] | None = None,
    with_data: set[str] | None = None,
    rename: dict[str, str] | None = None,
) -> Path:
    """A copy of bigWig ``src``: header ``sizes`` (default: src's), entries (100 bp means) only for
    ``with_data`` (default: all), chromosomes renamed by ``rename``."""
    rename = rename or {}
    source = pyBigWig.open(str(src))
    native = dict(source.chroms())
    sizes = sizes or native
    out = pyBigWig.open(str(dst), "w")
    out.addHeader([(rename.get(c, c), n) for c, n in sizes.items()])
    for chrom, length in sizes.items():
        if with_data is not None and chrom not in with_data:
            continue
        n = min(length, native[chrom]) // 100 * 100
        values = np.nan_to_num(np.asarray(source.values(chrom, 0, n), dtype=np.float64))
        means = values.reshape(-1, 100).mean(axis=1).tolist()
        out.addEntries(rename.get(chrom, chrom), 0, values=means, span=100, step=100)
    out.close()
    source.close()
    return dst


def shard_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*.h5"))


# ----------------------------------------------------------------------------- Hi-C files


def test_truncated_mcool(genome: dict, tmp_path: Path) -> None:
    broken = tmp_path / "hic.mcool"
    data = genome["mcool"].read_bytes()
    broken.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out" / "SIMA.cool"
    result = invoke(["balance", "--hic", broken, "--resolution", RES, "--out", out])
    error_line(result, broken, "truncated or corrupt", "re-download it")
    assert_no_balance_output(out)


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ("pixels/count", "chunk"),
        ("indexes/bin1_offset", "chunk"),
        ("bins/start", "chunk"),
        ("pixels", "header"),
        ("", "header"),
    ],
)
def test_corrupt_mcool(genome: dict, tmp_path: Path, obj: str, where: str) -> None:
    """A damaged chunk or object header of the resolution balance reads is one line."""
    group = f"resolutions/{RES}/{obj}".rstrip("/")
    broken = damage(genome["mcool"], tmp_path / "hic.mcool", group, where)
    out = tmp_path / "out" / "SIMA.cool"
    result = invoke(["balance", "--hic", broken, "--resolution", RES, "--out", out])
    error_line(result, broken, "truncated or corrupt", "delete it and re-download it")
    assert_no_balance_output(out)


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ("bins/weight", "chunk"),
        ("pixels/count", "chunk"),
        ("indexes/chrom_offset", "chunk"),
        ("bins", "header"),
        ("chroms", "header"),
    ],
)
def test_corrupt_cool_in_tiles(genome: dict, tmp_path: Path, obj: str, where: str) -> None:
    broken = damage(genome["cool"], tmp_path / "SIMA.cool", obj, where)
    out = tmp_path / "tiles" / "SIMA"
    result = invoke(tile_args(genome, out, hic=broken))
    error_line(result, broken, "truncated or corrupt", "re-download it")
    assert_absent(out)


def test_missing_resolution(genome: dict, tmp_path: Path) -> None:
    out = tmp_path / "out" / "SIMA.cool"
    result = invoke(["balance", "--hic", genome["mcool"], "--resolution", 5000, "--out", out])
    error_line(
        result,
        genome["mcool"],
        "no resolution 5000",
        "available: 10000, 20000, 40000",
        "set `resolution` in the config",
    )
    assert_no_balance_output(out)


def test_one_line_on_stderr_of_the_real_command(genome: dict, tmp_path: Path) -> None:
    """The installed console script prints exactly one line: no log line, no traceback."""
    hicmix = shutil.which("hicmix", path=str(Path(sys.executable).parent)) or "hicmix"
    out = tmp_path / "SIMA.cool"
    command = [hicmix, "balance", "--hic", str(genome["mcool"]), "--resolution", "5000"]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert done.stdout == ""
    assert_no_balance_output(out)


# ----------------------------------------------------------------------------- chromosomes


def test_chromosome_names_are_normalised(genome: dict, reference: Path, tmp_path: Path) -> None:
    """Hi-C named 1, 2, 3 and a track named 1, 2, 3 tile exactly like the chr-named files."""
    ensembl = {"chr1": "1", "chr2": "2", "chr3": "3"}
    hic = tmp_path / "ensembl.cool"
    shutil.copyfile(genome["cool"], hic)
    cooler.rename_chroms(cooler.Cooler(str(hic)), ensembl)
    ctcf = write_bigwig(genome["tracks"]["CTCF"], tmp_path / "ctcf.bw")
    renamed = write_bigwig(genome["tracks"]["CTCF"], tmp_path / "ctcf_1.bw", rename=ensembl)
    loops = tmp_path / "loops.bedpe"
    loops.write_text(genome["loops"].read_text().replace("chr", ""))
    chr_named, one_named = tmp_path / "chr", tmp_path / "one"
    result = invoke(tile_args(genome, chr_named, ctcf=ctcf, loops=genome["loops"]))
    assert result.exit_code == 0, result.output
    result = invoke(tile_args(genome, one_named, hic=hic, ctcf=renamed, loops=loops))
    assert result.exit_code == 0, result.output
    manifest = json.loads((one_named / "manifest.json").read_text())
    assert manifest["chromosomes"] == ["chr1", "chr2", "chr3"]
    assert manifest["counts"] == json.loads((chr_named / "manifest.json").read_text())["counts"]
    assert manifest["counts"]["loops"]["train"] > 0
    index = pd.read_csv(one_named / "loops" / "index.tsv", sep="\t")
    assert set(index["chrom"]) == {"chr1", "chr2", "chr3"}
    assert shard_files(one_named) == shard_files(chr_named) != []
    for name in shard_files(chr_named):
        assert (one_named / name).read_bytes() == (chr_named / name).read_bytes(), name


@pytest.mark.parametrize("missing_from", ["track", "hic"])
def test_chromosome_genuinely_missing(genome: dict, tmp_path: Path, missing_from: str) -> None:
    out = tmp_path / "tiles" / "SIMA"
    if missing_from == "track":
        ctcf = genome["tracks"]["CTCF"]
        sizes = {c: n for c, n in pyBigWig.open(str(ctcf)).chroms().items() if c != "chr3"}
        track = write_bigwig(ctcf, tmp_path / "no_chr3.bw", sizes=sizes)
        result = invoke(tile_args(genome, out, ctcf=track))
        fragments = [track, "chromosome chr3 not found (it has chr1, chr2)"]
    else:
        result = invoke([*tile_args(genome, out), "--chromosomes", "chr1,4"])
        fragments = [genome["cool"], "chromosome chr4 not found (it has chr1, chr2, chr3)"]
    message = error_line(result, *fragments)
    assert "remove it from `chromosomes` in the config or use a file that covers it" in message
    assert_absent(out)


@pytest.mark.parametrize("mismatch", ["track", "assembly"])
def test_different_assemblies(genome: dict, tmp_path: Path, mismatch: str) -> None:
    """Chromosome lengths that disagree name both files (or the assembly) and the fix."""
    out = tmp_path / "tiles" / "SIMA"
    if mismatch == "track":
        ctcf = genome["tracks"]["CTCF"]
        sizes = dict(pyBigWig.open(str(ctcf)).chroms())
        track = write_bigwig(ctcf, tmp_path / "longer.bw", sizes={**sizes, "chr3": 2_010_000})
        result = invoke(tile_args(genome, out, ctcf=track))
        fragments = ["chr3 is 2,000,000 bp in", genome["cool"], "2,010,000 bp in", track]
    else:
        args = tile_args(genome, out)
        args[args.index("sim1")] = "hg38"
        result = invoke(args)
        fragments = ["chr1 is 248,956,422 bp in assembly hg38", "3,000,000 bp in", genome["cool"]]
    message = error_line(result, *fragments)
    assert "different assemblies; use files of the same assembly" in message
    assert_absent(out)


def test_bigwig_without_data_on_a_chromosome(genome: dict, tmp_path: Path) -> None:
    track = write_bigwig(
        genome["tracks"]["CTCF"], tmp_path / "empty_chr3.bw", with_data={"chr1", "chr2"}
    )
    out = tmp_path / "tiles" / "SIMA"
    error_line(
        invoke(tile_args(genome, out, ctcf=track)),
        track,
        "chromosome chr3 has no data in this bigWig",
        "use a track that covers it",
    )
    assert_absent(out)


# ----------------------------------------------------------------------------- masked bins


def test_nan_rows_are_masked_and_counted(genome: dict, tmp_path: Path) -> None:
    """Bins without contacts get a NaN weight, are counted in .balance.json and have
    hic_mask 0 (and value 0) in every tile that covers them."""
    empty = np.arange(100, 105)  # chr1 bins 1.00-1.05 Mb
    source = cooler.Cooler(f"{genome['mcool']}::resolutions/{RES}")
    pixels = source.pixels()[:]
    keep = ~(pixels["bin1_id"].isin(empty) | pixels["bin2_id"].isin(empty))
    raw = tmp_path / "holes.cool"
    cooler.create_cooler(str(raw), source.bins()[:][["chrom", "start", "end"]], pixels[keep])
    out = tmp_path / "hic" / "SIMA.cool"
    result = invoke(["balance", "--hic", raw, "--resolution", RES, "--out", out])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "hic" / "SIMA.balance.json").read_text())
    weights = cooler.Cooler(str(out)).bins()["weight"][:].to_numpy()
    assert np.isnan(weights[empty]).all()
    assert report["masked_bins"]["chr1"] == int(np.isnan(weights[:300]).sum()) >= len(empty)
    assert f"{sum(report['masked_bins'].values())}/700 bins masked" in result.stderr

    tiles = tmp_path / "tiles"
    result = invoke(tile_args(genome, tiles, hic=out))
    assert result.exit_code == 0, result.output
    index = pd.read_csv(tiles / "pretrain" / "index.tsv", sep="\t")
    covering = index[(index["chrom"] == "chr1") & (index["bin_x"] - W // 2).between(81, 104)]
    assert len(covering) >= 4
    for _, row in covering.iterrows():
        with h5py.File(tiles / "pretrain" / row["shard"], "r") as h5:
            mask, hic = h5["hic_mask"][row["row"]], h5["hic"][row["row"]]
        rows = empty - (row["bin_x"] - W // 2)
        rows = rows[(rows >= 0) & (rows < W)]
        assert (mask[rows, :] == 0).all() and (mask[:, rows] == 0).all()
        assert (hic[rows, :] == 0).all() and (hic[:, rows] == 0).all()
        assert mask.sum() > 0  # the other bins stay valid


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        (
            "chr1\t100\tx\tchr1\t5000\t6000",
            ["line 4: expected 'chrom1 start1 end1 chrom2 start2 end2'", "fix the BEDPE"],
        ),
        (
            "chr2\t1000\t2000\tchr2\t1990000\t2010000",
            ["line 4: an anchor lies outside chr2 (length 2,000,000 bp", "same assembly"],
        ),
    ],
)
def test_bad_loop_bedpe(genome: dict, tmp_path: Path, line: str, fragments: list[str]) -> None:
    lines = genome["loops"].read_text().splitlines()
    bedpe = tmp_path / "loops.bedpe"
    bedpe.write_text("\n".join([*lines[:3], line, *lines[3:]]) + "\n")
    out = tmp_path / "tiles" / "SIMA"
    error_line(invoke(tile_args(genome, out, loops=bedpe)), bedpe, *fragments)
    assert_absent(out)


def test_gene_table_without_required_columns(genome: dict, tmp_path: Path) -> None:
    genes = tmp_path / "genes.tsv"
    genes.write_text(genome["genes"].read_text().replace("\ttss\t", "\tstart\t", 1))
    out = tmp_path / "tiles" / "SIMA"
    error_line(
        invoke(tile_args(genome, out, genes=genes)),
        genes,
        "lacks column(s) tss",
        "set --gene-id-column, --tss-column, --expression-column",
    )
    assert_absent(out)


# ----------------------------------------------------------------------------- sheets

CELLS = "cell_line\tassembly\troles\thic_source\nSIMA\tsim1\tpretrain\tsim/SIMA.mcool\n"
TRACKS = (
    "cell_line\tassay\tstrand\tsource\nSIMA\tCTCF\t.\tsim/CTCF.bw\nSIMA\tATAC\t.\tsim/ATAC.bw\n"
)


@pytest.mark.parametrize(
    ("cells", "tracks", "expected"),
    [
        (
            CELLS,
            TRACKS.replace("\tATAC\t", "\tATAQ\t"),
            "tracks.tsv row 2 (line 3), column assay: 'ATAQ' is not a known assay; use one of",
        ),
        (
            CELLS + "SIMA\tsim1\tfinetune\tsim/other.mcool\n",
            TRACKS,
            "cells.tsv row 2 (line 3), column cell_line: 'SIMA' is listed twice (first at row 1); "
            "give each cell line one row",
        ),
    ],
)
def test_bad_sheet_rows(tmp_path: Path, cells: str, tracks: str, expected: str) -> None:
    (tmp_path / "cells.tsv").write_text(cells)
    (tmp_path / "tracks.tsv").write_text(tracks)
    config = hc.load_config(
        {"cell_lines": "cells.tsv", "tracks": "tracks.tsv", "channels": ["CTCF", "ATAC"]},
        schemas=SCHEMAS,
    )
    with pytest.raises(ConfigError) as caught:
        hc.load_sheets(config, SCHEMAS, base_dir=tmp_path)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_duplicate_cell_line_stops_snakemake_in_one_line(tmp_path: Path) -> None:
    """Snakemake's dry-run stops at parse time with the same line, and writes nothing."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    sheet = tmp_path / "config" / "cell_lines.tsv"
    text = sheet.read_text()
    sheet.write_text(text + next(r for r in text.splitlines() if r.startswith("SIMB\t")) + "\n")
    command = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile")]
    done = subprocess.run(
        [*command, "-d", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: config/cell_lines.tsv row 3 (line 4), column cell_line: 'SIMB' is listed twice "
        "(first at row 2); give each cell line one row"
    )
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


# ----------------------------------------------------------------------------- checkpoints


def fake_checkpoint(path: Path, tiles: Path, **changes: object) -> Path:
    """A checkpoint folder whose card describes ``tiles`` except for ``changes``."""
    manifest = json.loads((tiles / "manifest.json").read_text())
    expected = expected_from_manifest(manifest)
    card = {
        "size": "tiny",
        "geometry": dict(expected["expected_geometry"]),
        "channels": expected["expected_channels"],
        "transforms": dict(expected["expected_transforms"]),
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            card[section][field] = value
        else:
            card[section] = value
    return save_checkpoint(path, {"model": {}, "step": 0}, card)


def test_checkpoint_of_another_geometry_is_refused(reference: Path, tmp_path: Path) -> None:
    ckpt = fake_checkpoint(
        tmp_path / "ckpt",
        reference,
        geometry__positions_per_bin=50,
        transforms__track_transform="identity",
    )
    with pytest.raises(InputError) as caught:
        load_checkpoint_for_tiles(ckpt, reference)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {ckpt} does not fit these tiles: ")
    assert "positions_per_bin is 50 in the checkpoint but 20 in the tiles" in message
    assert "track_transform is 'identity' in the checkpoint but 'log2p1' in the tiles" in message
    assert "use tiles built with the checkpoint's settings" in message


@pytest.mark.parametrize("change", ["channels", "size"])
def test_finetune_refuses_a_checkpoint_from_another_config(
    reference: Path, tmp_path: Path, change: str
) -> None:
    from hicmix.finetune import write_finetune_config
    from hicmix.model import model_config

    if change == "channels":
        ckpt = fake_checkpoint(tmp_path / "ckpt", reference, channels=["ATAC", "CTCF"])
        fragments = ["does not fit these tiles: channels is ['ATAC', 'CTCF'] in the checkpoint"]
    else:
        base = model_config("base").to_dict()
        ckpt = fake_checkpoint(tmp_path / "ckpt", reference, size="base", model_config=base)
        fragments = ["was pre-trained with", "(size 'base')", "set size: base"]
    config = write_finetune_config(
        {"size": "tiny", "batch_size": 8, "max_epochs": 1, "num_workers": 0},
        tmp_path / "finetune.yaml",
    )
    out = tmp_path / "finetuned"
    args = ["finetune", "--task", "loops", "--tiles", reference, "--pretrained", ckpt]
    result = invoke([*args, "--config", config, "--seed", 0, "--out", out, "--device", "cpu"])
    error_line(result, f"checkpoint {ckpt}", *fragments)
    assert_absent(out)
