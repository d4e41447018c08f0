"""Config and sheet validation (hicmix.config): defaults, one-line errors, cross-sheet checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hicmix import config as hc
from hicmix.errors import ConfigError
from hicmix.transforms import HIC_TRANSFORMS, TRACK_TRANSFORMS

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
SCHEMAS = REPO / "workflow" / "schemas"

CELL_HEADER = ["cell_line", "assembly", "roles", "hic_source", "expression_column", "genes_source"]
CELL_ROWS = [
    ["SIMA", "sim1", "pretrain,finetune", "sim/SIMA/hic.mcool", "SIMA", "sim/genes.tsv"],
    ["SIMB", "sim1", "finetune", "sim/SIMB/hic.mcool", "SIMB", "sim/genes.tsv"],
]
CHANNELS = ["ATAC", "CTCF", "H3K27ac", "H3K4me3", "H3K27me3"]


def track_rows(cells=("SIMA", "SIMB"), channels=CHANNELS) -> list[list[str]]:
    return [[c, a, ".", f"sim/{c}/{a}.bw"] for c in cells for a in channels]


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


@pytest.fixture
def sheets(tmp_path):
    """Write the sheets; return a loader (cells, tracks, **config) -> (config, cells, tracks)."""

    def load(cells=None, tracks=None, cell_header=None, track_header=None, **overrides):
        write_tsv(tmp_path / "cells.tsv", cell_header or CELL_HEADER, cells or CELL_ROWS)
        write_tsv(
            tmp_path / "tracks.tsv",
            track_header or ["cell_line", "assay", "strand", "source"],
            tracks if tracks is not None else track_rows(),
        )
        config = hc.load_config(
            {"cell_lines": "cells.tsv", "tracks": "tracks.tsv", **overrides}, schemas=SCHEMAS
        )
        return (config, *hc.load_sheets(config, SCHEMAS, base_dir=tmp_path))

    return load


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- config


def test_defaults_fill_an_empty_config():
    config = hc.load_config({}, schemas=SCHEMAS)
    assert config["resolution"] == 10000
    assert config["window_bins"] == 50 and config["stride_bins"] == 10
    assert config["channels"] == CHANNELS
    assert config["splits"] == {"val": ["chr2"], "test": ["chr3", "chr6"]}
    assert config["balance"]["tol"] == 1e-5 and config["balance"]["mode"] == "auto"
    assert config["loops"]["negative_ratio"] == 1
    assert config["tiles"] == {"shard_size": 1024, "min_nonzero": 0.1}
    assert config["pretrain"]["enabled"] is False and config["pretrain"]["size"] == "tiny"
    assert config["chromosomes"] is None
    assert config["simulate"]["enabled"] is False


def test_nested_defaults_fill_a_partial_section():
    config = hc.load_config({"balance": {"mode": "ice"}, "splits": {"val": []}}, schemas=SCHEMAS)
    assert config["balance"]["mode"] == "ice"
    assert config["balance"]["ignore_diags"] == 2
    assert config["splits"] == {"val": [], "test": ["chr3", "chr6"]}


def test_shipped_config_documents_every_key():
    """Every schema key appears in config/config.yaml (set, or commented out with its meaning)."""
    text = (REPO / "config/config.yaml").read_text()
    schema = hc.load_schema("config", SCHEMAS)
    for key, spec in schema["properties"].items():
        if key == "assembly":  # only for portal configs whose rows share one assembly
            continue
        assert re.search(rf"^#? ?{key}:", text, re.M), key
        for sub in spec.get("properties", {}):
            assert re.search(rf"^\s+{sub}:", text, re.M), f"{key}.{sub}"


def test_shipped_config_values_are_the_schema_defaults():
    """config.yaml restates the defaults (except that it switches the simulation on)."""
    shipped = hc.load_config(REPO / "config/config.yaml", schemas=SCHEMAS)
    defaults = hc.load_config({}, schemas=SCHEMAS)
    defaults["simulate"]["enabled"] = True
    defaults["pretrain"]["epochs"] = 1  # a run-config key (validated by hicmix pretrain)
    assert shipped == defaults


def test_layered_configs_merge_like_snakemake(tmp_path):
    (tmp_path / "extra.yaml").write_text("balance: {mode: keep}\nsplits: {test: [chr9]}\n")
    config = hc.load_config(REPO / "config/config.yaml", tmp_path / "extra.yaml", schemas=SCHEMAS)
    assert config["balance"]["mode"] == "keep" and config["balance"]["mad_max"] == 5
    assert config["splits"] == {"val": ["chr2"], "test": ["chr9"]}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"resolutoin": 5000}, "config key (top level): unknown key 'resolutoin'; known keys are"),
        ({"balance": {"mode": "kr"}}, "config key balance.mode: 'kr' is not allowed; use one of"),
        ({"channels": ["CTCF", "ctcf"]}, "config key channels.1: 'ctcf' is not valid"),
        ({"hic_transform": "log"}, "config key hic_transform: 'log' is not allowed"),
        ({"window_bins": 0}, "config key window_bins: 0 is less than the minimum of 1"),
        ({"track_subbin_bp": 300}, "config key resolution: resolution 10000 is not a multiple"),
        ({"splits": {"val": ["chr3"]}}, "config key splits: chr3 is in both val and test"),
        ({"qc": {"region": "chr1"}}, "config key qc.region: 'chr1' is not valid"),
    ],
)
def test_bad_config_is_one_line(config, expected):
    assert error_of(hc.load_config, config, schemas=SCHEMAS).startswith(expected)


def test_missing_and_invalid_config_files(tmp_path):
    assert "does not exist" in error_of(hc.load_config, tmp_path / "nope.yaml", schemas=SCHEMAS)
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    assert "is not valid YAML" in error_of(hc.load_config, tmp_path / "bad.yaml", schemas=SCHEMAS)


def test_schema_enums_match_the_registries():
    config_schema = hc.load_schema("config", SCHEMAS)["properties"]
    assert tuple(config_schema["hic_transform"]["enum"]) == HIC_TRANSFORMS
    assert tuple(config_schema["track_transform"]["enum"]) == TRACK_TRANSFORMS
    assert tuple(hc.load_schema("tracks", SCHEMAS)["properties"]["assay"]["enum"]) == (
        hc.KNOWN_ASSAYS
    )
    channel = hc.load_schema("config", SCHEMAS)["$defs"]["channel"]["pattern"]
    row_channels = hc.load_schema("cell_lines", SCHEMAS)["properties"]["channels"]["pattern"]
    for assay in hc.KNOWN_ASSAYS:  # the channel patterns list the same assays
        assert re.fullmatch(channel, f"{assay}_plus") and re.fullmatch(channel, assay)
        assert re.fullmatch(row_channels, f"CTCF,{assay},{assay}_minus")
    assert not re.fullmatch(channel, "Ctcf") and not re.fullmatch(row_channels, "CTCF,ctcf")


def test_schema_dir_is_found_from_the_package():
    assert hc.schema_dir() == SCHEMAS
    assert "cannot find" in error_of(hc.schema_dir, "/nonexistent")


# ----------------------------------------------------------------------------- sheets


def test_sheets_load_with_defaults(sheets):
    _, cells, tracks = sheets()
    assert list(cells.index) == ["SIMA", "SIMB"]
    assert cells.loc["SIMA", "gene_id_column"] == "gene_id"
    assert cells.loc["SIMA", "tss_column"] == "tss"
    assert cells.loc["SIMB", "loops_source"] == ""
    assert set(tracks["strand"]) == {"."}
    assert list(tracks["track"][:2]) == ["ATAC", "CTCF"]
    assert list(tracks["line"][:2]) == [2, 3]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c, t: t[3].__setitem__(1, "H3K27AC"),
            "tracks.tsv row 4 (line 5), column assay: 'H3K27AC' is not a known assay; use one of "
            "ATAC, DNase, CTCF,",
        ),
        (
            lambda c, t: t[0].__setitem__(2, "+-"),
            "tracks.tsv row 1 (line 2), column strand: '+-' is not a known strand; "
            "use one of +, -, .",
        ),
        (
            lambda c, t: t[1].__setitem__(0, "SIMC"),
            "tracks.tsv row 2 (line 3), column cell_line: 'SIMC' is not in cells.tsv; add a row",
        ),
        (
            lambda c, t: t.append(["SIMA", "CTCF", ".", "other.bw"]),
            "tracks.tsv row 11 (line 12): cell line SIMA already has a track for assay CTCF "
            "strand . (row 2); remove one of the two rows",
        ),
        (
            lambda c, t: t.__delitem__(8),
            "tracks.tsv: cell line SIMB has no track for channel H3K4me3; add a row "
            "(cell_line=SIMB, assay=H3K4me3, strand=., source=...)",
        ),
        (
            lambda c, t: c.append(["SIMA", "sim1", "finetune", "x.cool", "SIMA", "g.tsv"]),
            "cells.tsv row 3 (line 4), column cell_line: 'SIMA' is listed twice (first at row 1)",
        ),
        (
            lambda c, t: c[1].__setitem__(2, "train"),
            "cells.tsv row 2 (line 3), column roles: 'train' is not a valid roles: comma-separated",
        ),
        (
            lambda c, t: c[0].__setitem__(0, "SIM A"),
            "cells.tsv row 1 (line 2), column cell_line: 'SIM A' is not a valid cell line name",
        ),
        (
            lambda c, t: c[0].__setitem__(3, ""),
            "cells.tsv row 1 (line 2), column roles: pretrain needs Hi-C but hic_source is empty; "
            "give hic_source, or set roles to predict for a tracks-only row",
        ),
        (
            lambda c, t: c[0].__setitem__(3, "sim/SIMA/hic.h5"),
            "cells.tsv row 1 (line 2), column hic_source: cannot tell the format of "
            "'sim/SIMA/hic.h5'; name a .mcool, .cool or .hic file or set hic_format",
        ),
        (
            lambda c, t: c[0].__setitem__(3, "ENCFF12ABC"),
            "cells.tsv row 1 (line 2), column hic_source: 'ENCFF12ABC' looks like an ENCODE "
            "accession",
        ),
        (
            lambda c, t: t[0].__setitem__(3, "4DNFIabc"),
            "tracks.tsv row 1 (line 2), column source: '4DNFIabc' looks like a 4DN accession",
        ),
        (
            lambda c, t: c[0].__setitem__(4, ""),
            "cells.tsv row 1 (line 2), column expression_column: empty, but genes_source is given",
        ),
        (
            lambda c, t: c[0].__setitem__(1, ""),
            "cells.tsv row 1 (line 2), column assembly: empty; name the genome assembly",
        ),
    ],
)
def test_bad_rows_are_one_line(sheets, edit, expected):
    cells, tracks = [list(r) for r in CELL_ROWS], track_rows()
    edit(cells, tracks)
    message = error_of(sheets, cells, tracks)
    assert message.startswith(expected), message


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("hic_md5", "abc", "column hic_md5: 'abc' is not a valid md5: 32 hexadecimal digits"),
        ("hic_weight_mode", "kr", "column hic_weight_mode: 'kr' is not a known balancing mode"),
        ("resolution", "10kb", "column resolution: '10kb' is not a valid resolution"),
        ("channels", "CTCF,ctcf", "column channels: 'ctcf' is not a known channel; use assays"),
        ("track_subbin_bp", "300", "column track_subbin_bp: resolution 10000 is not a multiple"),
        ("qc_region", "chr1:5", "column qc_region: 'chr1:5' is not a valid QC region"),
    ],
)
def test_bad_optional_cells_are_one_line(sheets, column, value, expected):
    cells = [[*row, value if i == 0 else ""] for i, row in enumerate(CELL_ROWS)]
    message = error_of(sheets, cells, cell_header=[*CELL_HEADER, column])
    assert message.startswith(f"cells.tsv row 1 (line 2), {expected}"), message


def test_header_problems(sheets, tmp_path):
    assert error_of(sheets, cell_header=[*CELL_HEADER[:-1], "gene_source"]).startswith(
        "cells.tsv: unknown column 'gene_source'; known columns are cell_line, assembly"
    )
    header = ["cell_line", "strand", "source"]
    assert error_of(sheets, tracks=[["SIMA", ".", "x.bw"]], track_header=header).startswith(
        "tracks.tsv: the header lacks the required column 'assay'"
    )
    (tmp_path / "spaces.tsv").write_text("cell_line assay source\nSIMA CTCF x.bw\n")
    config = hc.load_config({"cell_lines": "cells.tsv", "tracks": "spaces.tsv"}, schemas=SCHEMAS)
    assert "separate columns with tabs, not spaces" in error_of(
        hc.load_sheets, config, SCHEMAS, base_dir=tmp_path
    )
    config = hc.load_config({"cell_lines": "missing.tsv"}, schemas=SCHEMAS)
    assert error_of(hc.load_sheets, config, SCHEMAS, base_dir=tmp_path).startswith(
        "sheet missing.tsv does not exist"
    )


def test_too_many_fields(sheets):
    tracks = track_rows()
    tracks[2] = [*tracks[2], "extra", "more"]
    assert error_of(sheets, tracks=tracks).startswith(
        "tracks.tsv row 3 (line 4) has 6 fields but the header has 4"
    )


def test_comments_and_blank_lines_keep_file_line_numbers(tmp_path):
    text = (
        "# a comment\ncell_line\tassay\tstrand\tsource\n\n"
        "SIMA\tCTCF\t.\ta.bw\n# x\nSIMA\tctcf\t.\tb.bw\n"
    )
    (tmp_path / "tracks.tsv").write_text(text)
    write_tsv(tmp_path / "cells.tsv", CELL_HEADER, CELL_ROWS)
    config = hc.load_config({"cell_lines": "cells.tsv", "tracks": "tracks.tsv"}, schemas=SCHEMAS)
    assert error_of(hc.load_sheets, config, SCHEMAS, base_dir=tmp_path).startswith(
        "tracks.tsv row 2 (line 6), column assay: 'ctcf' is not a known assay"
    )


def test_channels_only_need_tracks_of_their_cell_line(sheets):
    """A row's channels override the global list, so SIMB may lack the other three tracks."""
    cells = [[*CELL_ROWS[0], ""], [*CELL_ROWS[1], "CTCF,ATAC"]]
    tracks = track_rows(("SIMA",)) + track_rows(("SIMB",), ("CTCF", "ATAC"))
    config, cell_df, track_df = sheets(cells, tracks, cell_header=[*CELL_HEADER, "channels"])
    picked = hc.channel_tracks(config, cell_df, track_df, "SIMB")
    assert [t.track for t in picked] == ["CTCF", "ATAC"]  # channel order, not sheet order


