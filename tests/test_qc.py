"""QC figure: balanced map + loops + tracks, chromosome-name mismatches, clear errors."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import cooler
import numpy as np
import pandas as pd
import pyBigWig
import pytest
from click.testing import CliRunner

from hicmix.cli import cli
from hicmix.errors import ConfigError, HicmixError, InputError
from hicmix.qc import QCRegion, qc_figure, read_loops

RES = 10_000
SIZES = {"1": 2_000_000, "2": 1_500_000}  # the cooler uses Ensembl-style names on purpose


def _write_cool(path: Path) -> Path:
    """Decay + one dot, Poisson counts, ICE weight column; chromosomes named '1' and '2'."""
    rng = np.random.default_rng(0)
    bins = cooler.binnify(pd.Series(SIZES), RES)
    tables, offset = [], 0
    for length in SIZES.values():
        n = -(-length // RES)
        i, j = np.triu_indices(n)
        expected = 400.0 / (j - i + 0.5)
        expected[(i == 50) & (j == 80)] += 200.0
        counts = rng.poisson(expected)
        keep = counts > 0
        tables.append(
            pd.DataFrame(
                {"bin1_id": i[keep] + offset, "bin2_id": j[keep] + offset, "count": counts[keep]}
            )
        )
        offset += n
    cooler.create_cooler(str(path), bins, pd.concat(tables, ignore_index=True), ordered=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cooler.balance_cooler(cooler.Cooler(str(path)), store=True, cis_only=True)
    return path


def _write_bigwig(path: Path, chroms: dict[str, int], peak: int) -> Path:
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(chroms.items()))
    for chrom, length in chroms.items():
        values = np.full(length // 100, 0.5)
        values[peak // 100 - 3 : peak // 100 + 3] = 20.0
        bw.addEntries(chrom, 0, values=values, span=100, step=100)
    bw.close()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("qc")
    loops = folder / "loops.bedpe"
    loops.write_text(
        "chr1\tx1\tx2\tchr2\ty1\ty2\n"  # a header line, as HiCCUPS writes
        "1\t500000\t510000\t1\t800000\t810000\n"
        "1\t100000\t110000\t1\t1900000\t1910000\n"
        "2\t100000\t110000\t2\t300000\t310000\n"
    )
    return {
        "hic": _write_cool(folder / "GM1.cool"),
        "ctcf": _write_bigwig(folder / "ctcf.bw", {"chr1": 2_000_000, "chr2": 1_500_000}, 505_000),
        "atac": _write_bigwig(folder / "atac.bw", {"chr1": 2_000_000}, 805_000),
        "loops": loops,
    }


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figure_is_a_png_of_sensible_size(files: dict, tmp_path: Path) -> None:
    out = qc_figure(
        files["hic"],
        "chr1:300000-1200000",
        tmp_path / "qc" / "GM1.png",
        tracks=[("CTCF", files["ctcf"]), ("ATAC", files["atac"])],
        loops=files["loops"],
    )
    width, height = _png_size(out)
    assert 600 <= width <= 2000 and 700 <= height <= 3000 and height > width
    assert out.stat().st_size > 20_000
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temporary left


def test_raw_counts_without_tracks(files: dict, tmp_path: Path) -> None:
    out = qc_figure(files["hic"], "2:0-1500000", tmp_path / "raw.png", weight=None)
    width, height = _png_size(out)
    assert width > 600 and height > 600


def test_read_loops_normalises_names_and_skips_headers(files: dict) -> None:
    anchors = read_loops(files["loops"], QCRegion.parse("chr1:0-1000000"))
    np.testing.assert_array_equal(anchors, [[505_000.0, 805_000.0]])
    assert len(read_loops(files["loops"], QCRegion.parse("1:0-2000000"))) == 2


@pytest.mark.parametrize(
    ("region", "error", "match"),
    [
        ("chr1-100-200", ConfigError, "not chrom:start-end"),
        ("chr1:500000-100000", ConfigError, "ends before it starts"),
        ("chr1:1000000-2500000", ConfigError, "past the end"),
        ("chr7:0-100000", InputError, "chromosome chr7 not found"),
    ],
)
def test_bad_region(files: dict, tmp_path: Path, region: str, error: type, match: str) -> None:
    out = tmp_path / "bad.png"
    with pytest.raises(error, match=match):
        qc_figure(files["hic"], region, out, tracks=[("CTCF", files["ctcf"])])
    assert not out.exists()


def test_track_missing_chromosome_names_the_file(files: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"atac\.bw: chromosome chr2 not found"):
        qc_figure(
            files["hic"], "chr2:0-1000000", tmp_path / "x.png", tracks=[("ATAC", files["atac"])]
        )
    assert not (tmp_path / "x.png").exists()


def test_unusable_inputs(files: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no 'balanced' column"):
        qc_figure(files["hic"], "chr1:0-500000", tmp_path / "x.png", weight="balanced")
    with pytest.raises(InputError, match="not found"):
        qc_figure(tmp_path / "absent.cool", "chr1:0-500000", tmp_path / "x.png")
    junk = tmp_path / "junk.cool"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable cooler"):
        qc_figure(junk, "chr1:0-500000", tmp_path / "x.png")
    with pytest.raises(InputError, match="not a readable bigWig"):
        qc_figure(files["hic"], "chr1:0-500000", tmp_path / "x.png", tracks=[("J", junk)])


def test_cli_qc(files: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli.png"
    args = ["qc", "--hic", str(files["hic"]), "--region", "chr1:300000-1200000", "--out", str(out)]
    tracks = ["--track", f"CTCF={files['ctcf']}", "--track", f"ATAC={files['atac']}"]
    result = CliRunner().invoke(cli, [*args, *tracks, "--loops", str(files["loops"])])
    assert result.exit_code == 0, result.output
    assert _png_size(out)[0] > 600
    bad = CliRunner().invoke(cli, [*args, "--track", "CTCF"])
    assert bad.exit_code != 0 and "NAME=PATH" in bad.output
    missing = CliRunner().invoke(
        cli, [*args[:-2], "--out", str(tmp_path / "m.png"), "--region", "chr9:0-10"]
    )
    assert missing.exit_code == 1 and "error:" in missing.output
    assert issubclass(InputError, HicmixError)
