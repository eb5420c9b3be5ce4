"""mount(8) option words -> the mount(2) calls that perform a mount (mount(2), mount(8)).

The one translation table, shared by ``labkit.engine.images.mounts.Mount`` (the snapshotter's
and the engine's mount descriptions) and the runtime's rootfs setup (config.json
"mounts[].options", runtime-spec config.md).  It imports only labkit._sys.consts: the
runtime's start path must not pay for dataclasses (~10 ms, tests/unit/test_import_cost.py),
which ``images.mounts`` needs for ``Mount``.

Flag words set or clear MS_* bits in order (a later word wins, as in mount(8) and runc's
parseMountOptions), propagation words get a mount(2) call of their own, runc/crun
extensions are accepted and ignored, and every other word goes, in order, to the
filesystem as data ("mode=755", "size=65536k", "lowerdir=...").
"""

from __future__ import annotations

from labkit._sys import consts as C

__all__ = ["BIND_REMOUNT_FLAGS", "FLAG_OPTIONS", "IGNORED", "PROPAGATION_FLAGS",
           "PROPAGATION_WORDS", "calls", "parse"]

# word -> (clear it?, MS_* bits).  "rw" *clears* MS_RDONLY, so ("ro", "rw") is read-write.
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0),  # mount(8) spelling of "no flags"; never sent to the kernel
    "ro": (False, C.MS_RDONLY), "rw": (True, C.MS_RDONLY),
    "nosuid": (False, C.MS_NOSUID), "suid": (True, C.MS_NOSUID),
    "nodev": (False, C.MS_NODEV), "dev": (True, C.MS_NODEV),
    "noexec": (False, C.MS_NOEXEC), "exec": (True, C.MS_NOEXEC),
    "sync": (False, C.MS_SYNCHRONOUS), "async": (True, C.MS_SYNCHRONOUS),
    "dirsync": (False, C.MS_DIRSYNC), "remount": (False, C.MS_REMOUNT),
    "bind": (False, C.MS_BIND), "rbind": (False, C.MS_BIND | C.MS_REC),
    "private": (False, C.MS_PRIVATE), "rprivate": (False, C.MS_PRIVATE | C.MS_REC),
    "slave": (False, C.MS_SLAVE), "rslave": (False, C.MS_SLAVE | C.MS_REC),
    "shared": (False, C.MS_SHARED), "rshared": (False, C.MS_SHARED | C.MS_REC),
    "unbindable": (False, C.MS_UNBINDABLE), "runbindable": (False, C.MS_UNBINDABLE | C.MS_REC),
    "relatime": (False, C.MS_RELATIME), "norelatime": (True, C.MS_RELATIME),
    "strictatime": (False, C.MS_STRICTATIME), "nostrictatime": (True, C.MS_STRICTATIME),
    "noatime": (False, C.MS_NOATIME), "atime": (True, C.MS_NOATIME),
    "nodiratime": (False, C.MS_NODIRATIME), "diratime": (True, C.MS_NODIRATIME),
    "nosymfollow": (False, C.MS_NOSYMFOLLOW),
    "mand": (False, C.MS_MANDLOCK), "nomand": (True, C.MS_MANDLOCK),
    "silent": (False, C.MS_SILENT), "loud": (True, C.MS_SILENT),
}
PROPAGATION_WORDS = frozenset(
    ("private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"))
PROPAGATION_FLAGS = C.MS_SHARED | C.MS_PRIVATE | C.MS_SLAVE | C.MS_UNBINDABLE
# runc/crun extensions that are not mount(2) words: accepted and ignored.
IGNORED = frozenset(("tmpcopyup", "notmpcopyup", "idmap", "ridmap", "copy-symlink",
                     "src-nofollow", "dest-nofollow"))
# Flags a bind mount ignores on its first call and only honours on a remount (mount(2),
# "Creating a bind mount": "the remaining bits ... are ignored" except MS_REC).
BIND_REMOUNT_FLAGS = (C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | C.MS_NOATIME
                      | C.MS_NODIRATIME | C.MS_RELATIME | C.MS_STRICTATIME | C.MS_NOSYMFOLLOW)

# (source, target, fstype, flags, data): the arguments of one mount(2) call.
Call = tuple[str | None, str, str | None, int, str | None]


def parse(options: tuple[str, ...] | list[str]) -> tuple[int, int, str]:
    """(MS_* flags without propagation, propagation flags with their own MS_REC, data).

    >>> parse(("nosuid", "size=64m", "ro", "rprivate"))[::2]
    (3, 'size=64m')
    """
    flags = prop = 0
    data: list[str] = []
    for word in options:
        known = FLAG_OPTIONS.get(word)
        if known is None:
            if word not in IGNORED:
                data.append(word)
            continue
        clear, bits = known
        if word in PROPAGATION_WORDS:
            prop = bits  # one propagation type per call: the last word wins
        else:
            flags = flags & ~bits if clear else flags | bits
    return flags, prop, ",".join(data)


def calls(fstype: str, source: str, target: str,
          options: tuple[str, ...] | list[str]) -> list[Call]:
    """The mount(2) calls that mount ``source`` (filesystem ``fstype``) at ``target``.

    Type "bind" alone means a bind mount (runtime-spec config.md; runc does the same).  The
    kernel needs more than one call in two cases (mount(2)):
    * a bind mount ignores ro/nosuid/nodev/noexec/atime flags on creation, so a second
      call with MS_REMOUNT|MS_BIND applies them (runc does the same);
    * propagation (MS_SHARED/PRIVATE/SLAVE/UNBINDABLE) cannot be combined with other
      flags, so it is changed by a call of its own, with only MS_REC beside it.
    A mount whose only options are propagation words (type "none") is just that call.
    """
    flags, prop, data = parse(options)
    if fstype == "bind":
        flags |= C.MS_BIND
    t = None if fstype in ("", "none", "bind") else fstype
    out: list[Call] = []
    if flags & C.MS_REMOUNT:
        # A remount changes an existing mount in one call; source is ignored.
        out.append((source or None, target, t, flags, data or None))
    elif flags & C.MS_BIND:
        out.append((source, target, None, flags & (C.MS_BIND | C.MS_REC), None))
        if flags & BIND_REMOUNT_FLAGS:
            out.append((None, target, None,
                        C.MS_REMOUNT | C.MS_BIND | (flags & BIND_REMOUNT_FLAGS), None))
    elif not (prop and flags == 0 and t is None and not data):
        out.append((source, target, t, flags & ~C.MS_REC, data or None))
    if prop:
        out.append((None, target, None, prop, None))
    return out
