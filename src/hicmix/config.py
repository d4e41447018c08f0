"""Load and validate the workflow config and its two sheets (cell lines, tracks).

The JSON Schemas in ``workflow/schemas`` are the single description of every key, column and
default; this module applies them (filling defaults) and adds the checks a schema cannot express:
duplicate rows, cross-sheet references, one track per channel. Every problem is one
:class:`ConfigError` line naming the sheet, the row (and file line), the column, and the fix.

The Snakefile calls :func:`validate_config` and :func:`load_sheets`; the helpers after them
(:func:`cell_settings`, :func:`channel_tracks`, :func:`downloads`) serve the rules' input functions.
"""

from __future__ import annotations

import copy
import csv
import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from jsonschema import Draft202012Validator, validators

from hicmix.errors import ConfigError

KNOWN_ASSAYS: tuple[str, ...] = (
    "ATAC", "DNase", "CTCF", "H3K27ac", "H3K4me3", "H3K4me1", "H3K27me3", "H3K36me3", "H3K9me3",
    "CAGE", "RAD21", "SMC3", "ZNF143", "YY1", "P300", "POL2", "PU1",
)  # fmt: skip
STRAND_SUFFIX = {"+": "_plus", "-": "_minus", ".": ""}
HIC_FORMATS = ("mcool", "cool", "hic")
#: sheet roles that train on Hi-C tiles (a tracks-only row has role predict instead)
HIC_ROLES = ("pretrain", "finetune")
ENCODE_ACCESSION = re.compile(r"^ENCFF[0-9]{3}[A-Z]{3}$")
FOURDN_ACCESSION = re.compile(r"^4DNFI[0-9A-Z]{7}$")
URL = re.compile(r"^(https?|file)://")
SCHEMA_FILES = {
    "config": "config.schema.yaml",
    "cell_lines": "cell_lines.schema.yaml",
    "tracks": "tracks.schema.yaml",
}


# --------------------------------------------------------------------------- schemas


def schema_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The JSON Schema folder: ``path`` if given, else the repository's ``workflow/schemas``.

    The repository copy is found next to the source tree (editable install) or under the current
    working directory (a run from the repository root).
    """
    candidates = (
        [Path(path)]
        if path is not None
        else [
            Path(__file__).resolve().parents[2] / "workflow" / "schemas",
            Path.cwd() / "workflow" / "schemas",
        ]
    )
    for candidate in candidates:
        if (candidate / SCHEMA_FILES["config"]).is_file():
            return candidate
    raise ConfigError(
        f"cannot find {SCHEMA_FILES['config']} in {', '.join(map(str, candidates))}; "
        "run from the hicmix repository root or pass the workflow/schemas folder"
    )


def load_schema(name: str, schemas: str | os.PathLike[str] | None = None) -> dict:
    """Read one schema (``config``, ``cell_lines`` or ``tracks``) from :func:`schema_dir`."""
    path = schema_dir(schemas) / SCHEMA_FILES[name]
    return copy.deepcopy(_read_schema(str(path), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _read_schema(path: str, mtime_ns: int) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _with_defaults(validator_class: type) -> type:
    """A validator class that fills in each property's ``default`` before validating it."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


DefaultingValidator = _with_defaults(Draft202012Validator)


# --------------------------------------------------------------------------- config


def _describe(error: Any, schema: dict) -> str:
    """One readable clause for a jsonschema error (without the location)."""
    value = error.instance
    if error.validator == "enum":
        return f"{value!r} is not allowed; use one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "additionalProperties":
        known = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(error.schema.get("properties", {})))
        return f"unknown key {', '.join(map(repr, extra))}; known keys are {known}"
    if error.validator == "required":
        return error.message
    if error.validator == "pattern":
        hint = error.schema.get("description", f"it must match {error.validator_value}")
        return f"{value!r} is not valid: {hint}"
    if error.validator == "oneOf":
        return f"{value!r} is not valid: {error.schema.get('description', 'see the schema')}"
    return f"{error.message}"


