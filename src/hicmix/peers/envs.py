"""One virtual environment per peer tool, and measured runs of its command-line programs.

The peers pin conflicting versions (numpy < 2 against numpy 2, pandas < 3), so each runs in its own
venv under ``results/peers/envs/<tool>`` built with ``python -m venv`` and ``pip install`` from the
pins of baselines_and_metrics.md §7. A venv is complete only when its marker file exists (written
last), so an interrupted build is rebuilt from scratch. The conda files in ``workflow/envs/`` carry
the same pins for cluster users.

Runs are measured on the child process: wall seconds and peak resident memory from ``os.wait4``
(the largest RSS of the child or of any descendant it waited for, as ``/usr/bin/time -v``
reports).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hicmix.atomic import atomic_path
from hicmix.errors import ConfigError

MARKER = ".hicmix-env.json"
#: Thread caps for every peer run, so that the runs are comparable on a shared machine.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(frozen=True)
class EnvSpec:
    """What a peer's venv holds: the pip requirements and the distribution whose version is the
    tool's version."""

    tool: str
    distribution: str
    requirements: tuple[str, ...]
    #: Debian packages needed to build a dependency from source (checked, not installed here).
    system_packages: tuple[str, ...] = ()
    notes: str = ""


SPECS: dict[str, EnvSpec] = {
    "peakachu": EnvSpec(
        "peakachu",
        "peakachu",
        # the wheel declares no dependencies (§7)
        ("peakachu==2.3", "cooler==0.11.0", "numba", "scikit-learn", "joblib"),
        notes="train runs through hicmix.peers.peakachu_train_wrapper (Python >= 3.11 fix)",
    ),
    "chromosight": EnvSpec("chromosight", "chromosight", ("chromosight==1.6.3", "pandas<3")),
    "mustache": EnvSpec(
        "mustache",
        "mustache-hic",
        ("mustache-hic==1.3.3", "numpy<2", "pandas<3", "hic-straw==1.3.1"),
        system_packages=("libcurl4-openssl-dev", "g++"),
        notes="hic-straw builds from source: needs the libcurl headers and a C++ compiler",
    ),
    "hiccups": EnvSpec(
        "hiccups",
        "hicpeaks",
        # scikit-learn: imported by hicpeaks' clustering step but not declared by the wheel
        ("hicpeaks==0.3.9", "cooler", "statsmodels<0.15", "pandas<3", "numpy<2", "scikit-learn"),
        notes="pyHICCUPS: one peak/donut width per run; adds the undeclared scikit-learn",
    ),
}


@dataclass
class EnvInfo:
    """A ready venv: its folder, whether it was created by this call, the seconds its creation
    took (now, or as recorded when it was made) and the installed versions (``pip list``)."""

    tool: str
    path: Path
    created: bool
    create_s: float
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.versions.get(SPECS[self.tool].distribution.lower(), "unknown")

    def bin(self, name: str) -> Path:
        """Path of an executable in the venv."""
        return venv_bin(self.path, name)


