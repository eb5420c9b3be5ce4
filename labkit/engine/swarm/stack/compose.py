"""Read a compose v3 file for `stack deploy`: the subset labkit deploys, every other key reported
with its path and line.

The YAML is composed (yaml.compose, SafeLoader) rather than loaded, so each value keeps the
line it came from; errors read ``stack.yml:12: services.web.build: ...``.  Three outcomes for a
key:

* in the subset: checked and normalised (ports, volumes, secrets, durations, ...);
* one the Docker CLI's stack deploy itself ignores (docker/cli compose/convert: build, links,
  restart, depends_on, container_name, ...): a *warning* with its line, as Docker's "Ignoring
  unsupported options" is, and deploy goes on;
* anything else (a compose key labkit does not implement, or a typo): an *error* with its
  line; nothing is deployed.

The subset (everything else is reported):

* top level: ``version`` (3.x), ``services``, ``networks``, ``secrets``, ``configs``,
  ``volumes``, ``x-*`` extension fields (anchors and ``<<`` merge keys work);
* a service: image, command, entrypoint, environment (list or map; a bare KEY reads the
  deploying shell's environment), ports (short "[PUB[-PUB]:]TGT[-TGT][/proto]", long
  {target, published, protocol, mode ingress|host}), networks (list, or map with aliases),
  secrets and configs (short name, long {source, target, uid, gid, mode}), volumes (named,
  bind (relative to the file), tmpfs; short or long syntax), labels, hostname, user,
  working_dir, stop_grace_period, stop_signal, tty, stdin_open, read_only, init,
  healthcheck, extra_hosts, dns, dns_search, dns_opt, sysctls, logging, and deploy: mode
  (replicated|global), replicas, labels, endpoint_mode (vip|dnsrr), placement (constraints,
  preferences spread, max_replicas_per_node), restart_policy, update_config,
  rollback_config, resources.limits (cpus, memory, pids);
* a network: driver (overlay), attachable, internal, driver_opts (encrypted,
  com.docker.network.driver.mtu), ipam (driver default, one config pool), labels, name,
  external; a secret or config: file or external, name, labels; a volume: driver,
  driver_opts, labels, name, external.

Variables are interpolated in string values as the compose spec says (``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?message}``, ``${VAR?message}``, ``$$`` for
a literal ``$``); an unset variable without a default becomes "" with a warning, as Docker.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labkit import errors

__all__ = ["Compose", "ComposeError", "load", "parse", "parse_bytes", "parse_duration"]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
OVERLAY_OPTIONS = ("encrypted", "com.docker.network.driver.mtu")
SERVICE_NAME = re.compile(r"[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*")
# docker/cli compose/convert: keys stack deploy ignores with a warning.
IGNORED_SERVICE_KEYS = frozenset({
    "build", "cap_add", "cap_drop", "cgroup_parent", "cgroupns_mode", "container_name",
    "depends_on", "devices", "domainname", "expose", "external_links", "ipc", "links",
    "mac_address", "network_mode", "privileged", "restart", "security_opt", "shm_size",
    "userns_mode"})


class ComposeError(errors.InvalidArgumentError):
    """Every problem of a compose file at once, one ``file:line: path: message`` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("compose file", "; ".join(problems),
                         hint="fix the lines named; nothing was deployed")
        Exception.__init__(self, "\n".join(problems))  # the lines alone, one per problem
        self.problems = problems


@dataclass
class Compose:
    """A checked compose file: plain dicts in the subset's normalised shape."""

    filename: str
    base: Path
    version: str = ""
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        """``file:line: path`` for messages about a value (the line of the closest parent)."""
        p = path
        while p and p not in self.lines:
            p = p.rpartition(".")[0]
        return f"{self.filename}:{self.lines.get(p, 1)}: {path}"


# --- units ---------------------------------------------------------------------------------

_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DUR_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
           "h": 3600 * 10**9}
_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration ("10s", "1m30s") -> ns; compose durations use it."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DUR.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_NS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f'invalid duration "{text}" (e.g. 10s, 1m30s, 500ms)')
    return int(total)


