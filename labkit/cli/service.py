"""`labkit service VERB`: create, ls, ps, inspect, rm, scale, update, logs (run on a manager).

Docker's verbs, flags and output (docker/cli cli/command/service).  create and update build
the ServiceSpec the Docker CLI sends; update and scale read the service, change its Spec
and send it back with the Version.Index they read (a concurrent change is refused, "update
out of sequence").  Without ``-d`` create, update and scale follow the convergence as the
Docker CLI does (service/progress): poll the service and its up-to-date tasks every 200 ms
until every wanted task runs, and has kept running for ``STABLE_S`` seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from labkit import errors
from labkit.cli._fmt import human_duration
from labkit.cli.image import _filters
from labkit.engine.client import Client

__all__ = [
    "STABLE_S",
    "add_arguments",
    "converge",
    "ls_rows",
    "pretty",
    "print_table",
    "ps_rows",
    "run_command",
    "spec_from_args",
]

out = Console(highlight=False, soft_wrap=True)
POLL_S = 0.2       # docker/cli service/progress: 200 ms between polls
STABLE_S = 5.0     # ... and tasks must stay running this long ("monitor" 5 s)
# swarmkit api/defaults: what an update/rollback policy holds when a flag sets only part of it
UPDATE_DEFAULTS: dict[str, Any] = {"Parallelism": 1, "FailureAction": "pause",
                                   "Monitor": 5 * 10**9, "MaxFailureRatio": 0,
                                   "Order": "stop-first"}
TERMINAL = ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")


def print_table(cols: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """A rich table as labkit's ls commands print them, never cutting a cell."""
    tab = Table(box=None, header_style="bold", pad_edge=False)
    for col in cols:
        tab.add_column(col, no_wrap=True)
    for row in rows:
        tab.add_row(*(Text(cell) for cell in row))   # daemon text, never rich markup
    need = Measurement.get(out, out.options.update(width=10**4), tab).maximum
    Console(highlight=False, soft_wrap=True, width=max(out.width, need)).print(tab)


# --- flag parsing ------------------------------------------------------------------------------

def _csv(flag: str, text: str) -> dict[str, str]:
    fields = next(csv.reader([text]), [])
    res = {}
    for f in fields:
        k, eq, v = f.partition("=")
        if not eq:
            raise errors.InvalidArgumentError(flag, f"invalid field {f!r}: must be a "
                                              "key=value pair")
        res[k.strip().lower()] = v.strip()
    return res


def _duration(flag: str, text: str) -> int:
    from labkit.cli._create_opts import parse_duration

    return parse_duration(flag, text)


def _int(flag: str, text: str, minimum: int = 0) -> int:
    try:
        n = int(text)
    except ValueError:
        raise errors.InvalidArgumentError(flag, f"invalid number {text!r}") from None
    if n < minimum:
        raise errors.InvalidArgumentError(flag, f"must be at least {minimum}")
    return n


def parse_publish(text: str) -> list[dict[str, Any]]:
    """-p 8080:80[/udp] or -p published=8080,target=80,protocol=udp,mode=host
    (docker/cli opts.PortOpt)."""
    if "=" in text:
        f = _csv("--publish", text)
        unknown = set(f) - {"published", "target", "protocol", "mode"}
        if unknown:
            raise errors.InvalidArgumentError("--publish", f"invalid field key {min(unknown)}")
        if "target" not in f:
            raise errors.InvalidArgumentError("--publish", "missing mandatory field 'target'")
        if f.get("mode", "ingress") not in ("ingress", "host"):
            raise errors.InvalidArgumentError("--publish", f"invalid publish mode value "
                                              f"({f['mode']}): must be ingress or host")
        if f.get("protocol", "tcp") not in ("tcp", "udp", "sctp"):
            raise errors.InvalidArgumentError("--publish", f"invalid protocol value "
                                              f"({f['protocol']})")
        return [{"Protocol": f.get("protocol", "tcp"),
                 "TargetPort": _int("--publish", f["target"], 1),
                 "PublishedPort": _int("--publish", f.get("published", "0")),
                 "PublishMode": f.get("mode", "ingress")}]
    from labkit.engine.swarm.stack.compose import _PORT

    m = _PORT.match(text)
    if not m:
        raise errors.InvalidArgumentError("--publish", f"invalid port {text!r}: expected "
                                          "[PUBLISHED:]TARGET[/PROTOCOL]",
                                          hint="a host IP is not supported by services")
    pub_lo, pub_hi, tgt_lo, tgt_hi, proto = m.groups()
    targets = list(range(int(tgt_lo), int(tgt_hi or tgt_lo) + 1))
    pubs = list(range(int(pub_lo), int(pub_hi or pub_lo) + 1)) if pub_lo else [0] * len(
        targets)
    if len(pubs) != len(targets) or any(not 0 < t < 65536 for t in targets) or any(
            not 0 <= p < 65536 for p in pubs):
        raise errors.InvalidArgumentError("--publish", f"invalid port range {text!r}")
    return [{"Protocol": proto or "tcp", "TargetPort": t, "PublishedPort": p,
             "PublishMode": "ingress"} for t, p in zip(targets, pubs)]


