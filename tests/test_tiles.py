"""Tiling stage: geometry, determinism, splits, negatives, values, Dataset, input checks, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyBigWig
import pytest
import torch
from click.testing import CliRunner

from hicmix import TILE_FORMAT_VERSION
from hicmix.balance import balance_hic
from hicmix.cli import cli
from hicmix.errors import ConfigError, InputError
from hicmix.hic import open_hic, read_band, read_expected
from hicmix.simulate import ASSAYS, simulate_genome
from hicmix.tiles import TileDataset, load_manifest, tile_cell_line
from hicmix.transforms import clip_scale

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
W, STRIDE, SUBBIN, RES = 20, 5, 500, 10_000
P = RES // SUBBIN
SPLIT = {"val": ["chr2"], "test": ["chr3"]}


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tiles_genome")
    paths = simulate_genome(
        root / "sim", cell_lines=["SIMA"], seed=0, chrom_lengths_mb=[3, 2.5, 2], progress=False
    )
    cool = root / "SIMA.cool"
    balance_hic(paths["hic"]["SIMA"], cool, RES)
    return {
        "root": root,
        "cool": cool,
        "expected": root / "SIMA.expected.tsv",
        "tracks": {a: paths["tracks"]["SIMA"][a] for a in ASSAYS},
        "loops": paths["loops"]["SIMA"],
        "genes": paths["genes"],
    }


def _kwargs(genome: dict, **more) -> dict:
    kwargs = {
        "cell_line": "SIMA",
        "assembly": "sim1",
        "hic": genome["cool"],
        "tracks": genome["tracks"],
        "loops": genome["loops"],
        "genes": genome["genes"],
        "splits": SPLIT,
        "window_bins": W,
        "stride_bins": STRIDE,
        "subbin_bp": SUBBIN,
        "shard_size": 40,
        "seed": 0,
        "progress": False,
    }
    kwargs.update(more)
    return kwargs


@pytest.fixture(scope="module")
def tiles(genome: dict) -> tuple[Path, dict]:
    out = genome["root"] / "tiles_a"
    return out, tile_cell_line(out=out, **_kwargs(genome))


def _index(folder: Path, kind: str) -> pd.DataFrame:
    return pd.read_csv(folder / kind / "index.tsv", sep="\t", dtype={"gene_id": str})


def _read(folder: Path, kind: str, row: pd.Series, key: str) -> np.ndarray:
    with h5py.File(folder / kind / row["shard"], "r") as handle:
        return handle[key][int(row["row"])]


def test_shapes_geometry_and_counts(tiles: tuple[Path, dict]) -> None:
    out, manifest = tiles
    assert manifest == load_manifest(out)
    assert manifest["format_version"] == TILE_FORMAT_VERSION
    assert (manifest["window_bins"], manifest["positions_per_bin"]) == (W, P)
    assert manifest["channels"] == list(ASSAYS)
    assert manifest["hic_scale"] > 1  # ICE scale brought back to count-like units
    for kind in ("pretrain", "loops", "tss"):
        index = _index(out, kind)
        assert list(index["sample"]) == list(range(len(index)))
        per_split = index["split"].value_counts().to_dict()
        assert {s: n for s, n in manifest["counts"][kind].items() if n} == per_split
        for shard, rows in index.groupby("shard"):
            with h5py.File(out / kind / shard, "r") as handle:
                n = len(rows)
                assert n <= 40 and sorted(rows["row"]) == list(range(n))
                assert handle["hic"].shape == (n, W, W)
                assert handle["hic_mask"].shape == (n, W, W)
                assert handle["tracks"].shape == (n, len(ASSAYS), 2 * W * P)
                assert handle["bins"].shape == (n, 2) and handle["label"].shape == (n,)
                assert handle["hic"].chunks == (1, W, W)
                assert handle.attrs["window_bins"] == W and handle.attrs["split"] == shard[:-7]
                assert list(handle.attrs["channels"]) == list(ASSAYS)
                assert handle.attrs["hic_transform"] == "clip_scale"
                bins = handle["bins"][:]
                np.testing.assert_array_equal(handle["distance"][:], bins[:, 1] - bins[:, 0])
                np.testing.assert_array_equal(bins[rows["row"], 0], rows["bin_x"])
                labels = handle["label"][:][rows["row"]]
                if kind == "loops":
                    np.testing.assert_array_equal(labels, rows["label"])
                elif kind == "tss":
                    np.testing.assert_allclose(labels, rows["expression"], rtol=1e-6)
                else:
                    assert not labels.any()
        assert (index["start_x"] == (index["bin_x"] - W // 2) * RES).all()
    pretrain = _index(out, "pretrain")
    assert (pretrain["distance_bins"] == 0).all() and (
        pretrain["start_x"] % (STRIDE * RES) == 0
    ).all()
    tss = _index(out, "tss")
    genes = pd.read_csv(tiles[1]["inputs"]["genes"]["path"], sep="\t").set_index("gene_id")
    assert (tss["bin_x"] == genes.loc[tss["gene_id"], "tss"].to_numpy() // RES).all()
    np.testing.assert_allclose(tss["expression"], genes.loc[tss["gene_id"], "SIMA"], atol=1e-4)
    assert manifest["dropped"]["pretrain"]["off_chromosome"] > 0


def test_tiles_are_byte_identical(genome: dict, tiles: tuple[Path, dict]) -> None:
    first, _ = tiles
    second = genome["root"] / "tiles_b"
    tile_cell_line(out=second, **_kwargs(genome))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert any(f.suffix == ".h5" for f in files)
    for name in files:
        digest = [
            hashlib.sha256((root / name).read_bytes()).hexdigest() for root in (first, second)
        ]
        assert digest[0] == digest[1], name


def test_split_integrity_and_region_split(genome: dict, tiles: tuple[Path, dict]) -> None:
    out, _ = tiles
    for kind in ("pretrain", "loops", "tss"):
        index = _index(out, kind)
        assert (index["shard"].str.split("-").str[0] == index["split"]).all()
        expected = index["chrom"].map({"chr2": "val", "chr3": "test"}).fillna("train")
        assert (index["split"] == expected).all()
    region = genome["root"] / "tiles_region"
    manifest = tile_cell_line(
        out=region,
        **_kwargs(genome, splits={"test": ["chr1:1000000-2000000"]}, chromosomes=["chr1"]),
    )
    assert manifest["dropped"]["pretrain"]["straddles_split"] > 0
    index = _index(region, "pretrain")
    lo, hi = index["start_x"], index["start_x"] + W * RES
    inside = (lo >= 1_000_000) & (hi <= 2_000_000)
    overlaps = (lo < 2_000_000) & (hi > 1_000_000)
    assert (index.loc[inside, "split"] == "test").all() and inside.any()
    assert not (overlaps & ~inside).any()
    assert (index.loc[~overlaps, "split"] == "train").all()


def _positives(genome: dict) -> pd.DataFrame:
    bedpe = pd.read_csv(genome["loops"], sep="\t", header=None)
    a = ((bedpe[1] + bedpe[2]) // 2) // RES
    b = ((bedpe[4] + bedpe[5]) // 2) // RES
    return pd.DataFrame({"chrom": bedpe[0], "i": np.minimum(a, b), "j": np.maximum(a, b)})


def test_negatives_exclusion_and_distances(genome: dict, tiles: tuple[Path, dict]) -> None:
    out, manifest = tiles
    index = _index(out, "loops")
    positives = _positives(genome)
    neg = index[index["label"] == 0]
    pos = index[index["label"] == 1]
    for chrom, rows in neg.groupby("chrom"):
        loops = positives[positives["chrom"] == chrom]
        cheb = np.maximum(
            np.abs(rows["bin_x"].to_numpy()[:, None] - loops["i"].to_numpy()[None]),
            np.abs(rows["bin_y"].to_numpy()[:, None] - loops["j"].to_numpy()[None]),
        )
        assert cheb.min() > 2
        assert len(rows) == (pos["chrom"] == chrom).sum()  # 1:1 per chromosome
    assert "negative_shortfall" not in manifest["dropped"]["loops"]
    assert not neg.duplicated(["chrom", "bin_x", "bin_y"]).any()
    assert neg["distance_bins"].between(2, 200).all()
    ratio = neg["distance_bins"].median() / pos["distance_bins"].median()
    assert 0.5 < ratio < 4
    # half the draws come from the positives' KDE: many negatives lie in the positives' range
    assert (neg["distance_bins"] <= pos["distance_bins"].quantile(0.9)).mean() > 0.3
    with h5py.File(out / "loops" / neg.iloc[0]["shard"], "r") as handle:
        patch = handle["hic"][int(neg.iloc[0]["row"])]
    assert patch[W // 2, W // 2] > 0  # negatives sit on a nonzero pixel


def test_hic_values_match_band_patches(genome: dict, tiles: tuple[Path, dict]) -> None:
    out, manifest = tiles
    clr = open_hic(genome["cool"])
    for kind in ("pretrain", "loops"):
        index = _index(out, kind)
        rows = index[index["chrom"] == "chr1"].iloc[::7]
        band = read_band(clr, "chr1", 220)
        want = clip_scale(
            band.patches(rows["bin_x"] - W // 2, rows["bin_y"] - W // 2, W),
            255.0,
            manifest["hic_scale"],
        )
        for k, (_, row) in enumerate(rows.iterrows()):
            hic, mask = _read(out, kind, row, "hic"), _read(out, kind, row, "hic_mask")
            np.testing.assert_array_equal(mask, np.isfinite(want[k]).astype(np.uint8))
            np.testing.assert_array_equal(hic, np.where(mask == 1, want[k], 0).astype(np.float32))


def _brute_tracks(path: Path, chrom: str, start_bin: int) -> np.ndarray:
    bw = pyBigWig.open(str(path))
    try:
        means = []
        for k in range(W * P):
            start = start_bin * RES + k * SUBBIN
            values = np.nan_to_num(np.asarray(bw.values(chrom, start, start + SUBBIN)), nan=0.0)
            means.append(values.mean())
    finally:
        bw.close()
    return np.log2(np.array(means) + 1)


def test_track_values_match_pybigwig(genome: dict, tiles: tuple[Path, dict]) -> None:
    out, _ = tiles
    index = _index(out, "loops")
    for _, row in index.iloc[[0, len(index) // 2]].iterrows():
        tracks = _read(out, "loops", row, "tracks")
        for assay in ("CTCF", "ATAC"):
            channel = list(ASSAYS).index(assay)
            x = _brute_tracks(genome["tracks"][assay], row["chrom"], row["bin_x"] - W // 2)
            y = _brute_tracks(genome["tracks"][assay], row["chrom"], row["bin_y"] - W // 2)
            np.testing.assert_allclose(tracks[channel, : W * P], x, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(tracks[channel, W * P :], y, rtol=1e-5, atol=1e-5)


def test_log1p_oe_and_offdiagonal_pretrain(genome: dict) -> None:
    out = genome["root"] / "tiles_oe"
    kwargs = {
        "hic_transform": "log1p_oe",
        "expected": genome["expected"],
        "loops": None,
        "genes": None,
    }
    manifest = tile_cell_line(out=out, **_kwargs(genome, max_offdiag_bp=10 * RES, **kwargs))
    assert manifest["hic_transform"] == "log1p_oe" and manifest["kinds"] == ["pretrain"]
    index = _index(out, "pretrain")
    assert set(index["distance_bins"]) == {0, STRIDE, 2 * STRIDE}
    diagonal = index[index["distance_bins"] == 0]
    for offset in (STRIDE, 2 * STRIDE):  # every off-diagonal pair whose windows fit the chromosome
        pairs = index[index["distance_bins"] == offset]
        assert len(pairs) > 0.8 * len(
            diagonal[diagonal["start_x"] + offset * RES <= diagonal["start_x"].max()]
        )
    expected = read_expected(
        genome["expected"], ["chr1"], 3 * W
    )  # chr1: the only training chromosome
    for _, row in index[index["chrom"] == "chr2"].iloc[[3, -2]].iterrows():
        band = read_band(open_hic(genome["cool"]), "chr2", 3 * W)
        sx, sy = row["bin_x"] - W // 2, row["bin_y"] - W // 2
        balanced = band.patches([sx], [sy], W)[0]
        diag = np.abs((sy + np.arange(W))[None] - (sx + np.arange(W))[:, None])
        want = np.log1p(balanced / expected[diag])
        np.testing.assert_allclose(
            _read(out, "pretrain", row, "hic"), np.nan_to_num(want), rtol=1e-5
        )


def test_dataset_lazy_and_dataloader(tiles: tuple[Path, dict]) -> None:
    out, _ = tiles
    dataset = TileDataset(out, "loops", ["train", "val"])
    index = _index(out, "loops")
    assert len(dataset) == (index["split"] != "test").sum()
    assert not dataset._handles  # nothing opened before the first item
    assert dataset.geometry["W"] == W and dataset.geometry["P"] == P
    assert dataset.geometry["C"] == len(ASSAYS) and dataset.geometry["channels"] == list(ASSAYS)
    assert dataset.geometry["transforms"]["hic"] == "clip_scale"
    item = dataset[5]
    row = dataset.index.iloc[5]
    assert item["hic"].shape == (1, W, W) and item["hic"].dtype == torch.float32
    assert item["hic_mask"].shape == (1, W, W)
    assert item["tracks"].shape == (len(ASSAYS), 2 * W * P)
    assert item["label"].shape == () and item["label"].item() == row["label"]
    assert item["distance"].dtype == torch.int64 and item["distance"].item() == row["distance_bins"]
    assert item["bins"].tolist() == [row["bin_x"], row["bin_y"]]
    np.testing.assert_array_equal(item["hic"][0].numpy(), _read(out, "loops", row, "hic"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2, shuffle=False)
    seen, labels = [], []
    for batch in loader:
        assert batch["hic"].shape[1:] == (1, W, W)
        assert batch["tracks"].shape[1:] == (len(ASSAYS), 2 * W * P)
        seen += batch["sample"].tolist()
        labels += batch["label"].tolist()
    assert seen == list(range(len(dataset)))
    assert labels == dataset.index["label"].astype(float).tolist()
    assert set(TileDataset([out, out], "tss", "test").index["split"]) == {"test"}


def test_dataset_refuses_mixed_geometry(
    genome: dict, tiles: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = tiles
    other = tmp_path / "w16"
    tile_cell_line(
        out=other, **_kwargs(genome, window_bins=16, chromosomes=["chr3"], loops=None, genes=None)
    )
    with pytest.raises(InputError, match="window_bins") as error:
        TileDataset([out, other], "pretrain", "train")
    assert str(out) in str(error.value) and str(other) in str(error.value)
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    with pytest.raises(InputError, match="incomplete tiles, rerun hicmix tiles"):
        load_manifest(incomplete)


def _write_bigwig(
    src: Path, dst: Path, rename: dict[str, str], lengths: dict[str, int] | None = None
) -> None:
    bw_in = pyBigWig.open(str(src))
    bw_out = pyBigWig.open(str(dst), "w")
    chroms = bw_in.chroms()
    header = [(rename.get(c, c), (lengths or {}).get(c, n)) for c, n in chroms.items()]
    bw_out.addHeader(header)
    for chrom, length in chroms.items():
        if (
            chrom != "chr3"
        ):  # only chr3 is tiled here; the other chromosomes need a header entry only
            continue
        values = np.asarray(bw_in.values(chrom, 0, length), dtype=np.float64)
        step = 100
        means = np.nan_to_num(values[: length // step * step].reshape(-1, step).mean(axis=1))
        bw_out.addEntries(rename.get(chrom, chrom), 0, values=means.tolist(), span=step, step=step)
    bw_in.close()
    bw_out.close()


def test_ensembl_names_and_length_mismatch(genome: dict, tmp_path: Path) -> None:
    names = {"chr1": "1", "chr2": "2", "chr3": "3"}
    renamed, same = tmp_path / "ctcf_ensembl.bw", tmp_path / "ctcf_ucsc.bw"
    _write_bigwig(genome["tracks"]["CTCF"], renamed, names)
    _write_bigwig(genome["tracks"]["CTCF"], same, {})
    bedpe = tmp_path / "loops.bedpe"
    bedpe.write_text(genome["loops"].read_text().replace("chr", ""))
    common = {"chromosomes": ["3"], "genes": None}
    a = tile_cell_line(
        out=tmp_path / "a", **_kwargs(genome, tracks={"CTCF": renamed}, loops=bedpe, **common)
    )
    b = tile_cell_line(out=tmp_path / "b", **_kwargs(genome, tracks={"CTCF": same}, **common))
    assert a["counts"] == b["counts"] and a["counts"]["loops"]["test"] > 0
    for kind in ("pretrain", "loops"):
        for shard in (tmp_path / "b" / kind).glob("*.h5"):
            with (
                h5py.File(shard, "r") as x,
                h5py.File(tmp_path / "a" / kind / shard.name, "r") as y,
            ):
                np.testing.assert_array_equal(x["tracks"][:], y["tracks"][:])
                np.testing.assert_array_equal(x["hic"][:], y["hic"][:])
    longer = tmp_path / "ctcf_longer.bw"
    _write_bigwig(genome["tracks"]["CTCF"], longer, {}, {"chr3": 2_100_000})
    with pytest.raises(InputError) as error:
        tile_cell_line(out=tmp_path / "c", **_kwargs(genome, tracks={"CTCF": longer}, **common))
    assert str(longer) in str(error.value) and str(genome["cool"]) in str(error.value)
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputError, match="chr9"):
        tile_cell_line(out=tmp_path / "d", **_kwargs(genome, chromosomes=["chr9"]))


def test_bad_bedpe_and_gene_table(genome: dict, tmp_path: Path) -> None:
    base = _kwargs(genome, chromosomes=["chr3"])
    bad = tmp_path / "bad.bedpe"
    bad.write_text("chr3\t0\t10000\tchr3\t90000\t100000\nchr3\t0\t10000\tchr3\n")
    with pytest.raises(InputError, match=r"bad\.bedpe line 2"):
        tile_cell_line(out=tmp_path / "x", **{**base, "loops": bad})
    outside = tmp_path / "outside.bedpe"
    outside.write_text("chr3\t0\t10000\tchr3\t2990000\t3000000\n")
    with pytest.raises(InputError, match=r"outside\.bedpe line 1: an anchor lies outside chr3"):
        tile_cell_line(out=tmp_path / "x", **{**base, "loops": outside})
    genes = tmp_path / "genes.tsv"
    genes.write_text("name\tchrom\ttss\nG1\tchr3\t50000\n")
    with pytest.raises(InputError) as error:
        tile_cell_line(out=tmp_path / "x", **{**base, "genes": genes})
    message = str(error.value)
    assert str(genes) in message and "gene_id, SIMA" in message
    assert "gene_id, chrom, tss, SIMA" in message
    assert not (tmp_path / "x").exists()


def test_chromosome_without_loops_and_bedpe_header(genome: dict, tmp_path: Path) -> None:
    bedpe = tmp_path / "one.bedpe"
    loop = genome["loops"].read_text().splitlines()
    chr3 = [line for line in loop if line.startswith("chr3\t")]
    bedpe.write_text("chr1\tx1\tx2\tchr2\ty1\ty2\n" + "\n".join(chr3[:3]) + "\n")
    manifest = tile_cell_line(
        out=tmp_path / "t", **_kwargs(genome, loops=bedpe, genes=None, chromosomes=["chr2", "chr3"])
    )
    assert manifest["counts"]["loops"]["val"] == 0 and manifest["counts"]["loops"]["test"] > 0
    assert manifest["counts"]["pretrain"]["val"] > 0


def test_leftover_tmp_is_cleaned(genome: dict, tmp_path: Path) -> None:
    out = tmp_path / "tiles"
    leftover = tmp_path / ".tiles.tmp"
    (leftover / "pretrain").mkdir(parents=True)
    (leftover / "pretrain" / "train-000.h5").write_bytes(b"half written")
    tile_cell_line(out=out, **_kwargs(genome, chromosomes=["chr3"], loops=None, genes=None))
    assert not leftover.exists()
    assert load_manifest(out)["chromosomes"] == ["chr3"]


def test_cli(genome: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli_tiles"
    args = ["tiles", "--cell-line", "SIMA", "--assembly", "sim1", "--hic", str(genome["cool"])]
    for assay in ("CTCF", "ATAC"):
        args += ["--track", f"{assay}={genome['tracks'][assay]}"]
    args += ["--loops", str(genome["loops"]), "--chromosomes", "chr2,chr3", "--split", "val=chr2"]
    args += ["--split", "test=chr3", "--window-bins", str(W), "--subbin-bp", str(SUBBIN)]
    args += ["--shard-size", "16", "--candidate-ratio", "1.5", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith(f"tiled SIMA into {out}: pretrain 0/")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["channels"] == ["CTCF", "ATAC"] and manifest["splits"]["test"] == ["chr3"]
    assert sorted(p.name for p in (out / "pretrain").glob("*.h5"))[0] == "test-000.h5"
    assert manifest["options"]["candidate_ratio"] == 1.5 and "loop_candidates" in manifest["kinds"]
    assert set(_index(out, "loop_candidates")["split"]) == {"val"}  # chr3 (test): none written
    bad = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "other"), "--chromosomes", "chr9"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ") and "chr9" in bad.stderr


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_chr21_region_split(tmp_path: Path) -> None:
    """Real GM12878 chr21 region (normalised, no weight column), gzipped genes, HiCCUPS loops."""
    out = tmp_path / "gm"
    manifest = tile_cell_line(
        cell_line="GM12878",
        assembly="hg19",
        hic=REALDATA / "hic/GM12878_chr21_28.0-30.3Mb_10kb_capped200.hg19.cool",
        weight=None,
        tracks={
            "CTCF": REALDATA / "tracks/GM12878_CTCF_chr21_28.0-30.3Mb.hg19.bw",
            "H3K27ac": REALDATA / "tracks/GM12878_H3K27ac_chr21_28.0-30.3Mb.hg19.bw",
        },
        loops=REALDATA / "loops/GM12878_Rao2014_HiCCUPS.hg19.bedpe",
        genes=REALDATA / "expression/genes_GM12878_K562_RoadmapRNA.tsv.gz",
        tss_column="TSS_hg19",
        expression_column="GM12878_log10_rpkm_p1",
        chromosomes=["chr21"],
        splits={"val": ["chr21:29100000-29700000"], "test": ["chr21:29700000-"]},
        window_bins=W,
        subbin_bp=SUBBIN,
        out=out,
        progress=False,
    )
    assert manifest["hic_scale"] == 1.0 and manifest["dropped"]["pretrain"]["sparse"] > 0
    for kind in ("pretrain", "tss"):
        index = _index(out, kind)
        lo, hi = index["start_x"], index["start_x"] + W * RES
        assert ((index["split"] == "test") == (lo >= 29_700_000)).all()
        val = index["split"] == "val"
        assert ((lo[val] >= 29_100_000) & (hi[val] <= 29_700_000)).all()
        assert val.any() or kind == "tss"  # the 600 kb val region holds pretrain windows
        assert (hi[index["split"] == "train"] <= 29_100_000).all()
    tss = _index(out, "tss")
    assert tss["gene_id"].str.startswith("ENSG").all() and tss["expression"].notna().all()


def test_tss_offset_and_strand_of_known_genes(genome: dict, tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "gene_id": ["MINUS", "PLUS", "NOSTRAND"],
            "chrom": ["chr1", "chr1", "chr1"],
            "tss": [1_234_567, 1_500_000, 1_809_999],
            "strand": ["-", "+", "."],
            "SIMA": [1.0, 2.0, 3.0],
        }
    )
    genes = tmp_path / "genes.tsv"
    table.to_csv(genes, sep="\t", index=False)
    out = tmp_path / "tiles"
    tile_cell_line(out=out, **_kwargs(genome, loops=None, genes=genes, kinds=["tss"]))
    index = _index(out, "tss").set_index("gene_id")
    assert index.loc["MINUS", ["bin_x", "tss_offset", "strand"]].tolist() == [123, 4_567, -1]
    assert index.loc["PLUS", ["bin_x", "tss_offset", "strand"]].tolist() == [150, 0, 1]
    assert index.loc["NOSTRAND", ["bin_x", "tss_offset", "strand"]].tolist() == [180, 9_999, 0]
    dataset = TileDataset(out, "tss", "train")
    items = {row.gene_id: dataset[k] for k, row in enumerate(dataset.index.itertuples())}
    minus = items["MINUS"]
    assert minus["tss_offset"].dtype == torch.int64 and minus["tss_offset"].item() == 4_567
    assert minus["strand"].item() == -1
    assert minus["tss_position"].item() == W // 2 * P + 4_567 // SUBBIN
    assert items["NOSTRAND"]["tss_position"].item() == W // 2 * P + 9_999 // SUBBIN
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["strand"].tolist() == dataset.index["strand"].tolist()


def test_tss_fields_in_shards_and_old_tiles_default_to_zero(
    tiles: tuple[Path, dict], tmp_path: Path
) -> None:
    out, manifest = tiles
    tss = _index(out, "tss")
    genes = pd.read_csv(manifest["inputs"]["genes"]["path"], sep="\t").set_index("gene_id")
    np.testing.assert_array_equal(tss["tss_offset"], genes.loc[tss["gene_id"], "tss"] % RES)
    sign = genes.loc[tss["gene_id"], "strand"].map({"+": 1, "-": -1}).to_numpy()
    np.testing.assert_array_equal(tss["strand"], sign)
    assert set(tss["strand"]) == {1, -1}
    row = tss.iloc[3]
    for key in ("tss_offset", "strand"):
        assert _read(out, "tss", row, key) == row[key]
    pretrain = TileDataset(out, "pretrain", "train")[0]
    assert (pretrain["tss_offset"].item(), pretrain["strand"].item()) == (0, 0)
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for shard in (old / "tss").glob("*.h5"):
        with h5py.File(shard, "a") as handle:
            del handle["tss_offset"], handle["strand"]
    item = TileDataset(old, "tss", "train")[0]
    assert (item["tss_offset"].item(), item["strand"].item()) == (0, 0)
    assert item["tss_position"].item() == W // 2 * P


# ----------------------------------------------------------------------------- loop candidates
CANDIDATE_RATIO = 2.0


@pytest.fixture(scope="module")
def candidates(genome: dict) -> tuple[Path, dict]:
    """The default kinds (pretrain, loops, loop_candidates, tss) with candidates turned on."""
    out = genome["root"] / "tiles_candidates"
    return out, tile_cell_line(out=out, **_kwargs(genome, candidate_ratio=CANDIDATE_RATIO))


def _cheb_to_loops(rows: pd.DataFrame, loops: pd.DataFrame) -> np.ndarray:
    """Chebyshev distance (bins) of each row's centre pixel to the nearest loop."""
    if len(loops) == 0:
        return np.full(len(rows), np.inf)
    cheb = np.maximum(
        np.abs(rows["bin_x"].to_numpy()[:, None] - loops["i"].to_numpy()[None]),
        np.abs(rows["bin_y"].to_numpy()[:, None] - loops["j"].to_numpy()[None]),
    )
    return cheb.min(axis=1)


