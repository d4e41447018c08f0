"""Cluster execution: the Slurm profiles, driven through the real executor plugin.

``tests/fake_slurm`` puts stand-ins for sbatch, sacct, srun, ... first on PATH, so Snakemake's Slurm
executor plugin (snakemake-executor-plugin-slurm) builds and sends real submissions; the fake runs
each job at once on this machine and logs every sbatch/srun argument vector. The tests parse those
arguments flag by flag (the plugin mixes ``--mem 4000`` with ``--cpus-per-task=8``).

``test_pipeline_on_real_slurm`` does the same against a throw-away single-node Slurm
(``tests/real_slurm/start.sh``); it needs root and apt, so it only runs with HICMIX_REAL_SLURM=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
PROFILE = PROFILES / "slurm"  # absolute: a relative --profile breaks with -d (docs/cluster.md)
FAKE_SLURM = REPO / "tests" / "fake_slurm"
REAL_SLURM = REPO / "tests" / "real_slurm" / "start.sh"
ACCOUNT = "CHANGE_ME"  # the shipped profile's placeholder; the fake cluster accepts it

# sbatch/srun options that take a value when written as two words ("-p cpu", "--mem 4000").
VALUE_FLAGS = {
    "-A", "-C", "-D", "-J", "-N", "-c", "-n", "-o", "-p", "-t",
    "--account", "--chdir", "--comment", "--constraint", "--cpus-per-gpu", "--cpus-per-task",
    "--gpus", "--gres", "--job-name", "--mem", "--mem-per-cpu", "--nodes", "--ntasks",
    "--output", "--partition", "--qos", "--time", "--wrap",
}  # fmt: skip
ALIASES = {
    "-A": "--account",
    "-C": "--constraint",
    "-D": "--chdir",
    "-J": "--job-name",
    "-N": "--nodes",
    "-c": "--cpus-per-task",
    "-n": "--ntasks",
    "-o": "--output",
    "-p": "--partition",
    "-t": "--time",
}


def parse_flags(argv: list[str]) -> dict[str, str]:
    """sbatch/srun argv -> {long flag: value} ("" for a bare switch); positionals are dropped."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
        elif arg in VALUE_FLAGS and i + 1 < len(argv):
            name, value = arg, argv[i + 1]
            i += 1
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            name, value = arg[:2], arg[2:]  # -n1
        elif arg.startswith("-"):
            name, value = arg, ""
        else:
            break  # the command (srun) or the batch script (sbatch)
        flags[ALIASES.get(name, name)] = value
        i += 1
    return flags


def test_parse_flags_reads_both_spellings() -> None:
    argv = ["--parsable", "--mem", "4000", "-p", "gpu", "--cpus-per-gpu=8", "-n1", "-t", "60"]
    assert parse_flags([*argv, "--wrap=python -m snakemake"]) == {
        "--parsable": "",
        "--mem": "4000",
        "--partition": "gpu",
        "--cpus-per-gpu": "8",
        "--ntasks": "1",
        "--time": "60",
        "--wrap": "python -m snakemake",
    }
    assert parse_flags(["--gpus=1", "--nodes=1", "python", "-m", "x"]) == {
        "--gpus": "1",
        "--nodes": "1",
    }


def calls(log: Path, cmd: str) -> list[dict]:
    """The logged calls of one fake command, with parsed flags; sbatch calls also get their rule."""
    out = []
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry["cmd"] != cmd:
            continue
        entry["flags"] = parse_flags(entry["argv"])
        comment = entry["flags"].get("--comment", "")  # rule_<name>[_wildcards_<values>]
        entry["rule"] = comment.removeprefix("rule_").split("_wildcards_")[0]
        out.append(entry)
    return out


def printed_rules(output: str, prefix: str) -> set[str]:
    """Rule names Snakemake printed as "rule NAME:" (submitted) or "localrule NAME:" (run here)."""
    return {
        line.strip()[len(prefix) + 1 : -1]
        for line in output.splitlines()
        if line.strip().startswith(prefix + " ") and line.strip().endswith(":")
    }


def base_env(tmp: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "SNAKEMAKE_PROFILE", "FAKE_SLURM_"))
    }
    env["XDG_CONFIG_HOME"] = str(tmp / "xdg")  # no user or site profile of the developer
    return env