def test_stranded_channel_expands_to_both_strands(sheets):
    tracks = [
        *track_rows(),
        ["SIMA", "CAGE", "-", "cage_minus.bw"],
        ["SIMA", "CAGE", "+", "cage_plus.bw"],
    ]
    cells = [[*CELL_ROWS[0], "CTCF,CAGE"], [*CELL_ROWS[1], ""]]
    config, cell_df, track_df = sheets(cells, tracks, cell_header=[*CELL_HEADER, "channels"])
    picked = hc.channel_tracks(config, cell_df, track_df, "SIMA")
    assert [(t.track, t.source) for t in picked] == [
        ("CTCF", "sim/SIMA/CTCF.bw"),
        ("CAGE_plus", "cage_plus.bw"),
        ("CAGE_minus", "cage_minus.bw"),
    ]
    files = hc.downloads(config, cell_df, track_df, "SIMA")
    assert "tracks/CAGE_plus.bw" in files and "tracks/CAGE_minus.bw" in files
    message = error_of(sheets, [[*CELL_ROWS[0], "CAGE_plus"], [*CELL_ROWS[1], "CAGE_minus"]],
                       tracks, cell_header=[*CELL_HEADER, "channels"])  # fmt: skip
    assert message.endswith("add a row (cell_line=SIMB, assay=CAGE, strand=-, source=...)")


