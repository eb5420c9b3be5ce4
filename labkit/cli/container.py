"""`labkit container VERB ...` and the short forms (`labkit run`, `labkit ps`, ...): Docker's verbs.

Each verb parses Docker's flags, makes its calls through labkit.engine.client and prints what
the Docker CLI prints.  Exit statuses follow Docker: `run` exits with the container's status,
125 when the daemon refuses, 126 when the command cannot be invoked, 127 when it is not found;
other verbs exit 1 on an error.  When no daemon answers, one is started (client.launch).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from labkit import errors
from labkit.cli import _create, _fmt
from labkit.engine.client import Client, DaemonUnavailable

__all__ = ["SHORT_FORMS", "VERBS", "connect", "exit_code_for_start_error", "run"]

SHORT_FORMS = ("run", "create", "start", "stop", "kill", "restart", "rm", "ps", "logs", "exec",
               "attach", "inspect", "wait", "top", "stats", "port", "pause", "unpause",
               "rename", "update")


def connect(autostart: bool = True) -> Client:
    """A client for paths.daemon_socket(); its first request starts a daemon when none answers
    (said once on stderr).  No extra _ping round trip: `labkit run` stays lean."""
    return Client(autostart=autostart)


def exit_code_for_start_error(err: Exception) -> int:
    """Docker CLI's mapping of a failed start: 127 not found, 126 cannot invoke, else 125."""
    text = str(err).lower()
    if any(s in text for s in ("executable file not found", "no such file or directory",
                               "not found")) and not isinstance(err, DaemonUnavailable):
        return 127
    if any(s in text for s in ("permission denied", "cannot invoke", "not executable")):
        return 126
    return 125


def _daemon_text(err: errors.LabkitError) -> str:
    if isinstance(err, DaemonUnavailable):
        return f"{err}"
    return f"Error response from daemon: {err}"


# ----------------------------------------------------------------------------- verbs
def _each(names: list[str], action: Callable[[str], Any], echo: bool = True) -> int:
    """Apply ``action`` to each container; print its name (or errors) like `docker stop a b`."""
    rc = 0
    for name in names:
        try:
            result = action(name)
            if echo:
                print(name if result is None else result)
        except errors.LabkitError as err:
            print(_daemon_text(err), file=sys.stderr)
            rc = 1
    return rc


def _verb_parser(prog: str, verb: str, help_text: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=help_text, add_help=verb not in (
        "run", "create"))


def cmd_run(argv: list[str], prog: str, create_only: bool = False) -> int:
    from labkit.cli import _run

    p = _verb_parser(prog, "run", "Create and run a new container from an image"
                     if not create_only else "Create a new container")
    _create.add_create_flags(p)
    if not create_only:
        p.add_argument("-d", "--detach", action="store_true",
                       help="run in the background and print the container ID")
    p.usage = f"{prog} [OPTIONS] IMAGE [COMMAND] [ARG...]"
    cut = _create.split_at_positional(argv, _create.RUN_VALUE_OPTS)
    args = p.parse_args(argv[:cut])
    if cut >= len(argv):
        p.error('"run" requires at least 1 argument.' if not create_only
                else '"create" requires at least 1 argument.')
    image, cmd = argv[cut], argv[cut + 1:]
    try:
        body = _create.create_body(args, image, cmd)
    except errors.InvalidArgumentError as err:
        print(f"labkit: {err}.\nSee '{prog} --help'.", file=sys.stderr)
        return 125
    return _run.run_container(connect(), body, args, create_only, prog)