def fake_env(tmp: Path, accounts: str = ACCOUNT) -> dict[str, str]:
    env = base_env(tmp)
    env.update(
        PATH=f"{FAKE_SLURM}{os.pathsep}{env['PATH']}",
        FAKE_SLURM_STATE=str(tmp / "slurm-state"),
        FAKE_SLURM_LOG=str(tmp / "slurm-calls.jsonl"),
        FAKE_SLURM_ACCOUNTS=accounts,
        FAKE_SLURM_SACCT_WAIT="20",
    )
    return env


def snakemake(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run ``python -m snakemake ARGS`` from the repository root.

    On timeout, never SIGKILL (it leaves .snakemake/locks and running jobs behind): SIGTERM first,
    on which Snakemake lets running jobs finish, then SIGINT, on which it cancels them (scancel).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = "(no output: snakemake ignored SIGTERM and SIGINT; left running)"
        for sig in (signal.SIGTERM, signal.SIGINT):
            proc.send_signal(sig)
            try:
                out, _ = proc.communicate(timeout=60)
                break
            except subprocess.TimeoutExpired:
                continue
        pytest.fail(f"snakemake timed out after {timeout:.0f} s:\n{out[-6000:]}")
    return proc.returncode, out


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[Path]:
    """A tmp folder for a fake-Slurm run; jobs still running afterwards get SIGTERM."""
    yield tmp_path
    state = tmp_path / "slurm-state"
    for pid_file in state.glob("*.pid") if state.exists() else []:
        if not pid_file.with_suffix(".rc").exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, PermissionError, ValueError):
                pass


def run_log(returncode: int, out: str, log: Path) -> str:
    lines = log.read_text().splitlines()[-20:] if log.exists() else []
    tail = "\n".join(line[:400] for line in lines)
    return f"exit {returncode}\n--- snakemake output (tail)\n{out[-8000:]}\n--- calls\n{tail}"


# -------------------------------------------------------------------------------------------------
# profile files


def load_profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def test_profiles_folder_has_no_auto_loaded_workflow_profile() -> None:
    """Snakemake silently loads profiles/default (or ./default) and lets it replace whole keys of
    the cluster profile, such as set-resources; hicmix ships none (workflow_conventions.md §5)."""
    assert not (PROFILES / "default").exists()
    assert not (REPO / "default").exists()
    assert not (REPO / "workflow" / "profiles" / "default").exists()


def test_no_profile_pins_a_partition() -> None:
    """Partitions come from partitions.yaml (GPU jobs to max_gpu > 0), never slurm_partition."""
    for name in ("slurm", "slurm-conda"):
        profile = load_profile(name)
        per_rule = list(profile.get("set-resources", {}).values())
        for resources in [profile.get("default-resources", {}), *per_rule]:
            assert "slurm_partition" not in resources, name
    partitions = yaml.safe_load((PROFILE / "partitions.yaml").read_text())["partitions"]
    gpu = [name for name, limits in partitions.items() if limits.get("max_gpu", 0) > 0]
    cpu = [name for name, limits in partitions.items() if limits.get("max_gpu", 0) == 0]
    assert gpu and cpu, partitions
    assert all(partitions[name].get("available_gpu_models") for name in gpu)


def test_conda_profile_is_the_slurm_profile_plus_conda() -> None:
    """slurm-conda duplicates slurm (profiles cannot include one another); keep them in step."""
    slurm, conda = load_profile("slurm"), load_profile("slurm-conda")
    assert conda.pop("software-deployment-method") == "conda"
    assert "software-deployment-method" not in slurm
    assert conda.pop("slurm-partition-config") == "../slurm/partitions.yaml"
    assert slurm.pop("slurm-partition-config") == "partitions.yaml"
    assert conda == slurm


def test_dry_run_with_profile_needs_no_slurm(tmp_path: Path) -> None:
    """`snakemake -n --profile profiles/slurm` plans the default DAG; it calls no Slurm command, so
    it also works where Slurm is not installed (CI)."""
    code, out = snakemake(["-n", "--profile", "profiles/slurm"], base_env(tmp_path), timeout=120)
    assert code == 0, out[-4000:]
    assert "Using profile profiles/slurm" in out
    assert "tiles" in out and "This was a dry-run" in out


