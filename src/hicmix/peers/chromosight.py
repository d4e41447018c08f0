"""Chromosight 1.6.3 (koszullab/chromosight): unsupervised template matching for loops.

It runs on the whole chromosome (it learns nothing from labels). Two rows: the tool's defaults
(Pearson threshold 0.3 for loops) and a Pearson threshold chosen on region A only
(:func:`select_pearson`: the best F1 at ±1 bin against region-A reference loops among a few values);
the chosen value is then applied unchanged to region B.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from hicmix.genome import normalize_chrom
from hicmix.peers import PeerRun, calls_frame, write_calls
from hicmix.peers.envs import EnvInfo, RunResult, peer_environ, run_measured

#: The values swept on region A ("default" = the tool's own threshold, 0.3 for loops).
PEARSON_GRID = ("default", "0.4", "0.5", "0.6", "0.7")


def read_detect_output(path: str | Path) -> pd.DataFrame:
    """``chromosight detect`` TSV (header chrom1 start1 end1 chrom2 start2 end2 bin1 bin2
    kernel_id iteration score pvalue qvalue) as a call table scored by the Pearson ``score``."""
    rows = []
    with open(path) as handle:
        header = handle.readline().split()
        if header[:6] != ["chrom1", "start1", "end1", "chrom2", "start2", "end2"]:
            raise ValueError(f"{path}: not a chromosight detect table (header {header[:6]})")
        score_at = header.index("score")
        for line in handle:
            fields = line.split()
            if len(fields) <= score_at:
                continue
            s1, e1, s2, e2 = (int(fields[k]) for k in (1, 2, 4, 5))
            rows.append(
                (
                    normalize_chrom(fields[0]),
                    s1,
                    e1,
                    normalize_chrom(fields[3]),
                    s2,
                    e2,
                    float(fields[score_at]),
                )
            )
    return calls_frame(rows)


def output_prefix(work: Path, pearson: str) -> Path:
    """``work/pearson_<value>`` without dots (chromosight appends .tsv/.json/.pdf to it)."""
    return work / f"pearson_{pearson.replace('.', 'p')}"


def with_ext(prefix: Path, ext: str) -> Path:
    """``prefix`` + ``ext`` (not :meth:`Path.with_suffix`, which would eat a dotted value)."""
    return prefix.parent / f"{prefix.name}{ext}"


def detect(
    env: EnvInfo, cool: str | Path, prefix: Path, pearson: str = "default", threads: int = 1
) -> RunResult:
    """One measured ``chromosight detect --pattern loops`` run (defaults unless ``pearson``)."""
    argv = [env.bin("chromosight"), "detect", "--pattern", "loops", "--threads", str(threads)]
    if pearson != "default":
        argv += ["--pearson", pearson]
    argv += [cool, prefix]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return run_measured(argv, with_ext(prefix, ".log"), env=peer_environ()).check(
        f"chromosight detect (pearson {pearson})"
    )


def select_pearson(
    env: EnvInfo,
    cool: str | Path,
    work: Path,
    region_a_f1: Callable[[Path], float],
    grid: Sequence[str] = PEARSON_GRID,
) -> tuple[str, dict[str, float], dict[str, Path], dict[str, RunResult]]:
    """Run every Pearson value of ``grid``; pick the best ``region_a_f1(bedpe)`` (ties: the first).

    Returns (chosen value, F1 per value, BEDPE per value, run per value). ``region_a_f1`` must
    look only at region A.
    """
    f1, bedpes, runs = {}, {}, {}
    for value in grid:
        prefix = output_prefix(work, value)
        runs[value] = detect(env, cool, prefix, value)
        bedpes[value] = write_calls(
            read_detect_output(with_ext(prefix, ".tsv")), with_ext(prefix, ".bedpe")
        )
        f1[value] = float(region_a_f1(bedpes[value]))
    chosen = max(grid, key=lambda v: (f1[v], -list(grid).index(v)))
    return chosen, f1, bedpes, runs


def run(
    env: EnvInfo,
    cool: str | Path,
    out_dir: str | Path,
    region_a_f1: Callable[[Path], float],
    grid: Sequence[str] = PEARSON_GRID,
) -> list[PeerRun]:
    """The defaults row and the row with the Pearson threshold selected on region A."""
    out_dir = Path(out_dir)
    work = out_dir / "work" / "chromosight"
    chosen, f1, _, runs = select_pearson(env, cool, work, region_a_f1, grid)
    sweep = ", ".join(f"{k}: {v:.3f}" for k, v in f1.items())
    default = PeerRun(
        "chromosight",
        write_calls(
            read_detect_output(with_ext(output_prefix(work, "default"), ".tsv")),
            out_dir / "chromosight.bedpe",
        ),
        env.version,
        "detect --pattern loops (defaults: pearson 0.3)",
        {"detect": runs["default"]},
        env.create_s,
    )
    tuned = PeerRun(
        "chromosight-pearson",
        write_calls(
            read_detect_output(with_ext(output_prefix(work, chosen), ".tsv")),
            out_dir / "chromosight-pearson.bedpe",
        ),
        env.version,
        f"detect --pattern loops --pearson {chosen} (chosen on region A)",
        {"detect": runs[chosen]},
        env.create_s,
        notes=f"region-A F1 (±1) per pearson: {sweep}; selection cost "
        f"{sum(r.wall_s for r in runs.values()):.1f} s for {len(runs)} runs",
        extra={"pearson": chosen, "region_a_f1": f1},
    )
    return [default, tuned]