def cmd_ps(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "ps", "List containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter (key=value)")
    p.add_argument("--format", help="Go-template subset or 'table ...' or 'json'")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-n", "--last", type=int, default=-1, help="show n last created containers")
    p.add_argument("-l", "--latest", action="store_true", help="show the latest container")
    p.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    args = p.parse_args(argv)
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, eq, value = f.partition("=")
        if not eq:
            raise errors.InvalidArgumentError("--filter", f"bad format of filter {f!r}",
                                              hint="expected key=value, e.g. status=exited")
        filters.setdefault(key, []).append(value)
    limit = 1 if args.latest else (args.last if args.last > 0 else None)
    items = connect().containers.list(all=args.all or limit is not None, filters=filters,
                                      limit=limit, size=args.size)
    rows = [_fmt.ps_row(c, trunc=not args.no_trunc) for c in items]
    if args.quiet:
        sys.stdout.write("".join(r["ID"] + "\n" for r in rows))
        return 0
    template = args.format or _fmt.PS_DEFAULT
    if template == "json":
        template = "{{json .}}"
    sys.stdout.write(_fmt.render_rows(template, rows, _fmt.PS_HEADERS))
    return 0


def cmd_simple(verb: str, argv: list[str], prog: str) -> int:
    """stop, kill, restart, rm, start, pause, unpause: one call per named container."""
    p = _verb_parser(prog, verb, f"{verb} one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    if verb in ("stop", "restart"):
        p.add_argument("-t", "--time", type=int, help="seconds to wait before killing it")
        p.add_argument("-s", "--signal", help="signal to send to the container")
    if verb == "kill":
        p.add_argument("-s", "--signal", help="signal to send (default KILL)")
    if verb == "rm":
        p.add_argument("-f", "--force", action="store_true", help="kill a running container")
        p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes")
    if verb == "start":
        p.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
        p.add_argument("-i", "--interactive", action="store_true", help="attach STDIN")
    args = p.parse_args(argv)
    c = connect().containers
    if verb == "start" and (args.attach or args.interactive):
        from labkit.cli import _run

        return _run.start_attached(connect(), args.containers[0], args.interactive)
    actions: dict[str, Callable[[str], Any]] = {
        "stop": lambda n: c.stop(n, args.time),
        "restart": lambda n: c.restart(n, args.time),
        "kill": lambda n: c.kill(n, getattr(args, "signal", None)),
        "rm": lambda n: c.remove(n, force=args.force, volumes=args.volumes),
        "start": c.start, "pause": c.pause, "unpause": c.unpause,
    }
    return _each(args.containers, actions[verb])


def cmd_inspect(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "inspect", "Display detailed information on one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--format", help="Go-template subset")
    p.add_argument("-s", "--size", action="store_true", help="display total file sizes")
    args = p.parse_args(argv)
    client, found, rc = connect(), [], 0
    for name in args.containers:
        try:
            found.append(client.containers.inspect(name))
        except errors.NotFoundError as err:
            # `docker inspect` looks at every object type; `docker container inspect` passes
            # the daemon's answer on
            print(_daemon_text(err) if "container" in prog.split() else
                  f"Error: No such object: {name}", file=sys.stderr)
            rc = 1
    if args.format:
        sys.stdout.write("".join(_fmt.render(args.format, obj) + "\n" for obj in found))
    else:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    return rc


def cmd_wait(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "wait", "Block until containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    args = p.parse_args(argv)
    c = connect().containers
    return _each(args.containers, lambda n: c.wait(n).json().get("StatusCode"))


def cmd_logs(argv: list[str], prog: str) -> int:
    from labkit.cli import _run

    p = _verb_parser(prog, "logs", "Fetch the logs of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-n", "--tail", default="all", help="lines to show from the end")
    p.add_argument("--since", help="show logs since timestamp or relative (e.g. 42m)")
    p.add_argument("--until", help="show logs before a timestamp or relative")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    args = p.parse_args(argv)
    return _run.logs(connect(), args)


def cmd_exec(argv: list[str], prog: str) -> int:
    from labkit.cli import _run

    p = _verb_parser(prog, "exec", "Execute a command in a running container")
    p.usage = f"{prog} [OPTIONS] CONTAINER COMMAND [ARG...]"
    for flags, kw in ((("-d", "--detach"), {"action": "store_true"}),
                      (("-i", "--interactive"), {"action": "store_true"}),
                      (("-t", "--tty"), {"action": "store_true"}),
                      (("-e", "--env"), {"action": "append", "default": []}),
                      (("--env-file",), {"action": "append", "default": []}),
                      (("-w", "--workdir"), {}), (("-u", "--user"), {}),
                      (("--detach-keys",), {}), (("--privileged",), {"action": "store_true"})):
        p.add_argument(*flags, **kw)
    cut = _create.split_at_positional(argv, {"-e", "--env", "--env-file", "-w", "--workdir",
                                             "-u", "--user", "--detach-keys"})
    args = p.parse_args(argv[:cut])
    if len(argv) - cut < 2:
        p.error('"exec" requires at least 2 arguments.')
    return _run.exec_in(connect(), argv[cut], argv[cut + 1:], args)


def cmd_attach(argv: list[str], prog: str) -> int:
    from labkit.cli import _run

    p = _verb_parser(prog, "attach", "Attach local standard input, output, and error streams")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("--detach-keys", help="override the key sequence for detaching")
    args = p.parse_args(argv)
    return _run.attach(connect(), args.container, not args.no_stdin, args.detach_keys)


def cmd_top(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "top", "Display the running processes of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    top = connect().containers.top(args.container, " ".join(args.ps_args) or None)
    rows = [top.get("Titles") or []] + [list(r) for r in top.get("Processes") or []]
    sys.stdout.write(_fmt.tabwrite(rows, minwidth=20, padding=3))
    return 0


def cmd_stats(argv: list[str], prog: str) -> int:
    from labkit.cli import _run

    p = _verb_parser(prog, "stats", "Display a live stream of container resource usage")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("--no-stream", action="store_true", help="print one result and exit")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("--format", help="Go-template subset")
    args = p.parse_args(argv)
    return _run.stats(connect(), args)


def _host_port(binding: dict[str, Any]) -> str:
    """Go's net.JoinHostPort, as `docker port` prints a binding: an IPv6 host in brackets."""
    host, port = str(binding.get("HostIp") or ""), str(binding.get("HostPort") or "")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cmd_port(argv: list[str], prog: str) -> int:
    """`docker port` (docker/cli container/port.go): lines in natural order; one port asked
    for and not published is an error with rc 1."""
    p = _verb_parser(prog, "port", "List port mappings for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    args = p.parse_args(argv)
    if args.private is not None:
        number, _, proto = args.private.partition("/")
        if not number.isdigit() or int(number) > 65535:
            raise errors.InvalidArgumentError("PRIVATE_PORT", f"invalid port ({number})")
    ports = (connect().containers.inspect(args.container).get("NetworkSettings") or {}).get(
        "Ports") or {}
    if args.private is not None:
        found = ports.get(f"{number}/{proto or 'tcp'}") or []
        if not found:
            print(f"Error: No public port '{args.private}' published for {args.container}",
                  file=sys.stderr)
            return 1
        lines = [_host_port(b) for b in found]
    else:
        lines = [f"{key} -> {_host_port(b)}" for key, bs in ports.items() for b in bs or []]
    sys.stdout.write("".join(f"{line}\n" for line in sorted(lines, key=_fmt.natural_key)))
    return 0


def cmd_prune(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "prune", "Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="filter values (until=...)")
    args = p.parse_args(argv)
    if not args.force:
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    report = connect().containers.prune(filters)
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:\n" + "".join(d + "\n" for d in deleted))
    print(f"Total reclaimed space: {_fmt.human_size(float(report.get('SpaceReclaimed') or 0))}")
    return 0


def cmd_rename(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "rename", "Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    args = p.parse_args(argv)
    connect().containers.rename(args.container, args.new_name)
    return 0


def cmd_update(argv: list[str], prog: str) -> int:
    p = _verb_parser(prog, "update", "Update configuration of one or more containers")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-m", "--memory", help="memory limit")
    p.add_argument("--memory-swap", help="memory + swap limit (-1: unlimited swap)")
    p.add_argument("--cpus", help="number of CPUs")
    p.add_argument("--pids-limit", type=int, help="pids limit (-1 for unlimited)")
    p.add_argument("--restart", help="restart policy")
    args = p.parse_args(argv)
    body: dict[str, Any] = {}
    if args.memory:
        body["Memory"] = _create.parse_memory(args.memory)
    if args.memory_swap:
        body["MemorySwap"] = -1 if args.memory_swap == "-1" else _create.parse_memory(
            args.memory_swap)
    if args.cpus:
        body["NanoCpus"] = int(float(args.cpus) * 1e9)
    if args.pids_limit is not None:
        body["PidsLimit"] = args.pids_limit
    if args.restart:
        body["RestartPolicy"] = _create.parse_restart(args.restart)
    c = connect().containers

    def update(n: str) -> None:
        for warning in c.update(n, body).get("Warnings") or []:
            print(f"WARNING: {warning}", file=sys.stderr)

    return _each(args.containers, update)


VERBS: dict[str, Callable[[list[str], str], int]] = {
    "run": cmd_run, "create": lambda a, p: cmd_run(a, p, create_only=True),
    "ps": cmd_ps, "ls": cmd_ps, "list": cmd_ps, "inspect": cmd_inspect, "wait": cmd_wait,
    "logs": cmd_logs, "exec": cmd_exec, "attach": cmd_attach, "top": cmd_top,
    "stats": cmd_stats, "port": cmd_port, "prune": cmd_prune, "rename": cmd_rename,
    "update": cmd_update,
}


def _simple(verb: str) -> Callable[[list[str], str], int]:
    return lambda argv, prog: cmd_simple(verb, argv, prog)


VERBS.update({v: _simple(v) for v in ("start", "stop", "kill", "restart", "rm", "pause",
                                       "unpause")})


VERB_HELP = {
    "attach": "Attach local standard input, output, and error streams to a running container",
    "create": "Create a new container", "exec": "Execute a command in a running container",
    "inspect": "Display detailed information on one or more containers",
    "kill": "Kill one or more running containers", "logs": "Fetch the logs of a container",
    "ls": "List containers", "list": "List containers (alias of ls)",
    "pause": "Pause all processes within one or more containers",
    "port": "List port mappings for the container", "prune": "Remove all stopped containers",
    "ps": "List containers (alias of ls)", "restart": "Restart one or more containers",
    "rename": "Rename a container",
    "update": "Update configuration (resources, restart policy) of one or more containers",
    "rm": "Remove one or more containers", "run": "Create and run a new container from an image",
    "start": "Start one or more stopped containers",
    "stats": "Display a live stream of container(s) resource usage statistics",
    "stop": "Stop one or more running containers",
    "top": "Display the running processes of a container",
    "unpause": "Unpause all processes within one or more containers",
    "wait": "Block until one or more containers stop, then print their exit codes",
}


def run(argv: list[str], prog: str = "labkit container") -> int:
    """Entry from labkit.cli.main: `labkit container VERB ...` or a short form (`labkit ps`)."""
    verb = prog.split()[-1]
    if verb == "container":
        if not argv or argv[0] in ("-h", "--help"):
            print(f"usage: {prog} COMMAND\n\nManage containers\n\nCommands:\n"
                  + "".join(f"  {v:<9} {VERB_HELP.get(v, '')}\n" for v in sorted(VERBS))
                  + f"\nRun '{prog} COMMAND --help' for more information on a command.")
            return 0 if argv else 2
        verb, argv, prog = argv[0], argv[1:], f"{prog} {argv[0]}"
    if verb not in VERBS:
        print(f"{prog}: unknown command {verb!r}; see '{prog.rsplit(' ', 1)[0]} --help'",
              file=sys.stderr)
        return 2
    try:
        return VERBS[verb](argv, prog)
    except errors.LabkitError as err:
        print(_daemon_text(err), file=sys.stderr)
        return 125 if verb in ("run", "create") else 1
    except BrokenPipeError:
        return 0