@pytest.mark.skipif(shutil.which("conda") is None, reason="conda is not installed (CI has none)")
def test_conda_profile_dry_run(tmp_path: Path) -> None:
    code, out = snakemake(["-n", "--profile", "profiles/slurm-conda"], base_env(tmp_path), 300)
    assert code == 0, out[-4000:]


def test_profile_found_by_name_once_installed(tmp_path: Path) -> None:
    """`--profile slurm` finds nothing in the repository root; the documented install (a link in
    $XDG_CONFIG_HOME/snakemake) makes it work as typed."""
    env = base_env(tmp_path)
    code, out = snakemake(["-n", "--profile", "slurm"], env, timeout=60)
    assert code != 0 and "no profile.yaml (or config.yaml) found" in out
    (tmp_path / "xdg" / "snakemake").mkdir(parents=True)
    (tmp_path / "xdg" / "snakemake" / "slurm").symlink_to(PROFILE)
    code, out = snakemake(["-n", "--profile", "slurm"], env, timeout=120)
    assert code == 0, out[-4000:]
    assert "Using profile slurm" in out


# -------------------------------------------------------------------------------------------------
# resource mapping on a small synthetic workflow

MAPPING_SNAKEFILE = """
rule all:
    input:
        "done.txt",


rule gather:
    input:
        "cpu.txt",
        "gpu.txt",
        "gres.txt",
        "flaky.txt",
        "multinode.txt",
    output:
        "done.txt",
    localrule: True
    shell:
        "cat {input} > {output}"


rule cpu_step:
    output:
        "cpu.txt",
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    shell:
        "echo cpu $SLURM_JOB_ID > {output}"


rule gpu_step:
    output:
        "gpu.txt",
    threads: 4
    resources:
        gpu=1,
        mem_mb=lambda wc, attempt: 16000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
    shell:
        "echo gpu $SLURM_JOB_ID > {output}"


rule gres_step:
    output:
        "gres.txt",
    threads: 4
    resources:
        gpu=1,
    shell:
        "echo gres $SLURM_JOB_ID > {output}"


# the multi-node recipe of docs/cluster.md: 2 nodes x 4 GPUs, one task per GPU, own srun
rule multinode_step:
    output:
        "multinode.txt",
    threads: 8
    resources:
        nodes=2,
        tasks=8,
        tasks_per_gpu=1,
        gres="gpu:4",
        gpu=0,
        mpi="srun",
    shell:
        "{resources.mpi} --kill-on-bad-exit=1 echo multinode $SLURM_JOB_ID > {output}"


# fails on attempt 1 (profile default mem_mb = 4000 * attempt), succeeds on the retry
rule flaky:
    output:
        "flaky.txt",
    shell:
        "test {resources.mem_mb} -gt 4000 && echo flaky > {output}"
"""


