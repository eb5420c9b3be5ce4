"""Exec endpoints (Engine API v1.41 "Exec"): create, start (hijacked or detached), inspect, resize."""

from __future__ import annotations

from typing import Any

from labkit.engine.client.transport import Hijack, Transport

__all__ = ["Execs"]


class Execs:
    def __init__(self, t: Transport) -> None:
        self.t = t

    def create(self, cid: str, cmd: list[str], stdin: bool = False, tty: bool = False,
               env: list[str] | None = None, workdir: str | None = None,
               user: str | None = None, privileged: bool = False) -> str:
        """POST /containers/{id}/exec; returns the exec ID."""
        body: dict[str, Any] = {"AttachStdin": stdin, "AttachStdout": True,
                                "AttachStderr": True, "Tty": tty, "Cmd": cmd,
                                "Privileged": privileged}
        if env:
            body["Env"] = env
        if workdir:
            body["WorkingDir"] = workdir
        if user:
            body["User"] = user
        return str(self.t.post(f"/containers/{cid}/exec", body)["Id"])

    def start(self, exec_id: str, tty: bool = False) -> Hijack:
        """POST /exec/{id}/start hijacked: output frames (or raw with a tty) on the socket."""
        return self.t.hijack(f"/exec/{exec_id}/start", body={"Detach": False, "Tty": tty})

    def start_detached(self, exec_id: str) -> None:
        self.t.request("POST", f"/exec/{exec_id}/start", body={"Detach": True,
                                                               "Tty": False}).read()

    def inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self.t.get(f"/exec/{exec_id}/json"))

    def resize(self, exec_id: str, height: int, width: int) -> None:
        self.t.request("POST", f"/exec/{exec_id}/resize", {"h": height, "w": width}).read()