def test_loop_candidates_splits_and_labels(
    genome: dict, tiles: tuple[Path, dict], candidates: tuple[Path, dict]
) -> None:
    out, manifest = candidates
    assert manifest["kinds"] == ["pretrain", "loops", "loop_candidates", "tss"]
    assert manifest["options"]["candidate_ratio"] == CANDIDATE_RATIO
    assert "loop_candidates" not in tiles[1]["kinds"]  # off by default
    assert tiles[1]["options"]["candidate_ratio"] == 0.0
    index = _index(out, "loop_candidates")
    assert list(index["sample"]) == list(range(len(index)))
    # train / val only: no test rows, nothing on the test chromosome, no test shard
    assert set(index["split"]) == {"train", "val"}
    assert "chr3" not in set(index["chrom"])
    assert (index["split"] == index["chrom"].map({"chr1": "train", "chr2": "val"})).all()
    assert not list((out / "loop_candidates").glob("test-*.h5"))
    counts = manifest["counts"]["loop_candidates"]
    assert counts.get("test", 0) == 0
    assert {s: n for s, n in counts.items() if n} == index["split"].value_counts().to_dict()
    dropped = manifest["dropped"]["loop_candidates"]
    assert dropped["test_split_not_written"] > 0 and dropped["near_loop"] > 0
    # labels: positives within 1 bin of a BEDPE loop, negatives beyond the exclusion radius
    positives = _positives(genome)
    exclusion = manifest["options"]["exclusion_bins"]
    assert exclusion == 2
    for chrom, rows in index.groupby("chrom"):
        dist = _cheb_to_loops(rows, positives[positives["chrom"] == chrom])
        label = rows["label"].to_numpy()
        assert set(label) <= {0, 1}
        assert (dist[label == 1] <= 1).all()
        assert (dist[label == 0] > exclusion).all()
    train = index[index["split"] == "train"]
    assert (train["label"] == 1).any() and (train["label"] == 0).any()
    assert not index.duplicated(["chrom", "bin_x", "bin_y"]).any()
    lo, hi = manifest["options"]["loop_min_bp"] // RES, manifest["options"]["loop_max_bp"] // RES
    assert index["distance_bins"].between(lo, hi).all()
    # at most candidate_ratio negatives per in-range loop of the chromosome
    span = positives["j"] - positives["i"]
    in_range = positives[(span >= lo) & (span <= hi)]
    for chrom, rows in index.groupby("chrom"):
        n_loops = int((in_range["chrom"] == chrom).sum())
        assert (rows["label"] == 0).sum() <= round(CANDIDATE_RATIO * n_loops)
    # shards agree with the index; the Dataset reads the kind
    for shard, rows in index.groupby("shard"):
        with h5py.File(out / "loop_candidates" / shard, "r") as handle:
            np.testing.assert_array_equal(handle["label"][:][rows["row"]], rows["label"])
            np.testing.assert_array_equal(handle["bins"][:][rows["row"], 1], rows["bin_y"])
    dataset = TileDataset(out, "loop_candidates", ["train", "val"])
    assert len(dataset) == len(index)
    item = dataset[len(dataset) - 1]
    assert item["label"].item() == index["label"].iloc[-1]
    assert item["hic"].shape == (1, W, W)