def parse_bytes(value: Any) -> int:
    """go-units RAMInBytes ("512m", "1g", "100MB": binary multiples) -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _BYTES.match(str(value).strip())
    if not m:
        raise ValueError(f'invalid size "{value}" (e.g. 512M, 1G)')
    mult = 1024 ** "bkmgtp".index(m.group(2).lower() or "b")
    return int(float(m.group(1)) * mult)


# --- YAML with line numbers -----------------------------------------------------------------

class _Reader:
    """Turns composed YAML nodes into Python values, recording each path's line."""

    def __init__(self, filename: str, env: Mapping[str, str]) -> None:
        self.filename, self.env = filename, env
        self.lines: dict[str, int] = {}
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._scalar = yaml.constructor.SafeConstructor()

    def at(self, path: str, line: int, msg: str) -> str:
        return f"{self.filename}:{line}: {path}: {msg}" if path else \
            f"{self.filename}:{line}: {msg}"

    def value(self, node: yaml.Node, path: str) -> Any:
        line = node.start_mark.line + 1
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            explicit: set[str] = set()   # keys written here (a merged "<<" key may be overridden)
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":  # YAML merge key "<<"
                    for src in (vnode.value if isinstance(vnode, yaml.SequenceNode)
                                else [vnode]):
                        merged = self.value(src, path)
                        if isinstance(merged, dict):
                            for k, v in merged.items():
                                out.setdefault(k, v)
                    continue
                key = self._scalar.construct_object(knode) if isinstance(
                    knode, yaml.ScalarNode) else None
                if not isinstance(key, (str, int, float, bool)) or isinstance(key, bool):
                    self.problems.append(self.at(path, knode.start_mark.line + 1,
                                                 "keys must be strings"))
                    continue
                key = str(key)
                sub = f"{path}.{key}" if path else key
                if key in explicit:
                    self.problems.append(self.at(sub, knode.start_mark.line + 1,
                                                 "duplicate key"))
                explicit.add(key)
                self.lines[sub] = knode.start_mark.line + 1
                out[key] = self.value(vnode, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.value(n, f"{path}[{i}]") for i, n in enumerate(node.value)]
        val = self._scalar.construct_object(node)
        if isinstance(val, str):
            val = self.interpolate(val, path, line)
        return val

    _VAR = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([^}]*)\}|)")
    _BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?$", re.DOTALL)

    def interpolate(self, text: str, path: str, line: int) -> str:
        """The compose spec's interpolation (compose-spec "Interpolation")."""
        if "$" not in text:
            return text

        def sub(m: re.Match[str]) -> str:
            if m.group(1):
                return "$"
            name, braced = m.group(2), m.group(3)
            if name is None and braced is None:
                self.problems.append(self.at(path, line, f'invalid interpolation format '
                                             f'for "{text}": a "$" must be followed by a '
                                             'name, {NAME} or "$"'))
                return ""
            op, arg = None, ""
            if braced is not None:
                bm = self._BRACED.match(braced)
                if not bm:
                    self.problems.append(self.at(path, line, "invalid interpolation format "
                                                 f'for "{text}": "${{{braced}}}"'))
                    return ""
                name, op, arg = bm.group(1), bm.group(2), bm.group(3) or ""
            value = self.env.get(name)
            unset_or_empty = not value
            if op in (":-", "-"):
                if value is None or (op == ":-" and unset_or_empty):
                    return arg
                return value
            if op in (":?", "?"):
                if value is None or (op == ":?" and unset_or_empty):
                    self.problems.append(self.at(path, line, f"required variable {name} is "
                                                 f"missing a value: {arg}"))
                    return ""
                return value
            if value is None:
                self.warnings.append(self.at(path, line, f'the "{name}" variable is not '
                                             "set, defaulting to a blank string"))
                return ""
            return value

        return self._VAR.sub(sub, text)


# --- the subset ------------------------------------------------------------------------------

Check = Callable[["_Checker", str, Any], Any]


