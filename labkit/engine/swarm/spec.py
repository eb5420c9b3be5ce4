"""Docker's swarm and node request bodies as typed values (Engine API v1.41): parse, check,
render.

The daemon's handlers parse every swarm body here before the node (``SwarmBackend``, the
lead's swarm/node.py) sees it, so the node works on checked values and never on raw JSON.
Docker is lenient with these bodies; labkit's rule is stricter: *accepted means applied*.
An unknown key, or a value the node cannot apply (a DataPathAddr other than the advertise
address, a forced new cluster, an external CA that is not CFSSL), is refused with an
InvalidArgumentError that names the field (``Spec.CAConfig.NodeCertExpiry``), never
silently dropped.

Shapes and defaults are moby's (api/types/swarm/swarm.go, node.go) and swarmkit's
(manager/controlapi/cluster.go validateClusterSpec).  Durations are Go's time.Duration:
integers of nanoseconds.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from labkit import errors

__all__ = [
    "AVAILABILITIES", "DEFAULT_ADDR_POOL", "DEFAULT_DATA_PATH_PORT", "DEFAULT_LISTEN_ADDR",
    "DEFAULT_SUBNET_SIZE", "MIN_NODE_CERT_EXPIRY", "MSG_CERTS_EXPIRED",
    "MSG_INVALID_UNLOCK_KEY", "MSG_JOIN_TIMEOUT", "MSG_LOCKED", "MSG_MANAGER_NOT_READY",
    "MSG_NOT_LOCKED", "MSG_NOT_MANAGER", "MSG_NO_SWARM", "MSG_NO_SWARM_SUPPORT",
    "MSG_OUT_OF_SEQUENCE", "MSG_SWARM_EXISTS", "MSG_WORKER", "NODE_FILTERS", "ROLES",
    "ClusterSpec", "ExternalCA", "HostPort", "InitRequest", "JoinRequest", "NodeSpec",
    "SwarmBackend", "UnlockRequest", "UpdateFlags", "check_node_filters", "inactive_info",
    "match_node", "parse_addr", "parse_version",
]

# Docker's own texts (moby daemon/cluster/errors.go and helpers.go errNoManager): the Docker
# CLI prints them as they are, so the node raises them verbatim.
MSG_NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or '
                   '"docker swarm join" to connect this node to swarm and try again.')
MSG_WORKER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify "
              "cluster state. Please run this command on a manager node or promote the current "
              "node to a manager.")
MSG_MANAGER_NOT_READY = ("This node is not a swarm manager. Manager is being prepared or has "
                         "trouble connecting to the cluster.")
MSG_LOCKED = ('Swarm is encrypted and needs to be unlocked before it can be used. Please use '
              '"docker swarm unlock" to unlock it.')
MSG_SWARM_EXISTS = ('This node is already part of a swarm. Use "docker swarm leave" to leave '
                    'this swarm and join another one.')
MSG_NO_SWARM = "This node is not part of a swarm"
MSG_JOIN_TIMEOUT = ('Timeout was reached before node joined. The attempt to join the swarm will '
                    'continue in the background. Use the "docker info" command to see the '
                    'current swarm status of your node.')
MSG_CERTS_EXPIRED = ("Swarm certificates have expired. To replace them, leave the swarm and "
                     "join again.")
MSG_NOT_LOCKED = "swarm is not locked"                                    # moby: a Conflict
# moby answers 401; labkit has no such class and raises it as a ForbiddenError (403)
MSG_INVALID_UNLOCK_KEY = "swarm could not be unlocked: invalid key provided"
# swarmkit store.ErrSequenceConflict; dockerd answers it as a 500 ("rpc error: code =
# Unknown desc = update out of sequence"), labkit as a ConflictError (409).
MSG_OUT_OF_SEQUENCE = "update out of sequence"
MSG_NO_SWARM_SUPPORT = "labkit was started without swarm support"

SECOND = 10**9
HOUR = 3600 * SECOND
MIN_NODE_CERT_EXPIRY = HOUR                    # swarmkit ca.MinNodeCertExpiration
DEFAULT_LISTEN_ADDR = "0.0.0.0:2377"
SWARM_PORT = 2377
ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")
NODE_FILTERS = ("id", "label", "membership", "name", "node.label", "role")
DEFAULT_ADDR_POOL = ("10.0.0.0/8",)            # moby/libnetwork ipamutils
DEFAULT_SUBNET_SIZE = 24
DEFAULT_DATA_PATH_PORT = 4789                  # IANA VXLAN
_MAX_NS = 2**63 - 1                            # Go's time.Duration is an int64
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidArgumentError(where, "must be a JSON object")
    return value


def _known(obj: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    """Refuse unknown keys: Docker ignores them, labkit would then accept what it never applies."""
    for key in obj:
        if key not in keys:
            name = _name(where, key)
            raise errors.InvalidArgumentError(name, f"unknown field {name!r} (labkit applies "
                                              f"only {', '.join(keys)})")


def _int(obj: Mapping[str, Any], key: str, where: str, maximum: int = _MAX_NS) -> int | None:
    """An integer field: None when absent or null; negative values are refused."""
    v = obj.get(key)
    if v is None:
        return None
    name = _name(where, key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise errors.InvalidArgumentError(name, f"{name} must be an integer, not {v!r}")
    if v < 0:
        raise errors.InvalidArgumentError(name, f"{name} must not be negative ({v})")
    if v > maximum:
        raise errors.InvalidArgumentError(name, f"{name} is too large ({v})")
    return v


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        name = _name(where, key)
        raise errors.InvalidArgumentError(name, f"{name} must be a string")
    return v


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        name = _name(where, key)
        raise errors.InvalidArgumentError(name, f"{name} must be true or false")
    return v


def _strmap(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise errors.InvalidArgumentError(where, f"{where} must map strings to strings")
    return dict(value)


def _pem(text: str, kind: str, where: str) -> str:
    if text and f"-----BEGIN {kind}" not in text:
        raise errors.InvalidArgumentError(where, f"{where} must be in PEM format")
    return text


def _choice(text: str, allowed: tuple[str, ...], where: str, what: str) -> str:
    if text.lower() not in allowed:
        raise errors.InvalidArgumentError(where, f'invalid {what} "{text}", only '
                                          f'{", ".join(allowed)} are supported')
    return text.lower()


@dataclass(frozen=True, slots=True)
class HostPort:
    """``host:port`` with the host an IP literal (unbracketed) or, for remote managers, a DNS
    name; ``str()`` is Go's net.JoinHostPort."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def unspecified(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False


