"""Chromosome names, chrom.sizes, assembly checks and the train/val/test split."""

from __future__ import annotations

from pathlib import Path

import pytest

from hicmix.errors import ConfigError, InputError
from hicmix.genome import (
    SplitSpec,
    assembly_chromsizes,
    check_chromsizes,
    normalize_chrom,
    read_chromsizes,
)

REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1", "chr1"),
        ("chr1", "chr1"),
        ("22", "chr22"),
        ("X", "chrX"),
        ("x", "chrX"),
        ("chrY", "chrY"),
        ("MT", "chrM"),
        ("M", "chrM"),
        ("chrMT", "chrM"),
        ("chrM", "chrM"),
        (" 7 ", "chr7"),
        ("GL000192.1", "GL000192.1"),
        ("chr1_gl000191_random", "chr1_gl000191_random"),
    ],
)
def test_normalize_chrom(name: str, expected: str) -> None:
    assert normalize_chrom(name) == expected


def test_read_chromsizes_normalises_names(tmp_path: Path) -> None:
    path = tmp_path / "g.chrom.sizes"
    path.write_text("# comment\n1\t1000\nX\t500\n\nMT\t16\n")
    assert read_chromsizes(path) == {"chr1": 1000, "chrX": 500, "chrM": 16}


def test_read_chromsizes_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_chromsizes(tmp_path / "absent.sizes")
    bad = tmp_path / "bad.sizes"
    bad.write_text("chr1\t1000\nchr2 many\n")
    with pytest.raises(InputError, match=r"bad.sizes line 2"):
        read_chromsizes(bad)
    clash = tmp_path / "clash.sizes"
    clash.write_text("1\t10\nchr1\t10\n")
    with pytest.raises(InputError, match="both mean 'chr1'"):
        read_chromsizes(clash)


def test_assembly_chromsizes_offline() -> None:
    hg19 = assembly_chromsizes("hg19")
    hg38 = assembly_chromsizes("hg38")
    assert hg19 is not None and hg38 is not None
    assert hg19["chr20"] == 63_025_520
    assert hg38["chr20"] == 64_444_167
    assert assembly_chromsizes("sim1") is None


def test_check_chromsizes_assembly_mismatch_names_both_files() -> None:
    ref = {"chr20": 63_025_520, "chr21": 48_129_895}
    other = {"chr20": 64_444_167, "chr21": 46_709_983}
    with pytest.raises(InputError) as info:
        check_chromsizes(ref, other, "hic.hg19.cool", "ctcf.hg38.bw", ["chr20"])
    message = str(info.value)
    assert "hic.hg19.cool" in message and "ctcf.hg38.bw" in message
    assert "chr20" in message and "63,025,520" in message and "64,444,167" in message
    assert "use files of the same assembly" in message
    assert "\n" not in message


def test_check_chromsizes_missing_chromosome() -> None:
    ref = {"chr1": 100, "chr2": 50}
    other = {f"chr{i}": 100 for i in range(3, 12)}
    with pytest.raises(InputError) as info:
        check_chromsizes(ref, other, "a.cool", "b.bw", ["1"])
    message = str(info.value)
    assert message.startswith("b.bw: chromosome chr1 not found")
    assert "chr3, chr4" in message and "(9 in all)" in message
    check_chromsizes(ref, {"chr1": 100, "chr2": 50, "chr9": 7}, "a", "b")  # equal: no error
    with pytest.raises(InputError, match=r"^a: chromosome chr9"):
        check_chromsizes(ref, other, "a", "b", ["chr9"])


@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_chromsizes_match_bioframe() -> None:
    hg19 = read_chromsizes(REALDATA / "annotation/hg19.chrom.sizes")
    check_chromsizes(hg19, assembly_chromsizes("hg19"), "hg19.chrom.sizes", "bioframe hg19")
    with pytest.raises(InputError, match="same assembly"):
        check_chromsizes(hg19, assembly_chromsizes("hg38"), "hg19.chrom.sizes", "bioframe hg38")


def test_split_whole_chromosomes() -> None:
    spec = SplitSpec.from_mapping({"val": ["chr2"], "test": "3, chr6"})
    assert spec.split_of("chr1", 0, 100) == "train"
    assert spec.split_of("2", 5_000, 9_000) == "val"
    assert spec.split_of("chr3", 0, 1) == "test"
    assert spec.split_of("chr6", 10**9, 10**9 + 5) == "test"
    assert spec.to_mapping() == {"val": ["chr2"], "test": ["chr3", "chr6"]}
    assert spec.chromosomes("test") == ["chr3", "chr6"]


def test_split_regions() -> None:
    spec = SplitSpec.from_mapping(
        {"val": ["chr20:1,000-2,000"], "test": ["chr3", "chr20:37825000-"]}
    )
    assert spec.split_of("chr20", 0, 1000) == "train"  # half-open: ends where val starts
    assert spec.split_of("chr20", 1000, 2000) == "val"
    assert spec.split_of("chr20", 1500, 2500) is None  # val + train
    assert spec.split_of("chr20", 2000, 37_825_000) == "train"
    assert spec.split_of("chr20", 37_824_000, 37_826_000) is None  # train + test
    assert spec.split_of("chr20", 60_000_000, 60_001_000) == "test"
    assert spec.split_of("chr21", 60_000_000, 60_001_000) == "train"
    assert spec.to_mapping() == {"val": ["chr20:1000-2000"], "test": ["chr3", "chr20:37825000-"]}
    assert SplitSpec.from_mapping(spec.to_mapping()) == spec


def test_split_adjacent_regions_of_one_split_cover_an_interval() -> None:
    spec = SplitSpec.from_mapping({"val": ["chr1:0-100", "chr1:100-200"], "test": []})
    assert spec.split_of("chr1", 50, 150) == "val"
    assert spec.split_of("chr1", 150, 250) is None


def test_split_validation() -> None:
    with pytest.raises(ConfigError, match="overlaps"):
        SplitSpec.from_mapping({"val": ["chr2"], "test": ["chr2:100-200"]})
    with pytest.raises(ConfigError, match="overlaps"):
        SplitSpec.from_mapping({"val": ["chr2:0-150"], "test": ["chr2:100-"]})
    SplitSpec.from_mapping({"val": ["chr2:0-100"], "test": ["chr2:100-"]})  # adjacent is fine
    with pytest.raises(ConfigError, match="ends before it starts"):
        SplitSpec.from_mapping({"val": ["chr2:200-100"]})
    with pytest.raises(ConfigError, match="not a chromosome or a region"):
        SplitSpec.from_mapping({"val": ["chr2:abc-"]})
    with pytest.raises(ConfigError, match="unknown split"):
        SplitSpec.from_mapping({"valid": ["chr2"]})
    with pytest.raises(ConfigError, match="train cannot be listed"):
        SplitSpec.from_mapping({"train": ["chr1"]})
    assert SplitSpec.from_mapping(None).split_of("chr1", 0, 10) == "train"