class _Checker:
    """Walks the loaded document against the subset; collects every problem."""

    def __init__(self, r: _Reader, base: Path) -> None:
        self.r, self.base = r, base

    def line(self, path: str) -> int:
        """The line of ``path``, or of its closest recorded parent."""
        p = path
        while p and p not in self.r.lines:
            p = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", p)
        return self.r.lines.get(p, 1)

    def err(self, path: str, msg: str) -> None:
        self.r.problems.append(self.r.at(path, self.line(path), msg))

    def warn(self, path: str, msg: str) -> None:
        self.r.warnings.append(self.r.at(path, self.line(path), msg))

    # typed readers: return None (and record the error) when the value is wrong
    def mapping(self, path: str, v: Any, keys: Mapping[str, Check],
                unsupported: str = "not supported by stack deploy",
                ignored: frozenset[str] = frozenset(), extensions: bool = False
                ) -> dict[str, Any] | None:
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.err(path, f"must be a mapping, not {_kind(v)}")
            return None
        out: dict[str, Any] = {}
        for k, sub in v.items():
            sp = f"{path}.{k}" if path else k
            if k in keys:
                val = keys[k](self, sp, sub)
                if val is not None:
                    out[k] = val
            elif extensions and k.startswith("x-"):
                continue  # compose-spec extension fields: free-form by definition
            elif k in ignored:
                self.warn(sp, "not supported by stack deploy, ignored (as Docker does)")
            else:
                self.err(sp, unsupported)
        return out

    def string(self, path: str, v: Any) -> str | None:
        if isinstance(v, bool) or v is None or isinstance(v, (dict, list)):
            self.err(path, f"must be a string, not {_kind(v)}")
            return None
        return str(v)

    def integer(self, path: str, v: Any, minimum: int = 0) -> int | None:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            self.err(path, f"must be an integer, not {_kind(v)}")
            return None
        try:
            n = int(v)
        except ValueError:
            self.err(path, f"must be an integer, not {v!r}")
            return None
        if n < minimum:
            self.err(path, f"must be at least {minimum}")
            return None
        return n

    def boolean(self, path: str, v: Any) -> bool | None:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no"):
            return v.lower() in ("true", "yes")
        self.err(path, f"must be a boolean, not {_kind(v)}")
        return None

    def duration(self, path: str, v: Any) -> int | None:
        s = self.string(path, v)
        if s is None:
            return None
        try:
            return parse_duration(s)
        except ValueError as e:
            self.err(path, str(e))
            return None

    def size(self, path: str, v: Any) -> int | None:
        try:
            return parse_bytes(v)
        except ValueError as e:
            self.err(path, str(e))
            return None

    def strings(self, path: str, v: Any) -> list[str] | None:
        if isinstance(v, str):
            return [v]
        if not isinstance(v, list):
            self.err(path, f"must be a list of strings, not {_kind(v)}")
            return None
        out = [self.string(f"{path}[{i}]", x) for i, x in enumerate(v)]
        return [x for x in out if x is not None]

    def command(self, path: str, v: Any) -> list[str] | None:
        """A string is split as a shell would (compose: shlex), a list taken as is."""
        if isinstance(v, str):
            try:
                return shlex.split(v)
            except ValueError as e:
                self.err(path, f"cannot split the command: {e}")
                return None
        return self.strings(path, v)

    def str_map(self, path: str, v: Any, allow_none: bool = False
                ) -> dict[str, str | None] | None:
        """A mapping or a ``["K=V", ...]`` list (labels, environment, driver_opts)."""
        out: dict[str, str | None] = {}
        if isinstance(v, list):
            for i, item in enumerate(v):
                s = self.string(f"{path}[{i}]", item)
                if s is None:
                    continue
                k, eq, val = s.partition("=")
                out[k] = val if eq else (None if allow_none else "")
            return out
        if not isinstance(v, dict):
            self.err(path, f"must be a mapping or a list of KEY=VALUE, not {_kind(v)}")
            return None
        for k, val in v.items():
            if val is None:
                out[k] = None if allow_none else ""
            elif isinstance(val, (dict, list)):
                self.err(f"{path}.{k}", f"must be a string, number or boolean, not {_kind(val)}")
            else:
                out[k] = ("true" if val else "false") if isinstance(val, bool) else str(val)
        return out

def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null", bool: "a boolean",
            int: "a number", float: "a number", str: "a string"}.get(type(v), type(v).__name__)


def _choice(*allowed: str) -> Check:
    def check(c: _Checker, path: str, v: Any) -> str | None:
        s = c.string(path, v)
        if s is not None and s not in allowed:
            c.err(path, f"must be one of {', '.join(allowed)}, not {s!r}")
            return None
        return s
    return check


def _m(keys: Mapping[str, Check]) -> Check:
    return lambda c, p, v: c.mapping(p, v, keys)


