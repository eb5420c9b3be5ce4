"""The engine's client: HTTP over the daemon's unix socket, one module per resource.

``Client()`` talks to ``paths.daemon_socket()`` (LABKIT_SOCKET / LABKIT_RUN), or to the
socket given; ``.containers``, ``.execs``, ``.images``, ``.networks``, ``.nodes``,
``.swarm``, ``.services``, ``.tasks``, ``.secrets``, ``.configs``, ``.system`` and
``.volumes`` hold the calls, as docker-py's APIClient mixins do.  Daemon errors come back as labkit.errors classes.
Only the standard library is imported here, so the `labkit` command starts fast.
"""

from __future__ import annotations

from pathlib import Path

from labkit.engine.client.configs import Configs
from labkit.engine.client.containers import Containers
from labkit.engine.client.exec import Execs
from labkit.engine.client.images import Images
from labkit.engine.client.networks import Networks
from labkit.engine.client.secrets import Secrets
from labkit.engine.client.services import Services
from labkit.engine.client.swarm import Nodes, Swarm
from labkit.engine.client.system import System
from labkit.engine.client.tasks import Tasks
from labkit.engine.client.transport import APIError, DaemonUnavailable, Transport
from labkit.engine.client.volumes import Volumes

__all__ = ["APIError", "Client", "DaemonUnavailable", "Transport"]


class Client:
    """One daemon, reached over its unix socket."""

    def __init__(self, socket_path: str | Path | None = None, timeout: float | None = 60.0,
                 autostart: bool = False) -> None:
        """``autostart``: when the first request finds no daemon, start one (client.launch)."""
        if socket_path is None:
            from labkit.engine import paths

            socket_path = paths.daemon_socket()
        self.socket_path = Path(socket_path)
        self.transport = Transport(self.socket_path, timeout=timeout,
                                   on_unavailable=self._start_daemon if autostart else None)
        self.containers = Containers(self.transport)
        self.execs = Execs(self.transport)
        self.images = Images(self.transport)
        self.networks = Networks(self.transport)
        self.nodes = Nodes(self.transport)
        self.swarm = Swarm(self.transport)
        self.system = System(self.transport)
        self.volumes = Volumes(self.transport)
        self.services = Services(self.transport)
        self.tasks = Tasks(self.transport)
        self.secrets = Secrets(self.transport)
        self.configs = Configs(self.transport)

    def _start_daemon(self) -> None:
        from labkit.engine.client.launch import ensure_daemon

        ensure_daemon(self.socket_path)

    def __repr__(self) -> str:
        return f"Client(unix://{self.socket_path})"