@dataclass
class RunResult:
    """One measured child process."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    log: Path | None = None

    def check(self, what: str) -> RunResult:
        """Raise RuntimeError naming the log when the process failed."""
        if self.returncode != 0:
            tail = ""
            if self.log is not None and self.log.exists():
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(
                f"{what} failed with exit status {self.returncode}; log {self.log}:\n{tail}"
            )
        return self


def venv_bin(env: Path, name: str) -> Path:
    """``env/bin/name`` (``Scripts`` on Windows)."""
    folder = "Scripts" if os.name == "nt" else "bin"
    return Path(env) / folder / name


def _dpkg_installed(package: str) -> bool | None:
    """True/False from dpkg, None where dpkg is not available (not Debian)."""
    if shutil.which("dpkg-query") is None:
        return None
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return out.returncode == 0 and "install ok installed" in out.stdout


def missing_system_packages(spec: EnvSpec) -> list[str]:
    """Debian packages of ``spec`` that dpkg reports as absent (empty off Debian)."""
    missing = []
    for package in spec.system_packages:
        if package == "g++":
            if shutil.which("g++") is None and shutil.which("c++") is None:
                missing.append(package)
        elif _dpkg_installed(package) is False:
            missing.append(package)
    return missing


def pip_freeze(env: Path) -> dict[str, str]:
    """Installed distributions of a venv, lower-case name -> version."""
    out = subprocess.run(
        [str(venv_bin(env, "python")), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {row["name"].lower(): row["version"] for row in json.loads(out.stdout)}


def _read_marker(env: Path) -> dict | None:
    marker = env / MARKER
    if not marker.is_file() or not venv_bin(env, "python").exists():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def ensure_env(
    tool: str,
    envs_dir: str | Path,
    *,
    python: str = sys.executable,
    log_dir: str | Path | None = None,
    rebuild: bool = False,
) -> EnvInfo:
    """Create the venv of ``tool`` under ``envs_dir/tool`` unless a complete one with the same
    requirements exists; returns its :class:`EnvInfo`.

    Raises ConfigError for an unknown tool or when the Debian build dependencies are missing, and
    RuntimeError (with the pip log tail) when pip fails.
    """
    if tool not in SPECS:
        raise ConfigError(f"unknown peer tool {tool!r}; choose from {', '.join(SPECS)}")
    spec = SPECS[tool]
    env = Path(envs_dir) / tool
    marker = _read_marker(env)
    if not rebuild and marker and marker.get("requirements") == list(spec.requirements):
        # create_s: what building this venv took when it was made (0 if not recorded)
        recorded = float(marker.get("create_s", 0.0))
        return EnvInfo(tool, env, False, recorded, dict(marker.get("versions", {})))
    missing = missing_system_packages(spec)
    if missing:
        raise ConfigError(
            f"{tool}: building its venv needs the system packages {', '.join(missing)}; "
            f"install them (Debian: apt-get install -y {' '.join(missing)}) and rerun"
        )
    if env.exists():
        shutil.rmtree(env)
    log_dir = Path(log_dir) if log_dir is not None else env.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{tool}.create.log"
    start = time.perf_counter()
    with open(log, "w") as handle:
        for argv in (
            [python, "-m", "venv", str(env)],
            [str(venv_bin(env, "python")), "-m", "pip", "install", "--upgrade", "pip"],
            [str(venv_bin(env, "python")), "-m", "pip", "install", *spec.requirements],
        ):
            handle.write("$ " + " ".join(argv) + "\n")
            handle.flush()
            done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                RunResult(argv, done.returncode, 0.0, 0.0, log).check(f"creating the {tool} venv")
    seconds = time.perf_counter() - start
    versions = pip_freeze(env)
    with atomic_path(env / MARKER) as tmp:
        tmp.write_text(
            json.dumps(
                {
                    "tool": tool,
                    "requirements": list(spec.requirements),
                    "python": python,
                    "create_s": round(seconds, 1),
                    "versions": versions,
                },
                indent=1,
            )
        )
    return EnvInfo(tool, env, True, seconds, versions)


def peer_environ(threads: int = 2, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a peer run: this one minus PYTHONPATH/virtualenv variables, thread caps
    and a non-interactive matplotlib backend."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "CONDA_PREFIX")
    }
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    env["MPLBACKEND"] = "Agg"
    env["PYTHONHASHSEED"] = "0"
    if extra:
        env.update(extra)
    return env


def run_measured(
    argv: Sequence[str | os.PathLike[str]],
    log: str | Path,
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> RunResult:
    """Run ``argv`` with stdout and stderr to ``log``; wall seconds and peak RSS of the child.

    Peak RSS comes from ``os.wait4`` (``ru_maxrss``: kilobytes on Linux, bytes on macOS), i.e. the
    largest resident set of the child or of a descendant it reaped.
    """
    argv = [str(a) for a in argv]
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        handle.write("$ " + " ".join(argv) + "\n")
        handle.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
        )
        deadline = None if timeout_s is None else start + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.02)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    scale = 1.0 / 1024.0 if sys.platform != "darwin" else 1.0 / (1024.0 * 1024.0)
    return RunResult(argv, proc.returncode, wall, usage.ru_maxrss * scale, log)
