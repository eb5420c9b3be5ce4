"""labkit-runtime: runc's command line (spec, create, start, state, kill, delete, run, list,
pause, resume, exec, update).

    labkit-runtime [--root DIR] COMMAND [OPTIONS] ARGS

The parser is hand-written: argparse costs milliseconds to import and build, and `run` of
/bin/true is measured against runc and crun (each command imports only what it needs).
Global options runc accepts from containerd (--log, --log-format, --debug,
--systemd-cgroup) are accepted and ignored.  Exit status: 0, 1 for an error, 127/126 when
the program cannot be executed, the container's status for `run`.
"""

from __future__ import annotations

import os
import sys

USAGE = """usage: labkit-runtime [--root DIR] COMMAND [OPTIONS]

commands:
  spec    [--bundle DIR] [--rootless]               write a default config.json
  create  [--bundle DIR] [--pid-file F] [--console-socket S] ID
  start   ID                                        run the created container's process
  state   ID                                        print the OCI state as JSON
  kill    [--all] ID [SIGNAL]                       default SIGTERM
  delete  [--force] ID
  run     [--bundle DIR] [--detach] [--keep] [--pid-file F] [--console-socket S] ID
  list    [--format table|json] [--quiet]
  pause   ID / resume ID                            freeze / thaw (cgroup freezer)
  exec    [--tty] [--detach] [--cwd DIR] [--env K=V]... [--user UID[:GID]] [--pid-file F]
          [--process FILE] ID [CMD ARGS...]              run another process inside
  update  [--memory N] [--memory-swap N] [--memory-reservation N] [--cpu-quota N]
          [--cpu-period N] [--cpu-share N] [--cpuset-cpus L] [--cpuset-mems L]
          [--pids-limit N] [--blkio-weight N] ID    change the cgroup limits of a live container
  update  -r resources.json|- ID                    the same from OCI linux.resources JSON
  ps      [--format json|table] ID                  the pids in the container's cgroup
  events  --stats ID                                its cgroup counters once, as JSON
"""

# option -> (canonical name, takes a value)
_OPTS = {
    "--root": ("root", True), "--bundle": ("bundle", True), "-b": ("bundle", True),
    "--pid-file": ("pid_file", True), "--console-socket": ("console_socket", True),
    "--rootless": ("rootless", False), "--all": ("all", False), "-a": ("all", False),
    "--force": ("force", False), "-f": ("force", False), "--detach": ("detach", False),
    "-d": ("detach", False), "--keep": ("keep", False), "--format": ("format", True),
    "--quiet": ("quiet", False), "-q": ("quiet", False),
    "--log": ("_", True), "--log-format": ("_", True), "--debug": ("_", False),
    "--systemd-cgroup": ("_", False), "--no-pivot": ("_", False),
    "--no-new-keyring": ("_", False), "--preserve-fds": ("_", True),
    "--tty": ("tty", False), "-t": ("tty", False), "--cwd": ("cwd", True),
    "--env": ("env", True), "-e": ("env", True), "--user": ("user", True), "-u": ("user", True),
    "--process": ("process", True), "-p": ("process", True),
    "--resources": ("resources", True), "-r": ("resources", True),
    # runc update's flags (runtime/update.py FLAGS)
    "--memory": ("memory", True), "--memory-swap": ("memory_swap", True),
    "--memory-reservation": ("memory_reservation", True), "--cpu-quota": ("cpu_quota", True),
    "--cpu-period": ("cpu_period", True), "--cpu-share": ("cpu_share", True),
    "--cpuset-cpus": ("cpuset_cpus", True), "--cpuset-mems": ("cpuset_mems", True),
    "--pids-limit": ("pids_limit", True), "--blkio-weight": ("blkio_weight", True),
    "--stats": ("stats", False),
}
_MULTI = frozenset({"env"})
_UPDATE_ONLY = frozenset({"resources", "memory", "memory_swap", "memory_reservation",
                          "cpu_quota", "cpu_period", "cpu_share", "cpuset_cpus", "cpuset_mems",
                          "pids_limit", "blkio_weight"})


