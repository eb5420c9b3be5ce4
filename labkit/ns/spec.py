"""What a process's namespaces should be: a plain description, applied elsewhere (apply.py).

The same NamespaceSpec drives labkit.ns.spawn (a learner's command in new namespaces) and
labkit-runtime (an OCI container), so the order and the uid-map handshake live in one place.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: keep typing off labkit.ns.child's start path
if TYPE_CHECKING:
    from typing import Any

from labkit import errors
from labkit._record import Frozen, _set
from labkit._sys.consts import NS_FLAGS

# namespaces(7): the eight kinds, in the order a runtime creates or joins them.
KINDS: tuple[str, ...] = tuple(NS_FLAGS)

# mount(2) propagation types child_enter can apply to "/" (recursively) in a new mount ns.
PROPAGATION: tuple[str, ...] = ("private", "slave", "shared", "unchanged")


# Frozen records, not dataclasses: labkit-runtime imports this module on its start path and
# dataclasses costs ~4.7 ms there (labkit/_record.py keeps eq/hash/repr/replace/_asdict).
class IdMap(Frozen):
    """One line of /proc/PID/uid_map or gid_map: ``inside outside count`` (user_namespaces(7))."""

    __slots__ = ("inside", "outside", "count")  # noqa: RUF023 - field order
    __match_args__ = ("inside", "outside", "count")
    inside: int
    outside: int
    count: int

    def __init__(self, inside: int, outside: int, count: int = 1) -> None:
        _set(self, "inside", inside)
        _set(self, "outside", outside)
        _set(self, "count", count)

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}\n"


class NamespaceSpec(Frozen):
    """Which namespaces to create (``new``) or join (``join``: kind -> /proc/PID/ns/KIND path).

    ``uid_map``/``gid_map`` apply to a new user namespace; ``time_offsets`` (clock name ->
    seconds, e.g. {"monotonic": 3600, "boottime": 0}) to a new time namespace.
    """

    __slots__ = ("new", "join", "hostname", "domainname", "uid_map", "gid_map",  # noqa: RUF023 - field order
                 "setgroups_deny", "time_offsets", "propagation")
    __match_args__ = ("new", "join", "hostname", "domainname", "uid_map", "gid_map",
                 "setgroups_deny", "time_offsets", "propagation")
    new: frozenset[str]
    join: dict[str, str]
    hostname: str | None
    domainname: str | None
    uid_map: tuple[IdMap, ...]
    gid_map: tuple[IdMap, ...]
    setgroups_deny: bool
    time_offsets: dict[str, int]
    propagation: str

    def __init__(self, new: frozenset[str] = frozenset(), join: dict[str, str] | None = None,
                 hostname: str | None = None, domainname: str | None = None,
                 uid_map: tuple[IdMap, ...] = (), gid_map: tuple[IdMap, ...] = (),
                 setgroups_deny: bool = False, time_offsets: dict[str, int] | None = None,
                 propagation: str = "private") -> None:
        # join/time_offsets default to a fresh dict each (dataclasses' default_factory).
        # mount_namespaces(7), propagation: what child_enter makes of "/" in a new mount
        # namespace.  "private" (recursive, the default of unshare(1)) keeps mounts made
        # inside from reaching the host; "unchanged" leaves it to the caller (an OCI runtime
        # applies rootfsPropagation itself).
        _set(self, "new", new)
        _set(self, "join", {} if join is None else join)
        _set(self, "hostname", hostname)
        _set(self, "domainname", domainname)
        _set(self, "uid_map", uid_map)
        _set(self, "gid_map", gid_map)
        _set(self, "setgroups_deny", setgroups_deny)
        _set(self, "time_offsets", {} if time_offsets is None else time_offsets)
        _set(self, "propagation", propagation)
        self.validate()

    def validate(self) -> None:
        """Raise InvalidArgumentError naming the first problem found."""
        for kind in (*self.new, *self.join):
            if kind not in NS_FLAGS:
                raise errors.InvalidArgumentError(
                    "namespace", f"unknown namespace kind {kind!r}",
                    hint=f"one of: {', '.join(KINDS)}")
        both = set(self.new) & set(self.join)
        if both:
            raise errors.InvalidArgumentError(
                "namespace", f"{sorted(both)} both created and joined")
        if (self.hostname is not None or self.domainname is not None) and "uts" not in self.new:
            # crun: "hostname requires the UTS namespace"
            raise errors.InvalidArgumentError(
                "hostname", "setting a hostname requires a new UTS namespace")
        if (self.uid_map or self.gid_map) and "user" not in self.new:
            raise errors.InvalidArgumentError(
                "uid_map", "id maps require a new user namespace")
        if self.time_offsets and "time" not in self.new:
            raise errors.InvalidArgumentError(
                "time_offsets", "clock offsets require a new time namespace")
        for clock in self.time_offsets:
            if clock not in ("monotonic", "boottime"):
                raise errors.InvalidArgumentError(
                    "time_offsets", f"unknown clock {clock!r}",
                    hint="time_namespaces(7) offsets only monotonic and boottime")
        if self.propagation not in PROPAGATION:
            raise errors.InvalidArgumentError(
                "propagation", f"unknown propagation {self.propagation!r}",
                hint=f"one of: {', '.join(PROPAGATION)}")
        for kind, path in self.join.items():
            if not isinstance(path, str) or not path:
                raise errors.InvalidArgumentError("join", f"{kind}: path must be a non-empty str")
        for name, maps in (("uid_map", self.uid_map), ("gid_map", self.gid_map)):
            for m in maps:
                if m.count <= 0 or m.inside < 0 or m.outside < 0:
                    raise errors.InvalidArgumentError(name, f"bad range {m.line().strip()!r}")

    @property
    def wants_maps(self) -> bool:
        """True when the parent must write setgroups/gid_map/uid_map (the b"M" handshake)."""
        return "user" in self.new and bool(self.uid_map or self.gid_map or self.setgroups_deny)

    @property
    def needs_fork(self) -> bool:
        """True when argv must run in a child of the process that applied the spec.

        pid_namespaces(7): unshare(CLONE_NEWPID) and setns() into a pid namespace move only
        the caller's future children; time_namespaces(7): likewise for a new time namespace.
        """
        return "pid" in self.new or "pid" in self.join or "time" in self.new

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form (labkit.ns.child receives the spec this way)."""
        return {
            "new": sorted(self.new),
            "join": dict(self.join),
            "hostname": self.hostname,
            "domainname": self.domainname,
            "uid_map": [[m.inside, m.outside, m.count] for m in self.uid_map],
            "gid_map": [[m.inside, m.outside, m.count] for m in self.gid_map],
            "setgroups_deny": self.setgroups_deny,
            "time_offsets": dict(self.time_offsets),
            "propagation": self.propagation,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NamespaceSpec:
        """Inverse of to_dict(); validates like the constructor."""
        return cls(
            new=frozenset(d.get("new", ())),
            join=dict(d.get("join", {})),
            hostname=d.get("hostname"),
            domainname=d.get("domainname"),
            uid_map=tuple(IdMap(*m) for m in d.get("uid_map", ())),
            gid_map=tuple(IdMap(*m) for m in d.get("gid_map", ())),
            setgroups_deny=bool(d.get("setgroups_deny", False)),
            time_offsets=dict(d.get("time_offsets", {})),
            propagation=d.get("propagation", "private"),
        )

    @property
    def flags(self) -> int:
        """The CLONE_* flags for ``new``."""
        f = 0
        for kind in self.new:
            f |= NS_FLAGS[kind]
        return f