def test_cell_settings_override_the_config(sheets):
    header = [*CELL_HEADER, "resolution", "track_subbin_bp", "hic_weight_mode", "chromosomes"]
    cells = [[*CELL_ROWS[0], "25000", "500", "keep", "chr20"], [*CELL_ROWS[1], "", "", "", ""]]
    config, cell_df, _ = sheets(cells, cell_header=header, chromosomes=["chr1", "chr2"])
    a = hc.cell_settings(config, cell_df, "SIMA")
    b = hc.cell_settings(config, cell_df, "SIMB")
    assert (a["resolution"], a["track_subbin_bp"], a["weight_mode"]) == (25000, 500, "keep")
    assert a["chromosomes"] == ["chr20"] and b["chromosomes"] == ["chr1", "chr2"]
    assert (b["resolution"], b["track_subbin_bp"], b["weight_mode"]) == (10000, 200, "auto")
    assert a["roles"] == ["pretrain", "finetune"]
    assert hc.cell_lines_with_role(cell_df, "pretrain") == ["SIMA"]


def test_pretrain_needs_a_pretrain_cell_line(sheets):
    cells = [[*row[:2], "finetune", *row[3:]] for row in CELL_ROWS]
    sheets(cells)  # fine while pre-training is off
    assert error_of(sheets, cells, pretrain={"enabled": True}).startswith(
        "cells.tsv: pretrain.enabled is true but no cell line has the role pretrain"
    )


