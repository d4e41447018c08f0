"""pyHICCUPS from hicpeaks 0.3.9 (XiaoTaoWang/HiCPeaks): a CPU re-implementation of HiCCUPS.

One peak/donut width per run (``--pw 1 --ww 3`` at 25 kb; multi-width runs crash when a pass leaves
no pixel). ``-C`` takes chromosome *labels without the 'chr' prefix* (it compares
``name.lstrip('chr')``): ``-C chr20`` silently calls nothing. hicpeaks imports scikit-learn
(DBSCAN in its clustering step) without declaring it, so its venv adds it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hicmix.genome import normalize_chrom
from hicmix.peers import PeerRun, Protocol, calls_frame, write_calls
from hicmix.peers.envs import EnvInfo, peer_environ, run_measured

#: 0-based column of the donut fold enrichment in pyHICCUPS output (the score we keep).
DONUT_FOLD_COLUMN = 10


def chrom_label(chrom: str) -> str:
    """The ``-C`` label pyHICCUPS matches: the name without a leading 'chr'."""
    return chrom[3:] if chrom.lower().startswith("chr") else chrom


def read_hiccups_output(path: str | Path) -> pd.DataFrame:
    """pyHICCUPS BEDPE (chrom s1 e1 chrom s2 e2 . observed . . donut_fold donut_p donut_q
    ll_fold ll_p ll_q) as a call table scored by the donut fold enrichment."""
    rows = []
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 6 or line.startswith("#"):
                continue
            s1, e1, s2, e2 = (int(fields[k]) for k in (1, 2, 4, 5))
            score = float(fields[DONUT_FOLD_COLUMN]) if len(fields) > DONUT_FOLD_COLUMN else 1.0
            rows.append(
                (normalize_chrom(fields[0]), s1, e1, normalize_chrom(fields[3]), s2, e2, score)
            )
    return calls_frame(rows)


def run(
    env: EnvInfo,
    cool: str | Path,
    out_dir: str | Path,
    protocol: Protocol,
    *,
    pw: int = 1,
    ww: int = 3,
    threads: int = 2,
) -> PeerRun:
    """pyHICCUPS on the whole chromosome, one width pair, otherwise defaults."""
    out_dir = Path(out_dir)
    work = out_dir / "work" / "hiccups"
    work.mkdir(parents=True, exist_ok=True)
    native = work / "peaks.bedpe"
    argv = [
        env.bin("pyHICCUPS"), "-p", Path(cool).resolve(), "-C", chrom_label(protocol.chrom),
        "--pw", str(pw), "--ww", str(ww), "-O", native.resolve(),
        "--logFile", (work / "pyHICCUPS.log").resolve(), "--nproc", "1",
    ]  # fmt: skip
    result = run_measured(argv, work / "run.log", cwd=work, env=peer_environ(threads))
    result.check("pyHICCUPS")
    return PeerRun(
        "hiccups",
        write_calls(read_hiccups_output(native), out_dir / "hiccups.bedpe"),
        env.version,
        f"pyHICCUPS --pw {pw} --ww {ww} -C {chrom_label(protocol.chrom)}",
        {"pyHICCUPS": result},
        env.create_s,
    )