def _file_ref(c: Client, flag: str, text: str, kind: str) -> dict[str, Any]:
    """--secret NAME or source=NAME,target=PATH,uid=,gid=,mode= -> a Secret/Config ref with
    the object's ID (docker/cli ParseSecrets looks the names up)."""
    f = _csv(flag, text) if "=" in text else {"source": text}
    unknown = set(f) - {"source", "src", "target", "uid", "gid", "mode"}
    if unknown:
        raise errors.InvalidArgumentError(flag, f"invalid field {min(unknown)!r}")
    source = f.get("source") or f.get("src") or ""
    if not source:
        raise errors.InvalidArgumentError(flag, "source is required")
    api = c.secrets if kind == "Secret" else c.configs
    obj = api.inspect(source)
    mode = f.get("mode", "0444")
    try:
        mode_n = int(mode, 8)
    except ValueError:
        raise errors.InvalidArgumentError(flag, f"invalid mode {mode!r} (octal)") from None
    target = f.get("target") or (source if kind == "Secret" else f"/{source}")
    return {"File": {"Name": target, "UID": f.get("uid", "0"), "GID": f.get("gid", "0"),
                     "Mode": mode_n},
            f"{kind}ID": obj["ID"], f"{kind}Name": obj["Spec"]["Name"]}


def _network(c: Client, text: str) -> dict[str, Any]:
    """--network NAME or name=NAME,alias=A: resolved to the ID as the CLI does
    (GET /networks/NAME?scope=swarm)."""
    f = _csv("--network", text) if "=" in text else {"name": text}
    unknown = set(f) - {"name", "alias", "driver-opt"}
    if unknown:
        raise errors.InvalidArgumentError("--network", f"invalid field {min(unknown)!r}")
    from labkit.engine.client.services import ref

    net = c.transport.get(f"/networks/{ref('network', f.get('name', ''))}", scope="swarm")
    att: dict[str, Any] = {"Target": net["Id"]}
    if f.get("alias"):
        att["Aliases"] = [f["alias"]]
    return att


def _nano_cpus(flag: str, text: str) -> int:
    try:
        n = float(text)
    except ValueError:
        raise errors.InvalidArgumentError(flag, f"invalid number of CPUs {text!r}") from None
    if n <= 0:
        raise errors.InvalidArgumentError(flag, "must be more than 0")
    return round(n * 1e9)


def _bytes(flag: str, text: str) -> int:
    from labkit.engine.swarm.stack.compose import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as e:
        raise errors.InvalidArgumentError(flag, str(e)) from None


def _pairs(items: list[str]) -> dict[str, str]:
    res = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise errors.InvalidArgumentError("--label", f"{item!r} is not key=value")
        res[k] = v
    return res


def _policy(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """--update-* / --rollback-* -> UpdateConfig / RollbackConfig (only what was given)."""
    res: dict[str, Any] = {}
    for flag, key, conv in (("parallelism", "Parallelism", lambda f, v: _int(f, v)),
                            ("delay", "Delay", _duration), ("monitor", "Monitor", _duration),
                            ("failure_action", "FailureAction", None),
                            ("max_failure_ratio", "MaxFailureRatio", None),
                            ("order", "Order", None)):
        v = getattr(args, f"{prefix}_{flag}", None)
        if v is None:
            continue
        name = f"--{prefix}-{flag.replace('_', '-')}"
        if key == "MaxFailureRatio":
            try:
                res[key] = float(v)
            except ValueError:
                raise errors.InvalidArgumentError(name, f"invalid ratio {v!r}") from None
        else:
            res[key] = conv(name, v) if conv else v
    return res


def _apply_common(c: Client, args: argparse.Namespace, spec: dict[str, Any],
                  creating: bool) -> None:
    """The flags shared by create and update, written into ``spec``."""
    task = spec.setdefault("TaskTemplate", {})
    cs = task.setdefault("ContainerSpec", {})
    for flag, key in (("hostname", "Hostname"), ("user", "User"), ("workdir", "Dir")):
        if getattr(args, flag, None) is not None:
            cs[key] = getattr(args, flag)
    if getattr(args, "entrypoint", None) is not None:
        import shlex

        cs["Command"] = shlex.split(args.entrypoint)
    rp = dict(task.get("RestartPolicy") or {})
    if args.restart_condition is not None:
        rp["Condition"] = args.restart_condition
    if args.restart_delay is not None:
        rp["Delay"] = _duration("--restart-delay", args.restart_delay)
    if args.restart_max_attempts is not None:
        rp["MaxAttempts"] = _int("--restart-max-attempts", args.restart_max_attempts)
    if args.restart_window is not None:
        rp["Window"] = _duration("--restart-window", args.restart_window)
    if rp:
        task["RestartPolicy"] = rp
    for prefix, key in (("update", "UpdateConfig"), ("rollback", "RollbackConfig")):
        pol = _policy(args, prefix)
        if pol:
            # docker/cli: a policy flag sends the whole policy, swarmkit's defaults filled in
            spec[key] = {**UPDATE_DEFAULTS, **(spec.get(key) or {}), **pol}
    res = task.get("Resources") or {}
    for flag, section, key, conv in (
            ("limit_cpu", "Limits", "NanoCPUs", _nano_cpus),
            ("limit_memory", "Limits", "MemoryBytes", _bytes)):
        v = getattr(args, flag, None)
        if v is not None:
            res[section] = {**(res.get(section) or {}),
                            key: conv("--" + flag.replace("_", "-"), v)}
    if getattr(args, "limit_pids", None) is not None:
        res["Limits"] = {**(res.get("Limits") or {}), "Pids": _int("--limit-pids",
                                                                   args.limit_pids)}
    if res:
        task["Resources"] = res
    if args.endpoint_mode is not None:
        spec["EndpointSpec"] = {**(spec.get("EndpointSpec") or {}), "Mode": args.endpoint_mode}
    if args.replicas is not None:
        mode = spec.get("Mode") or {}
        if "Global" in mode:
            raise errors.InvalidArgumentError("--replicas", "replicas can only be used with "
                                              "replicated mode")
        spec["Mode"] = {"Replicated": {"Replicas": _int("--replicas", args.replicas)}}


def spec_from_args(c: Client, args: argparse.Namespace) -> dict[str, Any]:
    """`service create`'s flags -> the ServiceSpec (docker/cli service/opts.go ToService)."""
    cs: dict[str, Any] = {"Image": args.image}
    if args.command:
        cs["Args"] = list(args.command)
    if args.env:
        cs["Env"] = list(args.env)
    if args.container_label:
        cs["Labels"] = _pairs(args.container_label)
    if args.mount:
        from labkit.cli._mounts import parse_mount

        cs["Mounts"] = [parse_mount(m) for m in args.mount]
    if args.secret:
        cs["Secrets"] = [_file_ref(c, "--secret", s, "Secret") for s in args.secret]
    if args.config:
        cs["Configs"] = [_file_ref(c, "--config", s, "Config") for s in args.config]
    task: dict[str, Any] = {"ContainerSpec": cs}
    placement: dict[str, Any] = {}
    if args.constraint:
        placement["Constraints"] = list(args.constraint)
    if args.placement_pref:
        placement["Preferences"] = [_preference(p) for p in args.placement_pref]
    if placement:
        task["Placement"] = placement
    if args.network:
        task["Networks"] = [_network(c, n) for n in args.network]
    spec: dict[str, Any] = {"Name": args.name or "", "Labels": _pairs(args.label),
                            "TaskTemplate": task}
    if args.mode == "global":
        if args.replicas is not None:
            raise errors.InvalidArgumentError("--replicas", "replicas can only be used with "
                                              "replicated mode")
        spec["Mode"] = {"Global": {}}
    else:
        spec["Mode"] = {"Replicated": {"Replicas": 1}}
    _apply_common(c, args, spec, creating=True)
    ports = [p for text in args.publish for p in parse_publish(text)]
    endpoint = dict(spec.get("EndpointSpec") or {"Mode": "vip"})
    if ports:
        endpoint["Ports"] = ports
    spec["EndpointSpec"] = endpoint
    return spec


def _preference(text: str) -> dict[str, Any]:
    strategy, eq, arg = text.partition("=")
    if not eq or strategy.lower() != "spread" or not arg:
        raise errors.InvalidArgumentError("--placement-pref", f"invalid placement preference "
                                          f"{text!r}: expected spread=node.labels.KEY")
    return {"Spread": {"SpreadDescriptor": arg}}


# --- convergence ---------------------------------------------------------------------------------

# docker/cli service/progress numberedStates: how far along a task is, for its bar
_STATES = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
           "starting", "running")


