"""A real registry for tests, benchmarks and notebooks: Debian's docker-registry (distribution 2.x).

``LocalRegistry().start()`` runs ``docker-registry serve`` with its own config and storage under
``/tmp/lk-reg-*``, listening on 127.0.0.1 (or, with ``netns=``, inside a network namespace the
caller made, so a daemon running in that netns reaches it on its loopback).  Never the packaged
service, never another address.  ``stop()`` ends only the process it started, by pid.

Auth (distribution's config reference, "auth" section):
- ``users={"alice": "pw"}``: htpasswd basic auth; the file is written with ``htpasswd -B``
  (apache2-utils), since the registry accepts only bcrypt entries.
- ``token={...}``: the ``auth.token`` block (realm, service, issuer, rootcertbundle) for the
  bearer-token flow, with a token server the caller runs.
- ``tls=(cert, key)``: serve https with that certificate (``http.tls``).
A registry served over plain HTTP on 127.0.0.0/8 is one Docker (and labkit) treat as insecure
by default, so no TLS is needed for the loopback case.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from labkit import errors

__all__ = ["LocalRegistry", "registry_binary"]


def registry_binary() -> str:
    exe = shutil.which("docker-registry") or shutil.which("registry")
    if exe is None:
        raise errors.UnsupportedError("registry", "docker-registry is not installed",
                                      hint="apt-get install docker-registry (make setup does)")
    return exe


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalRegistry:
    """One docker-registry process with its own storage; a context manager."""

    def __init__(self, *, users: dict[str, str] | None = None,
                 token: dict[str, Any] | None = None, netns: str | None = None,
                 port: int | None = None, tls: tuple[str, str] | None = None) -> None:
        if users and token:
            raise errors.InvalidArgumentError("registry auth", "htpasswd users or a token "
                                              "block, not both")
        self.users, self.token, self.netns = users or {}, token, netns
        self.tls = tls  # (certificate PEM path, key PEM path): serve https
        self.host = "127.0.0.1"
        # in a fresh netns every port is free; on the host ask the kernel for one
        self.port = port or (5000 if netns else _free_port(self.host))
        self.base = Path(tempfile.mkdtemp(prefix="lk-reg-", dir="/tmp"))
        self.storage = self.base / "storage"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port, as used in image names (127.0.0.1:5000/busybox)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def _config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.address, "secret": os.urandom(16).hex()},
        }
        if self.tls:
            cfg["http"]["tls"] = {"certificate": self.tls[0], "key": self.tls[1]}
        if self.users:
            pw = self.base / "htpasswd"
            lines = []
            for user, password in self.users.items():
                out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True,
                                     check=True, text=True).stdout.strip()
                lines.append(out)
            pw.write_text("\n".join(lines) + "\n")
            pw.chmod(0o600)
            cfg["auth"] = {"htpasswd": {"realm": "lk-registry", "path": str(pw)}}
        if self.token:
            cfg["auth"] = {"token": dict(self.token)}
        return cfg

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        exe = registry_binary()
        conf = self.base / "config.yml"
        conf.write_text(json.dumps(self._config(), indent=1))  # YAML is a superset of JSON
        argv = [exe, "serve", str(conf)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self.base / "registry.log", "ab") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                self.stop()
                raise errors.LabkitError(f"docker-registry exited ({self.proc.returncode}): "
                                         f"{log[-800:]}")
            if "listening on" in self.log():
                return self
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise errors.LabkitError(f"docker-registry did not listen within {timeout:.0f}s: "
                                 f"{log[-800:]}")

    def log(self) -> str:
        try:
            return (self.base / "registry.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """End the registry (by pid: the process we started) and remove its storage."""
        if self.proc is not None and self.proc.poll() is None:
            # ip netns exec execs the registry in place: the pid is the registry's
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalRegistry:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