class UsageError(Exception):
    pass


def parse(argv: list[str]) -> tuple[str, dict[str, object], list[str]]:
    """(command, options, positional args); options may appear anywhere."""
    opts: dict[str, object] = {}
    pos: list[str] = []
    it = iter(argv)
    for arg in it:
        if pos[:1] == ["exec"] and len(pos) >= 2:
            # runc exec ID CMD ARGS...: everything after the id belongs to the command.
            pos.append(arg)
            continue
        if arg == "--":
            pos.extend(it)
            break
        if arg.startswith("-") and len(arg) > 1 and not arg.lstrip("-").isdigit():
            name, eq, val = arg.partition("=")
            if name in ("-h", "--help"):
                raise UsageError("")
            spec = _OPTS.get(name)
            if spec is None:
                raise UsageError(f"unknown option {name}")
            key, takes = spec
            if takes:
                if not eq:
                    val = next(it, None)  # type: ignore[assignment]
                    if val is None:
                        raise UsageError(f"{name} needs a value")
                if key in _MULTI:
                    opts.setdefault(key, [])
                    opts[key].append(val)  # type: ignore[attr-defined]
                else:
                    opts[key] = val
            else:
                opts[key] = True
        else:
            pos.append(arg)
    if not pos:
        raise UsageError("no command given")
    return pos[0], opts, pos[1:]


def _one_id(args: list[str], cmd: str) -> str:
    if len(args) != 1:
        raise UsageError(f"{cmd} needs exactly one container id")
    return args[0]