def _bar(state: str, width: int = 30) -> str:
    """Docker's per-task bar: [=====>     ] by the task's place in _STATES."""
    if state not in _STATES:
        return ""
    done = round(width * (_STATES.index(state) + 1) / len(_STATES))
    return "[" + "=" * max(0, done - 1) + ">" + " " * (width - done) + "]"


def _running(t: dict[str, Any]) -> bool:
    return (t.get("Status") or {}).get("State") == "running" and \
        t.get("DesiredState") == "running"


def converge(c: Client, service_id: str, say: Callable[[str], None] | None = None,
             poll: float | None = None, stable: float | None = None,
             rollback: bool = False) -> int:
    """Follow the service until its up-to-date tasks all run (and stayed running ``stable``
    seconds); an error when the update paused or was rolled back (unless ``rollback``: the
    user asked for it, docker/cli service/progress).  Progress: a rich live view on a
    terminal, else one line per change."""
    # task messages come from the daemon: printed as text, never as rich markup
    say = say or (lambda s: out.print(s, markup=False, highlight=False))
    poll = POLL_S if poll is None else poll
    stable = STABLE_S if stable is None else stable
    since: float | None = None
    last = ""
    live = None
    if out.is_terminal:
        from rich.live import Live

        live = Live(console=out, refresh_per_second=5, transient=False)
        live.start()
    try:
        while True:
            svc = c.services.inspect(service_id)
            us = svc.get("UpdateStatus") or {}
            state = us.get("State", "")
            failed = ("paused", "rollback_paused") + (() if rollback else
                                                       ("rollback_completed",))
            if state in failed:
                msg = f"update {state.replace('_', ' ')}: {us.get('Message', '')}".rstrip(": ")
                raise errors.ConflictError(msg, hint="see `labkit service ps` for the tasks")
            tasks = [t for t in c.tasks.list({"service": [svc["ID"]],
                                             "_up-to-date": ["true"]})
                     if t.get("DesiredState") == "running"]
            mode = (svc.get("Spec") or {}).get("Mode") or {}
            if "Global" in mode:
                want = len({t.get("NodeID") for t in tasks})
            else:
                want = int(((mode.get("Replicated") or {}).get("Replicas")) or 0)
            running = sum(1 for t in tasks if _running(t))
            lines = [f"overall progress: {running} out of {want} tasks"]
            for t in sorted(tasks, key=lambda t: (t.get("Slot") or 0, t.get("NodeID", ""))):
                st = t.get("Status") or {}
                label = f"{t.get('Slot')}/{want}" if t.get("Slot") else \
                    str(t.get("NodeID", ""))[:12]
                why = st.get("Err") or (st.get("Message") if st.get("State") in (
                    "pending", "rejected", "failed") else "")
                lines.append(f"{label}: {st.get('State', ''):<9} {_bar(st.get('State', ''))}"
                             + (f"  {why}" if why else ""))
            done = running >= want and running == len(tasks) and (want > 0 or "Global"
                                                                   not in mode)
            now = time.monotonic()
            if done:
                since = since if since is not None else now
                left = stable - (now - since)
                status = "verify: Service converged" if left <= 0 else \
                    f"verify: Waiting {max(1, round(left))} seconds to verify that tasks " \
                    "are stable..."
            else:
                since, status = None, ""
            text = "\n".join(lines + ([status] if status else []))
            if live is not None:
                live.update(Text(text))
            elif text != last:
                # without a terminal: the changed lines only, so logs stay readable
                for line in text.splitlines():
                    if line not in last.splitlines() and not line.startswith(
                            "verify: Waiting"):
                        say(line)
            last = text
            if done and now - (since or now) >= stable:
                return 0
            time.sleep(poll)
    finally:
        if live is not None:
            live.stop()


