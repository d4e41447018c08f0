"""``hicmix download`` and ``hicmix resolve-sources``: thin wrappers over :mod:`hicmix.download`."""

from __future__ import annotations

from pathlib import Path

import click

from hicmix.download import fetch, resolve_sheet


@click.command(name="download")
@click.option(
    "--source",
    required=True,
    help="ENCODE (ENCFF...) or 4DN (4DNFI...) file accession, http(s):// or file:// URL, or path.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file; written atomically, only after the md5 matches.",
)
@click.option(
    "--md5",
    default="",
    help="Expected md5. Empty: the portal's md5 for accessions, unchecked otherwise.",
)
@click.option("--retries", default=5, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds without data before an attempt counts as failed.",
)
@click.option(
    "--sources-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TSV to append source, final URL, size, md5 and UTC date to (created with a header).",
)
@click.option(
    "--assembly",
    default=None,
    help="Expected assembly of an accession's file (hg38 -> GRCh38, hg19), checked on the portal.",
)
def download(
    source: str,
    out: Path,
    md5: str,
    retries: int,
    timeout: float,
    sources_log: Path | None,
    assembly: str | None,
) -> None:
    """Fetch one source to OUT, md5-checked, with retries, resume and an atomic rename."""
    # fetch logs what it did (downloaded, copied, linked or already present) at INFO level.
    fetch(
        source,
        out,
        md5=md5 or None,
        retries=retries,
        timeout=timeout,
        sources_log=sources_log,
        expected_assembly=assembly or None,
    )


@click.command(name="resolve-sources")
@click.option(
    "--sheet",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="cell_lines.tsv or tracks.tsv.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Resolved sheet to write (default: update SHEET in place, atomically).",
)
@click.option(
    "--assembly",
    default=None,
    help="Expected assembly when the sheet has no assembly column (hg38, hg19).",
)
@click.option("--retries", default=5, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True)
)
def resolve_sources(
    sheet: Path, out: Path | None, assembly: str | None, retries: int, timeout: float
) -> None:
    """Fill url, md5 and size columns of a sheet's accessions from ENCODE/4DN portal metadata."""
    target = out or sheet
    count = resolve_sheet(
        sheet, target, expected_assembly=assembly or None, retries=retries, timeout=timeout
    )
    click.echo(f"resolved {count} accession(s) into {target}", err=True)