def parse_addr(text: str, where: str, default_port: int = SWARM_PORT, *,
               names: bool = False, default_host: str = "0.0.0.0") -> HostPort:
    """``ip``, ``ip:port``, ``[v6]:port``, ``:port`` (an optional ``tcp://`` in front, as
    Docker's opts.ParseTCPAddr allows).  ``names``: a DNS name may stand for the IP (remote
    managers).  Interface names (``eth0``), which Docker resolves, are refused: labkit's node
    lives in its own network namespace and takes the address itself."""
    raw = text.removeprefix("tcp://")
    host, port_s = raw, ""
    if raw.startswith("["):
        end, rest = raw.find("]"), raw[raw.find("]") + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            raise errors.InvalidArgumentError(where, f"invalid {where} {text!r}")
        host, port_s = raw[1:end], rest[1:]
    elif raw.count(":") == 1:
        host, _, port_s = raw.partition(":")
    host = host or default_host
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not (names and len(host) <= 253 and all(_DNS_LABEL.fullmatch(p)
                                                   for p in host.split("."))):
            raise errors.InvalidArgumentError(
                where, f"invalid {where} {text!r}: not an IP address",
                hint="labkit takes an IP address here, not an interface name") from None
    if port_s == "" and raw.endswith(":"):
        raise errors.InvalidArgumentError(where, f"invalid {where} {text!r}: empty port")
    digits = port_s.isascii() and port_s.isdigit()  # not int("٣"): ASCII digits only
    port = default_port if port_s == "" else (int(port_s) if digits else -1)
    if not 1 <= port <= 65535:
        raise errors.InvalidArgumentError(where, f"invalid {where} {text!r}: port must be "
                                                 "1-65535")
    return HostPort(host, port)


@dataclass(frozen=True, slots=True)
class ExternalCA:
    """A CFSSL signer the managers send node CSRs to (Spec.CAConfig.ExternalCAs[i])."""

    url: str
    protocol: str = "cfssl"
    options: dict[str, str] = field(default_factory=dict)
    ca_cert: str = ""      # PEM of the root the signer uses; "" = the swarm's current root

    @classmethod
    def from_docker(cls, obj: Any, where: str) -> ExternalCA:
        d = _obj(obj, where)
        _known(d, ("Protocol", "URL", "Options", "CACert"), where)
        proto = _str(d, "Protocol", where).lower()
        if proto != "cfssl":  # the only protocol swarmkit (and labkit's cfssl.py) speaks
            raise errors.InvalidArgumentError(f"{where}.Protocol",
                                              f'invalid protocol: "{proto}" (only cfssl)')
        url = _str(d, "URL", where)
        if not re.fullmatch(r"https?://[^/\s?#]+(/\S*)?", url):
            raise errors.InvalidArgumentError(f"{where}.URL", f"{where}.URL must be an http(s) "
                                              f"URL, not {url!r}")
        return cls(url, proto, _strmap(d.get("Options"), f"{where}.Options"),
                   _pem(_str(d, "CACert", where), "CERTIFICATE", f"{where}.CACert"))

    def to_docker(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Protocol": self.protocol, "URL": self.url}
        if self.options:
            out["Options"] = dict(self.options)
        out["CACert"] = self.ca_cert
        return out


_SPEC_KEYS = ("Name", "Labels", "Orchestration", "Raft", "Dispatcher", "CAConfig",
              "TaskDefaults", "EncryptionConfig")
_RAFT_KEYS = ("SnapshotInterval", "KeepOldSnapshots", "LogEntriesForSlowFollowers",
              "ElectionTick", "HeartbeatTick")
_CA_KEYS = ("NodeCertExpiry", "ExternalCAs", "SigningCACert", "SigningCAKey", "ForceRotate")


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """The swarm's Spec (GET /swarm ``Spec``); the defaults are swarmkit's.

    Raft ElectionTick/HeartbeatTick may differ from the running values here: the spec only
    carries them, and the node decides whether it can apply a change after init (etcd takes
    them as its election and heartbeat timeouts at start, SWARM12.md).
    """

    name: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    task_history_retention_limit: int = 5
    snapshot_interval: int = 10000
    keep_old_snapshots: int = 0
    log_entries_for_slow_followers: int = 500
    election_tick: int = 10
    heartbeat_tick: int = 1
    dispatcher_heartbeat_period: int = 5 * SECOND          # ns
    node_cert_expiry: int = 90 * 24 * HOUR                 # ns
    external_cas: tuple[ExternalCA, ...] = ()
    signing_ca_cert: str = ""     # a new root CA asked for (swarm ca --rotate --ca-cert)
    signing_ca_key: str = ""      # never rendered unless secrets=True
    force_rotate: int = 0         # a change asks for a new root CA (swarm ca --rotate)
    log_driver: str | None = None                          # TaskDefaults.LogDriver.Name
    log_options: dict[str, str] = field(default_factory=dict)
    autolock_managers: bool = False

    @classmethod
    def from_docker(cls, body: Any) -> ClusterSpec:
        """A Spec as sent to POST /swarm/init: what is absent, null or 0 gets the default."""
        return cls.merge_update(cls(), body)

    @classmethod
    def merge_update(cls, current: ClusterSpec, body: Any) -> ClusterSpec:
        """The spec that POST /swarm/update asks for, given the ``current`` one.

        Docker's client sends the whole Spec back (GET /swarm, changed, POST).  As in moby's
        convert.MergeSwarmSpecToGRPC: scalars that Docker reads as "unset" when 0
        (SnapshotInterval, LogEntriesForSlowFollowers, ElectionTick, HeartbeatTick,
        HeartbeatPeriod, NodeCertExpiry) and the pointer fields when absent
        (TaskHistoryRetentionLimit, KeepOldSnapshots, ForceRotate) keep the current value;
        Labels, ExternalCAs, TaskDefaults.LogDriver and AutoLockManagers are taken from the
        body as they are (absent = none / false).  SigningCACert/Key are redacted by GET /swarm,
        so neither keeps the current pair; a new cert never inherits the current key.  Raises
        InvalidArgumentError naming the field.
        """
        s = _obj(body, "Spec")
        _known(s, _SPEC_KEYS, "Spec")
        name = _str(s, "Name", "Spec") or "default"
        if name != "default":  # moby daemon/cluster/swarm.go
            raise errors.InvalidArgumentError("Spec.Name", 'swarm spec must be named "default"')
        orch = _obj(s.get("Orchestration"), "Spec.Orchestration")
        _known(orch, ("TaskHistoryRetentionLimit",), "Spec.Orchestration")
        raft = _obj(s.get("Raft"), "Spec.Raft")
        _known(raft, _RAFT_KEYS, "Spec.Raft")
        disp = _obj(s.get("Dispatcher"), "Spec.Dispatcher")
        _known(disp, ("HeartbeatPeriod",), "Spec.Dispatcher")
        ca = _obj(s.get("CAConfig"), "Spec.CAConfig")
        _known(ca, _CA_KEYS, "Spec.CAConfig")
        enc = _obj(s.get("EncryptionConfig"), "Spec.EncryptionConfig")
        _known(enc, ("AutoLockManagers",), "Spec.EncryptionConfig")
        driver, driver_opts = _log_driver(s.get("TaskDefaults"))
        cas = ca.get("ExternalCAs") or []
        if not isinstance(cas, list):
            raise errors.InvalidArgumentError("Spec.CAConfig.ExternalCAs", "must be a list")

        def keep(value: int | None, cur: int) -> int:  # 0 or absent: "unset" (moby)
            return value if value else cur

        def ptr(value: int | None, cur: int) -> int:   # absent only: *int64 in moby
            return cur if value is None else value

        # the signing root is a pair: a new cert comes with its own key (or none: an external
        # CA signs), never with the current key; neither given keeps the current pair
        cert = _pem(_str(ca, "SigningCACert", "Spec.CAConfig"), "CERTIFICATE",
                    "Spec.CAConfig.SigningCACert")
        key = _pem(_str(ca, "SigningCAKey", "Spec.CAConfig"), "", "Spec.CAConfig.SigningCAKey")
        if not cert and not key:
            cert, key = current.signing_ca_cert, current.signing_ca_key

        spec = cls(
            name=name,
            labels=_strmap(s.get("Labels"), "Spec.Labels"),
            task_history_retention_limit=ptr(
                _int(orch, "TaskHistoryRetentionLimit", "Spec.Orchestration"),
                current.task_history_retention_limit),
            snapshot_interval=keep(_int(raft, "SnapshotInterval", "Spec.Raft"),
                                   current.snapshot_interval),
            keep_old_snapshots=ptr(_int(raft, "KeepOldSnapshots", "Spec.Raft"),
                                   current.keep_old_snapshots),
            log_entries_for_slow_followers=keep(
                _int(raft, "LogEntriesForSlowFollowers", "Spec.Raft"),
                current.log_entries_for_slow_followers),
            election_tick=keep(_int(raft, "ElectionTick", "Spec.Raft", 2**31 - 1),
                               current.election_tick),
            heartbeat_tick=keep(_int(raft, "HeartbeatTick", "Spec.Raft", 2**31 - 1),
                                current.heartbeat_tick),
            dispatcher_heartbeat_period=keep(_int(disp, "HeartbeatPeriod", "Spec.Dispatcher"),
                                             current.dispatcher_heartbeat_period),
            node_cert_expiry=keep(_int(ca, "NodeCertExpiry", "Spec.CAConfig"),
                                  current.node_cert_expiry),
            external_cas=tuple(ExternalCA.from_docker(c, f"Spec.CAConfig.ExternalCAs[{i}]")
                               for i, c in enumerate(cas)),
            signing_ca_cert=cert, signing_ca_key=key,
            force_rotate=ptr(_int(ca, "ForceRotate", "Spec.CAConfig"), current.force_rotate),
            log_driver=driver, log_options=driver_opts,
            autolock_managers=bool(_bool(enc, "AutoLockManagers", "Spec.EncryptionConfig")),
        )
        spec.check()
        return spec

    def check(self) -> None:
        """What a spec must satisfy after defaults are filled (swarmkit validateClusterSpec)."""
        if self.node_cert_expiry < MIN_NODE_CERT_EXPIRY:
            raise errors.InvalidArgumentError("Spec.CAConfig.NodeCertExpiry",
                                              "minimum certificate expiry time is: 1h0m0s")
        if self.election_tick <= self.heartbeat_tick:  # etcd: election > heartbeat
            raise errors.InvalidArgumentError(
                "Spec.Raft.ElectionTick", f"Spec.Raft.ElectionTick ({self.election_tick}) must "
                f"be greater than Spec.Raft.HeartbeatTick ({self.heartbeat_tick})")
        if self.signing_ca_key and not self.signing_ca_cert:
            raise errors.InvalidArgumentError("Spec.CAConfig.SigningCAKey",
                                              "a SigningCAKey needs its SigningCACert")

    def replace(self, **changes: Any) -> ClusterSpec:
        """A copy with ``changes`` (field names), checked again."""
        spec = dataclasses.replace(self, **changes)
        spec.check()
        return spec

    def to_docker(self, secrets: bool = False) -> dict[str, Any]:
        """The Spec as GET /swarm shows it.  The signing root is left out, as moby's
        SwarmFromGRPC does (the key is a secret); ``secrets=True`` keeps both, for the node's
        own store."""
        ca: dict[str, Any] = {"NodeCertExpiry": self.node_cert_expiry}
        if self.external_cas:
            ca["ExternalCAs"] = [c.to_docker() for c in self.external_cas]
        if secrets and self.signing_ca_cert:
            ca["SigningCACert"] = self.signing_ca_cert
            ca["SigningCAKey"] = self.signing_ca_key
        if self.force_rotate:
            ca["ForceRotate"] = self.force_rotate
        task: dict[str, Any] = {}
        if self.log_driver:
            task["LogDriver"] = {"Name": self.log_driver, "Options": dict(self.log_options)}
        return {
            "Name": self.name, "Labels": dict(self.labels),
            "Orchestration": {"TaskHistoryRetentionLimit": self.task_history_retention_limit},
            "Raft": {"SnapshotInterval": self.snapshot_interval,
                     "KeepOldSnapshots": self.keep_old_snapshots,
                     "LogEntriesForSlowFollowers": self.log_entries_for_slow_followers,
                     "ElectionTick": self.election_tick, "HeartbeatTick": self.heartbeat_tick},
            "Dispatcher": {"HeartbeatPeriod": self.dispatcher_heartbeat_period},
            "CAConfig": ca, "TaskDefaults": task,
            "EncryptionConfig": {"AutoLockManagers": self.autolock_managers},
        }


def _log_driver(value: Any) -> tuple[str | None, dict[str, str]]:
    """TaskDefaults.LogDriver: kept only when labkit has that driver and takes its options."""
    td = _obj(value, "Spec.TaskDefaults")
    _known(td, ("LogDriver",), "Spec.TaskDefaults")
    ld = _obj(td.get("LogDriver"), "Spec.TaskDefaults.LogDriver")
    _known(ld, ("Name", "Options"), "Spec.TaskDefaults.LogDriver")
    name = _str(ld, "Name", "Spec.TaskDefaults.LogDriver")
    opts = _strmap(ld.get("Options"), "Spec.TaskDefaults.LogDriver.Options")
    if not name:
        if opts:
            raise errors.InvalidArgumentError("Spec.TaskDefaults.LogDriver.Name",
                                              "log driver options need a driver name")
        return None, {}
    from labkit.engine.logs import drivers

    if name not in drivers.DRIVERS:
        raise errors.InvalidArgumentError(
            "Spec.TaskDefaults.LogDriver.Name", f"no log driver named {name!r} in labkit "
            f"(it has {', '.join(drivers.DRIVERS)})")
    drivers.check(name, opts)
    return name, opts


def _refuse_unapplied(what: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(what, f"not supported by labkit: {what}")


def _availability(d: Mapping[str, Any]) -> str:
    text = _str(d, "Availability", "")
    return _choice(text, AVAILABILITIES, "Availability", "availability") if text else "active"


def _advertise(d: Mapping[str, Any], listen: HostPort) -> HostPort | None:
    """AdvertiseAddr: None when not given (the node picks); its port defaults to the listen
    port (moby resolveAdvertiseAddr)."""
    text = _str(d, "AdvertiseAddr", "")
    if not text:
        return None
    addr = parse_addr(text, "AdvertiseAddr", listen.port, default_host="")
    if addr.unspecified:
        raise errors.InvalidArgumentError("AdvertiseAddr", "advertise address must be a "
                                          "non-zero IP address")
    return addr


@dataclass(frozen=True, slots=True)
class InitRequest:
    """POST /swarm/init.  ``advertise_addr`` None: the node picks its address (the listen
    address when that is specific).  ``autolock_managers`` is the top-level flag or the
    spec's, whichever is set (the CLI sets both; docker-py only the spec's).
    ``default_addr_pool`` / ``subnet_size``: where overlay networks get their subnets;
    ``data_path_port``: the VXLAN UDP port (moby defaults 10.0.0.0/8, /24, 4789)."""

    listen_addr: HostPort
    advertise_addr: HostPort | None
    spec: ClusterSpec
    availability: str = "active"
    autolock_managers: bool = False
    default_addr_pool: tuple[str, ...] = DEFAULT_ADDR_POOL
    subnet_size: int = DEFAULT_SUBNET_SIZE
    data_path_port: int = DEFAULT_DATA_PATH_PORT

    @classmethod
    def from_docker(cls, body: Any) -> InitRequest:
        d = _obj(body, "request body")
        _known(d, ("ListenAddr", "AdvertiseAddr", "DataPathAddr", "DataPathPort",
                   "ForceNewCluster", "Spec", "AutoLockManagers", "Availability",
                   "DefaultAddrPool", "SubnetSize"), "")
        # a forced new cluster (disaster recovery from a lost quorum) is not built
        if _bool(d, "ForceNewCluster", ""):
            raise _refuse_unapplied("ForceNewCluster")
        listen = parse_addr(_str(d, "ListenAddr", "") or DEFAULT_LISTEN_ADDR, "ListenAddr")
        advertise = _advertise(d, listen)
        _data_path_addr(d, advertise)
        size = _int(d, "SubnetSize", "", 32) or DEFAULT_SUBNET_SIZE
        if not 16 <= size <= 28:
            raise errors.InvalidArgumentError("SubnetSize", f"SubnetSize {size} must be "
                                              "between 16 and 28")
        pool = _addr_pool(d.get("DefaultAddrPool"), size)
        port = _int(d, "DataPathPort", "", 65535) or DEFAULT_DATA_PATH_PORT
        # moby daemon/cluster/listen_addr.go: the IANA user range; labkit also keeps the
        # swarm's own TCP ports (2377, etcd's 2379/2380, 2378) off it
        if not 1024 <= port <= 49151 or port in (2377, 2378, 2379, 2380):
            raise errors.InvalidArgumentError(
                "DataPathPort", f"data path port {port} must be within range 1024 to 49151 "
                                "and not one of the swarm's ports 2377-2380")
        spec = ClusterSpec.from_docker(d.get("Spec"))
        autolock = bool(_bool(d, "AutoLockManagers", "")) or spec.autolock_managers
        if autolock != spec.autolock_managers:
            spec = spec.replace(autolock_managers=autolock)
        return cls(listen, advertise, spec, _availability(d), autolock, pool, size, port)


def _data_path_addr(d: Mapping[str, Any], advertise: HostPort | None) -> None:
    """DataPathAddr: labkit's overlay sends VXLAN from the node's advertise address (the
    snapshot's peers carry one underlay address per node), so only that address, or none,
    is accepted."""
    text = _str(d, "DataPathAddr", "")
    if not text:
        return
    try:
        same = advertise is not None and str(ipaddress.ip_address(text)) == advertise.host
    except ValueError:
        same = False
    if not same:
        raise errors.InvalidArgumentError(
            "DataPathAddr", f"DataPathAddr {text!r}: labkit carries overlay traffic on the "
                            "advertise address only; leave DataPathAddr empty or set it to the "
                            "AdvertiseAddr's IP")


def _addr_pool(value: Any, size: int) -> tuple[str, ...]:
    """DefaultAddrPool: IPv4 CIDRs, none overlapping, each at least as large as SubnetSize."""
    if value is None or value == []:
        return DEFAULT_ADDR_POOL
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidArgumentError("DefaultAddrPool", "DefaultAddrPool must be a list "
                                          "of CIDRs")
    nets: list[ipaddress.IPv4Network] = []
    for v in value:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as err:
            raise errors.InvalidArgumentError("DefaultAddrPool", f"invalid address pool "
                                              f"{v!r}: {err}") from None
        if not isinstance(net, ipaddress.IPv4Network):
            raise errors.InvalidArgumentError("DefaultAddrPool", f"address pool {v}: IPv4 "
                                              "only")
        if net.prefixlen > size:
            raise errors.InvalidArgumentError(
                "DefaultAddrPool", f"address pool {v} is smaller than SubnetSize /{size}")
        for other in nets:
            if net.overlaps(other):
                raise errors.InvalidArgumentError(
                    "DefaultAddrPool", f"address pools {other} and {net} overlap")
        nets.append(net)
    return tuple(str(n) for n in nets)


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """POST /swarm/join.  The token is never shown: not in errors, not in repr()."""

    listen_addr: HostPort
    advertise_addr: HostPort | None
    remote_addrs: tuple[HostPort, ...]
    join_token: str = field(repr=False)
    availability: str = "active"

    @classmethod
    def from_docker(cls, body: Any) -> JoinRequest:
        d = _obj(body, "request body")
        _known(d, ("ListenAddr", "AdvertiseAddr", "DataPathAddr", "RemoteAddrs", "JoinToken",
                   "Availability"), "")
        listen = parse_addr(_str(d, "ListenAddr", "") or DEFAULT_LISTEN_ADDR, "ListenAddr")
        advertise = _advertise(d, listen)
        _data_path_addr(d, advertise)
        remotes = d.get("RemoteAddrs")
        if not isinstance(remotes, list) or not remotes or not all(
                isinstance(r, str) for r in remotes):
            raise errors.InvalidArgumentError("RemoteAddrs", "at least 1 RemoteAddr is "
                                              "required to join")
        addrs = tuple(parse_addr(r, "RemoteAddrs", names=True, default_host="")
                      for r in remotes)
        if any(a.unspecified for a in addrs):
            raise errors.InvalidArgumentError("RemoteAddrs", "a remote address must name a "
                                              "manager, not 0.0.0.0 or ::")
        token = d.get("JoinToken")
        if not isinstance(token, str) or not token:
            raise errors.InvalidArgumentError("JoinToken", "a JoinToken is required to join")
        if len(token) > 256 or not token.isascii() or not token.isprintable():
            raise errors.InvalidArgumentError("JoinToken", "JoinToken is malformed (not shown)")
        return cls(listen, advertise, addrs, token, _availability(d))


@dataclass(frozen=True, slots=True)
class UnlockRequest:
    """POST /swarm/unlock: {"UnlockKey": "SWMKEY-1-..."}; the key never appears in repr()."""

    key: str = field(repr=False)

    @classmethod
    def from_docker(cls, body: Any) -> UnlockRequest:
        d = _obj(body, "request body")
        _known(d, ("UnlockKey",), "")
        key = d.get("UnlockKey")
        if not isinstance(key, str) or not key.strip():
            raise errors.InvalidArgumentError("UnlockKey", "an UnlockKey is required")
        return cls(key.strip())


_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
            "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False,
            "": False}


@dataclass(frozen=True, slots=True)
class UpdateFlags:
    """POST /swarm/update's rotations (query rotateWorkerToken, rotateManagerToken,
    rotateManagerUnlockKey; Go's strconv.ParseBool values)."""

    rotate_worker_token: bool = False
    rotate_manager_token: bool = False
    rotate_unlock_key: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> UpdateFlags:
        out = []
        for key in ("rotateWorkerToken", "rotateManagerToken", "rotateManagerUnlockKey"):
            v = query.get(key, "")
            if v not in _GO_BOOL:
                raise errors.InvalidArgumentError(key, f"invalid value for {key}: {v!r}")
            out.append(_GO_BOOL[v])
        return cls(*out)


def parse_version(query: Mapping[str, str]) -> int:
    """The required ``version`` query parameter: the object's Version.Index the update is
    based on (optimistic concurrency)."""
    v = query.get("version", "")
    if not v.isdigit() or not v.isascii():
        raise errors.InvalidArgumentError("version", f"invalid swarm version {v!r}: an "
                                          "unsigned integer (Version.Index) is required")
    return int(v)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node's Spec (POST /nodes/{id}/update): Name and Labels (Annotations), Role,
    Availability.  Role and Availability are required, as in moby's NodeSpecToGRPC."""

    role: str
    availability: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_docker(cls, body: Any) -> NodeSpec:
        d = _obj(body, "request body")
        _known(d, ("Name", "Labels", "Role", "Availability"), "")
        role = _str(d, "Role", "")
        if role.lower() not in ROLES:
            raise errors.InvalidArgumentError("Role", f'invalid Role: "{role}"')
        avail = _str(d, "Availability", "")
        if avail.lower() not in AVAILABILITIES:
            raise errors.InvalidArgumentError("Availability", f'invalid Availability: "{avail}"')
        return cls(role.lower(), avail.lower(), _str(d, "Name", ""),
                   _strmap(d.get("Labels"), "Labels"))

    def to_docker(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Labels": dict(self.labels), "Role": self.role,
                               "Availability": self.availability}
        if self.name:
            out = {"Name": self.name, **out}
        return out


def check_node_filters(filters: Mapping[str, list[str]]) -> None:
    """GET /nodes filters (moby daemon/cluster/filters.go newListNodesFilters)."""
    for key, values in filters.items():
        if key not in NODE_FILTERS:
            raise errors.InvalidArgumentError("filter", f"invalid filter '{key}'")
        for v in values:
            if not isinstance(v, str):
                raise errors.InvalidArgumentError("filter", f"{key} filter: values must be strings")
            if key == "role" and v and v.lower() not in ROLES:
                raise errors.InvalidArgumentError("filter", f"Invalid role filter: '{v}'")
            if key == "membership" and v and v.lower() not in ("accepted", "pending"):
                raise errors.InvalidArgumentError("filter", f"Invalid membership filter: '{v}'")


def _labels_match(labels: Mapping[str, str], wanted: list[str]) -> bool:
    """Every ``key`` or ``key=value`` in ``wanted`` holds (swarmkit filterMatchLabels)."""
    for item in wanted:
        k, eq, v = item.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def match_node(node: Mapping[str, Any], filters: Mapping[str, list[str]]) -> bool:
    """Does the node object (GET /nodes/{id} shape) pass every filter?  Values of one key
    are alternatives, except labels, which must all hold; keys must all hold.  ``label`` is
    the engine's labels (Description.Engine.Labels), ``node.label`` the node's own
    (Spec.Labels), ``name`` a prefix of the hostname (swarmkit ListNodes).  A node without
    Spec.Membership counts as accepted.  Unknown filters: InvalidArgumentError."""
    check_node_filters(filters)
    spec = node.get("Spec") or {}
    desc = node.get("Description") or {}
    engine_labels = (desc.get("Engine") or {}).get("Labels") or {}
    tests: dict[str, Callable[[str], bool]] = {
        "id": lambda v: str(node.get("ID", "")).startswith(v),
        "name": lambda v: str(desc.get("Hostname", "")).startswith(v),
        "role": lambda v: not v or spec.get("Role") == v.lower(),
        "membership": lambda v: not v or spec.get("Membership", "accepted") == v.lower(),
    }
    for key, values in filters.items():
        if not values:
            continue
        if key == "label" and not _labels_match(engine_labels, values):
            return False
        if key == "node.label" and not _labels_match(spec.get("Labels") or {}, values):
            return False
        if key in tests and not any(tests[key](v) for v in values):
            return False
    return True


def inactive_info() -> dict[str, Any]:
    """GET /info's Swarm section of a node in no swarm (dockerd's, field for field)."""
    return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": False, "Error": "", "RemoteManagers": None}


class SwarmBackend(Protocol):
    """The swarm node the daemon's handlers call (``engine.swarm``; swarm/node.py).

    It raises labkit errors with Docker's texts (the MSG_* constants): UnavailableError (503)
    when not in a swarm, locked, or a worker asked for cluster state; NotFoundError,
    ConflictError (a stale ``version``: MSG_OUT_OF_SEQUENCE), InvalidArgumentError,
    ForbiddenError.  The handlers catch nothing.
    """

    def local_state(self) -> str:
        """One of inactive, pending, active, error, locked (moby LocalNodeState).  Called
        on every /_ping (the first request of every CLI command): no I/O, no waiting."""
        ...

    def role(self) -> str | None:
        """The node's role, manager or worker; None outside a swarm."""
        ...

    async def info(self) -> dict[str, Any]:
        """GET /info's Swarm section: NodeID, NodeAddr, LocalNodeState, ControlAvailable,
        Error, RemoteManagers, and on a manager Nodes, Managers, Cluster."""
        ...

    async def init(self, req: InitRequest) -> str:
        """Make this node the first manager; returns its node id."""
        ...

    async def join(self, req: JoinRequest) -> None: ...

    async def leave(self, force: bool) -> None: ...

    async def inspect(self) -> dict[str, Any]:
        """GET /swarm: ID, Version, CreatedAt, UpdatedAt, Spec (ClusterSpec.to_docker()),
        TLSInfo, RootRotationInProgress, JoinTokens."""
        ...

    async def update(self, version: int, spec: ClusterSpec, flags: UpdateFlags) -> None: ...

    async def unlock_key(self) -> str:
        """The current unlock key ("" when autolock is off)."""
        ...

    async def unlock(self, key: str) -> None: ...

    async def nodes(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]: ...

    async def node(self, ref: str) -> dict[str, Any]:
        """A node by id, unique id prefix, hostname, or "self"."""
        ...

    async def update_node(self, ref: str, version: int, spec: NodeSpec) -> None: ...

    async def remove_node(self, ref: str, force: bool) -> None: ...
