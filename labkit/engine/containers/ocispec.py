"""Docker's container config -> an OCI runtime config.json (pure functions, no I/O).

What moby's daemon/oci_linux.go does, reduced to what labkit offers: the command is the
image's Entrypoint/Cmd overridden by the request's (moby: an Entrypoint given in the request
drops the image's Cmd), the environment is the image's with the request's on top, the user is
resolved against the *image's* /etc/passwd and /etc/group, capabilities start from Docker's
default set, and HostConfig resources become ``linux.resources`` (config-linux.md).
Files are read through a ``lookup`` callback so unit tests need no rootfs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from labkit import errors
from labkit.engine.containers.ocihost import Peer
from labkit.engine.containers.ocihost import apply as apply_host
from labkit.engine.runtime.config import CGROUP_PARENT

__all__ = [
    "CPU_PERIOD",
    "INIT_PATH",
    "capabilities",
    "command",
    "container_hostname",
    "etc_files_text",
    "merge_env",
    "merge_healthcheck",
    "resolve_user",
    "resources",
    "translate",
]

INIT_PATH = "/sbin/docker-init"  # where Docker puts its init (tini) inside the container
CPU_PERIOD = 100_000  # moby: NanoCpus -> quota over a 100 ms period (--cpus)
Lookup = Callable[[str], str | None]


def command(config: dict[str, Any], image: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd after the request overrides the image (moby daemon/create.go).

    Raises InvalidArgumentError("Cmd", "No command specified") when both are empty.
    """
    entry = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if entry is None:
        entry = image.get("Entrypoint") or []
        if cmd is None:
            cmd = image.get("Cmd") or []
    args = list(entry or []) + list(cmd or [])
    if not args:
        raise errors.InvalidArgumentError("Cmd", "No command specified",
                                          hint="give a command after the image name")
    return args


