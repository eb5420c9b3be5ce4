"""labkit-supervisor: containerd's role (DESIGN.md "The way of one run").

    labkit-supervisor            (or: python -m labkit.engine.supervisor)

Serves the Tasks API (api/supervisor.proto) on paths.supervisor_socket().  Order matters:
the shim template is forked *first*, while this process is still single-threaded (gRPC
starts threads), then gRPC is imported and the server started, then every shim found under
paths.shims_dir() is re-attached (live-restore).  SIGTERM/SIGINT stop the server and
leave every container running; so does SIGKILL.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the labkit-supervisor console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    from labkit.engine import paths
    from labkit.engine.shim.template import Template

    template = Template()  # before any thread exists (fork + threads do not mix)
    import asyncio

    try:
        asyncio.run(_serve(template, paths))
    except KeyboardInterrupt:
        pass
    finally:
        template.close()
    return 0


async def _serve(template: object, paths: object) -> None:
    import asyncio
    import signal

    import grpc

    from labkit.engine import paths as p
    from labkit.engine.supervisor.api import supervisor_pb2_grpc as pb_grpc
    from labkit.engine.supervisor.service import TasksService

    sock = p.supervisor_socket()
    sock.parent.mkdir(mode=p.ROOT_MODE, parents=True, exist_ok=True)
    p.make_dir(p.shims_dir(), p.PRIVATE_DIR_MODE)  # shim configs carry the task's Env
    if sock.exists():
        sock.unlink()  # a previous supervisor's (we hold no lock: one supervisor per LABKIT_RUN)
    service = TasksService(template, str(p.shims_dir()), str(p.runtime_root()),  # type: ignore[arg-type]
                           str(p.containers_dir()))
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_TasksServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix://{sock}")
    await service.restore()
    await server.start()
    os.chmod(sock, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"labkit-supervisor: serving on {sock}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop(0.5)