def tracks_only_sheets(roles: str = "predict", extra: str = "") -> tuple[list, list, list]:
    """Cell header and rows with a third, tracks-only row SIMC (extra: its hic_md5), and tracks."""
    header = [*CELL_HEADER, "hic_md5"]
    cells = [[*row, ""] for row in CELL_ROWS] + [["SIMC", "sim1", roles, "", "", "", extra]]
    return header, cells, track_rows(("SIMA", "SIMB", "SIMC"))


def test_tracks_only_row_is_accepted(sheets):
    header, cells, tracks = tracks_only_sheets()
    config, cell_df, track_df = sheets(cells, tracks, cell_header=header)
    assert hc.tracks_only_cell_lines(cell_df) == ["SIMC"]
    assert hc.hic_cell_lines(cell_df) == ["SIMA", "SIMB"]
    assert hc.cell_lines_with_role(cell_df, "predict") == ["SIMC"]
    assert hc.cell_lines_with_role(cell_df, "finetune") == ["SIMA", "SIMB"]
    files = hc.downloads(config, cell_df, track_df, "SIMC")
    assert sorted(files) == sorted(f"tracks/{a}.bw" for a in CHANNELS)  # no Hi-C download
    assert files["tracks/CTCF.bw"] == ("sim/SIMC/CTCF.bw", "")
    assert hc.cell_settings(config, cell_df, "SIMC")["roles"] == ["predict"]