# --- output ----------------------------------------------------------------------------------

def _image(image: str) -> str:
    """The image without its pinned digest, as `service ls` shows it."""
    return image.split("@", 1)[0]


def _ports(svc: dict[str, Any]) -> str:
    ports = (svc.get("Endpoint") or {}).get("Ports") or \
        ((svc.get("Spec") or {}).get("EndpointSpec") or {}).get("Ports") or []
    return ", ".join(f"*:{p.get('PublishedPort')}->{p.get('TargetPort')}/"
                     f"{p.get('Protocol', 'tcp')}" for p in ports
                     if p.get("PublishMode", "ingress") == "ingress")


def ls_rows(services: list[dict[str, Any]], trunc: bool = True) -> list[list[str]]:
    """`docker service ls` rows: ID, NAME, MODE, REPLICAS, IMAGE, PORTS."""
    rows = []
    for s in sorted(services, key=lambda s: s["Spec"]["Name"]):
        spec = s.get("Spec") or {}
        mode = spec.get("Mode") or {}
        st = s.get("ServiceStatus") or {}
        replicas = f"{st.get('RunningTasks', 0)}/{st.get('DesiredTasks', 0)}" if st else ""
        if not st and "Replicated" in mode:
            replicas = f"?/{(mode['Replicated'] or {}).get('Replicas', 0)}"
        rows.append([s["ID"][:12] if trunc else s["ID"], spec.get("Name", ""),
                     "global" if "Global" in mode else "replicated", replicas,
                     _image(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get(
                         "Image", "")), _ports(s)])
    return rows


def _ago(ts: str) -> str:
    """An RFC 3339 time (nanoseconds, "Z") as Docker's "5 minutes ago"; "" when unreadable."""
    import re
    from datetime import datetime

    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", ts)
    if not m:
        return ""
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        t = datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")
    except ValueError:
        return ""
    return human_duration(max(0.0, time.time() - t.timestamp())) + " ago"


def ps_rows(c: Client, tasks: list[dict[str, Any]], trunc: bool = True
            ) -> list[list[str]]:
    """`docker service ps` rows: ID, NAME, IMAGE, NODE, DESIRED STATE, CURRENT STATE, ERROR,
    PORTS; a slot's older tasks under its newest, named " \\_ name.slot" as Docker does."""
    nodes: dict[str, str] = {}
    try:
        nodes = {n["ID"]: (n.get("Description") or {}).get("Hostname", n["ID"])
                 for n in c.nodes.list()}
    except errors.LabkitError:
        pass
    names: dict[str, str] = {}
    for t in tasks:
        sid = t.get("ServiceID", "")
        if sid not in names:
            try:
                names[sid] = c.services.inspect(sid)["Spec"]["Name"]
            except errors.LabkitError:
                names[sid] = t.get("_ServiceName") or sid
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in tasks:
        slot = str(t.get("Slot") or "") or t.get("NodeID", "")
        groups.setdefault((names[t.get("ServiceID", "")], slot), []).append(t)
    rows = []
    for (svc_name, slot), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0], int(kv[0][1]) if kv[0][1].isdigit() else 0, kv[0][1])):
        group.sort(key=lambda t: str((t.get("Status") or {}).get("Timestamp") or
                                     t.get("CreatedAt", "")), reverse=True)
        for i, t in enumerate(group):
            st = t.get("Status") or {}
            name = f"{svc_name}.{slot}" if slot.isdigit() or not trunc else \
                f"{svc_name}.{slot[:25]}"
            err = st.get("Err") or (st.get("Message") if st.get("State") in (
                "pending", "rejected") else "") or ""
            if err and trunc:
                err = json.dumps(err if len(err) <= 30 else err[:29] + "…", ensure_ascii=False)
            ports = ", ".join(f"*:{p.get('PublishedPort')}->{p.get('TargetPort')}/"
                              f"{p.get('Protocol', 'tcp')}"
                              for p in (st.get("PortStatus") or {}).get("Ports") or [])
            state = str(st.get("State", ""))
            rows.append([t["ID"][:12] if trunc else t["ID"],
                         name if i == 0 else f" \\_ {name}",
                         _image(((t.get("Spec") or {}).get("ContainerSpec") or {}).get(
                             "Image", "")),
                         nodes.get(t.get("NodeID", ""), t.get("NodeID", "")),
                         _cap(t.get("DesiredState", "")),
                         f"{_cap(state)} {_ago(str(st.get('Timestamp', '')))}".strip(),
                         err, ports])
    return rows


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _ns(ns: int | None) -> str:
    """Nanoseconds as Go prints a time.Duration (5s, 1m30s, 500ms)."""
    if not ns:
        return "0s"
    if ns < 10**9:
        return f"{ns / 10**6:g}ms"
    s = ns / 10**9
    h, rem = divmod(int(s), 3600)
    m, sec = divmod(rem, 60)
    frac = s - int(s)
    secs = f"{sec + frac:g}s"
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + secs