def merge_image(config: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The request's Config completed from the image's, as dockerd stores it (moby
    daemon/create.go merge): `docker inspect` then shows the Cmd, Env, WorkingDir that run."""
    out = dict(config)
    if not config.get("Entrypoint"):
        out["Entrypoint"] = image.get("Entrypoint")
        if not config.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
    out["Env"] = merge_env(image.get("Env") or [], config.get("Env") or [], {})
    for key in ("WorkingDir", "User", "StopSignal"):
        out[key] = config.get(key) or image.get(key) or ""
    out["Labels"] = {**(image.get("Labels") or {}), **(config.get("Labels") or {})}
    exposed = {**(image.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})}
    out["ExposedPorts"] = exposed or None  # -P publishes these; `docker ps` lists them
    if not config.get("Shell") and image.get("Shell"):
        out["Shell"] = image["Shell"]
    out["Healthcheck"] = merge_healthcheck(config.get("Healthcheck"), image.get("Healthcheck"))
    if out["Healthcheck"] is None:
        out.pop("Healthcheck")
    return out


def merge_healthcheck(mine: dict[str, Any] | None,
                      image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request's Healthcheck completed from the image's (moby daemon/commit.go merge):
    no Test inherits the image's test, a zero duration or count inherits the image's."""
    if mine is None:
        return dict(image) if image else None
    out = dict(mine)
    if image:
        if not out.get("Test"):
            out["Test"] = image.get("Test") or []
        for key in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not out.get(key) and image.get(key):
                out[key] = image[key]
    return out


def merge_env(image_env: list[str], env: list[str], extra: dict[str, str]) -> list[str]:
    """Image Env, then the request's Env (same key replaces), then ``extra`` if unset."""
    out: dict[str, str] = {}
    for item in list(image_env) + list(env):
        key, sep, val = item.partition("=")
        out[key] = f"{key}={val}" if sep else key
    for key, val in extra.items():
        out.setdefault(key, f"{key}={val}")
    return list(out.values())


def container_hostname(cid: str, config: dict[str, Any], host: dict[str, Any]) -> str:
    """The container's hostname, decided once here, in the daemon: config.json's
    ``hostname`` (which the runtime only applies), the HOSTNAME variable and /etc/hostname
    all take this one value.  Config.Hostname, else the host's name when sharing the host's
    network or UTS namespace (moby daemon/container.go), else the short id, as Docker does."""
    shares_host = "host" in (host.get("NetworkMode"), host.get("UTSMode"))
    return str(config.get("Hostname") or (socket.gethostname() if shares_host else cid[:12]))


def _table(text: str | None) -> list[list[str]]:
    return [line.split(":") for line in (text or "").splitlines() if line and line[0] != "#"]


def resolve_user(user: str, lookup: Lookup) -> dict[str, Any]:
    """``user[:group]`` (names or numbers) -> OCI process.user, from the image's files.

    Raises InvalidArgumentError naming the user when the image does not know it (Docker:
    "unable to find user nosuch: no matching entries in passwd file").
    """
    name, _, group = (user or "").partition(":")
    uid, gid = 0, 0
    passwd = _table(lookup("/etc/passwd"))
    if name:
        row = next((r for r in passwd if len(r) > 3 and (r[0] == name or r[2] == name)), None)
        if row is not None:
            uid, gid = int(row[2]), int(row[3])
        elif name.isdigit():
            uid = int(name)
        else:
            raise errors.InvalidArgumentError(
                "User", f"unable to find user {name}: no matching entries in passwd file")
    if group:
        groups = _table(lookup("/etc/group"))
        grow = next((r for r in groups if len(r) > 2 and (r[0] == group or r[2] == group)), None)
        if grow is not None:
            gid = int(grow[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise errors.InvalidArgumentError(
                "User", f"unable to find group {group}: no matching entries in group file")
    return {"uid": uid, "gid": gid}


def capabilities(default: tuple[str, ...], add: list[str] | None,
                 drop: list[str] | None) -> list[str]:
    """Docker's default set with CapAdd/CapDrop applied ("ALL" allowed on either side)."""
    from labkit._sys.caps import CAP_NAMES
    everything = list(CAP_NAMES)
    caps = list(default)
    if "ALL" in (drop or []):
        caps = []
    if "ALL" in (add or []):
        caps = sorted(set(everything))
    caps += [c for c in add or [] if c != "ALL" and c not in caps]
    return [c for c in caps if c not in (drop or [])]


def resources(host: dict[str, Any]) -> dict[str, Any]:
    """HostConfig resources -> OCI linux.resources (config-linux.md).

    MemorySwap is Docker's memory+swap total (-1: unlimited swap; 0: twice Memory, moby's
    default), which is exactly OCI's ``memory.swap``.
    """
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    mem = host.get("Memory") or 0
    if mem:
        swap = host.get("MemorySwap") or 0
        res["memory"] = {"limit": mem, "swap": -1 if swap == -1 else (swap or 2 * mem)}
    if host.get("MemoryReservation"):
        res.setdefault("memory", {})["reservation"] = host["MemoryReservation"]
    if host.get("OomKillDisable"):  # (resopts refused these where the runtime cannot)
        res.setdefault("memory", {})["disableOOMKiller"] = True
    if host.get("MemorySwappiness") not in (None, -1):
        res.setdefault("memory", {})["swappiness"] = host["MemorySwappiness"]
    cpu: dict[str, Any] = {}
    if host.get("NanoCpus"):
        cpu = {"period": CPU_PERIOD, "quota": host["NanoCpus"] * CPU_PERIOD // 10**9}
    else:
        if host.get("CpuQuota"):
            cpu["quota"] = host["CpuQuota"]
        if host.get("CpuPeriod"):
            cpu["period"] = host["CpuPeriod"]
    if host.get("CpuShares"):
        cpu["shares"] = host["CpuShares"]
    for key, oci in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        if host.get(key):
            cpu[oci] = host[key]
    if cpu:
        res["cpu"] = cpu
    from labkit.engine.containers.resopts import THROTTLES
    for key, oci in THROTTLES.items():  # [{Path, Rate}] -> [{major, minor, rate}]
        for ent in host.get(key) or []:
            rdev = os.stat(ent["Path"]).st_rdev
            res.setdefault("blockIO", {}).setdefault(oci, []).append(
                {"major": os.major(rdev), "minor": os.minor(rdev), "rate": ent["Rate"]})
    pids = host.get("PidsLimit")
    if pids:
        res["pids"] = {"limit": pids}
    return res


def default_cgroupns_mode() -> str:
    """Docker's default HostConfig.CgroupnsMode: "private" on cgroup v2, "host" on v1
    (moby daemon/config: DefaultCgroupNamespaceMode; the v1 controllers' paths would show)."""
    from labkit.cgroups import Mode, detect_mode

    return "private" if detect_mode() is Mode.UNIFIED else "host"


def etc_files_text(cid: str, config: dict[str, Any], host: dict[str, Any]) -> dict[str, str]:
    """The /etc/hostname, /etc/hosts and /etc/resolv.conf bound into the container: ExtraHosts
    appended to hosts, Dns/DnsSearch/DnsOptions as resolv.conf (moby libnetwork etchosts and
    resolvconf); with the host's network and no Dns given, the host's resolv.conf."""
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
    for entry in host.get("ExtraHosts") or []:
        name, _, ip = entry.partition(":")
        hosts += f"{ip.strip('[]')}\t{name}\n"
    lines = [f"nameserver {ip}" for ip in host.get("Dns") or []]
    if host.get("DnsSearch"):
        lines.append("search " + " ".join(host["DnsSearch"]))
    if host.get("DnsOptions"):
        lines.append("options " + " ".join(host["DnsOptions"]))
    resolv = "".join(f"{ln}\n" for ln in lines)
    if not host.get("Dns") and host.get("NetworkMode") == "host":
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read() + resolv
        except OSError:
            pass
    return {"/etc/hostname": f"{container_hostname(cid, config, host)}\n",
            "/etc/resolv.conf": resolv, "/etc/hosts": hosts}


def translate(cid: str, config: dict[str, Any], host: dict[str, Any], image: dict[str, Any],
              lookup: Lookup, *, etc_files: dict[str, str] | None = None,
              netns: str | None = None, init_binary: str | None = None,
              peer: Peer | None = None) -> dict[str, Any]:
    """The complete config.json for container ``cid``.

    ``image`` is the image config's ``config`` object, ``etc_files`` maps /etc/hostname,
    /etc/hosts, /etc/resolv.conf to host files to bind in (as Docker does), ``netns`` is a
    network namespace path to join, ``init_binary`` a static init (tini) for HostConfig.Init,
    ``peer`` resolves ``container:NAME`` pid/ipc modes to the pid whose namespace is joined.
    """
    from labkit.engine.runtime.spec import DEFAULT_CAPS, DEFAULT_PATH, default_config

    spec = default_config()
    args = command(config, image)
    hostname = container_hostname(cid, config, host)
    tty = bool(config.get("Tty"))
    extra = {"HOSTNAME": hostname}
    if tty:
        extra["TERM"] = "xterm"
    env = merge_env(image.get("Env") or [], config.get("Env") or [], extra)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    caps = capabilities(DEFAULT_CAPS, host.get("CapAdd"), host.get("CapDrop"))
    if host.get("Privileged"):  # moby WithCapabilities: every capability, drops ignored
        caps = capabilities((), ["ALL"], None)
    proc = spec["process"]
    proc.update({
        "terminal": tty, "args": args, "env": env,
        "cwd": config.get("WorkingDir") or image.get("WorkingDir") or "/",
        "user": resolve_user(config.get("User") or image.get("User") or "", lookup),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
    })
    if host.get("Init") and init_binary:
        proc["args"] = [INIT_PATH, "--", *args]
        spec["mounts"].append({"destination": INIT_PATH, "type": "bind", "source": init_binary,
                               "options": ["rbind", "ro"]})
    spec["hostname"] = hostname
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    spec["root"] = {"path": "rootfs", "readonly": bool(host.get("ReadonlyRootfs"))}
    for dest, src in sorted((etc_files or {}).items()):
        spec["mounts"].append({"destination": dest, "type": "bind", "source": src,
                               "options": ["rbind", "rprivate"]})
    linux = spec["linux"]
    ns = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if host.get("NetworkMode") != "host":
        ns.append({"type": "network", "path": netns} if netns else {"type": "network"})
    if (host.get("CgroupnsMode") or default_cgroupns_mode()) == "private":
        ns.append({"type": "cgroup"})
    linux["namespaces"] = ns
    linux["resources"] = resources(host)
    linux["cgroupsPath"] = f"{CGROUP_PARENT}/{cid}"
    apply_host(spec, cid, host, lookup, peer)
    return spec  # default_config() built it fresh: nothing shared to copy