S: Check = _Checker.string
I: Check = _Checker.integer
B: Check = _Checker.boolean
D: Check = _Checker.duration
L: Check = _Checker.strings


def _cpus(c: _Checker, path: str, v: Any) -> int | None:
    """"0.5" CPUs -> NanoCPUs."""
    try:
        n = float(str(v))
    except ValueError:
        c.err(path, f"must be a number of CPUs, not {v!r}")
        return None
    if n <= 0:
        c.err(path, "must be more than 0")
        return None
    return round(n * 1e9)


def _ratio(c: _Checker, path: str, v: Any) -> float | None:
    try:
        n = float(str(v))
    except ValueError:
        c.err(path, f"must be a number, not {v!r}")
        return None
    if not 0 <= n <= 1:
        c.err(path, "must be between 0 and 1")
        return None
    return n


_UPDATE = {"parallelism": I, "delay": D, "monitor": D, "max_failure_ratio": _ratio,
           "failure_action": _choice("pause", "continue", "rollback"),
           "order": _choice("stop-first", "start-first")}


def _preferences(c: _Checker, path: str, v: Any) -> list[str] | None:
    if not isinstance(v, list):
        c.err(path, "must be a list of {spread: node.labels.X}")
        return None
    out = []
    for i, item in enumerate(v):
        m = c.mapping(f"{path}[{i}]", item, {"spread": S})
        if m is not None and "spread" in m:
            out.append(m["spread"])
    return out


_CONSTRAINT = re.compile(r"\s*([\w.\-]+)\s*(==|!=)\s*(\S(?:.*\S)?)\s*")
_CONSTRAINT_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os",
                    "node.platform.arch")


def _constraints(c: _Checker, path: str, v: Any) -> list[str] | None:
    """``KEY==VALUE`` / ``KEY!=VALUE`` on the keys swarmkit's scheduler knows
    (swarmkit manager/constraint: node.id, node.hostname, node.role, node.platform.*,
    node.labels.*, engine.labels.*)."""
    items = c.strings(path, v)
    if items is None:
        return None
    for i, item in enumerate(items):
        m = _CONSTRAINT.fullmatch(item)
        key = m.group(1).lower() if m else ""
        if not m:
            c.err(f"{path}[{i}]", f"invalid constraint {item!r}: expected KEY==VALUE or "
                                  "KEY!=VALUE")
        elif not (key in _CONSTRAINT_KEYS or re.fullmatch(r"(node|engine)\.labels\.\S+", key)):
            c.err(f"{path}[{i}]", f"constraint key {m.group(1)!r} is not one of "
                                  f"{', '.join(_CONSTRAINT_KEYS)}, node.labels.X, engine.labels.X")
    return items


_RESOURCE = {"cpus": _cpus, "memory": _Checker.size, "pids": I}
_DEPLOY: dict[str, Check] = {
    "mode": _choice("replicated", "global"),
    "replicas": I,
    "labels": lambda c, p, v: c.str_map(p, v),
    "endpoint_mode": _choice("vip", "dnsrr"),
    "placement": _m({"constraints": lambda c, p, v: _constraints(c, p, v),
                     "preferences": _preferences,
                     "max_replicas_per_node": I}),
    "restart_policy": _m({"condition": _choice("none", "on-failure", "any"),
                          "delay": D, "max_attempts": I, "window": D}),
    "update_config": _m(_UPDATE),
    "rollback_config": _m(_UPDATE),
    # reservations are refused by the daemon (its scheduler places by constraints and
    # spread only), so they are outside the subset and reported here, before any write
    "resources": _m({"limits": _m(_RESOURCE)}),
}

_PORT = re.compile(r"^(?:(\d+)(?:-(\d+))?:)?(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$")


