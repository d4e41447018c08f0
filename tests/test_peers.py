"""Peer tools: output converters, the Peakachu wrapper, the region A/B cut, measured runs.

No test needs the network or the peers' venvs; the one integration test (a real pyHICCUPS run
through bench/peers.py) is opt-in: HICMIX_PEERS=1 and ../shared/data/realdata_v1 present.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import cooler
import numpy as np
import pandas as pd
import pytest

from hicmix.errors import ConfigError, InputError
from hicmix.evaluate.loops import read_bedpe_loops
from hicmix.hic import Band
from hicmix.peers import (
    Protocol,
    calls_frame,
    evaluate_calls,
    region_calls,
    region_truth,
    write_calls,
)
from hicmix.peers import chromosight as cs
from hicmix.peers import envs as peer_envs
from hicmix.peers import peakachu_train_wrapper as wrapper
from hicmix.peers.hiccups import chrom_label, read_hiccups_output
from hicmix.peers.mustache import read_mustache_output
from hicmix.peers.peakachu import cut_labels, read_pool_output, split_cool
from hicmix.peers.rf import sample_negatives

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(__file__).resolve().parents[2] / "shared/data/realdata_v1"
RES = 25_000
#: A small protocol: region A = bins 0..39, region B = bins 40.., loops 2-80 bins apart.
SMALL = Protocol(chrom="chr20", resolution=RES, cut_bp=40 * RES)


def bins_of(table: pd.DataFrame) -> list[list]:
    return table[["chrom", "bin1", "bin2"]].values.tolist()


# --------------------------------------------------------------------------------------------------
# native output -> BEDPE


def test_chromosight_converter(tmp_path: Path) -> None:
    native = tmp_path / "loops.tsv"
    native.write_text(
        "chrom1\tstart1\tend1\tchrom2\tstart2\tend2\tbin1\tbin2\tkernel_id\titeration\tscore"
        "\tpvalue\tqvalue\n"
        "chr20\t100000\t125000\tchr20\t700000\t725000\t4\t28\t0\t0\t0.5082\t0.0\t0.0\n"
        "20\t1025000\t1050000\t20\t1500000\t1525000\t41\t60\t0\t0\t0.61\t0.01\t0.02\n"
    )
    calls = cs.read_detect_output(native)
    assert calls.values.tolist() == [
        ["chr20", 100000, 125000, "chr20", 700000, 725000, 0.5082],
        ["chr20", 1025000, 1050000, "chr20", 1500000, 1525000, 0.61],
    ]
    loops = read_bedpe_loops(write_calls(calls, tmp_path / "c.bedpe"), RES)
    assert bins_of(loops) == [["chr20", 4, 28], ["chr20", 41, 60]]
    assert loops["score"].tolist() == [0.5082, 0.61]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n")
    with pytest.raises(ValueError, match="not a chromosight"):
        cs.read_detect_output(bad)


def test_mustache_converter_scores_by_fdr(tmp_path: Path) -> None:
    native = tmp_path / "out.tsv"
    native.write_text(
        "BIN1_CHR\tBIN1_START\tBIN1_END\tBIN2_CHROMOSOME\tBIN2_START\tBIN2_END\tFDR"
        "\tDETECTION_SCALE\n"
        "chr20\t425000\t450000\tchr20\t3150000\t3175000\t0.01\t2.11\n"
        "chr20\t775000\t800000\tchr20\t1175000\t1200000\t0.0\t2.11\n"
    )
    calls = read_mustache_output(native)
    assert calls[["start1", "end2"]].values.tolist() == [[425000, 3175000], [775000, 1200000]]
    assert calls["score"].iloc[0] == pytest.approx(2.0)
    assert math.isinf(calls["score"].iloc[1])  # FDR 0: most confident
    loops = read_bedpe_loops(write_calls(calls, tmp_path / "m.bedpe"), RES)
    assert bins_of(loops) == [["chr20", 17, 126], ["chr20", 31, 47]]


def test_hiccups_converter_and_chrom_label(tmp_path: Path) -> None:
    native = tmp_path / "peaks.bedpe"
    native.write_text(
        "chr20\t57425000\t57450000\tchr20\t57775000\t57800000\t.\t670\t.\t.\t3.25\t0\t0\t3.86\t0\t0\n"
        "chr20\t20050000\t20075000\tchr20\t20550000\t20575000\t.\t296\t.\t.\t2.64\t0\t0\t2.79\t0\t0\n"
    )
    calls = read_hiccups_output(native)
    assert calls["score"].tolist() == [3.25, 2.64]  # donut fold enrichment
    loops = read_bedpe_loops(write_calls(calls, tmp_path / "h.bedpe"), RES)
    assert bins_of(loops) == [["chr20", 802, 822], ["chr20", 2297, 2311]]
    # pyHICCUPS compares name.lstrip('chr') with -C: 'chr20' would silently match nothing
    assert chrom_label("chr20") == "20" and chrom_label("20") == "20"


def test_peakachu_pool_converter_shifts_the_test_part_back(tmp_path: Path) -> None:
    native = tmp_path / "pooled.bedpe"
    native.write_text(
        "chr20B\t100000\t125000\tchr20B\t300000\t325000\t0.97\t12.5\n"
        "chr20A\t0\t25000\tchr20A\t100000\t125000\t0.93\t8.0\n"
    )
    calls = read_pool_output(native, {"chr20B": ("chr20", 1_000_000)})
    assert calls.values.tolist() == [
        ["chr20", 1_100_000, 1_125_000, "chr20", 1_300_000, 1_325_000, 0.97],
        ["chr20A", 0, 25000, "chr20A", 100000, 125000, 0.93],
    ]


def test_write_calls_handles_empty_and_missing_scores(tmp_path: Path) -> None:
    empty = write_calls(calls_frame([]), tmp_path / "empty.bedpe")
    assert empty.read_text() == ""
    table = calls_frame([("chr1", 0, 10, "chr1", 50, 60, float("nan"))])
    line = write_calls(table, tmp_path / "nan.bedpe").read_text().split()
    assert line == ["chr1", "0", "10", "chr1", "50", "60", "."]


# --------------------------------------------------------------------------------------------------
# the Peakachu wrapper


def test_sorted_set_random_samples_from_sets_deterministically() -> None:
    population = {(i, i + 7) for i in range(200)}
    with pytest.raises(TypeError):
        random.sample(population, 3)  # the Python >= 3.11 failure the wrapper works around
    proxy = wrapper.SortedSetRandom(random)
    draws = []
    for _ in range(2):
        random.seed(5)
        draws.append(proxy.sample(population, 10))
    assert draws[0] == draws[1]
    assert len(set(draws[0])) == 10 and set(draws[0]) <= population
    random.seed(5)
    assert draws[0] == random.sample(sorted(population), 10)  # same population, sorted order
    assert proxy.sample([3, 1, 2], 3, counts=None) is not None  # sequences pass through
    assert proxy.randint is random.randint and proxy.shuffle is random.shuffle


def test_wrapper_patches_peakachu_and_runs_the_entry_point(tmp_path: Path, monkeypatch) -> None:
    """A stand-in ``peakachu`` package whose training module samples from a set, as 2.3 does."""
    package = tmp_path / "peakachu"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "trainUtils.py").write_text(
        "import random\n"
        "import numpy as np\n"
        "def negatives(n):\n"
        "    pool = set(zip(range(50), range(10, 60)))\n"
        "    out = random.sample(pool, n)\n"
        "    random.shuffle(out)\n"
        "    return out, float(np.random.random())\n"
    )
    entry = tmp_path / "peakachu_entry"
    entry.write_text(
        "import json, sys\n"
        "from peakachu import trainUtils\n"
        "out, x = trainUtils.negatives(int(sys.argv[2]))\n"
        "open(sys.argv[1], 'w').write(json.dumps({'neg': out, 'x': x, 'argv': sys.argv[1:]}))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("peakachu", "peakachu.trainUtils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "argv", ["x"])
    results = []
    for k in range(3):
        out = tmp_path / f"run{k}.json"
        seed = 1 if k < 2 else 2
        wrapper.main(["--seed", str(seed), "--entry", str(entry), "--", str(out), "5"])
        results.append(json.loads(out.read_text()))
    same = [{k: r[k] for k in ("neg", "x")} for r in results]
    assert same[0] == same[1]  # same seed, same negatives and numpy draw
    assert same[0]["neg"] != same[2]["neg"]
    assert len(results[0]["neg"]) == 5 and results[0]["argv"] == [str(tmp_path / "run0.json"), "5"]
    module = sys.modules["peakachu.trainUtils"]
    assert isinstance(module.random, wrapper.SortedSetRandom)
    assert wrapper.patch_train_utils(module).random is module.random  # idempotent


def test_wrapper_as_a_script_is_not_shadowed_by_hicmix_peakachu(tmp_path: Path) -> None:
    """Run as a script, the wrapper's folder (holding hicmix's peakachu.py) is sys.path[0]."""
    package = tmp_path / "site" / "peakachu"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "trainUtils.py").write_text("import random\n")
    entry = tmp_path / "entry.py"
    entry.write_text(
        "import json, sys\n"
        "from peakachu import trainUtils\n"
        "open(sys.argv[1], 'w').write(json.dumps(trainUtils.random.sample({5, 3, 9, 1}, 2)))\n"
    )
    out = tmp_path / "out.txt"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    argv = [sys.executable, wrapper.__file__, "--seed", "0", "--entry", str(entry), "--", str(out)]
    subprocess.run(argv, check=True, env=env, capture_output=True, timeout=60)
    first = out.read_text()
    subprocess.run(argv, check=True, env=env, capture_output=True, timeout=60)
    assert out.read_text() == first
    assert len(set(json.loads(first)) & {1, 3, 5, 9}) == 2


def test_patch_train_utils_on_a_module_object() -> None:
    module = types.SimpleNamespace(random=random)
    wrapper.patch_train_utils(module)
    random.seed(0)
    assert len(module.random.sample({1, 2, 3}, 2)) == 2


# --------------------------------------------------------------------------------------------------
# the region A / B cut


def small_cool(path: Path, n_bins: int = 10, res: int = 10) -> Path:
    bins = pd.DataFrame(
        {
            "chrom": ["chr20"] * n_bins,
            "start": np.arange(n_bins) * res,
            "end": np.minimum(np.arange(1, n_bins + 1) * res, n_bins * res - 3),
            "weight": np.linspace(0.5, 1.5, n_bins),
        }
    )
    i, j = np.triu_indices(n_bins)
    pixels = pd.DataFrame({"bin1_id": i, "bin2_id": j, "count": (i + 1) * 100 + j})
    cooler.create_cooler(str(path), bins, pixels, columns=["count"], dtypes={"count": np.int64})
    return path


def test_split_cool_keeps_each_part_and_drops_the_pixels_across(tmp_path: Path) -> None:
    src = small_cool(tmp_path / "in.cool")
    out = split_cool(src, "chr20", 40, tmp_path / "cut.cool")
    clr = cooler.Cooler(str(out))
    assert clr.chromnames == ["chr20B", "chr20A"]  # the test part first (see the module doc)
    assert clr.chromsizes.to_dict() == {"chr20B": 57, "chr20A": 40}
    original = cooler.Cooler(str(src)).matrix(balance=False)[:]
    part_a = clr.matrix(balance=False).fetch("chr20A")
    part_b = clr.matrix(balance=False).fetch("chr20B")
    np.testing.assert_array_equal(part_a, original[:4, :4])
    np.testing.assert_array_equal(part_b, original[4:, 4:])
    assert clr.matrix(balance=False).fetch("chr20B", "chr20A").sum() == 0
    assert (
        clr.info["sum"]
        == original[:4, :4][np.triu_indices(4)].sum() + original[4:, 4:][np.triu_indices(6)].sum()
    )
    weights = cooler.Cooler(str(src)).bins()[:]["weight"].to_numpy()
    np.testing.assert_allclose(clr.bins().fetch("chr20A")["weight"], weights[:4])
    np.testing.assert_allclose(clr.bins().fetch("chr20B")["weight"], weights[4:])
    assert clr.bins().fetch("chr20B")["start"].tolist() == [0, 10, 20, 30, 40, 50]
    with pytest.raises(InputError, match="not a multiple"):
        split_cool(src, "chr20", 45, tmp_path / "x.cool")
    with pytest.raises(InputError, match="no chromosome"):
        split_cool(src, "chr1", 40, tmp_path / "x.cool")


def test_cut_labels_keeps_only_loops_inside_region_a(tmp_path: Path) -> None:
    bedpe = tmp_path / "truth.bedpe"
    bedpe.write_text(
        "chr20\t100\t110\tchr20\t300\t310\n"  # inside A
        "20\t350\t360\tchr20\t390\t400\n"  # inside A, bare name, ends exactly at the cut
        "chr20\t380\t390\tchr20\t395\t405\n"  # anchor crosses the cut: dropped
        "chr20\t500\t510\tchr20\t700\t710\n"  # region B: dropped
        "chr1\t100\t110\tchr1\t300\t310\n"  # other chromosome
        "chr20\t100\t110\tchr21\t300\t310\n"  # inter-chromosomal
    )
    out = tmp_path / "a.bedpe"
    assert cut_labels(bedpe, out, "chr20", 0, 400, "chr20A") == 2
    assert [line.split() for line in out.read_text().splitlines()] == [
        ["chr20A", "100", "110", "chr20A", "300", "310"],
        ["chr20A", "350", "360", "chr20A", "390", "400"],
    ]


def truth_and_calls(tmp_path: Path) -> tuple[Path, Path]:
    bp = RES
    truth = tmp_path / "truth.bedpe"
    truth.write_text(
        "".join(
            f"chr20\t{a * bp}\t{a * bp + bp}\tchr20\t{b * bp}\t{b * bp + bp}\n"
            for a, b in [(5, 15), (10, 30), (20, 21), (45, 60), (50, 80), (60, 200), (70, 90)]
        )
    )
    calls = tmp_path / "calls.bedpe"
    calls.write_text(
        "".join(
            f"chr20\t{a * bp}\t{a * bp + bp}\tchr20\t{b * bp}\t{b * bp + bp}\t{s}\n"
            for a, b, s in [(6, 15, 1), (45, 61, 3), (46, 60, 2), (52, 80, 1), (70, 90, 5)]
        )
    )
    return truth, calls


def test_region_truth_and_evaluate_calls(tmp_path: Path) -> None:
    truth_path, calls_path = truth_and_calls(tmp_path)
    truth_a = region_truth(truth_path, SMALL, "A")
    truth_b = region_truth(truth_path, SMALL, "B")
    # (20, 21) is 1 bin apart and (60, 200) 140: outside 2-80 bins
    assert bins_of(truth_a) == [["chr20", 5, 15], ["chr20", 10, 30]]
    assert bins_of(truth_b) == [["chr20", 45, 60], ["chr20", 50, 80], ["chr20", 70, 90]]
    assert len(region_calls(calls_path, SMALL, "B")) == 4
    row = evaluate_calls(
        "x", calls_path, truth_b, SMALL, {"wall_s": 2.5, "peak_rss_mb": 100.0, "train_s": 1.0}
    )
    # ±1: (45,61) or (46,60) -> (45,60), (70,90) exact; (52,80) is 2 bins from (50,80)
    assert (row["tp"], row["n_calls"], row["n_truth"]) == (2, 4, 3)
    assert row["precision"] == pytest.approx(0.5) and row["recall"] == pytest.approx(2 / 3)
    assert row["f1"] == pytest.approx(4 / 7)
    assert row["tp_r2"] == 3 and row["f1_r2"] == pytest.approx(6 / 7)
    assert (row["wall_s"], row["peak_rss_mb"], row["train_s"]) == (2.5, 100.0, 1.0)
    row_a = evaluate_calls("x", calls_path, truth_a, SMALL, region="A")
    assert (row_a["tp"], row_a["n_calls"]) == (1, 1) and math.isnan(row_a["wall_s"])


def test_chromosight_pearson_is_selected_on_region_a_only(tmp_path: Path, monkeypatch) -> None:
    """The sweep sees only region-A F1; region B never influences the chosen value."""
    truth_path, _ = truth_and_calls(tmp_path)
    header = "chrom1\tstart1\tend1\tchrom2\tstart2\tend2\tbin1\tbin2\tkernel_id\titeration"
    header += "\tscore\tpvalue\tqvalue\n"
    per_value = {  # region-A calls per threshold; region-B calls are perfect only for 0.7
        "default": [(5, 15), (10, 30), (12, 33), (30, 36)],
        "0.5": [(5, 15), (10, 30)],
        "0.7": [(5, 15), (45, 60), (50, 80), (70, 90)],
    }

    def fake_detect(env, cool, prefix, pearson="default", threads=1):
        rows = "".join(
            f"chr20\t{a * RES}\t{a * RES + RES}\tchr20\t{b * RES}\t{b * RES + RES}\t{a}\t{b}"
            "\t0\t0\t0.5\t0\t0\n"
            for a, b in per_value[pearson]
        )
        prefix.parent.mkdir(parents=True, exist_ok=True)
        cs.with_ext(prefix, ".tsv").write_text(header + rows)
        return peer_envs.RunResult(["chromosight"], 0, 1.0, 50.0)

    monkeypatch.setattr(cs, "detect", fake_detect)
    truth_a = region_truth(truth_path, SMALL, "A")

    def region_a_f1(bedpe: Path) -> float:
        return evaluate_calls("s", bedpe, truth_a, SMALL, region="A")["f1"]

    chosen, f1, _, runs = cs.select_pearson(None, "x.cool", tmp_path / "w", region_a_f1, per_value)
    assert f1 == {"default": pytest.approx(2 / 3), "0.5": 1.0, "0.7": pytest.approx(2 / 3)}
    assert chosen == "0.5" and set(runs) == set(per_value)


# --------------------------------------------------------------------------------------------------
# our forest's negatives


def test_rf_negatives_stay_in_region_and_avoid_positives() -> None:
    rng0 = np.random.default_rng(0)
    n_bins, max_diag = 120, 60
    values = rng0.poisson(2.0, size=(max_diag, n_bins)).astype(np.float32)
    band = Band("chr1", n_bins, max_diag, RES, values, np.zeros(n_bins, bool), np.ones(max_diag))
    positives = np.array([[10, 20], [15, 30], [22, 40], [30, 38], [40, 55]], dtype=np.int64)
    draws = [
        sample_negatives(band, positives, 0, 70, 5, np.random.default_rng(3)) for _ in range(2)
    ]
    np.testing.assert_array_equal(draws[0], draws[1])
    neg = draws[0]
    assert len(neg) > 5
    assert (neg[:, 0] >= 5).all() and (neg[:, 1] + 5 < 70).all()
    assert not {tuple(p) for p in neg.tolist()} & {tuple(p) for p in positives.tolist()}
    d = neg[:, 1] - neg[:, 0]
    assert (values[d, neg[:, 0]] > 0).all()


# --------------------------------------------------------------------------------------------------
# environments and measured runs (no network)


def test_run_measured_reports_wall_time_and_peak_rss(tmp_path: Path) -> None:
    code = "import time; b = bytearray(150 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]);"
    code += " time.sleep(0.2); print('done')"
    result = peer_envs.run_measured([sys.executable, "-c", code], tmp_path / "run.log")
    assert result.returncode == 0 and result.wall_s >= 0.2
    assert result.peak_rss_mb > 140
    assert "done" in result.log.read_text()
    failed = peer_envs.run_measured([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "f")
    assert failed.returncode == 3
    with pytest.raises(RuntimeError, match="exit status 3"):
        failed.check("the thing")


def test_ensure_env_reuses_a_complete_env_and_rejects_unknown_tools(tmp_path: Path) -> None:
    env = tmp_path / "chromosight"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    spec = peer_envs.SPECS["chromosight"]
    (env / peer_envs.MARKER).write_text(
        json.dumps(
            {
                "requirements": list(spec.requirements),
                "versions": {"chromosight": "1.6.3"},
                "create_s": 12.5,
            }
        )
    )
    info = peer_envs.ensure_env("chromosight", tmp_path)
    assert not info.created and info.create_s == 12.5 and info.version == "1.6.3"
    assert info.bin("chromosight") == env / "bin" / "chromosight"
    with pytest.raises(ConfigError, match="unknown peer tool"):
        peer_envs.ensure_env("juicer", tmp_path)


def test_peer_environ_caps_threads_and_drops_pythonpath(monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = peer_envs.peer_environ(2)
    assert "PYTHONPATH" not in env
    assert env["OMP_NUM_THREADS"] == "2" and env["NUMBA_NUM_THREADS"] == "2"


def test_specs_carry_the_documented_pins() -> None:
    reqs = {tool: set(spec.requirements) for tool, spec in peer_envs.SPECS.items()}
    assert {"peakachu==2.3", "cooler==0.11.0"} <= reqs["peakachu"]
    assert {"chromosight==1.6.3", "pandas<3"} <= reqs["chromosight"]
    assert {"mustache-hic==1.3.3", "numpy<2", "pandas<3", "hic-straw==1.3.1"} <= reqs["mustache"]
    assert {"hicpeaks==0.3.9", "statsmodels<0.15", "numpy<2", "pandas<3"} <= reqs["hiccups"]
    for tool in peer_envs.SPECS:
        text = (REPO / "workflow/envs" / f"{tool}.yaml").read_text()
        assert "python =3.11" in text


# --------------------------------------------------------------------------------------------------
# opt-in: a real peer on the real data


@pytest.mark.realdata
@pytest.mark.skipif(
    os.environ.get("HICMIX_PEERS") != "1" or not REALDATA.exists(),
    reason="opt-in: set HICMIX_PEERS=1 (creates/uses a pyHICCUPS venv) and provide realdata_v1",
)
def test_bench_peers_runs_pyhiccups_on_real_data(tmp_path: Path) -> None:
    envs = Path(os.environ.get("HICMIX_PEERS_ENVS", REPO / "results/peers/envs"))
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench/peers.py"),
            *("--tools", "hiccups", "--envs", str(envs), "--out", str(tmp_path / "peers")),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])["hiccups"]
    assert result["version"] == "0.3.9"
    assert 0.45 < result["f1"] < 0.7  # §9: 0.561
    assert result["wall_s"] > 0 and result["peak_rss_mb"] > 50
    table = pd.read_csv(tmp_path / "peers/peers.tsv", sep="\t")
    assert table.loc[0, "n_truth"] == 119
    assert (tmp_path / "peers/hiccups.bedpe").stat().st_size > 0


# --------------------------------------------------------------------------------------------------
# hicmix's own caller (hicmix.peers.hicmix_caller) and the bench's summary


def _planted_band(n: int, loops: list[tuple[int, int]], depth: int, seed: int) -> np.ndarray:
    """Band of Poisson counts of a decay map with an enriched pixel (+ cross) at each loop."""
    rng = np.random.default_rng(seed)
    d = np.arange(depth)[:, None]
    mean = np.broadcast_to(400.0 / (1.0 + d) ** 1.1, (depth, n)).copy()
    for a, b in loops:
        mean[b - a, a] *= 3.0
        for x, y in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            mean[b + y - a - x, a + x] *= 1.5
    band = rng.poisson(mean).astype(np.float64)
    band[np.arange(n)[None, :] + d >= n] = np.nan
    return band


def test_hicmix_caller_trains_and_selects_on_region_a_only() -> None:
    from hicmix.peers.hicmix_caller import region_band, train_on_region_a
    from hicmix.predict.loops import CallerSettings

    n, cut, val = 420, 300, 200
    anchors = np.arange(10, n - 40, 10)
    rng = np.random.default_rng(5)
    loops = [(int(a), int(a + rng.integers(5, 25))) for a in anchors]
    band = _planted_band(n, loops, 40, seed=5)
    assert np.isnan(region_band(band, cut)[5, cut - 5 :]).all()
    truth = pd.DataFrame(loops, columns=["bin1", "bin2"]).assign(chrom="chr20")
    truth_a = truth[truth["bin2"] < cut]
    protocol = Protocol("chr20", RES, cut * RES, 2, 25)
    settings = CallerSettings(min_bins=2, max_bins=25)
    _model, chosen, report = train_on_region_a(band, truth_a, protocol, settings, val * RES)
    assert report["train_loops"] == (truth_a["bin2"] < val).sum() and report["val_loops"] > 5
    assert report["val"]["f1"] > 0.7 and report["val_candidate_recall"] > 0.9
    assert (chosen.threshold, chosen.pool_radius) == (
        report["val"]["threshold"],
        report["val"]["pool_radius"],
    )
    scrambled = band.copy()
    scrambled[:, cut:] = rng.permutation(scrambled[:, cut:].ravel()).reshape(-1, n - cut)
    _, _, again = train_on_region_a(scrambled, truth_a, protocol, settings, val * RES)
    assert again == report  # region B's contacts never reach training or selection


def _bench_module() -> types.ModuleType:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_peers", REPO / "bench/peers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_summary_reports_the_goal_for_the_hicmix_row() -> None:
    bench = _bench_module()
    assert "hicmix" in bench.ALL_TOOLS
    rows = [
        {"tool": "hicmix", "precision": 0.6, "recall": 0.7, "f1": 0.65, "f1_r2": 0.7,
         "wall_s": 9.0, "peak_rss_mb": 400.0, "version": "hicmix", "score_s": 1.0},
        {"tool": "peakachu", "precision": 0.5, "recall": 0.3, "f1": 0.38, "f1_r2": 0.4,
         "wall_s": 60.0, "peak_rss_mb": 600.0, "version": "2.3", "score_s": 9.0},
        {"tool": "mustache", "status": "failed: no venv"},
    ]  # fmt: skip
    out = json.loads(json.dumps(bench.summary(rows)))
    assert out["hicmix"]["f1"] == 0.65 and out["peakachu"]["score_s"] == 9.0
    assert out["mustache"] == {"status": "failed: no venv"}
    assert out["goal"] == {
        "f1_bar": 0.44,
        "f1_above_bar": True,
        "peakachu_score_s_min": 9.0,
        "faster_than_peakachu": True,
    }
    assert "goal" not in bench.summary(rows[1:])