def validate_config(
    config: dict, schemas: str | os.PathLike[str] | None = None, name: str = "config"
) -> dict:
    """Validate ``config`` in place against the config schema, filling defaults; return it.

    Also checks what the schema cannot: the sub-bin divides the resolution, val/test are disjoint.
    """
    schema = load_schema("config", schemas)
    errors = sorted(DefaultingValidator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ConfigError(f"{name} key {where}: {_describe(error, schema)}")
    _check_geometry(config["resolution"], config["track_subbin_bp"], f"{name} key resolution")
    clash = set(config["splits"]["val"]) & set(config["splits"]["test"])
    if clash:
        raise ConfigError(
            f"{name} key splits: {', '.join(sorted(clash))} is in both val and test; "
            "give each held-out chromosome or region one split"
        )
    return config


def _check_geometry(resolution: int, subbin: int, where: str) -> None:
    if resolution % subbin:
        raise ConfigError(
            f"{where}: resolution {resolution} is not a multiple of track_subbin_bp {subbin}; "
            "choose a sub-bin that divides the resolution"
        )


def load_config(
    *configs: str | os.PathLike[str] | Mapping, schemas: str | os.PathLike[str] | None = None
) -> dict:
    """Read config YAMLs (or mappings), merge them left to right as Snakemake does with
    ``configfile:`` + ``--configfile``, and validate the result with defaults filled in."""
    merged: dict = {}
    names = []
    for config in configs:
        if isinstance(config, Mapping):
            data, name = copy.deepcopy(dict(config)), "config"
        else:
            data, name = _read_yaml(Path(config)), str(config)
        merge_config(merged, data)
        names.append(name)
    return validate_config(merged, schemas, name=" + ".join(names) or "config")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a config YAML")
    with open(path) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}; fix it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} is not a YAML mapping of keys to values")
    return data


def merge_config(base: dict, update: Mapping) -> dict:
    """Recursively merge ``update`` into ``base`` (nested mappings merge, other values replace)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# --------------------------------------------------------------------------- sheets


@dataclass(frozen=True)
class _Row:
    number: int  # 1-based data row
    line: int  # 1-based line of the file (header = line 1 unless comments precede it)
    values: dict[str, str]


def _where(sheet: str, row: _Row, column: str | None = None) -> str:
    text = f"{sheet} row {row.number} (line {row.line})"
    return f"{text}, column {column}" if column else text


def _read_tsv(path: Path, sheet: str) -> tuple[list[str], list[_Row]]:
    """Header and rows of a TSV; blank lines and lines starting with # are skipped."""
    if not path.is_file():
        raise ConfigError(f"sheet {sheet} does not exist; create it or fix its path in the config")
    header: list[str] | None = None
    rows: list[_Row] = []
    with open(path, newline="") as handle:
        for line_number, fields in enumerate(
            csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1
        ):
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            fields = [field.strip() for field in fields]
            if header is None:
                header = fields
                _check_header(header, sheet)
                continue
            if len(fields) > len(header):
                raise ConfigError(
                    f"{sheet} row {len(rows) + 1} (line {line_number}) has {len(fields)} fields "
                    f"but the header has {len(header)}; separate columns with single tabs"
                )
            values = {col: val for col, val in zip(header, fields, strict=False) if val != ""}
            rows.append(_Row(len(rows) + 1, line_number, values))
    if header is None:
        raise ConfigError(f"sheet {sheet} is empty; it needs a header line and one row per entry")
    return header, rows


def _check_header(header: list[str], sheet: str) -> None:
    if len(header) == 1 and " " in header[0]:
        raise ConfigError(
            f"{sheet}: the header has one column; separate columns with tabs, not spaces"
        )
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise ConfigError(f"{sheet}: column {column!r} appears twice in the header; keep one")
        seen.add(column)


def _validate_rows(rows: list[_Row], header: list[str], schema: dict, sheet: str) -> None:
    """Schema-check every row (filling defaults); the first problem is raised as one line."""
    properties = schema["properties"]
    unknown = [column for column in header if column not in properties]
    if unknown:
        raise ConfigError(
            f"{sheet}: unknown column {unknown[0]!r}; known columns are {', '.join(properties)}"
        )
    missing = [column for column in schema.get("required", []) if column not in header]
    if missing:
        raise ConfigError(
            f"{sheet}: the header lacks the required column {missing[0]!r}; "
            f"required columns are {', '.join(schema['required'])}"
        )
    validator = DefaultingValidator(schema)
    for row in rows:
        for error in validator.iter_errors(row.values):
            if error.validator == "required":
                column = error.message.split("'")[1]
                raise ConfigError(f"{_where(sheet, row)}, column {column}: empty; it is required")
            column = str(error.path[0]) if error.path else "?"
            raise ConfigError(f"{_where(sheet, row, column)}: {_row_message(error, properties)}")


def _row_message(error: Any, properties: dict) -> str:
    column = str(error.path[0]) if error.path else ""
    title = properties.get(column, {}).get("title", column)
    value = error.instance
    if error.validator == "enum":
        return f"{value!r} is not a known {title}; use one of {', '.join(error.validator_value)}"
    if column == "channels":
        bad = [name for name in value.split(",") if not _is_channel(name)]
        if bad:
            return (
                f"{bad[0]!r} is not a known channel; use assays from {', '.join(KNOWN_ASSAYS)} "
                "(optionally with _plus/_minus), separated by commas"
            )
    description = properties.get(column, {}).get("description", "see the schema")
    return f"{value!r} is not a valid {title}: {description}"