def pretty(svc: dict[str, Any], network_name: Callable[[str], str] = str) -> str:
    """`docker service inspect --pretty` (docker/cli service/formatter.go's template)."""
    spec = svc.get("Spec") or {}
    task = spec.get("TaskTemplate") or {}
    cs = task.get("ContainerSpec") or {}
    mode = spec.get("Mode") or {}
    lines = [f"ID:\t\t{svc.get('ID', '')}", f"Name:\t\t{spec.get('Name', '')}"]
    if spec.get("Labels"):
        lines.append("Labels:")
        lines += [f" {k}={v}" for k, v in sorted(spec["Labels"].items())]
    if "Global" in mode:
        lines.append("Service Mode:\tGlobal")
    else:
        lines += ["Service Mode:\tReplicated",
                  f" Replicas:\t{(mode.get('Replicated') or {}).get('Replicas', 1)}"]
    us = svc.get("UpdateStatus")
    if us:
        lines += ["UpdateStatus:", f" State:\t\t{us.get('State', '')}",
                  f" Started:\t{_ago(str(us.get('StartedAt', '')))}"]
        if us.get("CompletedAt"):
            lines.append(f" Completed:\t{_ago(str(us['CompletedAt']))}")
        lines.append(f" Message:\t{us.get('Message', '')}")
    pl = task.get("Placement") or {}
    lines.append("Placement:")
    if pl.get("Constraints"):
        lines.append(f" Constraints:\t[{' '.join(pl['Constraints'])}]")   # Go's %v of a slice
    for p in pl.get("Preferences") or []:
        lines.append(f" Preferences:\tspread={(p.get('Spread') or {}).get('SpreadDescriptor')}")
    for key, title in (("UpdateConfig", "UpdateConfig"), ("RollbackConfig", "RollbackConfig")):
        uc = spec.get(key)
        if uc:
            lines += [f"{title}:", f" Parallelism:\t{uc.get('Parallelism', 1)}"]
            if uc.get("Delay"):
                lines.append(f" Delay:\t\t{_ns(uc['Delay'])}")
            lines.append(f" On failure:\t{uc.get('FailureAction', 'pause')}")
            lines.append(f" Monitoring Period: {_ns(uc.get('Monitor'))}")
            lines.append(f" Max failure ratio: {uc.get('MaxFailureRatio', 0)}")
            lines.append(f" Update order:      {uc.get('Order', 'stop-first')}")
    lines += ["ContainerSpec:", f" Image:\t\t{cs.get('Image', '')}"]
    if cs.get("Command"):
        lines.append(f" Command:\t{' '.join(cs['Command'])}")
    if cs.get("Args"):
        lines.append(f" Args:\t\t{' '.join(cs['Args'])}")
    if cs.get("Env"):
        lines.append(f" Env:\t\t{' '.join(cs['Env'])}")
    if cs.get("Dir"):
        lines.append(f" Dir:\t\t{cs['Dir']}")
    if cs.get("User"):
        lines.append(f" User:\t\t{cs['User']}")
    for name in ("Secrets", "Configs"):
        for ref in cs.get(name) or []:
            lines.append(f"{name}:" if ref is cs[name][0] else "")
            lines.append(f" Target:\t{(ref.get('File') or {}).get('Name', '')}")
            lines.append(f"  Source:\t{ref.get(name[:-1] + 'Name', '')}")
    lines = [ln for ln in lines if ln]
    if cs.get("Mounts"):
        lines.append("Mounts:")
        for m in cs["Mounts"]:
            lines += [f" Target:\t{m.get('Target', '')}", f"  Source:\t{m.get('Source', '')}",
                      f"  ReadOnly:\t{str(bool(m.get('ReadOnly'))).lower()}",
                      f"  Type:\t\t{m.get('Type', '')}"]
    res = task.get("Resources") or {}
    if any(res.values()):
        lines.append("Resources:")
        for section in ("Reservations", "Limits"):
            r = res.get(section) or {}
            if r:
                lines.append(f" {section}:")
                if r.get("NanoCPUs"):
                    lines.append(f"  CPU:\t\t{r['NanoCPUs'] / 1e9:g}")
                if r.get("MemoryBytes"):
                    from labkit.cli.node import _bytes as size

                    lines.append(f"  Memory:\t{size(r['MemoryBytes'])}")
    nets = task.get("Networks") or []
    if nets:
        lines.append("Networks:\t" + " ".join(network_name(n.get("Target", ""))
                                               for n in nets))
    ep = spec.get("EndpointSpec") or {}
    lines.append(f"Endpoint Mode:\t{ep.get('Mode', 'vip')}")
    ports = (svc.get("Endpoint") or {}).get("Ports") or ep.get("Ports") or []
    if ports:
        lines.append("Ports:")
        for p in ports:
            lines += [f" PublishedPort = {p.get('PublishedPort', 0)}",
                      f"  Protocol = {p.get('Protocol', 'tcp')}",
                      f"  TargetPort = {p.get('TargetPort', 0)}",
                      f"  PublishMode = {p.get('PublishMode', 'ingress')}"]
    from labkit.cli._fmt import tabwrite

    return tabwrite([ln.split("\t", 1) if "\t" in ln else [ln] for ln in
                     [ln.replace("\t\t", "\t") for ln in lines]], minwidth=0, padding=1)


