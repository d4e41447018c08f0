"""hicmix report: self-contained HTML from a synthetic metrics.tsv and prediction files."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from hicmix.cli import cli
from hicmix.evaluate import write_metrics
from hicmix.report import tables
from hicmix.report.data import Stat
from hicmix.report.reference import INFLATION_STATEMENT, REFERENCE_MARKDOWN

REPO = Path(__file__).resolve().parents[1]
DOC = Path(__file__).resolve().parents[2] / "shared/docs/baselines_and_metrics.md"
SEEDS = (0, 1, 2)
W = 10  # window side of the hicmap fixture

# per (method, metric): values of seeds 0, 1, 2 (test split, SIMA -> SIMA)
LOOPS = {
    "hicmix-bimodal": {
        "gw_precision_r1": (0.50, 0.52, 0.54),
        "gw_recall_r1": (0.34, 0.35, 0.36),
        "gw_f1_r1": (0.40, 0.42, 0.44),
        "gw_f1_r2": (0.45, 0.47, 0.49),
        "f1": (0.85, 0.86, 0.87),
        "precision": (0.84, 0.85, 0.86),
        "recall": (0.86, 0.87, 0.88),
        "auroc": (0.93, 0.94, 0.95),
        "auprc": (0.92, 0.93, 0.94),
        "auprc_1to10": (0.60, 0.61, 0.62),
    },
    "peakachu": {
        "gw_precision_r1": (0.45, 0.46, 0.47),
        "gw_recall_r1": (0.30, 0.31, 0.32),
        "gw_f1_r1": (0.36, 0.38, 0.40),
        "gw_f1_r2": (0.41, 0.42, 0.43),
        "f1": (0.80, 0.81, 0.82),
        "precision": (0.79, 0.80, 0.81),
        "recall": (0.81, 0.82, 0.83),
        "auroc": (0.90, 0.91, 0.92),
        "auprc": (0.89, 0.90, 0.91),
    },
    "dloopcaller": {
        "gw_f1_r1": (0.45, 0.46, 0.47),
        "f1": (0.83, 0.84, 0.85),
        "auroc": (0.955, 0.960, 0.965),
        "auprc": (0.95, 0.95, 0.95),
    },
}
HICMAP = {
    "hicmix-tracks_only": {"distance_pearson_mean": 0.40, "scc": 0.55, "pixel_pearson": 0.95},
    "epiphany": {"distance_pearson_mean": 0.30, "scc": 0.60, "pixel_pearson": 0.94},
    "decay": {"distance_pearson_mean": 0.0, "scc": 0.0, "pixel_pearson": 0.93},
}
EXPRESSION = {
    "hicmix-bimodal": {"pearson": 0.70, "spearman": 0.66, "r2": 0.45, "above_median_auroc": 0.88},
    "deepchrome": {"pearson": 0.75, "spearman": 0.70, "r2": 0.50, "above_median_auroc": 0.86},
    "linear": {"pearson": 0.60, "spearman": 0.58, "r2": 0.33, "above_median_auroc": 0.84},
}


def _rows(task, method, metric, values, split="test", train="SIMA", test="SIMA"):
    return [
        {
            "task": task,
            "method": method,
            "cell_line": test,
            "train_cell_line": train,
            "split": split,
            "metric": metric,
            "value": value,
            "seed": seed,
        }
        for seed, value in zip(SEEDS, values, strict=True)
    ]


def _spread(value: float, step: float = 0.01) -> tuple[float, ...]:
    return (value - step, value, value + step)


def _loops_rows() -> list[dict]:
    rows = []
    for method, metrics in LOOPS.items():
        for metric, values in metrics.items():
            rows += _rows("loops", method, metric, values)
            rows += _rows("loops", method, metric, tuple(v - 0.05 for v in values), "val")
    # a cross-cell pairing of ours only (no baseline shares it)
    rows += _rows("loops", "hicmix-bimodal", "auroc", (0.88, 0.89, 0.90), train="SIMA", test="SIMB")
    return rows


def _hicmap_rows() -> list[dict]:
    rows = []
    for method, metrics in HICMAP.items():
        for metric, value in metrics.items():
            rows += _rows("hicmap", method, metric, _spread(value))
            rows += _rows("hicmap", method, metric, _spread(value - 0.02), "val")
        for d in range(W):
            base = metrics["distance_pearson_mean"]
            r = 0.0 if method == "decay" else base * (1 - d / (2 * W)) + 0.1
            rows += _rows("hicmap", method, f"pearson_d{d:02d}", _spread(r, 0.02))
    return rows


def _expression_rows() -> list[dict]:
    rows = []
    for method, metrics in EXPRESSION.items():
        for metric, value in metrics.items():
            rows += _rows("expression", method, metric, _spread(value))
            rows += _rows("expression", method, metric, _spread(value - 0.03), "val")
    for n, value in ((100, 0.35), (1000, 0.60)):  # learning curve, metric suffix
        rows += _rows("expression", "hicmix-bimodal", f"pearson_n{n}", _spread(value))
        rows += _rows("expression", "hicmix-bimodal", f"above_median_auroc_n{n}", _spread(value))
    for n, value in ((100, 0.50), (1000, 0.68)):  # learning curve, method suffix
        rows += _rows("expression", f"deepchrome-n{n}", "pearson", _spread(value))
    return rows


def _loop_predictions(folder: Path, seed: int, quality: float) -> None:
    rng = np.random.default_rng(seed)
    frames = []
    for split, n in (("val", 40), ("test", 120)):
        label = rng.integers(0, 2, n)
        score = 1 / (1 + np.exp(-(quality * (2 * label - 1) + rng.normal(0, 1, n))))
        frames.append(
            pd.DataFrame(
                {
                    "cell_line": "SIMA",
                    "chrom": "chr3",
                    "bin_x": np.arange(n),
                    "bin_y": np.arange(n) + 5,
                    "distance": 5,
                    "split": split,
                    "label": label,
                    "score": score,
                }
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_csv(folder / "predictions.tsv", sep="\t", index=False)
    (folder / "calls.bedpe").write_text("chr3\t0\t10000\tchr3\t50000\t60000\t0.9\n")


def _map_predictions(folder: Path, seed: int, noise: float) -> None:
    rng = np.random.default_rng(seed)
    n = 8
    d = np.abs(np.arange(W)[:, None] - np.arange(W)[None, :])
    true = (1 / (1 + d))[None] * rng.uniform(0.5, 1.5, (n, 1, 1)) + rng.normal(0, 0.05, (n, W, W))
    pred = true + rng.normal(0, noise, true.shape)
    mask = np.ones(true.shape, dtype=np.uint8)
    mask[:, 0, :] = 0
    folder.mkdir(parents=True, exist_ok=True)
    strings = h5py.string_dtype()
    with h5py.File(folder / "predictions.h5", "w") as handle:
        handle["pred"] = pred.astype(np.float32)
        handle["true"] = true.astype(np.float32)
        handle["mask"] = mask
        handle["bins"] = np.stack([np.arange(n) * 20 + 100] * 2, axis=1).astype(np.int64)
        split = ["val"] * 2 + ["test"] * (n - 2)
        handle.create_dataset("split", data=np.array(split, dtype=object), dtype=strings)
        handle.create_dataset("cell_line", data=np.array(["SIMA"] * n, dtype=object), dtype=strings)
        handle.create_dataset("chrom", data=np.array(["chr3"] * n, dtype=object), dtype=strings)


def _expression_predictions(folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    truth = rng.normal(1, 0.5, n)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "gene_id": [f"g{i}" for i in range(n)],
            "cell_line": "SIMA",
            "prediction": truth + rng.normal(0, 0.3, n),
            "truth": truth,
            "split": ["val"] * 10 + ["test"] * (n - 10),
        }
    ).to_csv(folder / "expression.tsv", sep="\t", index=False)


def build_run(root: Path, tasks=("loops", "hicmap"), realdata: bool = False) -> dict[str, Path]:
    """A fake run folder: results/metrics.tsv, prediction folders and a resolved config."""
    results = root / "results"
    cell = "GM12878" if realdata else "SIMA"
    rows = []
    if "loops" in tasks:
        rows += _loops_rows()
        for method, quality in (("hicmix-bimodal", 2.0), ("peakachu", 1.2), ("dloopcaller", 1.5)):
            source = "finetune" if method.startswith("hicmix") else "baselines"
            for seed in (0, 1):
                _loop_predictions(
                    results / source / "loops" / method / cell / cell / f"seed{seed}",
                    seed,
                    quality,
                )
    if "hicmap" in tasks:
        rows += _hicmap_rows()
        for method, noise in (("hicmix-tracks_only", 0.05), ("epiphany", 0.1)):
            source = "finetune" if method.startswith("hicmix") else "baselines"
            _map_predictions(results / source / "hicmap" / method / cell / cell / "seed0", 0, noise)
    if "expression" in tasks:
        rows += _expression_rows()
        _expression_predictions(
            results / "finetune" / "expression" / "hicmix-bimodal" / cell / cell / "seed0", 0
        )
    if realdata:
        rename = {"SIMA": "GM12878", "SIMB": "K562"}
        rows = [
            {
                **r,
                "cell_line": rename[r["cell_line"]],
                "train_cell_line": rename[r["train_cell_line"]],
            }
            for r in rows
        ]
    write_metrics(rows, results / "metrics.tsv")
    splits = (
        {"val": ["chr20:30000000-37825000"], "test": ["chr20:37825000-"]}
        if realdata
        else {"val": ["chr2"], "test": ["chr3", "chr6"]}
    )
    config = {"cell_lines": "config/cell_lines.tsv", "resolution": 10000, "splits": splits}
    config_file = results / "report" / "config.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config))
    return {"results": results, "metrics": results / "metrics.tsv", "config": config_file}


def render(run: dict[str, Path], out: Path, *extra: str) -> str:
    args = [
        "report",
        "--metrics",
        str(run["metrics"]),
        "--results",
        str(run["results"]),
        "--config-file",
        str(run["config"]),
        "--cores",
        "2",
        "--snakemake-configfile",
        "config/x.yaml",
        "--out",
        str(out),
        *extra,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("run")
    return render(build_run(root), root / "results" / "report" / "index.html")


# --------------------------------------------------------------------------------------------------
# the page


def test_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!doctype html>")
    assert "<style>" in page
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", page)
    external = [r for r in refs if not r.startswith(("data:", "#"))]
    assert external == []
    assert "http://" not in page and "https://" not in page
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(images) >= 3  # ROC/PR, r(d), contact maps
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "<link" not in page and "<script" not in page


def test_tables_hold_mean_sd_from_the_metrics(page: str) -> None:
    # hicmix-bimodal gw_f1_r1 over seeds (0.40, 0.42, 0.44): mean 0.420, sd 0.020
    assert "0.420 ± 0.020" in page
    # best per column in bold: dloopcaller leads genome-wide F1 (±1) and patch AUROC
    assert "<b>0.460 ± 0.010</b>" in page
    assert "<b>0.960 ± 0.005</b>" in page
    # ours leads patch F1@0.5
    assert "<b>0.860 ± 0.010</b>" in page
    # val split in a collapsed block, with its own numbers (test - 0.05)
    val = page[page.index("val split (model selection)") :]
    assert "0.370 ± 0.020" in val
    assert "<details><summary>val split" in page


def test_comparison_sentences_name_the_winner(page: str) -> None:
    assert (
        "hicmix-bimodal (SIMA → SIMA) beats peakachu on genome-wide F1 (±1 bin) by 0.040 "
        "(0.420 ± 0.020 vs 0.380 ± 0.020)"
    ) in page
    assert "does not beat dloopcaller on genome-wide F1 (±1 bin): it trails by 0.040" in page
    assert "beats peakachu on patch AUROC by 0.030" in page
    # hicmap: ours beats decay and epiphany on r(d) but trails epiphany on SCC
    assert "hicmix-tracks_only (SIMA → SIMA) beats decay on mean per-distance Pearson" in page
    assert "does not beat epiphany on SCC: it trails by 0.050" in page
    # numbers come from the table: the ratio sentence is computed (0.86 / 0.42)
    assert "patch F1 0.860 is 2.0× its genome-wide F1" in page


def test_loops_lead_with_genome_wide_calling(page: str) -> None:
    loops = page.index("<section id='loops'>")
    gw = page.index("<section id='loops-genomewide'>")
    patch = page.index("<section id='loops-patch'>")
    assert loops < gw < patch
    assert INFLATION_STATEMENT in page[patch:]
    assert "F1 (±1 bin)" in page[gw:patch] and "AUROC" in page[patch:]


def test_missing_task_and_decay_row(page: str) -> None:
    expression = page[page.index("<section id='expression'>") :]
    assert "not run: metrics.tsv has no expression rows" in expression
    hicmap = page[page.index("<section id='hicmap'>") : page.index("<section id='expression'>")]
    assert "<td class='l'>decay</td>" in hicmap
    assert "id='reference'" not in page  # not the realdata config


def test_header_and_commands(page: str) -> None:
    assert "hicmix version" in page and "scikit-learn" in page
    assert "Resolved config (YAML)" in page
    assert "chr3, chr6" in page  # the test split
    assert "snakemake --cores 2 --configfile config/x.yaml" in page


def test_expression_learning_curve_and_realdata_reference(tmp_path: Path) -> None:
    run = build_run(tmp_path, tasks=("expression",), realdata=True)
    page = render(run, tmp_path / "index.html")
    assert "deepchrome (GM12878 → GM12878)" not in page  # ours first
    assert (
        "hicmix-bimodal (GM12878 → GM12878) does not beat deepchrome on Pearson: it trails by 0.050"
    ) in page
    assert "beats deepchrome on AUROC (above median) by 0.020" in page
    expression = page[page.index("<section id='expression'>") : page.index("id='reference'")]
    assert expression.count("data:image/png;base64,") == 3  # learning curve, ROC/PR, scatter
    assert "0.350 ± 0.010" in expression  # pearson_n100 of ours in the learning-curve table
    # learning-curve rows stay out of the main table
    assert "deepchrome-n100" not in expression.split("<h3>Learning curve</h3>")[0]
    assert "not run: metrics.tsv has no loops rows" in page
    # reference block: separate, labelled, after every section of ours
    reference = page.index("id='reference'")
    assert "reference, measured outside this run" in page[reference:]
    assert "chromosight 1.6.3, defaults" in page[reference:]
    assert "0.632 / 0.504 / 0.561" not in page[:reference]
    assert page.index("<section id='expression'>") < reference < page.index("id='commands'")


def test_unreadable_predictions_become_notes(tmp_path: Path) -> None:
    run = build_run(tmp_path, tasks=("loops",))
    bad = run["results"] / "finetune/loops/hicmix-bimodal/SIMA/SIMA/seed0/predictions.tsv"
    bad.write_text("nonsense\n1\n")
    page = render(run, tmp_path / "index.html")
    assert "ROC/PR of SIMA → SIMA skipped for hicmix-bimodal" in page and "predictions.tsv" in page
    patch = page[page.index("<section id='loops-patch'>") :]
    assert "data:image/png;base64," in patch  # the baselines are still drawn


def test_missing_metrics_file_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["report", "--metrics", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "x.html")]
    )
    assert result.exit_code == 1
    assert "metrics file not found" in result.output
    assert not (tmp_path / "x.html").exists()


def test_empty_run_renders_every_section_as_not_run(tmp_path: Path) -> None:
    write_metrics([], tmp_path / "metrics.tsv")
    out = tmp_path / "index.html"
    result = CliRunner().invoke(
        cli, ["report", "--metrics", str(tmp_path / "metrics.tsv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.count("class='notrun'") >= 4  # split + three tasks
    assert "snakemake --cores N" in text


# --------------------------------------------------------------------------------------------------
# metric names and sentences


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("f1", ("patch", "f1", "")),
        ("patch_auroc", ("patch", "auroc", "")),
        ("auprc_1to10", ("patch", "auprc", "1:10")),
        ("gw_f1_r1", ("genomewide", "f1", "±1")),
        ("f1_radius2", ("genomewide", "f1", "±2")),
        ("genomewide_precision_1", ("genomewide", "precision", "±1")),
        ("calling_recall_20kb", ("genomewide", "recall", "±20kb")),
        ("gw_f1", ("genomewide", "f1", "")),
        ("n_pos", None),
        ("apa_p2ll", None),
        ("recall_r1_100kb", None),  # a distance stratum: not a main column
    ],
)
def test_classify_loop_metric(name: str, expected: tuple | None) -> None:
    assert tables.classify_loop_metric(name) == expected


def test_loops_columns_order() -> None:
    gw, patch = tables.loops_columns(
        ["gw_f1_r2", "gw_f1_r1", "gw_recall_r1", "gw_precision_r1", "auroc", "f1", "auprc_1to10"]
    )
    assert [c.label for c in gw] == ["P (±1 bin)", "R (±1 bin)", "F1 (±1 bin)", "F1 (±2 bins)"]
    assert [c.label for c in patch] == ["F1@0.5", "AUROC", "AUPRC (1:10)"]


def test_learning_curve_split() -> None:
    summary = pd.DataFrame(
        {
            "task": ["expression"] * 4 + ["hicmap"],
            "method": ["m", "m", "m-n100", "m", "m"],
            "cell_line": "A",
            "train_cell_line": "A",
            "split": "test",
            "metric": ["pearson", "pearson_n100", "pearson", "r2", "pearson_d01"],
            "mean": 0.5,
            "sd": 0.1,
            "n": 3,
        }
    )
    main, lc = tables.learning_curve_split(summary)
    assert list(main["metric"]) == ["pearson", "r2", "pearson_d01"]
    assert list(zip(lc["base_method"], lc["base_metric"], lc["n_genes"], strict=True)) == [
        ("m", "pearson", 100),
        ("m", "pearson", 100),
    ]


def _stats(values: dict[str, dict[str, float]], task: str = "hicmap") -> dict:
    return {
        (task, "test", method, "A", "A", metric): Stat(v, 0.001, 3)
        for method, metrics in values.items()
        for metric, v in metrics.items()
    }


def test_sentence_lower_is_better_and_ties() -> None:
    stats = _stats(
        {"hicmix-x": {"pixel_mse": 0.10, "scc": 0.5}, "epi": {"pixel_mse": 0.20, "scc": 0.5}}
    )
    cols = [tables.Column("pixel_mse", "MSE", higher_is_better=False), tables.Column("scc", "SCC")]
    (sentence,) = tables.comparison_sentences(stats, "hicmap", cols)
    assert "beats epi on MSE by 0.100" in sentence
    assert "ties with epi on SCC" in sentence


def test_sentence_without_ours_or_baseline() -> None:
    cols = [tables.Column("scc", "SCC")]
    only_base = tables.comparison_sentences(_stats({"epi": {"scc": 0.5}}), "hicmap", cols)
    assert only_base == [
        "No hicmix model has test metrics for hicmap, so there is nothing to compare."
    ]
    only_ours = tables.comparison_sentences(_stats({"hicmix-a": {"scc": 0.5}}), "hicmap", cols)
    assert only_ours == ["No baseline has test metrics for hicmap, so there is nothing to compare."]


def test_decay_note_when_ours_does_not_beat_decay() -> None:
    stats = _stats(
        {"hicmix-a": {"distance_pearson_mean": 0.0}, "decay": {"distance_pearson_mean": 0.0}}
    )
    headlines = tables.headline_columns("hicmap", ["distance_pearson_mean"])
    (sentence,) = tables.comparison_sentences(stats, "hicmap", headlines)
    assert "ties with decay" in sentence and "has learned only the contact decay P(s)" in sentence


@pytest.mark.skipif(not DOC.exists(), reason="shared/docs not available")
def test_reference_copy_matches_the_doc() -> None:
    doc = DOC.read_text()
    section = doc[doc.index("## 9.") :]
    for line in REFERENCE_MARKDOWN.splitlines():
        assert line in section
    assert " ".join(INFLATION_STATEMENT.split()) in " ".join(section.split())


# --------------------------------------------------------------------------------------------------
# workflow rule and browser rendering


def test_snakemake_rule_renders_the_report(tmp_path: Path) -> None:
    pytest.importorskip("snakemake")
    build_run(tmp_path)
    (tmp_path / "results" / "report" / "config.yaml").unlink()  # the rule writes it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"splits": {"test": ["chr3"]}}))
    (tmp_path / "Snakefile").write_text(
        f'configfile: "config.yaml"\n\ninclude: "{REPO / "workflow" / "rules" / "report.smk"}"\n'
    )
    result = subprocess.run(
        ["snakemake", "--cores", "1", "results/report/index.html"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "results" / "report" / "index.html").read_text()
    assert "snakemake --cores N" in page  # --cores is left out: another one must not redo it
    assert "test: [chr3]" in page or "- chr3" in page  # the resolved config is embedded


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not on PATH")
def test_browser_screenshot_is_not_blank(tmp_path: Path) -> None:
    run = build_run(tmp_path, tasks=("loops", "hicmap", "expression"))
    out = tmp_path / "index.html"
    render(run, out)
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(dir=tmp_path)
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1280,3000",
            out.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert _png_size(shot.read_bytes()) == (1280, 3000)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # text, tables and figures, not a blank page
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.005  # some dark (text) pixels


# --------------------------------------------------------------------------------------------------
# the task names the workflow writes: loops_genomewide, expression_learning_curve, expression_npz


def _workflow_rows() -> list[dict]:
    rows = []
    for method, f1 in (("hicmix-bimodal-nonpre", 0.30), ("peakachu", 0.25)):
        for metric, value in (("f1_r1", f1), ("precision_r1", f1 + 0.1), ("f1_r2", f1 + 0.05)):
            rows += _rows("loops_genomewide", method, metric, _spread(value))
        rows += _rows("loops_genomewide", method, "recall_r1_100kb-200kb", _spread(0.2))
        rows += _rows("loops", method, "auroc", _spread(0.9 if f1 > 0.28 else 0.85))
    for method, pearson in (("hicmix-bimodal-nonpre", 0.62), ("deepchrome", 0.58)):
        rows += _rows("expression", method, "pearson", _spread(pearson))
        rows += _rows("expression", method, "above_median_auroc", _spread(pearson + 0.2))
    for metric in ("pearson", "above_median_auroc"):  # a transfer run of ours
        rows += _rows("expression", "hicmix-bimodal-nonpre", metric, _spread(0.5), test="SIMB")
    for size, value in (("100", 0.41), ("1000", 0.52), ("all", 0.58)):
        rows += _rows("expression_learning_curve", "deepchrome", f"pearson_n{size}", _spread(value))
        count = 1843.0 if size == "all" else float(size)
        rows += _rows(
            "expression_learning_curve", "deepchrome", f"n_train_genes_n{size}", (count,) * 3
        )
    for method, auroc in (("linear", 0.929), ("deepchrome", 0.935)):
        for metric, value in (("above_median_auroc", auroc), ("pearson", auroc - 0.12)):
            rows += _rows(
                "expression_npz", method, metric, _spread(value, 0.002), "cv", "C11", "C11"
            )
    return rows


def _npz_predictions(folder: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.normal(1, 0.5, 100)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "gene_id": [f"g{i}" for i in range(100)],
            "fold": np.arange(100) % 5 + 1,
            "prediction": truth + rng.normal(0, 0.3, 100),
            "truth": truth,
            "probability": 1 / (1 + np.exp(-(truth - 1) * 4 + rng.normal(0, 1, 100))),
        }
    )
    frame.to_csv(folder / "expression.tsv", sep="\t", index=False)
    (folder / "summary.json").write_text('{"npz": "x/deepchrome_like.npz"}')


@pytest.fixture(scope="module")
def workflow_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("wf")
    results = root / "results"
    write_metrics(_workflow_rows(), results / "metrics.tsv")
    for method in ("hicmix-bimodal-nonpre", "deepchrome"):
        source = "finetune" if method.startswith("hicmix") else "baselines"
        folder = results / source / "expression" / method / "SIMA" / "SIMA" / "seed0"
        _expression_predictions(folder, 0)
        (folder / "summary.json").write_text('{"train_median": 1.0}')
    # the transfer run records no training median: its same-cell run's is used
    _expression_predictions(
        results / "finetune/expression/hicmix-bimodal-nonpre/SIMA/SIMB/seed0", 0
    )
    for method in ("linear", "deepchrome"):
        _npz_predictions(results / "baselines/expression_npz" / method / "C11/C11/seed0", 0)
    run = {"results": results, "metrics": results / "metrics.tsv"}
    run["config"] = results / "config.yaml"
    run["config"].write_text(yaml.safe_dump({"splits": {"test": ["chr3"]}}))
    return render(run, root / "index.html")


def test_genome_wide_task_fills_the_loops_section(workflow_page: str) -> None:
    page = workflow_page
    gw = page[page.index("<section id='loops-genomewide'>") : page.index("id='loops-patch'")]
    assert "F1 (±1 bin)" in gw and "F1 (±2 bins)" in gw and "P (±1 bin)" in gw
    assert "<b>0.300 ± 0.010</b>" in gw  # ours leads genome-wide F1 (±1)
    assert "hicmix-bimodal-nonpre (SIMA → SIMA) beats peakachu on genome-wide F1 (±1 bin)" in page
    # folded tasks get no section of their own, the header still lists them
    assert "Task loops_genomewide" not in page and "Task expression_learning_curve" not in page
    assert "expression, expression_learning_curve, expression_npz, loops, loops_genomewide" in page


def test_learning_curve_task_and_expression_roc(workflow_page: str) -> None:
    page = workflow_page
    expression = page[page.index("<section id='expression'>") : page.index("id='realdata'")]
    assert "every training gene (1,843)" in expression
    assert "0.410 ± 0.010" in expression and "0.520 ± 0.010" in expression
    assert "n_train_genes" not in expression and "pearson_nall" not in expression
    roc = expression[expression.index("Above-median class") : expression.index("Predicted vs")]
    assert roc.count("data:image/png;base64,") == 2  # SIMA → SIMA and the transfer to SIMB
    assert "skipped" not in roc
    # targets before --configfile, which swallows every word after it
    command = re.search(r"command: <code>([^<]*)</code>", roc)[1]
    assert command.startswith("snakemake --cores 2 ")
    assert command.endswith(" --configfile config/x.yaml")
    assert (
        "results/finetune/expression/hicmix-bimodal-nonpre/SIMA/SIMA/seed0/metrics.tsv" in command
    )


def test_realdata_section_shows_the_npz_baselines(workflow_page: str) -> None:
    page = workflow_page
    real = page[page.index("<section id='realdata'>") : page.index("id='commands'")]
    assert "x/deepchrome_like.npz" in real
    assert "<b>0.935 ± 0.002</b>" in real  # deepchrome AUROC, cv split, best in bold
    assert real.count("data:image/png;base64,") == 1  # the CV ROC/PR of both baselines
    assert "baselines/expression_npz/linear/C11/C11/seed0/metrics.tsv" in real
    assert "<a href='#realdata'>" in page


def test_default_dag_ends_with_the_report(tmp_path: Path) -> None:
    """rule all of the real Snakefile asks for the report when tasks are enabled, not otherwise."""
    pytest.importorskip("snakemake")
    shutil.copytree(REPO / "config", tmp_path / "config")
    (tmp_path / "config/off.yaml").write_text(yaml.safe_dump({"tasks": {"enabled": False}}))

    def dry_run(*extra: str) -> str:
        args = ["snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", "-n", *extra]
        result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    text = dry_run()
    assert re.search(r"^rule report:\n\s+input: results/metrics.tsv", text, re.M)
    assert "output: results/report/index.html" in text
    assert "rule report:" not in dry_run("--configfile", "config/off.yaml")


# --------------------------------------------------------------------------------------------------
# real data: hicmix vs peer tools (bench/peers.py outputs, optional)


def _peers_files(folder: Path, hicmix_f1: float) -> pd.DataFrame:
    """A small peers.tsv / peers_by_distance.tsv / versions.json like bench/peers.py writes."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "tool": ["hicmix", "chromosight", "peakachu", "hiccups"],
            "version": ["hicmix 0.1.0", "1.6.3", "2.3", "0.3.9"],
            "settings": ["gb scorer", "defaults", "w=5", "--pw 1 --ww 3"],
            "precision": [0.5123, 0.2011, 0.4658, 0.6452],
            "recall": [0.4321, 0.3025, 0.2857, 0.5042],
            "f1": [hicmix_f1, 0.2368, 0.3542, 0.4012],
            "f1_r2": [hicmix_f1 + 0.02, 0.2961, 0.3854, 0.4155],
            "wall_s": [12.34, 35.34, 148.5, 40.51],
            "peak_rss_mb": [483.1, 506.9, 566.4, 535.6],
            "score_s": [2.5, np.nan, 40.0, np.nan],
            "reference_f1": [np.nan, 0.237, 0.386, 0.561],
            "status": ["ok"] * 4,
            "notes": ["train 9 s", "", "LOCO pseudo-chromosomes", ""],
        }
    )
    frame.to_csv(folder / "peers.tsv", sep="\t", index=False)
    strata = [("0kb-100kb", 0.7, 0.2), ("100kb-500kb", 0.8, 0.4)]
    pd.DataFrame(
        [
            {"tool": t, "stratum": s, "recall": r if t == "hicmix" else o}
            for t in frame["tool"]
            for s, r, o in strata
        ]
    ).to_csv(folder / "peers_by_distance.tsv", sep="\t", index=False)
    versions = {
        "peakachu": {"distribution": "peakachu", "version": "2.3", "patch": "train wrapper"},
        "chromosight": {"distribution": "chromosight", "version": "1.6.3", "patch": "none"},
        "hiccups": {"distribution": "hicpeaks", "version": "0.3.9", "patch": "none"},
        "_run": {"machine": "vm x86_64", "cpu_count": 2, "loadavg_start": [1.5, 1.0, 0.5]},
    }
    (folder / "versions.json").write_text(json.dumps(versions))
    return frame