def dispatch(cmd: str, opts: dict[str, object], args: list[str]) -> int:
    from labkit.engine.runtime.state import default_root

    root = str(opts.get("root") or default_root())
    bundle = str(opts.get("bundle") or ".")
    pid_file = opts.get("pid_file")
    console = opts.get("console_socket")
    if cmd != "update":
        stray = sorted(k for k in opts if k in _UPDATE_ONLY)
        if stray:  # accepted means applied: a limit flag on another command is refused
            raise UsageError(f"--{stray[0].replace('_', '-')} is an option of update only")
    if cmd != "events" and opts.get("stats"):
        raise UsageError("--stats is an option of events only")
    if cmd == "run":
        from labkit.engine.runtime.run import run

        return run(root, _one_id(args, cmd), bundle, detach=bool(opts.get("detach")),
                   pid_file=str(pid_file) if pid_file else None,
                   console_socket=str(console) if console else None, keep=bool(opts.get("keep")))
    if cmd == "create":
        from labkit.engine.runtime.create import create

        create(root, _one_id(args, cmd), bundle, pid_file=str(pid_file) if pid_file else None,
               console_socket=str(console) if console else None)
    elif cmd == "start":
        from labkit.engine.runtime.start import start

        start(root, _one_id(args, cmd))
    elif cmd == "state":
        import json

        from labkit.engine.runtime import state as statemod
        from labkit.engine.runtime.delete import oom_kills

        st = statemod.load(root, _one_id(args, cmd))
        st.refresh()
        out = st.oci()
        n = oom_kills(st)
        if n is not None:
            out["annotations"]["org.labkit.oom-kills"] = str(n)
        print(json.dumps(out, indent=2))
    elif cmd == "kill":
        from labkit.engine.runtime.kill import kill, parse_signal

        if len(args) not in (1, 2):
            raise UsageError("kill needs a container id and an optional signal")
        sig = parse_signal(args[1]) if len(args) == 2 else 15
        kill(root, args[0], sig, all=bool(opts.get("all")))
    elif cmd == "delete":
        from labkit.engine.runtime.delete import delete

        delete(root, _one_id(args, cmd), force=bool(opts.get("force")))
    elif cmd == "list":
        import json

        from labkit.engine.runtime.list import list_containers, table

        rows = list_containers(root)
        fmt = opts.get("format") or "table"
        if opts.get("quiet"):
            print("\n".join(r["id"] for r in rows))
        elif fmt == "json":
            print(json.dumps(rows))
        elif fmt == "table":
            print(table(rows))
        else:
            raise UsageError(f"unknown format {fmt!r} (table or json)")
    elif cmd in ("pause", "resume"):
        from labkit.engine.runtime import pause as pausemod

        getattr(pausemod, cmd)(root, _one_id(args, cmd))
    elif cmd == "exec":
        from labkit.engine.runtime.exec import exec_process

        if not args:
            raise UsageError("exec needs a container id")
        proc = opts.get("process")
        return exec_process(
            root, args[0], args[1:], process_file=str(proc) if proc else None,
            cwd=str(opts["cwd"]) if opts.get("cwd") else None,
            env=list(opts.get("env") or []),  # type: ignore[call-overload]
            user=str(opts["user"]) if opts.get("user") else None, tty=bool(opts.get("tty")),
            detach=bool(opts.get("detach")), pid_file=str(pid_file) if pid_file else None)
    elif cmd == "update":
        from labkit.engine.runtime import update as updatemod

        flags = {k: str(v) for k, v in opts.items() if k in updatemod.FLAGS}
        res_file = opts.get("resources")
        if res_file and flags:
            raise UsageError("give either -r/--resources or the limit flags, not both")
        if res_file:
            res = updatemod.read_resources(str(res_file))
        elif flags:
            res = updatemod.resources_from_flags(flags)
        else:
            raise UsageError("update needs -r/--resources or at least one limit flag")
        updatemod.update(root, _one_id(args, cmd), res)
    elif cmd == "ps":
        import json

        from labkit.engine.runtime.stats import pids

        found = pids(root, _one_id(args, cmd))
        fmt = opts.get("format") or "table"
        if fmt == "json":
            print(json.dumps(found))
        elif fmt == "table":
            print("\n".join(["PID", *map(str, found)]))
        else:
            raise UsageError(f"unknown format {fmt!r} (table or json)")
    elif cmd == "events":
        import json

        from labkit.engine.runtime.stats import stats

        if not opts.get("stats"):
            raise UsageError("events streams nothing here: use events --stats ID")
        cid = _one_id(args, cmd)
        print(json.dumps({"type": "stats", "id": cid, "data": stats(root, cid)}))
    elif cmd == "spec":
        from labkit.engine.runtime.spec import write_spec

        write_spec(bundle, rootless=bool(opts.get("rootless")))
    else:
        raise UsageError(f"unknown command {cmd!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the labkit-runtime console script; returns the exit status."""
    if argv is None:
        # The console script: skip interpreter finalization (module teardown, GC), a few
        # milliseconds of the measured `run` time; flush what we printed first.
        rc = _main(sys.argv[1:])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return _main(argv)


def _main(argv: list[str]) -> int:
    if argv[:1] in (["--version"], ["-v"]):
        from labkit import __version__

        print(f"labkit-runtime version {__version__}\nspec: 1.0.2")
        return 0
    try:
        cmd, opts, args = parse(argv)
        return dispatch(cmd, opts, args)
    except UsageError as err:
        if str(err):
            print(f"labkit-runtime: {err}", file=sys.stderr)
        print(USAGE, file=sys.stderr, end="")
        return 2 if str(err) else 0
    except OSError as err:  # SyscallError and friends; also plain OSError from os.*
        _report(err)
        return int(getattr(err, "exit_code", 1))
    except Exception as err:
        from labkit.errors import LabkitError

        if not isinstance(err, LabkitError):
            raise
        _report(err)
        return int(getattr(err, "exit_code", 1))


def _report(err: BaseException) -> None:
    lines = [f"labkit-runtime: {err}"]
    lines += [f"  {n}" for n in getattr(err, "__notes__", [])]
    print("\n".join(lines), file=sys.stderr)
    sys.stderr.flush()


if __name__ == "__main__":
    main()