def test_loop_candidates_leave_loops_unchanged_and_are_deterministic(
    genome: dict, tiles: tuple[Path, dict], candidates: tuple[Path, dict]
) -> None:
    out, manifest = candidates
    base, base_manifest = tiles
    for kind in ("pretrain", "loops", "tss"):  # the other kinds are untouched by candidates
        pd.testing.assert_frame_equal(_index(out, kind), _index(base, kind))
        assert manifest["counts"][kind] == base_manifest["counts"][kind]
    for shard in (base / "loops").glob("*.h5"):
        with h5py.File(shard, "r") as x, h5py.File(out / "loops" / shard.name, "r") as y:
            np.testing.assert_array_equal(x["hic"][:], y["hic"][:])
            np.testing.assert_array_equal(x["label"][:], y["label"][:])
    # a second run (only the loop kinds) gives the same candidates, byte for byte
    again = genome["root"] / "tiles_candidates_again"
    second = tile_cell_line(
        out=again,
        **_kwargs(genome, candidate_ratio=CANDIDATE_RATIO, kinds=["loops", "loop_candidates"]),
    )
    assert second["counts"]["loop_candidates"] == manifest["counts"]["loop_candidates"]
    for kind in ("loops", "loop_candidates"):
        assert (again / kind / "index.tsv").read_bytes() == (out / kind / "index.tsv").read_bytes()
    files = sorted(p.name for p in (out / "loop_candidates").glob("*.h5"))
    assert files == sorted(p.name for p in (again / "loop_candidates").glob("*.h5"))
    for name in files:
        with (
            h5py.File(out / "loop_candidates" / name, "r") as x,
            h5py.File(again / "loop_candidates" / name, "r") as y,
        ):
            for key in ("hic", "tracks", "bins", "label"):
                np.testing.assert_array_equal(x[key][:], y[key][:])


def test_loop_candidates_config_errors(genome: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="candidate_ratio"):
        tile_cell_line(out=tmp_path / "a", **_kwargs(genome, candidate_ratio=-0.5))
    with pytest.raises(ConfigError, match="loop_candidates tiles need a loops BEDPE"):
        tile_cell_line(out=tmp_path / "b", **_kwargs(genome, loops=None, kinds=["loop_candidates"]))
    # candidates are a loops option: without a BEDPE, a positive ratio writes no candidate kind
    manifest = tile_cell_line(
        out=tmp_path / "c",
        **_kwargs(genome, loops=None, genes=None, chromosomes=["chr3"], candidate_ratio=1.0),
    )
    assert manifest["kinds"] == ["pretrain"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