def _ports(c: _Checker, path: str, v: Any) -> list[dict[str, Any]] | None:
    """Short "8080:80[/udp]", "80", ranges "8080-8081:80-81"; long {target, published,
    protocol, mode}.  Swarm publishes on every node, so "IP:8080:80" is refused."""
    if not isinstance(v, list):
        c.err(path, f"must be a list, not {_kind(v)}")
        return None
    out: list[dict[str, Any]] = []
    for i, item in enumerate(v):
        p = f"{path}[{i}]"
        if isinstance(item, dict):
            m = c.mapping(p, item, {"target": I, "published": I,
                                    "protocol": _choice("tcp", "udp", "sctp"),
                                    "mode": _choice("ingress", "host")})
            if m is None:
                continue
            if "target" not in m:
                c.err(p, "target is required")
                continue
            out.append({"Protocol": m.get("protocol", "tcp"), "TargetPort": m["target"],
                        "PublishedPort": m.get("published", 0),
                        "PublishMode": m.get("mode", "ingress")})
            continue
        s = c.string(p, item)
        if s is None:
            continue
        pm = _PORT.match(s)
        if not pm:
            c.err(p, f'invalid port "{s}": expected [PUBLISHED:]TARGET[/PROTOCOL] (a host '
                  "IP is not supported by swarm services)")
            continue
        pub_lo, pub_hi, tgt_lo, tgt_hi, proto = pm.groups()
        targets = list(range(int(tgt_lo), int(tgt_hi or tgt_lo) + 1))
        pubs = list(range(int(pub_lo), int(pub_hi or pub_lo) + 1)) if pub_lo else \
            [0] * len(targets)
        if len(pubs) != len(targets):
            c.err(p, f'invalid port "{s}": the published and target ranges differ in size')
            continue
        if any(not 0 < t < 65536 for t in targets) or any(not 0 <= x < 65536 for x in pubs):
            c.err(p, f'invalid port "{s}": out of range')
            continue
        out += [{"Protocol": proto or "tcp", "TargetPort": t, "PublishedPort": x,
                 "PublishMode": "ingress"} for t, x in zip(targets, pubs)]
    return out


def _svc_networks(c: _Checker, path: str, v: Any) -> dict[str, list[str]] | None:
    if isinstance(v, list):
        names = c.strings(path, v)
        return None if names is None else {n: [] for n in names}
    if not isinstance(v, dict):
        c.err(path, f"must be a list or a mapping, not {_kind(v)}")
        return None
    out: dict[str, list[str]] = {}
    for name, conf in v.items():
        m = c.mapping(f"{path}.{name}", conf, {"aliases": L})
        if m is not None:
            out[name] = m.get("aliases", [])
    return out


def _mode(c: _Checker, path: str, v: Any) -> int | None:
    """A file mode: a YAML number (0440 is octal in YAML 1.1) or an octal string "0440"."""
    if isinstance(v, str):
        try:
            n = int(v, 8)
        except ValueError:
            c.err(path, f"must be an octal file mode, not {v!r}")
            return None
    else:
        got = c.integer(path, v)
        if got is None:
            return None
        n = got
    if not 0 <= n <= 0o777:
        c.err(path, "must be a file mode between 0 and 0777")
        return None
    return n


def _file_refs(target_default: Callable[[str], str]) -> Check:
    def check(c: _Checker, path: str, v: Any) -> list[dict[str, Any]] | None:
        if not isinstance(v, list):
            c.err(path, f"must be a list, not {_kind(v)}")
            return None
        out = []
        for i, item in enumerate(v):
            p = f"{path}[{i}]"
            if isinstance(item, str):
                out.append({"source": item, "target": target_default(item),
                            "uid": "0", "gid": "0", "mode": 0o444, "_path": p})
                continue
            m = c.mapping(p, item, {"source": S, "target": S, "uid": S, "gid": S,
                                    "mode": _mode})
            if m is None:
                continue
            if "source" not in m:
                c.err(p, "source is required")
                continue
            out.append({"source": m["source"],
                        "target": m.get("target") or target_default(m["source"]),
                        "uid": m.get("uid", "0"), "gid": m.get("gid", "0"),
                        "mode": m.get("mode", 0o444), "_path": p})
        return out
    return check