@pytest.mark.parametrize(
    ("roles", "extra", "expected"),
    [
        (
            "pretrain",
            "",
            "column roles: pretrain needs Hi-C but hic_source is empty; give hic_source, or set "
            "roles to predict for a tracks-only row",
        ),
        ("finetune", "", "column roles: finetune needs Hi-C but hic_source is empty"),
        ("pretrain,finetune", "", "column roles: pretrain needs Hi-C"),
        ("predict,finetune", "", "column roles: 'predict,finetune' is not a valid roles"),
        (
            "predict",
            "0123456789abcdef0123456789abcdef",
            "column hic_md5: set but hic_source is empty; clear hic_md5 or give hic_source",
        ),
    ],
)
def test_tracks_only_row_needs_role_predict(sheets, roles, extra, expected):
    header, cells, tracks = tracks_only_sheets(roles, extra)
    message = error_of(sheets, cells, tracks, cell_header=header)
    assert message.startswith(f"cells.tsv row 3 (line 4), {expected}"), message


def test_role_predict_needs_an_empty_hic_source(sheets):
    cells = [list(row) for row in CELL_ROWS]
    cells[1][2] = "predict"
    assert error_of(sheets, cells) == (
        "cells.tsv row 2 (line 3), column roles: predict is for tracks-only rows but hic_source "
        "is given; use pretrain and/or finetune, or clear hic_source"
    )