# --- verbs -------------------------------------------------------------------------------------

def _create(c: Client, args: argparse.Namespace) -> int:
    spec = spec_from_args(c, args)
    if args.resolve_image != "never":
        from labkit.engine.swarm.stack.deploy import _pin

        image, warning = _pin(c, spec["TaskTemplate"]["ContainerSpec"]["Image"])
        if warning:
            print(warning, file=sys.stderr)
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = image   # pinned, or normalised
    res = c.services.create(spec)
    for w in res.get("Warnings") or []:
        print(w, file=sys.stderr)
    print(res["ID"])
    if args.detach:
        return 0
    return converge(c, res["ID"])


def _ls(c: Client, args: argparse.Namespace) -> int:
    services = c.services.list(_filters(args.filter), status=True)
    if args.quiet:
        sys.stdout.write("".join(f"{s['ID']}\n" for s in services))
        return 0
    print_table(("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"), ls_rows(services))
    return 0


def _ps(c: Client, args: argparse.Namespace) -> int:
    flt = _filters(args.filter)
    tasks: list[dict[str, Any]] = []
    rc = 0
    for ref in args.services:
        try:
            svc = c.services.inspect(ref)
        except errors.NotFoundError:
            print(f"no such service: {ref}", file=sys.stderr)
            rc = 1
            continue
        tasks += c.tasks.list({**flt, "service": [svc["ID"]]})
    if args.quiet:
        sys.stdout.write("".join(f"{t['ID']}\n" for t in tasks))
        return rc
    print_table(("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR",
                 "PORTS"), ps_rows(c, tasks, trunc=not args.no_trunc))
    return rc


def _inspect(c: Client, args: argparse.Namespace) -> int:
    found, rc = [], 0
    for ref in args.services:
        try:
            found.append(c.services.inspect(ref, insert_defaults=args.pretty))
        except errors.NotFoundError:
            print(f"Error: no such service: {ref}", file=sys.stderr)
            rc = 1
    if args.pretty:
        def net_name(nid: str) -> str:
            try:
                return str(c.transport.get(f"/networks/{nid}", scope="swarm")["Name"])
            except errors.LabkitError:
                return nid

        sys.stdout.write("\n".join(pretty(s, net_name) for s in found))
    else:
        print(json.dumps(found, indent=4))
    return rc


def _rm(c: Client, args: argparse.Namespace) -> int:
    rc = 0
    for ref in args.services:
        try:
            c.services.remove(ref)
            print(ref)
        except errors.LabkitError as err:
            print(f"Error response from daemon: {err}", file=sys.stderr)
            rc = 1
    return rc


def _scale(c: Client, args: argparse.Namespace) -> int:
    wanted = []
    for item in args.pairs:
        name, eq, n = item.partition("=")
        if not eq or not name:
            raise errors.InvalidArgumentError("scale", f"invalid scale specifier {item!r}",
                                              hint="use SERVICE=REPLICAS, e.g. web=3")
        wanted.append((name, _int("scale", n)))
    rc, done = 0, []
    for name, n in wanted:
        try:
            svc = c.services.inspect(name)
            spec = svc["Spec"]
            if "Replicated" not in (spec.get("Mode") or {"Replicated": {}}):
                raise errors.InvalidArgumentError("scale", f"scale can only be used with "
                                                  f"replicated mode ({name})")
            spec["Mode"] = {"Replicated": {"Replicas": n}}
            c.services.update(svc["ID"], svc["Version"]["Index"], spec)
            print(f"{name} scaled to {n}")
            done.append(svc["ID"])
        except errors.LabkitError as err:
            print(f"{name}: {err}", file=sys.stderr)
            rc = 1
    if not args.detach:
        for sid in done:
            rc = converge(c, sid) or rc
    return rc


def _listed(items: list[str], add: list[str], rm: list[str]) -> list[str]:
    return [x for x in items if x not in rm and x.split("=", 1)[0] not in rm] + add


