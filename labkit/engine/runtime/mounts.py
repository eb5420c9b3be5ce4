"""config.json mount options -> mount(2) calls, for the runtime's start path.

labkit.engine.images.mounts.Mount does the same translation, but importing it runs the
images package __init__, which imports the whole image store (~20 ms): more than the whole
budget of `labkit-runtime run`.  This module keeps the runtime lean; the two tables must
agree (tests/unit/test_runtime_mounts.py checks that they do).

Option words are those of mount(8) and config.md "mounts[].options": flag words set or clear
MS_* bits (a later word wins), propagation words get a mount(2) call of their own, every
other word goes to the filesystem as data ("mode=755", "size=65536k").
"""

from __future__ import annotations

from labkit._sys import consts as C

# word -> (clears?, bits)
FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (False, 0), "ro": (False, C.MS_RDONLY), "rw": (True, C.MS_RDONLY),
    "nosuid": (False, C.MS_NOSUID), "suid": (True, C.MS_NOSUID),
    "nodev": (False, C.MS_NODEV), "dev": (True, C.MS_NODEV),
    "noexec": (False, C.MS_NOEXEC), "exec": (True, C.MS_NOEXEC),
    "sync": (False, C.MS_SYNCHRONOUS), "async": (True, C.MS_SYNCHRONOUS),
    "dirsync": (False, C.MS_DIRSYNC), "remount": (False, C.MS_REMOUNT),
    "bind": (False, C.MS_BIND), "rbind": (False, C.MS_BIND | C.MS_REC),
    "relatime": (False, C.MS_RELATIME), "norelatime": (True, C.MS_RELATIME),
    "strictatime": (False, C.MS_STRICTATIME), "nostrictatime": (True, C.MS_STRICTATIME),
    "noatime": (False, C.MS_NOATIME), "atime": (True, C.MS_NOATIME),
    "nodiratime": (False, C.MS_NODIRATIME), "diratime": (True, C.MS_NODIRATIME),
    "nosymfollow": (False, C.MS_NOSYMFOLLOW), "mand": (False, C.MS_MANDLOCK),
    "nomand": (True, C.MS_MANDLOCK), "silent": (False, C.MS_SILENT), "loud": (True, C.MS_SILENT),
}
PROPAGATION: dict[str, int] = {
    "private": C.MS_PRIVATE, "rprivate": C.MS_PRIVATE | C.MS_REC,
    "slave": C.MS_SLAVE, "rslave": C.MS_SLAVE | C.MS_REC,
    "shared": C.MS_SHARED, "rshared": C.MS_SHARED | C.MS_REC,
    "unbindable": C.MS_UNBINDABLE, "runbindable": C.MS_UNBINDABLE | C.MS_REC,
}
# runc/crun extensions that are not mount(2) words; accepted and ignored.
IGNORED = frozenset({"tmpcopyup", "idmap", "ridmap", "copy-symlink", "src-nofollow",
                     "dest-nofollow", "notmpcopyup"})
# mount(2) "Creating a bind mount": these are ignored on creation and need a remount.
_BIND_REMOUNT = (C.MS_RDONLY | C.MS_NOSUID | C.MS_NODEV | C.MS_NOEXEC | C.MS_NOATIME
                 | C.MS_NODIRATIME | C.MS_RELATIME | C.MS_STRICTATIME | C.MS_NOSYMFOLLOW)

Call = tuple[str | None, str, str | None, int, str | None]


def parse(options: tuple[str, ...] | list[str]) -> tuple[int, int, str]:
    """(MS_* flags, propagation flags, data string) for mount option words."""
    flags = prop = 0
    data = []
    for word in options:
        known = FLAGS.get(word)
        if known is not None:
            clear, bits = known
            flags = flags & ~bits if clear else flags | bits
        elif word in PROPAGATION:
            prop = PROPAGATION[word]
        elif word not in IGNORED:
            data.append(word)
    return flags, prop, ",".join(data)


def calls(fstype: str, source: str, dest: str, options: tuple[str, ...] | list[str]) -> list[Call]:
    """The mount(2) calls (source, target, fstype, flags, data) that perform one mount."""
    flags, prop, data = parse(options)
    out: list[Call] = []
    if flags & C.MS_BIND:
        out.append((source, dest, None, flags & (C.MS_BIND | C.MS_REC), None))
        if flags & _BIND_REMOUNT:
            out.append((None, dest, None, C.MS_BIND | C.MS_REMOUNT | (flags & _BIND_REMOUNT), None))
    else:
        t = None if fstype in ("", "none", "bind") else fstype
        out.append((source, dest, t, flags & ~C.MS_REC, data or None))
    if prop:
        out.append((None, dest, None, prop, None))
    return out