def test_download_names_and_sources(sheets):
    header = [*CELL_HEADER, "loops_source", "hic_url", "hic_md5"]
    md5 = "0123456789abcdef0123456789abcdef"
    cells = [
        [*CELL_ROWS[0], "ENCFF780PGS", "", ""],
        [
            *CELL_ROWS[1][:3],
            "4DNFIXP4QG5B",
            "SIMB",
            "https://x.org/genes.tsv.gz?download=1",
            "file:///data/loops.bedpe",
            "https://mirror/4DNFIXP4QG5B.hic",
            md5,
        ],
    ]
    config, cell_df, track_df = sheets(cells, cell_header=header)
    a = hc.downloads(config, cell_df, track_df, "SIMA")
    assert a["hic.mcool"] == ("sim/SIMA/hic.mcool", "")
    assert a["loops.bedpe.gz"] == ("ENCFF780PGS", "")  # portals serve BEDPE gzipped
    assert a["genes.tsv"] == ("sim/genes.tsv", "")
    b = hc.downloads(config, cell_df, track_df, "SIMB")
    assert b["hic.hic"] == ("https://mirror/4DNFIXP4QG5B.hic", md5)  # resolved URL wins
    assert "loops.bedpe" in b and "genes.tsv.gz" in b
    assert len([name for name in b if name.startswith("tracks/")]) == len(CHANNELS)


def test_resolved_track_columns_are_used(sheets):
    """Sheets rewritten by hicmix resolve-sources (url, md5, size) load; the URL is fetched."""
    tracks = [[*row, "", "", ""] for row in track_rows()]
    tracks[1][4:] = ["https://e/CTCF.bigWig", "0123456789abcdef0123456789abcdef", "1234"]
    header = ["cell_line", "assay", "strand", "source", "url", "md5", "size"]
    config, cells, track_df = sheets(tracks=tracks, track_header=header)
    files = hc.downloads(config, cells, track_df, "SIMA")
    assert files["tracks/CTCF.bw"] == ("https://e/CTCF.bigWig", "0123456789abcdef0123456789abcdef")
    assert files["tracks/ATAC.bw"] == ("sim/SIMA/ATAC.bw", "")


@pytest.mark.parametrize(
    ("source", "kind", "local", "fmt"),
    [
        ("ENCFF318GOM", "encode", None, "hic"),
        ("4DNFIXP4QG5B", "4dn", None, "mcool"),
        ("https://h/a.mcool::resolutions/5000", "url", None, None),
        ("https://h/a.cool?x=1", "url", None, "cool"),
        ("file:///abs/a.hic", "file", "/abs/a.hic", "hic"),
        ("../shared/x.MCOOL", "local", "../shared/x.MCOOL", "mcool"),
    ],
)
def test_source_kinds(source, kind, local, fmt):
    assert hc.source_kind(source) == kind
    assert hc.local_path(source) == local
    assert hc.hic_format(source) == fmt
    assert hc.hic_format(source, "cool") == "cool"


