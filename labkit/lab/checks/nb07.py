"""Checks of notebook 07 (logging): count a json-file log's lines per stream, and pick the
driver and options that cap a container's log on disk.

Each check first tries the learner's function on inputs it makes itself (a log file in a
``lk-chk07-*`` temp dir; option sets checked by the engine's own validation), then on a real
container of the notebook's engine (``eng``), named ``lk-chk07-<random>`` and removed again.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.lab import logging_demo as ld
from labkit.lab.exercises import Namespace, defined, exercise, fail, need

__all__: list[str] = []

_PRIMES = (3, 5, 7, 11, 13, 17)


def _engine(ns: Namespace) -> Any:
    eng = ns.get("eng")
    need(eng is not None, "'eng' is not defined: run the notebook from the top (the set-up "
                          "cell makes it), then this cell again")
    return eng


def _script(n_out: int, n_err: int) -> str:
    return (f"i=0; while [ $i -lt {n_out} ]; do echo out $i; i=$((i+1)); done; "
            f"i=0; while [ $i -lt {n_err} ]; do echo err $i >&2; i=$((i+1)); done")


# -- 07.count_streams ------------------------------------------------------------------------

def _count_hint(call: str, got: object, n_out: int, n_err: int) -> str:
    want = {"stdout": n_out, "stderr": n_err}
    if not isinstance(got, dict):
        return f"{call} returned {got!r}: return a dict like {{'stdout': 2, 'stderr': 1}}"
    if set(got) != set(want):
        return (f"{call} returned the keys {sorted(got)}: use the values of the lines' "
                "'stream' field, 'stdout' and 'stderr'")
    if got == {"stdout": n_err, "stderr": n_out}:
        return f"{call} has stdout and stderr swapped"
    return (f"{call} returned {got}, expected {n_out} stdout and {n_err} stderr lines: every "
            "line of the file is one JSON object; count them by their 'stream' field")


@exercise("07.count_streams")
def count_streams(ns: Namespace) -> str:
    fn: Callable[[Path], Any] = defined(ns, "count_streams")
    n_out, n_err = random.sample(_PRIMES, 2)
    work = Path(tempfile.mkdtemp(prefix="lk-chk07-"))
    try:
        log = work / "sample-json.log"
        lines = [{"log": f"out {i}\n", "stream": "stdout"} for i in range(n_out)]
        lines += [{"log": f"err {i}\n", "stream": "stderr"} for i in range(n_err)]
        random.shuffle(lines)
        log.write_text("".join(json.dumps({**d, "time": "2026-01-01T00:00:00.000000001Z"})
                               + "\n" for d in lines))
        got = fn(log)
        need(got == {"stdout": n_out, "stderr": n_err},
             _count_hint("count_streams(<a test file>)", got, n_out, n_err))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    eng = _engine(ns)
    n_out, n_err = random.sample(_PRIMES, 2)
    name = f"lk-chk07-{secrets.token_hex(3)}"
    try:
        ld.run_logged(eng, name, "json-file", {}, _script(n_out, n_err))
        cid = ld.docker(eng, "inspect", "-f", "{{.Id}}", name).stdout.strip()
        log = Path(eng.root) / "containers" / cid / f"{cid}-json.log"
        need(log.is_file(), f"the check's container left no {log.name} (engine trouble?)")
        got = fn(log)
        need(got == {"stdout": n_out, "stderr": n_err},
             _count_hint(f"count_streams on container {name}'s log", got, n_out, n_err))
    finally:
        ld.docker(eng, "rm", "-f", name)
    return (f"counted a test file and a real container's json-file log ({n_out} stdout, "
            f"{n_err} stderr lines)")


# -- 07.log_cap ------------------------------------------------------------------------------

def _worst_case(driver: str, opts: dict[str, str]) -> int:
    """The most bytes the driver keeps on disk: max-size x max-file (a file is rotated
    before it would pass max-size; -1 when unbounded)."""
    from labkit.engine.logs.jsonfile import parse_size
    from labkit.engine.logs.local import DEFAULTS

    merged = {**(DEFAULTS if driver == "local" else {}), **opts}
    size = parse_size(merged.get("max-size", ""))
    return -1 if size < 0 else size * int(merged.get("max-file", "1"))


def _options(fn: Callable[[int], Any], limit: int) -> tuple[str, dict[str, str]]:
    from labkit.engine.containers.logconfig import check_log_config

    got = fn(limit)
    call = f"log_cap({limit})"
    need(isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], dict),
         f"{call} returned {got!r}: return (driver, options), e.g. ('json-file', "
         "{'max-size': ...})")
    driver, opts = str(got[0]), {str(k): str(v) for k, v in got[1].items()}
    need(driver in ("json-file", "local"),
         f"{call} picked {driver!r}: only json-file and local keep the log on disk where "
         "`docker logs` reads it (the others send it away, or keep nothing)")
    try:
        check_log_config({"Type": driver, "Config": opts})
    except errors.LabkitError as err:
        fail(f"{call}: the daemon would refuse {driver} with {opts}: {err}")
    worst = _worst_case(driver, opts)
    need(worst >= 0, f"{call}: without max-size, {driver} keeps one file growing forever")
    need(worst <= limit, f"{call}: {driver} may keep max-size x max-file = {worst} bytes, "
                         f"more than {limit}")
    return driver, opts


@exercise("07.log_cap")
def log_cap(ns: Namespace) -> str:
    fn: Callable[[int], Any] = defined(ns, "log_cap")
    for limit in (64 * 1024, 8 * 1024):
        driver, opts = _options(fn, limit)
    eng = _engine(ns)
    name = f"lk-chk07-{secrets.token_hex(3)}"
    try:
        try:
            ld.run_logged(eng, name, driver, opts, ld.chatty(2000))
        except errors.ConflictError as err:
            fail(f"docker run with {driver} {opts} failed: {err}")
        on_disk = sum(f.bytes for f in ld.log_files(eng, name))
        last = ld.logs(eng, name, "--tail", "1")["stdout"].strip()
    finally:
        ld.docker(eng, "rm", "-f", name)
    need(on_disk <= limit, f"a container printing 2000 lines with {driver} {opts} left "
                           f"{on_disk} bytes of log, more than {limit}")
    need(last.startswith("line 1999"),
         f"`docker logs --tail 1` shows {last[:40]!r}, not the last line printed: a cap must "
         "drop the OLDEST lines (rotation), not the newest")
    return (f"{driver} {opts}: 2000 lines left {on_disk} bytes on disk (cap {limit}), and the "
            "last line is still readable")