def _svc_volumes(c: _Checker, path: str, v: Any) -> list[dict[str, Any]] | None:
    """Short "name:/path[:ro]", "/host:/path", "./rel:/path"; long {type, source, target,
    read_only, volume.nocopy, tmpfs.size}."""
    if not isinstance(v, list):
        c.err(path, f"must be a list, not {_kind(v)}")
        return None
    out = []
    for i, item in enumerate(v):
        p = f"{path}[{i}]"
        if isinstance(item, dict):
            m = c.mapping(p, item, {
                "type": _choice("volume", "bind", "tmpfs"),
                "source": S, "target": S, "read_only": B,
                "volume": _m({"nocopy": B}), "tmpfs": _m({"size": _Checker.size}),
                "bind": _m({"propagation": S})})
            if m is None:
                continue
            if "target" not in m or "type" not in m:
                c.err(p, "type and target are required")
                continue
            mount = {"Type": m["type"], "Source": m.get("source", ""), "Target": m["target"],
                     "ReadOnly": m.get("read_only", False), "_path": p}
            if m.get("volume", {}).get("nocopy"):
                mount["VolumeOptions"] = {"NoCopy": True}
            if m.get("tmpfs", {}).get("size"):
                mount["TmpfsOptions"] = {"SizeBytes": m["tmpfs"]["size"]}
            if m.get("bind", {}).get("propagation"):
                mount["BindOptions"] = {"Propagation": m["bind"]["propagation"]}
            out.append(mount)
            continue
        s = c.string(p, item)
        if s is None:
            continue
        parts = s.split(":")
        if len(parts) == 1:
            out.append({"Type": "volume", "Source": "", "Target": parts[0],
                        "ReadOnly": False, "_path": p})
            continue
        if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            c.err(p, f'invalid volume "{s}": expected SOURCE:TARGET[:ro|rw]')
            continue
        src, target = parts[0], parts[1]
        bind = src.startswith(("/", ".", "~"))
        out.append({"Type": "bind" if bind else "volume", "Source": src, "Target": target,
                    "ReadOnly": len(parts) == 3 and parts[2] == "ro", "_path": p})
    for m in out:
        if not str(m["Target"]).startswith("/"):
            c.err(m["_path"], f"the target {m['Target']!r} must be an absolute path")
        if m["Type"] == "bind":
            src = str(m["Source"])
            if not src:
                c.err(m["_path"], "a bind mount needs a source")
                continue
            # compose: relative bind sources are relative to the compose file's directory
            m["Source"] = str((c.base / Path(src).expanduser()).resolve()) if not \
                src.startswith("/") else src
    return out


_SERVICE: dict[str, Check] = {
    "image": S,
    "command": _Checker.command,
    "entrypoint": _Checker.command,
    "environment": lambda c, p, v: c.str_map(p, v, allow_none=True),
    "deploy": _m(_DEPLOY),
    "networks": _svc_networks,
    "ports": _ports,
    "secrets": _file_refs(lambda name: name),  # File.Name, under /run/secrets
    "configs": _file_refs(lambda name: name),   # docker/cli: the target defaults to the name
    "volumes": _svc_volumes,
    "labels": lambda c, p, v: c.str_map(p, v),
    "hostname": S, "user": S, "working_dir": S,
    "stop_grace_period": D, "stop_signal": S, "tty": B, "stdin_open": B, "read_only": B,
    "init": B,
    "healthcheck": lambda c, p, v: _healthcheck(c, p, v),
    "extra_hosts": lambda c, p, v: _extra_hosts(c, p, v),
    "dns": L, "dns_search": L, "dns_opt": L,
    "sysctls": lambda c, p, v: c.str_map(p, v),
    "logging": _m({"driver": S, "options": lambda c, p, v: c.str_map(p, v)}),
}


def _healthcheck(c: _Checker, path: str, v: Any) -> dict[str, Any] | None:
    """compose healthcheck -> Healthcheck (docker/cli convertHealthcheck): a string test runs
    in a shell (CMD-SHELL), ``disable: true`` is ["NONE"]."""
    m = c.mapping(path, v, {"test": lambda c2, p2, v2: v2 if isinstance(v2, str)
                            else c2.strings(p2, v2),
                            "interval": D, "timeout": D, "start_period": D, "retries": I,
                            "disable": B})
    if m is None:
        return None
    if m.get("disable"):
        if set(m) - {"disable"}:
            c.err(path, "a disabled healthcheck takes no other option")
            return None
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    test = m.get("test")
    if isinstance(test, str):
        out["Test"] = ["CMD-SHELL", test]
    elif test:
        out["Test"] = test
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"),
                     ("start_period", "StartPeriod"), ("retries", "Retries")):
        if key in m:
            out[api] = m[key]
    return out