def _update(c: Client, args: argparse.Namespace) -> int:
    svc = c.services.inspect(args.service)
    spec = svc["Spec"]
    if args.rollback:
        res = c.services.update(svc["ID"], svc["Version"]["Index"], spec, rollback=True)
    else:
        task = spec.setdefault("TaskTemplate", {})
        cs = task.setdefault("ContainerSpec", {})
        if args.image:
            image = args.image
            if args.resolve_image != "never":
                from labkit.engine.swarm.stack.deploy import _pin

                image, warning = _pin(c, args.image)
                if warning:
                    print(warning, file=sys.stderr)
            cs["Image"] = image
        if args.args is not None:
            import shlex

            cs["Args"] = shlex.split(args.args)
        # only what a flag names changes: an untouched TaskTemplate must stay equal, or the
        # daemon would see a new spec version and restart every task
        if args.env_add or args.env_rm:
            env_keys = {e.split("=", 1)[0] for e in args.env_add}
            cs["Env"] = _listed([e for e in cs.get("Env") or [] if e.split("=", 1)[0] not in
                                 env_keys], args.env_add, args.env_rm)
        if args.label_add or args.label_rm:
            labels = dict(spec.get("Labels") or {})
            labels.update(_pairs(args.label_add))
            for k in args.label_rm:
                labels.pop(k, None)
            spec["Labels"] = labels
        if args.container_label_add or args.container_label_rm:
            clabels = dict(cs.get("Labels") or {})
            clabels.update(_pairs(args.container_label_add))
            for k in args.container_label_rm:
                clabels.pop(k, None)
            cs["Labels"] = clabels
        if args.constraint_add or args.constraint_rm:
            pl = task.setdefault("Placement", {})
            pl["Constraints"] = _listed(pl.get("Constraints") or [], args.constraint_add,
                                        args.constraint_rm)
        if args.secret_add or args.secret_rm:
            refs = [s for s in cs.get("Secrets") or [] if s.get("SecretName") not in
                    args.secret_rm]
            cs["Secrets"] = refs + [_file_ref(c, "--secret-add", s, "Secret")
                                    for s in args.secret_add]
        if args.network_add or args.network_rm:
            ids = set()
            for n in args.network_rm:
                try:
                    ids.add(c.transport.get(f"/networks/{n}", scope="swarm")["Id"])
                except errors.NotFoundError:
                    ids.add(n)
            task["Networks"] = [n for n in task.get("Networks") or [] if n.get("Target")
                                not in ids | set(args.network_rm)] + \
                [_network(c, n) for n in args.network_add]
        if args.publish_add or args.publish_rm:
            ep = spec.setdefault("EndpointSpec", {"Mode": "vip"})
            gone = set()
            for text in args.publish_rm:
                t, _, proto = text.partition("/")
                gone.add((int(t.split(":")[-1]) if t.split(":")[-1].isdigit() else -1,
                          proto or "tcp"))
            ports = [p for p in ep.get("Ports") or [] if (p.get("TargetPort"),
                                                          p.get("Protocol", "tcp")) not in gone]
            ep["Ports"] = ports + [p for text in args.publish_add for p in parse_publish(text)]
        if args.mount_add or args.mount_rm:
            from labkit.cli._mounts import parse_mount

            cs["Mounts"] = [m for m in cs.get("Mounts") or [] if m.get("Target") not in
                            args.mount_rm] + [parse_mount(m) for m in args.mount_add]
        _apply_common(c, args, spec, creating=False)
        if args.force:
            task["ForceUpdate"] = int(task.get("ForceUpdate") or 0) + 1
        res = c.services.update(svc["ID"], svc["Version"]["Index"], spec)
    for w in res.get("Warnings") or []:
        print(w, file=sys.stderr)
    print(args.service)
    if args.detach:
        return 0
    return converge(c, svc["ID"], rollback=args.rollback)


