"""Checks of notebook 06 (volumes): where a volume's data lives on the host, and data that
outlives the container that wrote it; and section 7's exercise (06.greeting), read only
through volumes_demo.check_exercise.

Each check uses the notebook's engine client (``client``) and makes its own volume and
containers, named ``lk-chk06-<random>``, removing them again whatever the answer did.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine.client import Client
from labkit.engine.client.run import run
from labkit.lab.exercises import Namespace, defined, exercise, fail, need

__all__: list[str] = []


def _client(ns: Namespace) -> Client:
    need(ns.get("client") is not None, "'client' is not defined: run the notebook from the "
                                       "top (the set-up cell makes it), then this cell again")
    client: Client = ns["client"]
    return client


def _users(client: Client, volume: str) -> list[dict[str, Any]]:
    return [c for c in client.containers.list(all=True)
            if any(m.get("Name") == volume for m in c.get("Mounts") or [])]


def _cleanup(client: Client, volume: str) -> None:
    for c in _users(client, volume):
        client.containers.remove(c["Id"], force=True)
    try:
        client.volumes.remove(volume, force=True)
    except errors.NotFoundError:
        pass


def _in_volume(client: Client, volume: str, script: str) -> tuple[int, str]:
    """Run ``script`` in a busybox container with ``volume`` at /v (removed after)."""
    res = run(client, "busybox", ["sh", "-c", script],
              HostConfig={"NetworkMode": "none",
                          "Mounts": [{"Type": "volume", "Source": volume, "Target": "/v"}]})
    return res.status, res.stdout.decode(errors="replace")


# -- 06.volume_dir ---------------------------------------------------------------------------

@exercise("06.volume_dir")
def volume_dir(ns: Namespace) -> str:
    fn: Callable[[Client, str], Any] = defined(ns, "volume_dir")
    client = _client(ns)
    vol, token = f"lk-chk06-{secrets.token_hex(3)}", secrets.token_hex(8)
    client.volumes.create(vol)
    try:
        status, _ = _in_volume(client, vol, f"echo {token} > /v/token")
        need(status == 0, "the check's own container could not write into the volume")
        got = fn(client, vol)
        need(isinstance(got, str | Path) and str(got),
             f"volume_dir(client, {vol!r}) returned {got!r}: return the host directory "
             "(a str or Path)")
        where = Path(got)
        need(where.is_dir(), f"volume_dir(client, {vol!r}) returned {str(where)!r}, which is "
                             "not a directory on this host")
        if not (where / "token").is_file():
            if (where / "_data" / "token").is_file():
                fail(f"{where} is the volume's own directory: the files a container sees at "
                     "the mount point are one level down, in _data")
            fail(f"a container wrote /token at the root of volume {vol}, but {where}/token "
                 "does not exist: ask the engine where the volume is (its Mountpoint)")
        need((where / "token").read_text().strip() == token,
             f"{where}/token does not hold what the container wrote: is it another volume's?")
        return (f"volume_dir found {where}, and the host reads there what a container wrote "
                "in the volume")
    finally:
        _cleanup(client, vol)


# -- 06.keep_data ----------------------------------------------------------------------------

@exercise("06.keep_data")
def keep_data(ns: Namespace) -> str:
    fn: Callable[[Client, str, str], Any] = defined(ns, "keep_data")
    client = _client(ns)
    vol, text = f"lk-chk06-{secrets.token_hex(3)}", f"kept {secrets.token_hex(6)}"
    try:
        fn(client, vol, text)
        try:
            client.volumes.inspect(vol)
        except errors.NotFoundError:
            fail(f"keep_data(client, {vol!r}, ...) left no volume named {vol!r}: mount it in "
                 "a container (a volume mount creates a missing volume) or create it first")
        users = [str(c["Names"][0]).lstrip("/") for c in _users(client, vol)]
        need(not users, f"container(s) {users} still use {vol}: remove the writer once it "
                        "is done (the volume and its data stay)")
        status, out = _in_volume(client, vol, "cat /v/note")
        need(status == 0, f"a fresh container with {vol} at /v finds no /v/note: write the "
                          "file at the root of the volume (the container's mount point)")
        need(out.strip() == text, f"a fresh container reads {out.strip()[:40]!r} from the "
                                  f"volume's note, not the text it was given ({text!r})")
        return ("the writer is gone, the volume stayed, and a fresh container reads the "
                "text back")
    finally:
        _cleanup(client, vol)


# -- 06.greeting: section 7's exercise, checked by volumes_demo.check_exercise ---------------

@exercise("06.greeting")
def greeting(ns: Namespace) -> str:
    import contextlib
    import io

    from labkit.lab.volumes_demo import check_exercise

    client = _client(ns)
    said = io.StringIO()
    with contextlib.redirect_stdout(said):  # it prints PASS or "not yet: <hint>"
        ok = check_exercise(client, "lk-nb-ex")
    text = said.getvalue().strip()
    need(ok, text.removeprefix("not yet: "))
    return text.removeprefix("PASS: ")