def _extra_hosts(c: _Checker, path: str, v: Any) -> list[str] | None:
    """``["host:ip"]`` or ``{host: ip}`` -> Hosts ``["ip host"]`` (the /etc/hosts order,
    docker/cli convertExtraHosts)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(v, dict):
        pairs = [(str(k), str(x)) for k, x in v.items()]
    else:
        for i, item in enumerate(c.strings(path, v) or []):
            host, sep, ip = item.partition(":")
            if not sep or not host or not ip:
                c.err(f"{path}[{i}]", f"invalid extra host {item!r}: expected HOST:IP")
                continue
            pairs.append((host, ip))
    return [f"{ip} {host}" for host, ip in pairs]


def _external(c: _Checker, path: str, v: Any) -> dict[str, Any] | None:
    """``external: true`` or the old ``external: {name: X}``."""
    if isinstance(v, dict):
        m = c.mapping(path, v, {"name": S})
        return None if m is None else {"external": True, "name": m.get("name")}
    b = c.boolean(path, v)
    return None if b is None else {"external": b, "name": None}


def _ipam(c: _Checker, path: str, v: Any) -> dict[str, Any] | None:
    m = c.mapping(path, v, {"driver": S, "config": lambda c2, p2, v2: _ipam_pools(c2, p2, v2)})
    return m


def _ipam_pools(c: _Checker, path: str, v: Any) -> list[dict[str, str]] | None:
    if not isinstance(v, list):
        c.err(path, f"must be a list, not {_kind(v)}")
        return None
    out = []
    for i, item in enumerate(v):
        m = c.mapping(f"{path}[{i}]", item, {"subnet": S, "gateway": S, "ip_range": S})
        if m is not None:
            out.append({k2: m[k] for k, k2 in (("subnet", "Subnet"), ("gateway", "Gateway"),
                                               ("ip_range", "IPRange")) if k in m})
    return out


def _top(keys: dict[str, Check]) -> Check:
    """A top-level section (networks, secrets, ...): name -> definition (or null)."""
    def check(c: _Checker, path: str, v: Any) -> dict[str, Any] | None:
        if v is None:
            return {}
        if not isinstance(v, dict):
            c.err(path, f"must be a mapping, not {_kind(v)}")
            return None
        out = {}
        for name, conf in v.items():
            p = f"{path}.{name}"
            if not _NAME.match(name):
                c.err(p, "invalid name: letters, digits, '_', '.', '-' only")
                continue
            m = c.mapping(p, conf, keys)
            if m is None:
                continue
            ext = m.pop("external", None) or {"external": False, "name": None}
            m["external"] = ext["external"]
            if ext["name"]:
                m.setdefault("name", ext["name"])
            m["_path"] = p
            out[name] = m
        return out
    return check


_TOP: dict[str, Check] = {
    "version": S,
    "services": lambda c, p, v: _services(c, p, v),
    "networks": _top({"driver": _choice("overlay"),
                      "attachable": B, "internal": B, "external": _external, "name": S,
                      "labels": lambda c, p, v: c.str_map(p, v),
                      "driver_opts": lambda c, p, v: c.str_map(p, v), "ipam": _ipam}),
    "secrets": _top({"file": S, "external": _external, "name": S,
                     "labels": lambda c, p, v: c.str_map(p, v)}),
    "configs": _top({"file": S, "external": _external, "name": S,
                     "labels": lambda c, p, v: c.str_map(p, v)}),
    "volumes": _top({"driver": S, "driver_opts": lambda c, p, v: c.str_map(p, v),
                     "external": _external, "name": S,
                     "labels": lambda c, p, v: c.str_map(p, v)}),
}


def _services(c: _Checker, path: str, v: Any) -> dict[str, Any] | None:
    if not isinstance(v, dict):
        c.err(path, f"must be a mapping, not {_kind(v)}")
        return None
    out = {}
    for name, conf in v.items():
        p = f"{path}.{name}"
        if not SERVICE_NAME.fullmatch(name):
            # swarmkit isValidDNSName, which the daemon applies to "<stack>_<name>"
            c.err(p, "invalid service name: letters and digits, with '-' or '_' between them")
            continue
        m = c.mapping(p, conf, _SERVICE, ignored=IGNORED_SERVICE_KEYS, extensions=True)
        if m is None:
            continue
        if "image" not in m:
            c.err(p, "image is required (stack deploy does not build)")
        out[name] = m
    return out


def _cross_check(c: _Checker, doc: dict[str, Any]) -> None:
    """References between sections: undefined networks, secrets, configs, volumes."""
    nets, secs = doc.get("networks", {}), doc.get("secrets", {})
    cfgs, vols = doc.get("configs", {}), doc.get("volumes", {})
    for name, svc in doc.get("services", {}).items():
        p = f"services.{name}"
        for net in svc.get("networks", {}):
            if net != "default" and net not in nets:
                c.err(f"{p}.networks", f"service {name} refers to undefined network {net}")
        for what, table in (("secrets", secs), ("configs", cfgs)):
            for ref in svc.get(what, []):
                if ref["source"] not in table:
                    c.err(ref["_path"], f"service {name} refers to undefined "
                                        f"{what[:-1]} {ref['source']}")
        for m in svc.get("volumes", []):
            if m["Type"] == "volume" and m["Source"] and m["Source"] not in vols:
                c.err(m["_path"], f"service {name} refers to undefined volume {m['Source']}")
        deploy = svc.get("deploy", {})
        if deploy.get("mode") == "global" and "replicas" in deploy:
            c.err(f"{p}.deploy.replicas", "replicas can only be used with the replicated mode")
    for section in ("secrets", "configs"):
        for name, d in doc.get(section, {}).items():
            if d["external"] and "file" in d:
                c.err(d["_path"], "an external " + section[:-1] + " cannot have a file")
            elif not d["external"] and "file" not in d:
                c.err(d["_path"], "needs a file (or external: true)")
    for name, d in nets.items():
        if d["external"] and set(d) - {"external", "name", "_path"}:
            c.err(d["_path"], "an external network takes no other options")
        # what labkit's control API accepts for an overlay network (swarm/control/networks):
        # said here with the line, rather than by the daemon halfway through the deploy
        for opt in d.get("driver_opts") or {}:
            if opt not in OVERLAY_OPTIONS:
                c.err(f"{d['_path']}.driver_opts.{opt}", "the overlay driver does not "
                      f"support this option (labkit applies {', '.join(OVERLAY_OPTIONS)})")
        ipam = d.get("ipam") or {}
        if ipam.get("driver", "default") != "default":
            c.err(f"{d['_path']}.ipam.driver", "labkit has Docker's default IPAM only")
        if len(ipam.get("config") or []) > 1:
            c.err(f"{d['_path']}.ipam.config", "one IPv4 subnet per overlay network")


def parse(text: str, filename: str = "stack.yml", base: Path | None = None,
          env: Mapping[str, str] | None = None) -> Compose:
    """Check a compose document; raise ComposeError listing every problem with its line."""
    import os

    reader = _Reader(filename, os.environ if env is None else env)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        raise ComposeError([f"{filename}:{line}: YAML syntax error: {e.problem or e}"]) \
            from None
    except yaml.YAMLError as e:
        raise ComposeError([f"{filename}: YAML error: {e}"]) from None
    if node is None:
        raise ComposeError([f"{filename}:1: the file is empty"])
    doc = reader.value(node, "")
    checker = _Checker(reader, base or Path.cwd())
    top = checker.mapping("", doc, _TOP, unsupported="not supported by stack deploy",
                          extensions=True)
    if top is not None:
        version = top.get("version", "3")
        if not re.match(r"^3(\.\d+)?$", version):
            checker.err("version", f'unsupported compose file version "{version}": '
                                   "stack deploy reads version 3.x")
        if not top.get("services"):
            checker.err("services", "a stack needs at least one service")
        _cross_check(checker, top)
    if reader.problems:
        raise ComposeError(reader.problems)
    assert top is not None
    return Compose(filename=filename, base=base or Path.cwd(), version=top.get("version", ""),
                   services=top.get("services", {}), networks=top.get("networks", {}),
                   secrets=top.get("secrets", {}), configs=top.get("configs", {}),
                   volumes=top.get("volumes", {}), warnings=reader.warnings,
                   lines=reader.lines)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Compose:
    """Read and check a compose file; "-" is stdin.  Paths in it are relative to its dir."""
    import sys

    if str(path) == "-":
        return parse(sys.stdin.read(), "-", Path.cwd(), env)
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise errors.NotFoundError("compose file", str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise errors.InvalidArgumentError("compose file", f"cannot read {path}: {e}") from None
    return parse(text, p.name, p.parent.resolve(), env)