def _peers_section(page: str) -> str:
    start = page.index("<section id='peers'>")
    return html.unescape(page[start : page.index("</section>", start)])


def test_peers_section_from_the_bench_files(tmp_path: Path) -> None:
    run = build_run(tmp_path, tasks=("loops",), realdata=True)
    _peers_files(run["results"] / "peers", hicmix_f1=0.5123)
    page = render(run, tmp_path / "index.html")
    section = _peers_section(page)
    assert "Real data: hicmix vs peer tools" in section
    assert "href='#peers'" in page
    # table numbers come from peers.tsv, versions from versions.json
    row = section[section.index("<td class='l'>peakachu</td>") :].split("</tr>")[0]
    for cell in ("peakachu 2.3", "0.466", "0.286", "0.354", "0.385", "148.5", "40.00", "566"):
        assert f">{cell}<" in row
    assert "patch: train wrapper" in row
    assert ">hicpeaks 0.3.9<" in section
    assert "not the deep multimodal model" in section
    # generated sentences: best peer, the 0.44 bar, scoring speed
    assert "above the best peer tool of this run, hiccups (0.401) by 0.111" in section
    assert "It meets the issue's bar: above the bar 0.44 by 0.072" in section
    assert "hicmix 2.50 s, 16.0× faster than Peakachu's score_chromosome (40.00 s)" in section
    assert "Real Peakachu in this run: F1 (±1) 0.354 over 1 training seed(s)" in section
    assert "vm x86_64" in section and "1.5 / 1.0 / 0.5" in section
    assert section.count("data:image/png;base64,") == 1
    assert "python bench/peers.py --envs" in section
    assert page.index("id='realdata'") < page.index("id='peers'") < page.index("id='reference'")


def test_peers_sentence_says_below_the_bar(tmp_path: Path) -> None:
    run = build_run(tmp_path, tasks=("loops",), realdata=True)
    peers = tmp_path / "elsewhere"
    _peers_files(peers, hicmix_f1=0.30)
    section = _peers_section(render(run, tmp_path / "index.html", "--peers", str(peers)))
    assert "It falls short of the issue's bar: below the bar 0.44 by 0.140" in section
    assert "below the best peer tool of this run, hiccups (0.401) by 0.101" in section
    assert "below the next bar, pyHICCUPS reference (0.561) by 0.261" in section


def test_no_peers_files_no_section(tmp_path: Path) -> None:
    run = build_run(tmp_path, tasks=("loops",), realdata=True)
    page = render(run, tmp_path / "index.html")
    assert "id='peers'" not in page and "href='#peers'" not in page
    assert "python bench/peers.py --envs" in page  # one line saying how to produce it
    run = build_run(tmp_path / "synthetic", tasks=("loops",))
    page = render(run, tmp_path / "synthetic.html")
    assert "id='peers'" not in page and "bench/peers.py" not in page
