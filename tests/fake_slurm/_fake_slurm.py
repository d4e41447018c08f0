"""A tiny stand-in for the Slurm client commands, enough to drive snakemake-executor-plugin-slurm.

Put ``tests/fake_slurm`` first on PATH. Each executable there (sbatch, sacct, squeue, scancel, srun,
scontrol, sinfo, sacctmgr, sshare) calls ``main(<name>)`` below.

Environment:
    FAKE_SLURM_STATE     folder for job state (default ``$TMPDIR/fake_slurm-<uid>``): per job
                         ``<id>.spec.json`` (what to run), ``<id>.pid`` (runner pid), ``<id>.rc``
                         (exit code, written when the job ends) and ``<id>.cancelled``.
    FAKE_SLURM_LOG       JSON-lines file; every sbatch and srun call appends
                         ``{"cmd": ..., "jobid": ..., "cwd": ..., "argv": [...]}``
                         (default ``<state>/calls.jsonl``).
    FAKE_SLURM_ACCOUNTS  comma-separated accounts that sacctmgr/sshare report (default ``hicmix``).
    FAKE_SLURM_SACCT_WAIT  seconds (default 0): ``sacct --name RUN`` long-polls, answering as soon
                         as a job of RUN reaches a final state or after this many seconds. The
                         plugin backs off by 10 s after each status check that sees no finished
                         job; the long poll keeps a test's wall time close to the jobs' run time.
    FAKE_SLURM_DEFAULT_PARTITION  the partition ``sinfo -o %P`` marks as default (default
                         ``debug``: no partitions.yaml names it, so a job that missed the plugin's
                         partition auto-selection stands out in the log).

Jobs run immediately in the background on this machine; resources are logged, not enforced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Options that take a separate value when written as "-X value" / "--long value". Options whose
# value is optional (--kill-on-bad-exit[=0|1]) are not listed: Slurm needs "=" for those.
SHORT_WITH_VALUE = "ACDGJMNabcdeijmnopqstwxF"  # sbatch / srun
SACCT_SHORT_WITH_VALUE = "AEMNSjorsu"
SQUEUE_SHORT_WITH_VALUE = "AMOSjnopqstuw"
LONG_WITH_VALUE = {
    "account", "accounts", "array", "chdir", "clusters", "comment", "constraint", "cpu-bind",
    "cpus-per-gpu", "cpus-per-task", "dependency", "endtime", "error", "exclude", "export",
    "format", "gpus", "gpus-per-node", "gres", "input", "job-name", "jobid", "jobs",
    "mem", "mem-per-cpu", "mem-per-gpu", "mpi", "name", "nodelist", "nodes",
    "ntasks", "ntasks-per-gpu", "ntasks-per-node", "output", "partition", "qos", "reservation",
    "sort", "starttime", "state", "states", "time", "user", "users", "wrap",
}  # fmt: skip


def state_dir() -> Path:
    """Folder holding job state, created on first use."""
    default = Path(tempfile.gettempdir()) / f"fake_slurm-{os.getuid()}"
    path = Path(os.environ.get("FAKE_SLURM_STATE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_call(cmd: str, jobid: str | None, argv: list[str]) -> None:
    """Append one JSON line to $FAKE_SLURM_LOG (locked: the plugin submits in parallel)."""
    log = Path(os.environ.get("FAKE_SLURM_LOG") or state_dir() / "calls.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"cmd": cmd, "jobid": jobid, "cwd": os.getcwd(), "argv": argv}) + "\n"
    with open(log, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(line)
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_options(
    argv: list[str], short_values: str = SHORT_WITH_VALUE
) -> tuple[dict[str, str | bool], list[str]]:
    """Split argv into {option: value} and the positional rest (script + its arguments).

    Short options cluster like getopt ("-nu alice" is -n plus -u alice); ``short_values`` lists the
    short options that take a value, which differs between commands (sacct -n vs sbatch -n 4).
    """
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return opts, argv[i + 1 :]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if eq:
                opts[name] = value
            elif name in LONG_WITH_VALUE and i + 1 < len(argv):
                opts[name] = argv[i + 1]
                i += 1
            else:
                opts[name] = True
        elif arg.startswith("-") and len(arg) > 1:
            for k, name in enumerate(arg[1:], start=2):
                if name not in short_values:
                    opts[name] = True
                    continue
                value = arg[k:]
                if not value and i + 1 < len(argv):
                    value = argv[i + 1]
                    i += 1
                opts[name] = value.removeprefix("=")
                break
        else:
            return opts, argv[i:]
        i += 1
    return opts, []


def opt(opts: dict[str, str | bool], *names: str) -> str | None:
    for name in names:
        value = opts.get(name)
        if isinstance(value, str):
            return value
    return None


def next_jobid() -> str:
    """Allocate a job id; a lock keeps parallel sbatch calls apart."""
    counter = state_dir() / "counter"
    with open(state_dir() / "counter.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        last = int(counter.read_text()) if counter.exists() else 1000
        jobid = str(last + 1)
        write_atomic(counter, jobid)
        fcntl.flock(lock, fcntl.LOCK_UN)
    return jobid


# ---------------------------------------------------------------------------------------------
# sbatch and the background runner


def sbatch(argv: list[str]) -> int:
    opts, rest = parse_options(argv)
    if "array" in opts or "a" in opts:
        print("sbatch: error: fake sbatch does not support --array", file=sys.stderr)
        return 1
    jobid = next_jobid()
    log_call("sbatch", jobid, argv)
    workdir = Path(opt(opts, "chdir", "D") or os.getcwd()).resolve()
    name = opt(opts, "job-name", "J") or (Path(rest[0]).name if rest else "wrap")
    if "wrap" in opts:
        command = ["/bin/sh", "-c", str(opts["wrap"])]
    elif rest:
        script = state_dir() / f"{jobid}.sh"
        source = sys.stdin.read() if rest[0] in ("-", "/dev/stdin") else Path(rest[0]).read_text()
        script.write_text(source)
        command = ["/bin/sh", str(script), *rest[1:]]
    else:
        print("sbatch: error: no --wrap and no batch script given", file=sys.stderr)
        return 1
    output = opt(opts, "output", "o") or "slurm-%j.out"
    output = output.replace("%j", jobid).replace("%x", name).replace("%A", jobid)
    env = {
        "SLURM_JOB_ID": jobid,
        "SLURM_JOBID": jobid,
        "SLURM_JOB_NAME": name,
        "SLURM_SUBMIT_DIR": os.getcwd(),
        "SLURM_CLUSTER_NAME": "fake",
        "SLURM_JOB_PARTITION": opt(opts, "partition", "p") or "",
        "SLURM_JOB_ACCOUNT": opt(opts, "account", "A") or "",
    }
    cpus = opt(opts, "cpus-per-task", "c")
    if cpus:
        env["SLURM_CPUS_PER_TASK"] = cpus
    gpus = opt(opts, "gpus", "G")
    if gpus:
        env["SLURM_GPUS"] = gpus
    spec = {
        "jobid": jobid,
        "name": name,
        "comment": opt(opts, "comment"),
        "partition": env["SLURM_JOB_PARTITION"],
        "account": env["SLURM_JOB_ACCOUNT"],
        "workdir": str(workdir),
        "output": str(workdir / output),
        "command": command,
        "env": env,
        "submitted": time.time(),
    }
    write_atomic(state_dir() / f"{jobid}.spec.json", json.dumps(spec))
    runner = subprocess.Popen(
        [sys.executable, str(HERE / "_fake_slurm.py"), "_run", jobid],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so scancel can end the whole job
    )
    write_atomic(state_dir() / f"{jobid}.pid", str(runner.pid))
    if "parsable" in opts:
        cluster = opt(opts, "clusters", "M")
        print(f"{jobid};{cluster}" if cluster else jobid)
    else:
        print(f"Submitted batch job {jobid}")
    return 0


def run_job(jobid: str) -> int:
    """Run one job in this detached process and record its exit code."""
    spec = json.loads((state_dir() / f"{jobid}.spec.json").read_text())
    # A Python-level handler (not SIG_IGN, which children would inherit) so that scancel's
    # SIGTERM to the process group ends the job but still lets us write the exit code.
    signal.signal(signal.SIGTERM, lambda *_: None)
    rc = 1
    try:
        Path(spec["output"]).parent.mkdir(parents=True, exist_ok=True)
        with open(spec["output"], "w") as out:
            proc = subprocess.Popen(
                spec["command"],
                cwd=spec["workdir"],
                env={**os.environ, **spec["env"]},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            while True:
                try:
                    rc = proc.wait()
                    break
                except InterruptedError:  # pragma: no cover - wait() retries on EINTR itself
                    continue
        rc = 128 - rc if rc < 0 else rc  # killed by signal N -> 128 + N, like a shell
    finally:
        write_atomic(state_dir() / f"{jobid}.rc", str(rc))
    return 0


# ---------------------------------------------------------------------------------------------
# job state queries


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_state(jobid: str) -> str | None:
    """COMPLETED / FAILED / CANCELLED / RUNNING / PENDING, or None for an unknown job."""
    folder = state_dir()
    spec = folder / f"{jobid}.spec.json"
    if not spec.exists():
        return None
    for _ in range(2):  # re-read once: the runner may finish between the two checks
        rc_file = folder / f"{jobid}.rc"
        if rc_file.exists():
            if (folder / f"{jobid}.cancelled").exists():
                return "CANCELLED"
            return "COMPLETED" if rc_file.read_text().strip() == "0" else "FAILED"
        pid_file = folder / f"{jobid}.pid"
        if not pid_file.exists():
            return "PENDING"
        if pid_alive(int(pid_file.read_text())):
            return "RUNNING"
        time.sleep(0.05)
    return "FAILED"  # runner vanished without an exit code


def all_jobs() -> list[dict]:
    jobs = []
    specs = sorted(state_dir().glob("*.spec.json"), key=lambda p: int(p.name.split(".")[0]))
    for spec_file in specs:
        with contextlib.suppress(OSError, ValueError):
            jobs.append(json.loads(spec_file.read_text()))
    return jobs


def job_field(job: dict, field: str, state: str) -> str:
    rc_file = state_dir() / f"{job['jobid']}.rc"
    rc = rc_file.read_text().strip() if rc_file.exists() else "0"
    values = {
        "jobid": job["jobid"],
        "jobidraw": job["jobid"],
        "jobname": job["name"],
        "state": state,
        "exitcode": f"{rc}:0",
        "account": job["account"],
        "partition": job["partition"],
        "comment": job.get("comment") or "",
        "nodelist": "localhost",
        "reason": "None",
        "workdir": job["workdir"],
    }
    return values.get(field.lower(), "")


def selected_jobs(opts: dict[str, str | bool]) -> list[tuple[dict, str]]:
    names = opt(opts, "name", "jobname", "n")
    ids = opt(opts, "jobs", "j")
    wanted_names = set(names.split(",")) if names else None
    wanted_ids = set(ids.replace(" ", ",").split(",")) if ids else None
    rows = []
    for job in all_jobs():
        if wanted_names is not None and job["name"] not in wanted_names:
            continue
        if wanted_ids is not None and job["jobid"] not in wanted_ids:
            continue
        state = job_state(job["jobid"])
        if state is not None:
            rows.append((job, state))
    return rows


def sacct(argv: list[str]) -> int:
    """sacct [-X] [--parsable2|-P] [--noheader|-n] [--format=F1,F2|-o F] [--name N] [-j ID]."""
    opts, _ = parse_options(argv, SACCT_SHORT_WITH_VALUE)
    fmt = opt(opts, "format", "o") or "JobID,JobName,Partition,Account,State,ExitCode"
    fields = [f.split("%")[0] for f in fmt.split(",") if f]
    ids = opt(opts, "jobs", "j")
    if ids and "." in ids:
        return 0  # job steps are not tracked: no rows, like a step that never started
    if isinstance(opts.get("name"), str) and float(os.environ.get("FAKE_SLURM_SACCT_WAIT", 0)) > 0:
        rows = long_poll(str(opts["name"]), opts)
    elif "name" in opts or ids:
        rows = selected_jobs(opts)
    else:
        rows = [(job, job_state(job["jobid"]) or "UNKNOWN") for job in all_jobs()]
    parsable = "parsable2" in opts or "P" in opts or "parsable" in opts or "p" in opts
    lines = []
    if not (opts.get("noheader") or opts.get("n")):  # sacct -n is --noheader
        lines.append(fields)
    lines += [[job_field(job, f, state) for f in fields] for job, state in rows]
    for cols in lines:
        print("|".join(cols) if parsable else " ".join(f"{c:<12}" for c in cols).rstrip())
    return 0


FINAL = ("COMPLETED", "FAILED", "CANCELLED")


def long_poll(name: str, opts: dict[str, str | bool]) -> list[tuple[dict, str]]:
    """Wait until a job of run ``name`` newly reaches a final state, then return all its rows.

    A job that was submitted while the previous query was waiting, and finished before it
    answered, may have been missing from the caller's list of active jobs then; such jobs make
    the next query answer at once instead of waiting.
    """
    memo = state_dir() / f"sacct-{name}.json"
    before = json.loads(memo.read_text()) if memo.exists() else {"final": [], "recheck": []}
    started = time.time()
    deadline = started + float(os.environ["FAKE_SLURM_SACCT_WAIT"])
    while True:
        rows = selected_jobs(opts)
        final = {job["jobid"] for job, state in rows if state in FINAL}
        if before["recheck"] or not final <= set(before["final"]) or time.time() >= deadline:
            break
        time.sleep(0.2)
    late = [job["jobid"] for job, _ in rows if job["jobid"] in final and job["submitted"] > started]
    write_atomic(memo, json.dumps({"final": sorted(final), "recheck": late}))
    return rows


def squeue(argv: list[str]) -> int:
    """squeue [--format=%i|%T] [--states=all] [--noheader|-h] [--name N] [-j ID]."""
    opts, _ = parse_options(argv, SQUEUE_SHORT_WITH_VALUE)
    fmt = opt(opts, "format", "o") or "%i %P %j %T"
    show_all = (opt(opts, "states", "t") or "").lower() == "all"
    rows = selected_jobs(opts)
    if not (opts.get("noheader") or opts.get("h")):
        print(squeue_line(fmt, "JOBID", "STATE", "NAME", "PARTITION"))
    for job, state in rows:
        if show_all or state in ("PENDING", "RUNNING"):
            print(squeue_line(fmt, job["jobid"], state, job["name"], job["partition"]))
    return 0


def squeue_line(fmt: str, jobid: str, state: str, name: str, partition: str) -> str:
    fields = {"%i": jobid, "%T": state, "%j": name, "%P": partition}
    for key, value in fields.items():
        fmt = fmt.replace(key, value)
    return fmt


def scancel(argv: list[str]) -> int:
    _, rest = parse_options(argv, SQUEUE_SHORT_WITH_VALUE)
    for jobid in (arg for arg in rest if not arg.startswith("-")):
        pid_file = state_dir() / f"{jobid}.pid"
        if not pid_file.exists():
            print(f"scancel: error: Invalid job id {jobid}", file=sys.stderr)
            continue
        if job_state(jobid) in ("RUNNING", "PENDING"):
            write_atomic(state_dir() / f"{jobid}.cancelled", "")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
    return 0


# ---------------------------------------------------------------------------------------------
# srun inside a job, and the commands that only need to answer


def srun(argv: list[str]) -> int:
    """Drop srun's options and exec the command (the job step runs inside the fake allocation)."""
    log_call("srun", os.environ.get("SLURM_JOB_ID"), argv)
    _, command = parse_options(argv)
    if not command:
        print("srun: fatal: no command to run", file=sys.stderr)
        return 1
    os.execvp(command[0], command)
    return 1  # pragma: no cover - execvp does not return


def sinfo(argv: list[str]) -> int:
    default = os.environ.get("FAKE_SLURM_DEFAULT_PARTITION", "debug")
    print(f"PARTITION\n{default}*")
    return 0


def accounts(argv: list[str]) -> int:
    for account in os.environ.get("FAKE_SLURM_ACCOUNTS", "hicmix").split(","):
        if account.strip():
            print(account.strip())
    return 0


def scontrol(argv: list[str]) -> int:
    if argv[:2] == ["show", "config"]:
        print("Configuration data as of fake\nClusterName             = fake")
    return 0


COMMANDS = {
    "sbatch": sbatch,
    "sacct": sacct,
    "squeue": squeue,
    "scancel": scancel,
    "srun": srun,
    "sinfo": sinfo,
    "sacctmgr": accounts,
    "sshare": accounts,
    "scontrol": scontrol,
}


def main(command: str) -> None:
    """Entry point of the executables in this folder."""
    sys.exit(COMMANDS[command](sys.argv[1:]))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_run":
        sys.exit(run_job(sys.argv[2]))
    main(sys.argv[1])
