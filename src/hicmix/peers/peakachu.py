"""Peakachu 2.3 (tariks/peakachu), the released program, trained on region A and scored on region B.

Peakachu trains leave-one-chromosome-out (LOCO): the model for a chromosome is fitted on the samples
of all *other* chromosomes. With a single chromosome (the bundled chr20) there is no other one, so
we cut it (baselines_and_metrics.md §7):

* a derived ``.cool`` holds two pseudo-chromosomes, ``<chrom>B`` = bins ``[cut, end)`` (listed
  first) and ``<chrom>A`` = bins ``[0, cut)``. Pixels between the two parts are dropped; the ICE
  weights of the original (unsupervised, label-free) are copied;
* the training BEDPE holds only the reference loops whose two anchors lie inside ``[0, cut)``,
  renamed ``<chrom>A``; ``<chrom>B`` has no label at all;
* ``peakachu train`` (through :mod:`.peakachu_train_wrapper`) then writes ``<chrom>B.pkl``, a model
  trained on region-A samples only. Its next LOCO model, for ``<chrom>A``, would have to be trained
  on ``<chrom>B`` samples, and there are none: Peakachu raises ``ValueError`` on the empty stack
  and exits 1. That is expected; the run is accepted only when ``<chrom>B.pkl`` exists and the log
  ends in that error (``<chrom>B`` is listed first so that its model is written before it);
* ``score_chromosome -C <chrom>B`` and ``pool -t 0.9`` give the calls, shifted back by ``cut``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hicmix.atomic import atomic_path
from hicmix.errors import InputError
from hicmix.genome import normalize_chrom
from hicmix.peers import PeerRun, Protocol, calls_frame, write_calls
from hicmix.peers.envs import EnvInfo, RunResult, peer_environ, run_measured

WRAPPER = Path(__file__).with_name("peakachu_train_wrapper.py")
EMPTY_STACK_ERROR = "need at least one array to concatenate"


def pseudo_names(chrom: str) -> tuple[str, str]:
    """(training part, test part) names, e.g. ('chr20A', 'chr20B'); no '_' (Peakachu drops it)."""
    return f"{chrom}A", f"{chrom}B"


def split_cool(
    cool: str | Path,
    chrom: str,
    cut_bp: int,
    out: str | Path,
    weight: str = "weight",
) -> Path:
    """Write a ``.cool`` with ``chrom`` cut at ``cut_bp`` into two pseudo-chromosomes
    (``<chrom>B`` first, then ``<chrom>A``), raw counts and the original ``weight`` column.

    ``cut_bp`` must be a multiple of the resolution. Pixels joining the two parts are dropped.
    """
    import cooler

    clr = cooler.Cooler(str(cool))
    res = int(clr.binsize)
    if cut_bp % res:
        raise InputError(f"{cool}: the cut {cut_bp} is not a multiple of the resolution {res}")
    native = next((c for c in clr.chromnames if normalize_chrom(c) == chrom), None)
    if native is None:
        raise InputError(f"{cool}: no chromosome {chrom}; pick one of {clr.chromnames}")
    bins = clr.bins().fetch(native).reset_index(drop=True)
    if weight not in bins:
        raise InputError(f"{cool}: no '{weight}' column; balance it first (cooler balance)")
    lo = int(clr.extent(native)[0])
    cut = cut_bp // res
    if not 0 < cut < len(bins):
        raise InputError(f"{cool}: the cut {cut_bp} lies outside {chrom}")
    pixels = clr.matrix(balance=False, as_pixels=True).fetch(native)
    i = pixels["bin1_id"].to_numpy(np.int64) - lo
    j = pixels["bin2_id"].to_numpy(np.int64) - lo
    count = pixels["count"].to_numpy()
    in_a, in_b = (i < cut) & (j < cut), (i >= cut) & (j >= cut)
    name_a, name_b = pseudo_names(chrom)
    n_b = len(bins) - cut
    # new bin ids: part B first (0 .. n_b-1), then part A (n_b .. n_b+cut-1)
    new_i = np.where(in_b, i - cut, i + n_b)
    new_j = np.where(in_b, j - cut, j + n_b)
    keep = in_a | in_b
    new_pixels = pd.DataFrame(
        {"bin1_id": new_i[keep], "bin2_id": new_j[keep], "count": count[keep]}
    ).sort_values(["bin1_id", "bin2_id"], kind="stable")
    part_b = bins.iloc[cut:].copy()
    part_b["chrom"] = name_b
    part_b["start"] -= cut_bp
    part_b["end"] -= cut_bp
    part_a = bins.iloc[:cut].copy()
    part_a["chrom"] = name_a
    new_bins = pd.concat([part_b, part_a], ignore_index=True)[["chrom", "start", "end", weight]]
    chromsizes = pd.Series({name_b: int(part_b["end"].max()), name_a: int(cut_bp)}, dtype=np.int64)
    new_bins["chrom"] = pd.Categorical(new_bins["chrom"], categories=list(chromsizes.index))
    out = Path(out)
    with atomic_path(out) as tmp:
        cooler.create_cooler(
            str(tmp),
            new_bins,
            new_pixels.reset_index(drop=True),
            columns=["count"],
            dtypes={"count": count.dtype},
            assembly=f"{chrom} cut at {cut_bp} (hicmix.peers.peakachu)",
            symmetric_upper=True,
            ordered=True,
            ensure_sorted=False,
        )
    return out


def cut_labels(
    bedpe: str | Path,
    out: str | Path,
    chrom: str,
    start_bp: int,
    end_bp: int,
    name: str,
) -> int:
    """Write the loops of ``chrom`` whose two anchors lie inside ``[start_bp, end_bp)`` to ``out``
    as 6-column BEDPE renamed ``name`` and shifted by ``-start_bp``; returns how many.

    A loop with an anchor crossing ``end_bp`` (or before ``start_bp``) is dropped, so no label of
    the other region can reach training.
    """
    rows = []
    with open(bedpe) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 6 or line.startswith(("#", "track", "browser")):
                continue
            try:
                s1, e1, s2, e2 = (int(fields[k]) for k in (1, 2, 4, 5))
            except ValueError:
                continue  # header
            if normalize_chrom(fields[0]) != chrom or normalize_chrom(fields[3]) != chrom:
                continue
            if min(s1, s2) < start_bp or max(e1, e2) > end_bp:
                continue
            rows.append((name, s1 - start_bp, e1 - start_bp, name, s2 - start_bp, e2 - start_bp))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as handle:
        handle.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    return len(rows)


def read_pool_output(path: str | Path, rename: dict[str, tuple[str, int]]) -> pd.DataFrame:
    """Peakachu ``pool`` output (chrom s1 e1 chrom s2 e2 probability contact) as a call table.

    ``rename`` maps a pseudo-chromosome to (chromosome, offset_bp) added to every coordinate;
    the score is the probability.
    """
    rows = []
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 7:
                continue
            chrom, offset = rename.get(fields[0], (normalize_chrom(fields[0]), 0))
            s1, e1, s2, e2 = (int(fields[k]) + offset for k in (1, 2, 4, 5))
            rows.append((chrom, s1, e1, chrom, s2, e2, float(fields[6])))
    return calls_frame(rows)


def _train_ok(result: RunResult, model: Path) -> bool:
    """Peakachu's exit 1 after the last LOCO model is the expected empty-stack error."""
    if result.returncode == 0:
        return model.exists()
    text = result.log.read_text(errors="replace") if result.log else ""
    return model.exists() and EMPTY_STACK_ERROR in text[-2000:]


