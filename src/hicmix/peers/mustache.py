"""Mustache 1.3.3 (ay-lab/mustache): scale-space loop detector, run with its defaults.

On a ``.cool`` it still imports hic-straw, which builds from source (libcurl headers and a C++
compiler). ``-norm weight`` names the cooler balancing column explicitly (without it mustache may
read raw counts, mustache#20/#26). ``-p`` is set to the number of cores given (its default is 4).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hicmix.genome import normalize_chrom
from hicmix.peers import PeerRun, Protocol, calls_frame, write_calls
from hicmix.peers.envs import EnvInfo, peer_environ, run_measured

MUSTACHE_HEADER = (
    "BIN1_CHR",
    "BIN1_START",
    "BIN1_END",
    "BIN2_CHROMOSOME",
    "BIN2_START",
    "BIN2_END",
)


def read_mustache_output(path: str | Path) -> pd.DataFrame:
    """Mustache TSV (BIN1_CHR BIN1_START BIN1_END BIN2_CHROMOSOME BIN2_START BIN2_END FDR
    DETECTION_SCALE) as a call table scored by -log10(FDR) (higher = more confident)."""
    rows = []
    with open(path) as handle:
        header = handle.readline().split()
        if tuple(header[:6]) != MUSTACHE_HEADER:
            raise ValueError(f"{path}: not a mustache loop table (header {header[:6]})")
        fdr_at = header.index("FDR")
        for line in handle:
            fields = line.split()
            if len(fields) <= fdr_at:
                continue
            fdr = float(fields[fdr_at])
            score = -math.log10(fdr) if fdr > 0 else math.inf
            s1, e1, s2, e2 = (int(float(fields[k])) for k in (1, 2, 4, 5))
            rows.append(
                (normalize_chrom(fields[0]), s1, e1, normalize_chrom(fields[3]), s2, e2, score)
            )
    return calls_frame(rows)


def native_chrom(cool: str | Path, chrom: str) -> str:
    """The chromosome's name as stored in the cooler (mustache wants the native name)."""
    import cooler

    names = cooler.Cooler(str(cool)).chromnames
    return next((c for c in names if normalize_chrom(c) == chrom), chrom)


def run(
    env: EnvInfo,
    cool: str | Path,
    out_dir: str | Path,
    protocol: Protocol,
    *,
    processes: int = 2,
    threads: int = 2,
) -> PeerRun:
    """Mustache defaults on the whole chromosome with ``-norm weight``."""
    out_dir = Path(out_dir)
    work = out_dir / "work" / "mustache"
    work.mkdir(parents=True, exist_ok=True)
    native = work / "loops.tsv"
    argv = [
        env.bin("mustache"), "-f", cool, "-r", str(protocol.resolution), "-norm", "weight",
        "-ch", native_chrom(cool, protocol.chrom), "-o", native, "-p", str(processes),
    ]  # fmt: skip
    result = run_measured(argv, work / "mustache.log", env=peer_environ(threads)).check("mustache")
    calls = read_mustache_output(native)
    calls["score"] = calls["score"].clip(upper=300.0)
    return PeerRun(
        "mustache",
        write_calls(calls, out_dir / "mustache.bedpe"),
        env.version,
        f"defaults, -norm weight, -p {processes}",
        {"mustache": result},
        env.create_s,
    )