def _logs(c: Client, args: argparse.Namespace) -> int:
    """Lines prefixed ``name.slot.task@node    |`` from the daemon's details (Docker's
    ``com.docker.swarm.*`` attributes), raw when the daemon sends none."""
    from labkit.engine.shim.stdcopy import STDERR, Decoder

    svc = c.services.inspect(args.service)
    resp = c.services.logs(svc["ID"], follow=args.follow, tail=args.tail,
                           timestamps=args.timestamps, since=args.since, details=True)
    tty = bool(((svc["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("TTY"))
    nodes: dict[str, str] = {}
    tasks: dict[str, dict[str, Any]] = {}

    def prefix(line: str) -> tuple[str, str]:
        # moby daemon/logs.go: "[TIMESTAMP ]k=v,k2=v2 line" (the time first with --timestamps)
        stamp = ""
        if args.timestamps:
            stamp, _, line = line.partition(" ")
            stamp += " "
        head, sep, rest = line.partition(" ")
        if not sep or "com.docker.swarm." not in head:
            return "", stamp + line
        rest = stamp + rest
        attrs = dict(kv.partition("=")[::2] for kv in head.split(","))
        tid = attrs.get("com.docker.swarm.task.id", "")
        nid = attrs.get("com.docker.swarm.node.id", "")
        if args.raw:
            return "", rest
        if nid and nid not in nodes:
            try:
                nodes[nid] = (c.nodes.get(nid).get("Description") or {}).get("Hostname", nid)
            except errors.LabkitError:
                nodes[nid] = nid
        if tid and tid not in tasks:
            try:
                tasks[tid] = c.tasks.inspect(tid)
            except errors.LabkitError:
                tasks[tid] = {}
        t = tasks.get(tid) or {}
        slot = t.get("Slot") or t.get("NodeID") or ""
        name = f"{svc['Spec']['Name']}.{slot}.{tid[:12] if not args.no_trunc else tid}"
        return f"{name}@{nodes.get(nid, nid)}    | ", rest

    def emit(stream: int, data: bytes, pending: dict[int, bytes]) -> None:
        buf = pending.get(stream, b"") + data
        *lines, pending[stream] = buf.split(b"\n")
        target = sys.stderr if stream == STDERR else sys.stdout
        for raw in lines:
            p, text = prefix(raw.decode("utf-8", "replace"))
            target.write(p + text + "\n")
        target.flush()

    pending: dict[int, bytes] = {}
    dec = Decoder()
    try:
        while chunk := resp.read1():
            if tty:
                emit(1, chunk, pending)
                continue
            for stream, payload in dec.feed(chunk):
                emit(stream, payload, pending)
    finally:
        resp.close()
    for stream, rest in pending.items():
        if rest:
            emit(stream, rest + b"\n", {})
    return 0


# --- arguments ---------------------------------------------------------------------------------

def _common_flags(s: argparse.ArgumentParser) -> None:
    a = s.add_argument
    a("-d", "--detach", action="store_true", help="exit at once, do not wait for convergence")
    a("--replicas", help="number of tasks")
    a("--hostname", help="container hostname")
    a("-u", "--user", help="username or UID")
    a("-w", "--workdir", help="working directory inside the container")
    a("--entrypoint", help="overwrite the image's entrypoint")
    a("--restart-condition", choices=("none", "on-failure", "any"),
      help="restart when condition is met")
    a("--restart-delay", help="delay between restart attempts (ns|us|ms|s|m|h)")
    a("--restart-max-attempts", help="maximum number of restarts before giving up")
    a("--restart-window", help="window used to evaluate the restart policy")
    for prefix in ("update", "rollback"):
        a(f"--{prefix}-parallelism", help=f"maximum tasks {prefix}d at once (0 = all)")
        a(f"--{prefix}-delay", help=f"delay between {prefix}s")
        a(f"--{prefix}-monitor", help="duration after each task to watch for failure")
        a(f"--{prefix}-failure-action",
          choices=("pause", "continue", "rollback") if prefix == "update" else
          ("pause", "continue"), help=f"action on {prefix} failure")
        a(f"--{prefix}-max-failure-ratio", help="failure rate to tolerate")
        a(f"--{prefix}-order", choices=("start-first", "stop-first"),
          help=f"{prefix} order")
    a("--endpoint-mode", choices=("vip", "dnsrr"), help="endpoint mode (default vip)")
    a("--limit-cpu", help="limit CPUs")
    a("--limit-memory", help="limit memory")
    a("--limit-pids", help="limit the number of processes")
    a("--no-resolve-image", dest="resolve_image", action="store_const", const="never",
      default="always", help="do not pin the image to its digest")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = sub.add_parser("create", help="create a new service")
    _common_flags(s)
    a = s.add_argument
    a("--name", help="service name")
    a("--mode", choices=("replicated", "global"), default="replicated", help="service mode")
    a("--network", action="append", default=[], help="network attachments")
    a("-p", "--publish", action="append", default=[], help="publish a port as a node port")
    a("--secret", action="append", default=[], help="give the service a secret")
    a("--config", action="append", default=[], help="give the service a config")
    a("--constraint", action="append", default=[], help="placement constraints")
    a("--placement-pref", action="append", default=[], help="placement preference")
    a("-e", "--env", action="append", default=[], help="set environment variables")
    a("-l", "--label", action="append", default=[], help="service labels")
    a("--container-label", action="append", default=[], help="container labels")
    a("--mount", action="append", default=[], help="attach a filesystem mount")
    a("image", metavar="IMAGE")
    a("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments")
    s = sub.add_parser("ls", aliases=["list"], help="list services")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("-f", "--filter", action="append", default=[],
                   help="id=, name=, label=, mode=")
    s = sub.add_parser("ps", help="list the tasks of services")
    s.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    s.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    s.add_argument("-f", "--filter", action="append", default=[],
                   help="id=, name=, node=, desired-state=")
    s.add_argument("services", nargs="+", metavar="SERVICE")
    s = sub.add_parser("inspect", help="services as JSON (or --pretty)")
    s.add_argument("--pretty", action="store_true", help="human-readable")
    s.add_argument("services", nargs="+", metavar="SERVICE")
    s = sub.add_parser("rm", aliases=["remove"], help="remove services")
    s.add_argument("services", nargs="+", metavar="SERVICE")
    s = sub.add_parser("scale", help="scale replicated services (SERVICE=REPLICAS)")
    s.add_argument("-d", "--detach", action="store_true", help="do not wait")
    s.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS")
    s = sub.add_parser("update", help="update a service")
    _common_flags(s)
    a = s.add_argument
    a("--image", help="service image tag")
    a("--args", help="service command args")
    a("--rollback", action="store_true", help="roll back to the previous specification")
    a("--force", action="store_true", help="force an update even if nothing changed")
    for flag in ("env", "label", "container-label", "constraint", "secret", "network",
                 "publish", "mount"):
        a(f"--{flag}-add", action="append", default=[], help=f"add a {flag}")
        a(f"--{flag}-rm", action="append", default=[], help=f"remove a {flag}")
    a("service", metavar="SERVICE")
    s = sub.add_parser("logs", help="fetch the logs of a service or task")
    s.add_argument("-f", "--follow", action="store_true", help="follow log output")
    s.add_argument("-n", "--tail", default="all", help="lines from the end (default all)")
    s.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    s.add_argument("--since", help="logs since a timestamp or a relative time (42m)")
    s.add_argument("--raw", action="store_true", help="no name prefix")
    s.add_argument("--no-trunc", action="store_true", help="full task IDs")
    s.add_argument("service", metavar="SERVICE")


def run_command(args: argparse.Namespace) -> int:
    from labkit.cli.swarm import connect

    c = connect()
    verb = {"list": "ls", "remove": "rm"}.get(args.verb, args.verb)
    return {"create": _create, "ls": _ls, "ps": _ps, "inspect": _inspect, "rm": _rm,
            "scale": _scale, "update": _update, "logs": _logs}[verb](c, args)