def run(
    env: EnvInfo,
    cool: str | Path,
    truth_bedpe: str | Path,
    out_dir: str | Path,
    protocol: Protocol,
    *,
    width: int = 5,
    threshold: float = 0.9,
    seed: int = 0,
    threads: int = 2,
    name: str = "peakachu",
) -> PeerRun:
    """Derive the cut cool and region-A labels, train (wrapper, ``--nproc 1`` for a reproducible
    grid search), score the test part, pool at ``threshold``; the BEDPE is in chromosome
    coordinates. Data preparation is not timed; train, score and pool are."""
    out_dir = Path(out_dir)
    work = out_dir / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    name_a, name_b = pseudo_names(protocol.chrom)
    derived = split_cool(cool, protocol.chrom, protocol.cut_bp, work / "cut.cool")
    labels = work / "labels_regionA.bedpe"
    n_labels = cut_labels(truth_bedpe, labels, protocol.chrom, 0, protocol.cut_bp, name_a)
    res = str(protocol.resolution)
    environ = peer_environ(threads)
    python = env.bin("python")
    models = work / "models"
    train = run_measured(
        [python, WRAPPER, "--seed", seed, "--entry", env.bin("peakachu"), "--",
         "train", "-r", res, "-p", derived, "-b", labels, "-w", width, "--nproc", "1",
         "-O", models],
        work / "train.log",
        env=environ,
    )  # fmt: skip
    if not _train_ok(train, models / f"{name_b}.pkl"):
        train.check("peakachu train")
        raise RuntimeError(f"peakachu train wrote no {name_b}.pkl; see {train.log}")
    scores = work / "scores.bedpe"
    score = run_measured(
        [env.bin("peakachu"), "score_chromosome", "-r", res, "-p", derived, "-C", name_b,
         "-m", models / f"{name_b}.pkl", "-O", scores],
        work / "score.log",
        env=environ,
    ).check("peakachu score_chromosome")  # fmt: skip
    pooled = work / "pooled.bedpe"
    pool = run_measured(
        [env.bin("peakachu"), "pool", "-r", res, "-i", scores, "-o", pooled, "-t", threshold],
        work / "pool.log",
        env=environ,
    ).check("peakachu pool")
    calls = read_pool_output(pooled, {name_b: (protocol.chrom, protocol.cut_bp)})
    bedpe = write_calls(calls, out_dir / f"{name}.bedpe")
    return PeerRun(
        name,
        bedpe,
        env.version,
        f"train on region A (w={width}, {n_labels} labels, seed {seed}, --nproc 1), "
        f"score_chromosome defaults (-l 6 -u 300), pool -t {threshold}",
        {"train": train, "score": score, "pool": pool},
        env.create_s,
        notes="LOCO cut into pseudo-chromosomes; train via the Python 3.11 wrapper; "
        "train exits 1 on the (absent) second LOCO model by design",
        extra={"n_train_labels": n_labels, "seed": seed},
    )
