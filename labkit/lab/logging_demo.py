"""Notebook 07 (logging) helpers: run containers with a log driver through the real Docker CLI,
look at what each driver left on disk or at its receiver, plot rotation, check an exercise.

Everything here drives the public surfaces (the Docker CLI against a LabEngine, files under
the engine's root, the receivers of labkit.lab.logsinks); no logic the library lacks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import errors
from labkit.measure.peers import docker_cli
from labkit.measure.sandbox import LabEngine

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LogFile", "budget_check", "chatty", "docker", "log_files", "logs", "plot_log_files",
           "raw_head", "run_logged", "try_start"]

HELLO = "echo hello from $(hostname); echo oops >&2"


def docker(eng: LabEngine, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real Docker CLI against ``eng`` (its DOCKER_HOST), text output."""
    return subprocess.run([docker_cli(), *args], env=eng.docker_env, capture_output=True,
                          text=True, errors="replace", timeout=timeout, check=False)


def run_logged(eng: LabEngine, name: str, driver: str | None = None,
               opts: dict[str, str] | None = None, script: str = HELLO) -> dict[str, Any]:
    """`docker run --name NAME [--log-driver D] [--log-opt k=v ...] busybox sh -c SCRIPT`;
    returns what the CLI said and what inspect shows as HostConfig.LogConfig."""
    args = ["run", "--name", name]
    if driver:
        args += ["--log-driver", driver]
    for k, v in (opts or {}).items():
        args += ["--log-opt", f"{k}={v}"]
    r = docker(eng, *args, "busybox", "sh", "-c", script)
    if r.returncode != 0:
        raise errors.ConflictError(f"docker run {name}: {r.stderr.strip()}")
    lc = json.loads(docker(eng, "inspect", "-f", "{{json .HostConfig.LogConfig}}", name).stdout)
    return {"name": name, "driver": lc["Type"], "log-opts": lc["Config"]}


def logs(eng: LabEngine, name: str, *flags: str) -> dict[str, Any]:
    """`docker logs [flags] NAME`: exit code, stdout, stderr."""
    r = docker(eng, "logs", *flags, name)
    return {"exit": r.returncode, "stdout": r.stdout, "stderr": r.stderr.strip()}


@dataclasses.dataclass(frozen=True)
class LogFile:
    """One log file of a container on disk."""

    container: str
    file: str
    bytes: int
    mode: str


def _cid(eng: LabEngine, name: str) -> str:
    return docker(eng, "inspect", "-f", "{{.Id}}", name).stdout.strip()


def log_files(eng: LabEngine, *names: str) -> list[LogFile]:
    """The log files (json-file, local-logs/, the dual-logging cache) of each container."""
    rows = []
    for name in names:
        cid = _cid(eng, name)
        d = eng.root / "containers" / cid
        for p in sorted([*d.glob("*.log*"), *d.glob("local-logs/*")]):
            st = p.stat()
            if st.st_size:  # (`docker logs` may touch an empty -json.log for any driver)
                rows.append(LogFile(name, str(p.relative_to(d)).replace(cid, "<id>"), st.st_size,
                                    oct(st.st_mode & 0o777)))
    return rows


def raw_head(eng: LabEngine, name: str, file: str, n: int = 120) -> bytes:
    """The first ``n`` bytes of one of the container's log files (a LogFile.file), as stored."""
    cid = _cid(eng, name)
    with open(eng.root / "containers" / cid / file.replace("<id>", cid), "rb") as f:
        return f.read(n)


def chatty(lines: int = 400) -> str:
    """A script that prints ``lines`` numbered lines of ~40 bytes."""
    return (f"i=0; while [ $i -lt {lines} ]; do echo \"line $i of a chatty container\"; "
            "i=$((i+1)); done")


def plot_log_files(rows: list[LogFile], max_size: int | None = None,
                   ax: Axes | None = None) -> Axes:
    """A bar per log file (bytes on disk), grouped by container; max-size dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.2))
    labels = [f"{r.container}\n{r.file}" for r in rows]
    colors = ["tab:orange" if r.file.endswith(".gz") else "tab:blue" for r in rows]
    bars = ax.bar(range(len(rows)), [r.bytes for r in rows], color=colors)
    ax.bar_label(bars)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    if max_size:
        ax.axhline(max_size, linestyle="--", color="grey", label=f"max-size {max_size} B")
        ax.legend(loc="upper right")
    ax.set_ylabel("bytes on disk")
    ax.set_title("log files after the same output (orange: rotated and gzip-compressed)")
    return ax


def try_start(eng: LabEngine) -> str:
    """Start the daemon; '' when it answers, else the reason it refused (from its log)."""
    try:
        eng.start(timeout=30)
    except errors.LabkitError:
        log = (eng.run / "daemon.log").read_text(errors="replace")
        lines = [ln for ln in log.splitlines() if "failed to set log opts" in ln]
        return lines[-1].strip() if lines else log.strip().splitlines()[-1]
    return ""


def budget_check(eng: LabEngine, opts: dict[str, str], budget: int, keep_files: int = 2,
                 name: str = "lk-nb-budget") -> bool:
    """The exercise: ``opts`` for the json-file driver must keep a chatty container's logs
    at most ``budget`` bytes on disk, in at least ``keep_files`` files.  Prints PASS or a
    hint; returns whether it passed.  The container is removed again."""
    docker(eng, "rm", "-f", name)
    try:
        run_logged(eng, name, "json-file", opts, chatty(2000))
    except errors.ConflictError as err:
        print(f"HINT: the daemon refused these options: {err}")
        return False
    try:
        rows = log_files(eng, name)
    finally:
        docker(eng, "rm", "-f", name)
    total = sum(r.bytes for r in rows)
    if total <= budget and len(rows) >= keep_files:
        print(f"PASS: {total} bytes in {len(rows)} files (budget {budget})")
        return True
    if len(rows) < keep_files:
        print(f"HINT: {len(rows)} file(s); max-file sets how many files rotation keeps")
    else:
        print(f"HINT: {total} bytes > {budget}: the worst case is max-size x max-file")
    return False


def files_gone(paths: list[str]) -> bool:
    """True when none of ``paths`` exists any more (the clean-up check)."""
    return not any(os.path.exists(p) for p in paths)


def receiver_dirs(*receivers: Any) -> list[str]:
    """The temp dirs of the receivers (rsyslog's) for the clean-up check."""
    return [str(r.dir) for r in receivers if isinstance(getattr(r, "dir", None), Path)]
