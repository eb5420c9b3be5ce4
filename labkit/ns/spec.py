"""What a process's namespaces should be: a plain description, applied elsewhere (apply.py).

The same NamespaceSpec drives labkit.ns.spawn (a learner's command in new namespaces) and
labkit-runtime (an OCI container), so the order and the uid-map handshake live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labkit import errors
from labkit._sys.consts import NS_FLAGS

# namespaces(7): the eight kinds, in the order a runtime creates or joins them.
KINDS: tuple[str, ...] = tuple(NS_FLAGS)


@dataclass(frozen=True, slots=True)
class IdMap:
    """One line of /proc/PID/uid_map or gid_map: ``inside outside count`` (user_namespaces(7))."""

    inside: int
    outside: int
    count: int = 1

    def line(self) -> str:
        return f"{self.inside} {self.outside} {self.count}\n"


@dataclass(frozen=True, slots=True)
class NamespaceSpec:
    """Which namespaces to create (``new``) or join (``join``: kind -> /proc/PID/ns/KIND path).

    ``uid_map``/``gid_map`` apply to a new user namespace; ``time_offsets`` (clock name ->
    seconds, e.g. {"monotonic": 3600, "boottime": 0}) to a new time namespace.
    """

    new: frozenset[str] = frozenset()
    join: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    domainname: str | None = None
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    setgroups_deny: bool = False
    time_offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        for name, maps in (("uid_map", self.uid_map), ("gid_map", self.gid_map)):
            for m in maps:
                if m.count <= 0 or m.inside < 0 or m.outside < 0:
                    raise errors.InvalidArgumentError(name, f"bad range {m.line().strip()!r}")

    @property
    def flags(self) -> int:
        """The CLONE_* flags for ``new``."""
        f = 0
        for kind in self.new:
            f |= NS_FLAGS[kind]
        return f
