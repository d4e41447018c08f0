"""Chromosome names (chr1 vs 1), chromosome sizes, assembly checks and the train/val/test split.

Inside hicmix every chromosome is named UCSC-style (``chr1``, ``chrX``, ``chrM``); files keep their
native names and readers map between the two with :func:`normalize_chrom`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hicmix.errors import ConfigError, InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_BARE_NAME = re.compile(r"^(\d+|[XYW]|Z|Un.*|\d+_.*|[XY]_.*)$")
_REGION = re.compile(r"^(?P<chrom>[^:\s]+):(?P<start>[\d,_]+)-(?P<end>[\d,_]*)$")


def normalize_chrom(name: str) -> str:
    """UCSC-style name: '1' -> 'chr1', 'X' -> 'chrX', 'MT'/'M'/'chrMT' -> 'chrM', 'chr1' unchanged.

    Names that are neither numbered nor sex/mito chromosomes (contigs such as 'GL000192.1') are
    returned as they are.
    """
    name = str(name).strip()
    bare = name[3:] if name.lower().startswith("chr") else name
    if bare.upper() in ("M", "MT"):
        return "chrM"
    if bare.upper() in ("X", "Y"):
        return "chr" + bare.upper()
    if _BARE_NAME.match(bare):
        return "chr" + bare
    return name


def normalize_chromsizes(native: Mapping[str, int], source: str) -> dict[str, int]:
    """Normalise the keys of a native {name: length} mapping; colliding names are an error."""
    sizes: dict[str, int] = {}
    for name, length in native.items():
        key = normalize_chrom(name)
        if key in sizes:
            raise InputError(
                f"{source}: chromosomes '{name}' and another name both mean '{key}'; "
                "keep one naming style in the file"
            )
        sizes[key] = int(length)
    return sizes


def read_chromsizes(path: str | Path) -> dict[str, int]:
    """Read a two-column ``name<TAB>length`` chrom.sizes file (normalised names, file order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: chromosome sizes file not found; check the path in the config")
    native: dict[str, int] = {}
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit():
                raise InputError(
                    f"{path} line {number}: expected 'chromosome<TAB>length', "
                    f"got {line.strip()!r}; fix the chrom.sizes file"
                )
            native[fields[0]] = int(fields[1])
    if not native:
        raise InputError(f"{path}: no chromosomes in the chrom.sizes file; fix or re-download it")
    return normalize_chromsizes(native, str(path))


def assembly_chromsizes(assembly: str) -> dict[str, int] | None:
    """Chromosome sizes of a known assembly (hg19, hg38, mm10, ...) from bioframe's bundled data.

    Returns None for an assembly bioframe does not know (e.g. the simulated 'sim1'); works offline.
    """
    import bioframe

    try:
        info = bioframe.assembly_info(assembly)
    except (ValueError, KeyError):
        return None
    return normalize_chromsizes(dict(info.chromsizes), f"assembly {assembly}")


def _preview(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def chrom_not_found(source: str | Path, chrom: str, available: Iterable[str]) -> InputError:
    """The one-line error for a chromosome missing from ``source`` (lists the first few present)."""
    return InputError(
        f"{source}: chromosome {chrom} not found (it has {_preview(available)}); "
        "remove it from `chromosomes` in the config or use a file that covers it"
    )


def require_chrom(sizes: Mapping[str, int], chrom: str, source: str | Path) -> int:
    """Length of ``chrom`` in ``sizes``; InputError naming ``source`` and what it has if absent."""
    key = normalize_chrom(chrom)
    if key not in sizes:
        raise chrom_not_found(source, chrom, sizes)
    return int(sizes[key])


def check_chromsizes(
    ref: Mapping[str, int],
    other: Mapping[str, int],
    ref_file: str | Path,
    other_file: str | Path,
    chroms: Iterable[str] | None = None,
) -> None:
    """Check that ``other`` has each chromosome of ``chroms`` (default: ``ref``) at the same length.

    Raises InputError naming both files when a length differs (different assemblies) or a chromosome
    is missing from either file. Both mappings must use normalised names.
    """
    wanted = list(ref) if chroms is None else [normalize_chrom(c) for c in chroms]
    for chrom in wanted:
        ref_len = require_chrom(ref, chrom, str(ref_file))
        other_len = require_chrom(other, chrom, str(other_file))
        if ref_len != other_len:
            raise InputError(
                f"{chrom} is {ref_len:,} bp in {ref_file} but {other_len:,} bp in {other_file}, "
                "so the two files come from different assemblies; use files of the same assembly"
            )


@dataclass(frozen=True)
class Region:
    """A whole chromosome (start 0, end None) or a half-open bp range of one."""

    chrom: str
    start: int = 0
    end: int | None = None

    @classmethod
    def parse(cls, text: str) -> Region:
        """Parse 'chr20', 'chr20:37825000-64444167' or 'chr20:37825000-' (bp, half-open)."""
        text = str(text).strip()
        if ":" not in text:
            if not text:
                raise ConfigError(
                    "split: empty chromosome name; list chromosomes like chr2 or regions"
                )
            return cls(normalize_chrom(text))
        match = _REGION.match(text)
        if match is None:
            raise ConfigError(
                f"split entry {text!r} is not a chromosome or a region; "
                "write it as chr20, chr20:37825000-64444167 or chr20:37825000-"
            )
        start = int(match["start"].replace(",", "").replace("_", ""))
        end_text = match["end"].replace(",", "").replace("_", "")
        end = int(end_text) if end_text else None
        if end is not None and end <= start:
            raise ConfigError(
                f"split entry {text!r} ends before it starts; swap or fix the coordinates"
            )
        return cls(normalize_chrom(match["chrom"]), start, end)

    @property
    def stop(self) -> float:
        return math.inf if self.end is None else self.end

    def overlaps(self, start: float, end: float) -> bool:
        return start < self.stop and end > self.start

    def contains(self, start: float, end: float) -> bool:
        return self.start <= start and end <= self.stop

    def __str__(self) -> str:
        if self.start == 0 and self.end is None:
            return self.chrom
        return f"{self.chrom}:{self.start}-{'' if self.end is None else self.end}"


@dataclass
class SplitSpec:
    """Which chromosomes or regions are validation and test; everything else is training.

    A region entry only covers its range: the rest of that chromosome stays in training.
    """

    val: list[Region] = field(default_factory=list)
    test: list[Region] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._check_overlaps()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Iterable[str] | str] | None) -> SplitSpec:
        """Build from ``{"val": ["chr2"], "test": ["chr3", "chr20:37825000-"]}``; strings may be
        comma-separated lists."""
        mapping = dict(mapping or {})
        unknown = set(mapping) - set(SPLITS)
        if unknown:
            raise ConfigError(
                f"split: unknown split name(s) {sorted(unknown)}; use val and test "
                "(train is every chromosome not listed)"
            )
        if mapping.get("train"):
            raise ConfigError(
                "split: train cannot be listed, it is every chromosome or region not under val or "
                "test; remove the train entry"
            )
        parsed = {name: _parse_entries(mapping.get(name)) for name in ("val", "test")}
        return cls(val=parsed["val"], test=parsed["test"])

    def to_mapping(self) -> dict[str, list[str]]:
        """The inverse of :meth:`from_mapping` (normalised names), for manifests and logs."""
        return {"val": [str(r) for r in self.val], "test": [str(r) for r in self.test]}

    def split_of(self, chrom: str, start_bp: int, end_bp: int) -> str | None:
        """'train', 'val' or 'test' for a half-open interval; None when it straddles two splits."""
        chrom = normalize_chrom(chrom)
        end_bp = max(end_bp, start_bp + 1)
        found: set[str] = set()
        for name, regions in (("val", self.val), ("test", self.test)):
            for region in regions:
                if region.chrom != chrom or not region.overlaps(start_bp, end_bp):
                    continue
                if not region.contains(start_bp, end_bp):
                    if not self._covered(chrom, start_bp, end_bp, name):
                        return None
                found.add(name)
        if not found:
            return "train"
        return found.pop() if len(found) == 1 else None

    def chromosomes(self, split: str) -> list[str]:
        """Chromosomes with at least one entry in ``split`` ('val' or 'test')."""
        return sorted({r.chrom for r in getattr(self, split)})

    def _covered(self, chrom: str, start: int, end: int, name: str) -> bool:
        """True when the union of ``name``'s regions on ``chrom`` covers [start, end)."""
        pieces = sorted(
            (r.start, r.stop)
            for r in getattr(self, name)
            if r.chrom == chrom and r.overlaps(start, end)
        )
        reach = start
        for lo, hi in pieces:
            if lo > reach:
                return False
            reach = max(reach, hi)
        return reach >= end

    def _check_overlaps(self) -> None:
        for a in self.val:
            for b in self.test:
                if a.chrom == b.chrom and a.overlaps(b.start, b.stop):
                    raise ConfigError(
                        f"split: val entry {a} overlaps test entry {b}; "
                        "make validation and test chromosomes/regions disjoint"
                    )


def _parse_entries(entries: Iterable[str] | str | None) -> list[Region]:
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = entries.split(",")
    return [Region.parse(e) for e in entries if str(e).strip()]