def _is_channel(name: str) -> bool:
    return re.sub(r"_(plus|minus)$", "", name) in KNOWN_ASSAYS


def _frame(rows: list[_Row], schema: dict) -> pd.DataFrame:
    columns = list(schema["properties"])
    records = [
        {**{c: "" for c in columns}, **row.values, "row": row.number, "line": row.line}
        for row in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=[*columns, "row", "line"])
    return frame.astype({c: str for c in columns})


def load_sheets(
    config: Mapping,
    schemas: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read, validate and cross-check the cell-line and track sheets named in a validated config.

    Returns ``(cell_lines, tracks)`` as string DataFrames with defaults filled in, plus ``row`` and
    ``line`` columns; ``cell_lines`` is indexed by cell line and ``tracks`` has a ``track`` column
    (assay + strand suffix: CTCF, CAGE_plus) naming the downloaded file.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    cell_sheet, track_sheet = str(config["cell_lines"]), str(config["tracks"])
    cell_header, cell_rows = _read_tsv(base / cell_sheet, cell_sheet)
    track_header, track_rows = _read_tsv(base / track_sheet, track_sheet)
    cell_schema = load_schema("cell_lines", schemas)
    _validate_rows(cell_rows, cell_header, cell_schema, cell_sheet)
    _validate_rows(track_rows, track_header, load_schema("tracks", schemas), track_sheet)
    if not cell_rows:
        raise ConfigError(f"{cell_sheet} has no rows; add one row per cell line")
    _check_cell_rows(cell_rows, cell_sheet, config)
    _check_track_rows(track_rows, track_sheet, cell_rows, cell_sheet)

    cell_lines = _frame(cell_rows, cell_schema).set_index("cell_line", drop=False)
    cell_lines.index.name = None
    tracks = _frame(track_rows, load_schema("tracks", schemas))
    tracks["track"] = tracks["assay"] + tracks["strand"].map(STRAND_SUFFIX)
    for cell_line in cell_lines.index:
        channel_tracks(config, cell_lines, tracks, cell_line)  # raises when a channel has no track
    if config.get("pretrain", {}).get("enabled") and not cell_lines_with_role(
        cell_lines, "pretrain"
    ):
        raise ConfigError(
            f"{cell_sheet}: pretrain.enabled is true but no cell line has the role pretrain; "
            "add pretrain to a roles column or set pretrain.enabled: false"
        )
    return cell_lines, tracks


def _check_cell_rows(rows: list[_Row], sheet: str, config: Mapping) -> None:
    first: dict[str, _Row] = {}
    for row in rows:
        values = row.values
        name = values["cell_line"]
        if name in first:
            raise ConfigError(
                f"{_where(sheet, row, 'cell_line')}: {name!r} is listed twice (first at row "
                f"{first[name].number}); give each cell line one row"
            )
        first[name] = row
        if "assembly" not in values:
            if not config.get("assembly"):
                raise ConfigError(
                    f"{_where(sheet, row, 'assembly')}: empty; name the genome assembly (hg38, "
                    "hg19, ...) here or set assembly in the config"
                )
            values["assembly"] = str(config["assembly"])
        for column in ("hic_source", "loops_source", "genes_source"):
            if column in values:
                _check_source(values[column], f"{_where(sheet, row, column)}")
        _check_hic(row, sheet)
        if "genes_source" in values and "expression_column" not in values:
            raise ConfigError(
                f"{_where(sheet, row, 'expression_column')}: empty, but genes_source is given; "
                "name the gene-table column holding this cell line's expression"
            )
        resolution = int(values.get("resolution", config["resolution"]))
        subbin = int(values.get("track_subbin_bp", config["track_subbin_bp"]))
        column = "track_subbin_bp" if "track_subbin_bp" in values else "resolution"
        _check_geometry(resolution, subbin, _where(sheet, row, column))


def _check_hic(row: _Row, sheet: str) -> None:
    """A Hi-C row names a readable format; a tracks-only row has role predict and no hic_* cells."""
    values = row.values
    roles = values["roles"].split(",")
    if "hic_source" not in values:
        needs = [role for role in roles if role in HIC_ROLES]
        if needs:
            raise ConfigError(
                f"{_where(sheet, row, 'roles')}: {needs[0]} needs Hi-C but hic_source is empty; "
                "give hic_source, or set roles to predict for a tracks-only row"
            )
        extra = [column for column in values if column.startswith("hic_")]
        if extra:
            raise ConfigError(
                f"{_where(sheet, row, extra[0])}: set but hic_source is empty; "
                f"clear {extra[0]} or give hic_source"
            )
        return
    if "predict" in roles:
        raise ConfigError(
            f"{_where(sheet, row, 'roles')}: predict is for tracks-only rows but hic_source is "
            "given; use pretrain and/or finetune, or clear hic_source"
        )
    hic = values.get("hic_url", values["hic_source"])
    if "hic_format" not in values and hic_format(hic) is None:
        raise ConfigError(
            f"{_where(sheet, row, 'hic_source')}: cannot tell the format of "
            f"{values['hic_source']!r}; name a .mcool, .cool or .hic file or set hic_format"
        )


def _check_source(source: str, where: str) -> None:
    if source.startswith("ENCFF") and not ENCODE_ACCESSION.match(source):
        raise ConfigError(
            f"{where}: {source!r} looks like an ENCODE accession but is not ENCFF + 3 digits + "
            "3 capital letters; fix the accession"
        )
    if source.startswith("4DNFI") and not FOURDN_ACCESSION.match(source):
        raise ConfigError(
            f"{where}: {source!r} looks like a 4DN accession but is not 4DNFI + 7 capital "
            "letters or digits; fix the accession"
        )


def _check_track_rows(rows: list[_Row], sheet: str, cell_rows: list[_Row], cell_sheet: str) -> None:
    cells = {row.values["cell_line"] for row in cell_rows}
    first: dict[tuple[str, str, str], _Row] = {}
    for row in rows:
        values = row.values
        if values["cell_line"] not in cells:
            raise ConfigError(
                f"{_where(sheet, row, 'cell_line')}: {values['cell_line']!r} is not in "
                f"{cell_sheet}; add a row for it there or use one of {', '.join(sorted(cells))}"
            )
        _check_source(values["source"], _where(sheet, row, "source"))
        key = (values["cell_line"], values["assay"], values["strand"])
        if key in first:
            raise ConfigError(
                f"{_where(sheet, row)}: cell line {key[0]} already has a track for assay {key[1]} "
                f"strand {key[2]} (row {first[key].number}); remove one of the two rows"
            )
        first[key] = row


# --------------------------------------------------------------------------- per cell line


@dataclass(frozen=True)
class Track:
    """One input channel of one cell line, as the rules see it."""

    cell_line: str
    assay: str
    strand: str
    track: str  # file stem and channel name: CTCF, CAGE_plus
    source: str
    md5: str
    url: str = ""  # resolved by hicmix resolve-sources

    @property
    def fetch(self) -> str:
        """What to download: the resolved URL when the sheet has one, else the source."""
        return self.url or self.source


def _split_list(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def cell_settings(config: Mapping, cell_lines: pd.DataFrame, cell_line: str) -> dict[str, Any]:
    """Effective settings of one cell line: its sheet overrides on top of the global config."""
    row = cell_lines.loc[cell_line]
    chromosomes = _split_list(row["chromosomes"]) or config.get("chromosomes") or []
    return {
        "assembly": row["assembly"],
        "roles": _split_list(row["roles"]),
        "resolution": int(row["resolution"] or config["resolution"]),
        "track_subbin_bp": int(row["track_subbin_bp"] or config["track_subbin_bp"]),
        "channels": _split_list(row["channels"]) or list(config["channels"]),
        "weight_mode": row["hic_weight_mode"] or config["balance"]["mode"],
        "chromosomes": list(chromosomes),
        "qc_region": row["qc_region"] or config["qc"]["region"],
        "gene_id_column": row["gene_id_column"],
        "tss_column": row["tss_column"],
        "expression_column": row["expression_column"],
    }


def channel_tracks(
    config: Mapping, cell_lines: pd.DataFrame, tracks: pd.DataFrame, cell_line: str
) -> list[Track]:
    """The tracks feeding each channel of a cell line, in channel order.

    A channel names a track (``CTCF``, ``CAGE_plus``) or a stranded assay (``CAGE`` = its + then -
    tracks). A channel without a track is a one-line error naming the sheet and the row to add.
    """
    mine = tracks[tracks["cell_line"] == cell_line]
    by_name = {row.track: row for row in mine.itertuples()}
    result: list[Track] = []
    for channel in cell_settings(config, cell_lines, cell_line)["channels"]:
        if channel in by_name:
            chosen = [by_name[channel]]
        else:
            chosen = [by_name[n] for n in (f"{channel}_plus", f"{channel}_minus") if n in by_name]
        if not chosen:
            assay, _, suffix = channel.partition("_")
            strand = {"plus": "+", "minus": "-"}.get(suffix, ".")
            raise ConfigError(
                f"{config['tracks']}: cell line {cell_line} has no track for channel {channel}; "
                f"add a row (cell_line={cell_line}, assay={assay}, strand={strand}, source=...)"
            )
        result.extend(
            Track(cell_line, r.assay, r.strand, r.track, r.source, r.md5, r.url) for r in chosen
        )
    return result


def source_kind(source: str) -> str:
    """``encode``, ``4dn``, ``url`` (http/https), ``file`` (file://) or ``local`` (a path)."""
    if ENCODE_ACCESSION.match(source):
        return "encode"
    if FOURDN_ACCESSION.match(source):
        return "4dn"
    if source.startswith("file://"):
        return "file"
    if URL.match(source):
        return "url"
    return "local"


def local_path(source: str) -> str | None:
    """The local file a source reads (a path or file:// URL), so the DAG can depend on it."""
    kind = source_kind(source)
    if kind == "local":
        return source
    if kind == "file":
        return re.sub(r"^file://(localhost)?", "", source)
    return None


def _stem(source: str) -> str:
    """The file name of a source without any query string, lower-cased."""
    return source.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()


def hic_format(source: str, override: str = "") -> str | None:
    """mcool, cool or hic from the sheet's hic_format, the source's extension, or its portal.

    ENCODE serves Hi-C as .hic; a 4DN accession is taken as an .mcool (set hic_format for a .hic).
    """
    if override:
        return override
    name = _stem(source)
    for fmt in HIC_FORMATS:
        if name.endswith(f".{fmt}"):
            return fmt
    return {"encode": "hic", "4dn": "mcool"}.get(source_kind(source))


def _gz(source: str, portal_default: bool) -> str:
    """``.gz`` when the source is gzipped (by name; portal accessions serve tables gzipped)."""
    if source_kind(source) in ("encode", "4dn"):
        return ".gz" if portal_default else ""
    return ".gz" if _stem(source).endswith(".gz") else ""


def downloads(
    config: Mapping, cell_lines: pd.DataFrame, tracks: pd.DataFrame, cell_line: str
) -> dict[str, tuple[str, str]]:
    """What to fetch for a cell line: file name under ``resources/{cell_line}/`` → (source, md5).

    Names: ``hic.{mcool,cool,hic}``, ``tracks/{track}.bw`` (CAGE_plus / CAGE_minus for strands),
    ``loops.bedpe[.gz]``, ``genes.tsv[.gz]`` (``.gz`` kept so readers can infer compression).
    The source is the sheet's resolved URL (``*_url``, from hicmix resolve-sources) when present.
    """
    row = cell_lines.loc[cell_line]

    def fetch(kind: str) -> str:
        return row[f"{kind}_url"] or row[f"{kind}_source"]

    files: dict[str, tuple[str, str]] = {}
    if fetch("hic"):
        files[f"hic.{hic_format(fetch('hic'), row['hic_format'])}"] = (fetch("hic"), row["hic_md5"])
    for track in channel_tracks(config, cell_lines, tracks, cell_line):
        files[f"tracks/{track.track}.bw"] = (track.fetch, track.md5)
    if row["loops_source"]:
        files[f"loops.bedpe{_gz(fetch('loops'), True)}"] = (fetch("loops"), row["loops_md5"])
    if row["genes_source"]:
        files[f"genes.tsv{_gz(fetch('genes'), False)}"] = (fetch("genes"), row["genes_md5"])
    return files


def cell_lines_with_role(cell_lines: pd.DataFrame, role: str) -> list[str]:
    """Cell lines whose roles include ``role`` (pretrain, finetune or predict), in sheet order."""
    return [name for name, roles in cell_lines["roles"].items() if role in roles.split(",")]


def hic_cell_lines(cell_lines: pd.DataFrame) -> list[str]:
    """Cell lines with a Hi-C source (they get tiles, QC and task runs), in sheet order."""
    return [name for name, source in cell_lines["hic_source"].items() if source.strip()]


def tracks_only_cell_lines(cell_lines: pd.DataFrame) -> list[str]:
    """Cell lines without a Hi-C source (role predict): predictions from tracks only."""
    return [name for name, source in cell_lines["hic_source"].items() if not source.strip()]


def regex_alternatives(values: Iterable[str]) -> str:
    """A wildcard constraint matching exactly these values."""
    return "|".join(re.escape(value) for value in sorted(set(values), key=lambda v: (-len(v), v)))