def test_resources_map_to_sbatch_flags(fake_cluster: Path) -> None:
    """GPU jobs go to the gpu partition with --gpus, CPU jobs to cpu without; the gres variant from
    docs/cluster.md sends --gres and no --gpus; a failed job is retried with doubled limits."""
    tmp = fake_cluster
    (tmp / "wf").mkdir()
    (tmp / "wf" / "Snakefile").write_text(MAPPING_SNAKEFILE)
    args = [
        "--profile", str(PROFILE), "-s", str(tmp / "wf" / "Snakefile"), "-d", str(tmp / "work"),
        "--slurm-init-seconds-before-status-checks=1",
        "--set-resources", "gres_step:gres='gpu:a100:1'", "gres_step:gpu=0",
    ]  # fmt: skip
    code, out = snakemake(args, fake_env(tmp), timeout=240)
    log = tmp / "slurm-calls.jsonl"
    assert code == 0, run_log(code, out, log)
    lines = (tmp / "work" / "done.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["cpu", "gpu", "gres", "flaky", "multinode"]

    jobs: dict[str, list[dict]] = {}
    for call in calls(log, "sbatch"):
        jobs.setdefault(call["rule"], []).append(call["flags"])
    assert sorted(jobs) == ["cpu_step", "flaky", "gpu_step", "gres_step", "multinode_step"]
    assert {"gather", "all"} <= printed_rules(out, "localrule")  # and not submitted

    for flags in (f for runs in jobs.values() for f in runs):
        assert flags["--account"] == ACCOUNT
        assert flags["--chdir"] == str(tmp / "work")
        assert "--parsable" in flags

    (cpu,) = jobs["cpu_step"]
    assert cpu["--partition"] == "cpu"
    assert (cpu["--mem"], cpu["--time"], cpu["--cpus-per-task"]) == ("3000", "30", "2")
    assert "--gpus" not in cpu and "--gres" not in cpu

    (gpu,) = jobs["gpu_step"]
    assert gpu["--partition"] == "gpu"
    assert (gpu["--gpus"], gpu["--mem"], gpu["--time"]) == ("1", "16000", "120")
    assert gpu["--cpus-per-task"] == "4" and "--gres" not in gpu

    (gres,) = jobs["gres_step"]
    assert gres["--partition"] == "gpu"
    assert gres["--gres"] == "gpu:a100:1" and "--gpus" not in gres
    assert (gres["--mem"], gres["--time"]) == ("4000", "60")  # profile defaults, attempt 1

    first, retry = jobs["flaky"]
    assert (first["--mem"], first["--time"]) == ("4000", "60")
    assert (retry["--mem"], retry["--time"]) == ("8000", "120")
    assert first["--partition"] == retry["--partition"] == "cpu"

    (multi,) = jobs["multinode_step"]
    assert multi["--partition"] == "gpu" and multi["--gres"] == "gpu:4"
    assert (multi["--nodes"], multi["--ntasks"], multi["--ntasks-per-gpu"]) == ("2", "8", "1")
    assert "--gpus" not in multi and multi["--cpus-per-task"] == "8"

    # Inside a job the step plugin runs `srun -n1 ... python -m snakemake ...`, and the GPU job's
    # step asks for its GPU again; an mpi job gets no such wrapper: its own srun is the step.
    ids = {c["rule"]: c["jobid"] for c in calls(log, "sbatch")}
    steps = {c["jobid"]: c for c in calls(log, "srun")}
    assert steps[ids["gpu_step"]]["flags"]["--gpus"] == "1"
    assert steps[ids["cpu_step"]]["flags"]["--ntasks"] == "1"
    assert steps[ids["multinode_step"]]["argv"] == [
        "--kill-on-bad-exit=1", "echo", "multinode", ids["multinode_step"]
    ]  # fmt: skip


def test_unedited_account_is_refused_before_any_submission(fake_cluster: Path) -> None:
    """On a cluster with accounting, the template's CHANGE_ME fails with the plugin's message."""
    tmp = fake_cluster
    (tmp / "wf").mkdir()
    (tmp / "wf" / "Snakefile").write_text(MAPPING_SNAKEFILE)
    args = ["--profile", str(PROFILE), "-s", str(tmp / "wf" / "Snakefile"), "-d", str(tmp / "w")]
    args += ["--slurm-init-seconds-before-status-checks=1", "cpu.txt"]
    code, out = snakemake(args, fake_env(tmp, accounts="lab_a,lab_b"), timeout=120)
    assert code != 0
    assert "The given account CHANGE_ME appears to be invalid" in out
    assert calls(tmp / "slurm-calls.jsonl", "sbatch") == []


# -------------------------------------------------------------------------------------------------
# the whole default DAG

# Small enough for a few minutes on 2 cores: three short chromosomes, a tiny model, two steps.
PIPELINE_CONFIG = {
    "simulate": {"n_chromosomes": 3, "chrom_length_mb": [6, 4, 4]},
    "tasks": {"enabled": False},  # the task DAG runs end to end in tests/test_evaluate_stage.py
    "splits": {"val": ["chr2"], "test": ["chr3"]},
    "qc": {"region": "chr1:1000000-3000000"},
    "pretrain": {
        "enabled": True,
        "size": "tiny",
        "gpus": 1,
        "threads": 2,
        "mem_mb": 6000,
        "runtime": 30,
        "epochs": None,  # the shipped config sets epochs; exactly one of the two may be set
        "max_steps": 2,
        "batch_size": 4,
        "num_workers": 0,
        "warmup_steps": 0,
        "val_batches": 1,
        "log_every": 1,
    },
}


def pipeline_workdir(tmp: Path) -> tuple[Path, Path]:
    """A working directory holding the shipped config/ (the Snakefile reads config/config.yaml
    relative to it) and a small config layered on top."""
    work = tmp / "work"
    shutil.copytree(REPO / "config", work / "config")
    small = tmp / "small.yaml"
    small.write_text(yaml.safe_dump(PIPELINE_CONFIG))
    return work, small


def check_pipeline_submissions(code: int, out: str, log: Path, work: Path) -> None:
    assert code == 0, run_log(code, out, log)
    for path in ("results/tiles/SIMA/manifest.json", "results/tiles/SIMB/manifest.json"):
        assert (work / path).is_file(), path
    assert (work / "results/qc/SIMA.png").is_file()
    model = work / "results/models/pretrain/tiny"
    assert (model / "model.pt").is_file() and (model / "card.json").is_file()

    sbatch = calls(log, "sbatch")
    submitted = {c["rule"] for c in sbatch}
    local = printed_rules(out, "localrule")
    assert {"all", "pretrain_config"} <= local
    assert not submitted & local, submitted & local
    assert printed_rules(out, "rule") == submitted  # every non-local job went through sbatch
    assert {"simulate", "balance", "tiles", "qc", "pretrain"} <= submitted

    pretrain = PIPELINE_CONFIG["pretrain"]
    for call in sbatch:
        flags = call["flags"]
        assert flags["--account"] == ACCOUNT, call["rule"]
        assert int(flags["--mem"]) > 0 and int(flags["--time"]) > 0, call["rule"]
        if call["rule"] == "pretrain":
            assert flags["--partition"] == "gpu"
            assert flags["--gpus"] == str(pretrain["gpus"])
            assert flags["--mem"] == str(pretrain["mem_mb"])
            assert flags["--time"] == str(pretrain["runtime"])
            assert flags["--cpus-per-task"] == str(pretrain["threads"])
        else:
            assert flags["--partition"] == "cpu", call["rule"]
            assert "--gpus" not in flags and "--gres" not in flags, call["rule"]
            assert int(flags["--cpus-per-task"]) >= 1


@pytest.mark.slow
def test_pipeline_on_fake_slurm(fake_cluster: Path) -> None:
    """The default DAG (simulate -> ... -> pretrain) through the Slurm executor, end to end."""
    work, small = pipeline_workdir(fake_cluster)
    args = [
        "--profile", str(PROFILE), "-d", str(work), "--configfile", str(small),
        "--slurm-init-seconds-before-status-checks=1",
    ]  # fmt: skip
    code, out = snakemake(args, fake_env(fake_cluster), timeout=420)
    check_pipeline_submissions(code, out, fake_cluster / "slurm-calls.jsonl", work)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("HICMIX_REAL_SLURM") != "1",
    reason="starts a real Slurm (root, apt-get); opt in with HICMIX_REAL_SLURM=1",
)
def test_pipeline_on_real_slurm(tmp_path: Path) -> None:
    """The same DAG on a single-node Slurm 22.05 started by tests/real_slurm/start.sh.

    That cluster has no slurmdbd, so job status comes from squeue (--slurm-status-command) and
    the account is not validated (the plugin warns and submits -A CHANGE_ME, which Slurm accepts
    without accounting enforcement).
    """
    slurm_dir = tmp_path / "slurm"
    started = subprocess.run([str(REAL_SLURM), str(slurm_dir)], capture_output=True, text=True)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        work, small = pipeline_workdir(tmp_path)
        env = base_env(tmp_path)
        args = [
            "--profile", str(PROFILE), "-d", str(work), "--configfile", str(small),
            "--slurm-init-seconds-before-status-checks=1", "--slurm-status-command=squeue",
        ]  # fmt: skip
        code, out = snakemake(args, env, timeout=900)
        assert code == 0, out[-8000:]
        assert (work / "results/models/pretrain/tiny").is_dir()
        queue = subprocess.run(
            ["squeue", "--states=all", "--noheader", "--format=%j|%k|%P|%T|%C|%m|%l"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        rows = [line.split("|") for line in queue]
        pretrain = [r for r in rows if r[1].startswith("rule_pretrain")]
        assert len(pretrain) == 1 and pretrain[0][2:4] == ["gpu", "COMPLETED"], rows
        others = [r for r in rows if not r[1].startswith("rule_pretrain")]
        assert others and all(r[2] == "cpu" and r[3] == "COMPLETED" for r in others), rows
    finally:
        subprocess.run([str(REAL_SLURM), "stop", str(slurm_dir)], check=False)