def test_regex_alternatives_match_exactly():
    pattern = hc.regex_alternatives(["SIMA", "SIMA_2", "K562"])
    assert re.fullmatch(pattern, "SIMA_2") and re.fullmatch(pattern, "K562")
    assert not re.fullmatch(pattern, "SIMB")


# ----------------------------------------------------------------------------- shipped configs


def test_default_config_and_sheets_load():
    config = hc.load_config(REPO / "config/config.yaml", schemas=SCHEMAS)
    cells, tracks = hc.load_sheets(config, SCHEMAS, base_dir=REPO)
    assert list(cells.index) == ["SIMA", "SIMB"]
    for cell in cells.index:
        files = hc.downloads(config, cells, tracks, cell)
        assert sorted(files) == sorted(
            ["hic.mcool", "loops.bedpe", "genes.tsv"] + [f"tracks/{c}.bw" for c in CHANNELS]
        )
        assert all(src.startswith("resources/simulated/") for src, _ in files.values())


def test_realdata_config_loads():
    config = hc.load_config(
        REPO / "config/config.yaml", REPO / "config/realdata.yaml", schemas=SCHEMAS
    )
    cells, tracks = hc.load_sheets(config, SCHEMAS, base_dir=REPO)
    assert config["simulate"]["enabled"] is False
    chr20 = hc.cell_settings(config, cells, "GM12878")
    assert (chr20["resolution"], chr20["track_subbin_bp"], chr20["weight_mode"]) == (
        25000,
        500,
        "keep",
    )
    assert [t.track for t in hc.channel_tracks(config, cells, tracks, "GM12878")] == [
        "CTCF", "RAD21", "SMC3", "ZNF143", "YY1", "P300", "POL2", "PU1",
    ]  # fmt: skip
    chr21 = hc.cell_settings(config, cells, "GM12878_chr21")
    assert (chr21["resolution"], chr21["weight_mode"], chr21["channels"]) == (
        10000,
        "none",
        ["CTCF", "H3K27ac"],
    )
    assert chr21["tss_column"] == "TSS_hg19"
    assert "chr20:37825000-" in config["splits"]["test"]


@pytest.mark.realdata
@pytest.mark.skipif(not REALDATA.exists(), reason="needs ../shared/data/realdata_v1")
def test_realdata_sources_exist():
    config = hc.load_config(
        REPO / "config/config.yaml", REPO / "config/realdata.yaml", schemas=SCHEMAS
    )
    cells, tracks = hc.load_sheets(config, SCHEMAS, base_dir=REPO)
    for cell in cells.index:
        for source, _ in hc.downloads(config, cells, tracks, cell).values():
            assert (REPO / source).is_file(), source


def test_encode_4dn_config_loads():
    path = REPO / "config/encode_4dn.yaml"
    if not path.exists():
        pytest.skip("config/encode_4dn.yaml not written yet")
    config = hc.load_config(REPO / "config/config.yaml", path, schemas=SCHEMAS)
    cells, tracks = hc.load_sheets(config, SCHEMAS, base_dir=REPO)
    assert len(cells) >= 2
    for cell in cells.index:
        files = hc.downloads(config, cells, tracks, cell)
        assert any(name.startswith("hic.") for name in files)
        assert len([n for n in files if n.startswith("tracks/")]) >= len(config["channels"])


def test_every_shipped_sheet_is_documented():
    """config/README.md names every column of both sheet schemas."""
    readme = (REPO / "config/README.md").read_text()
    for name in ("cell_lines", "tracks"):
        for column in hc.load_schema(name, SCHEMAS)["properties"]:
            assert f"`{column}`" in readme, column


def test_yaml_schemas_are_draft_2020_12():
    for name in hc.SCHEMA_FILES:
        schema = yaml.safe_load((SCHEMAS / hc.SCHEMA_FILES[name]).read_text())
        assert schema["$schema"].endswith("2020-12/schema")
