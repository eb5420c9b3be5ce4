"""The joining node's and the member node's side of swarm.proto.

A joining node trusts nothing yet.  It opens a TLS connection to the manager's join port
without verifying it, takes the last certificate of the chain the manager sends (the root
CA), and keeps it only if its SHA-256 equals the digest inside the join token; from then on
every channel verifies against that root (swarmkit pins the CA the same way).  Python 3.11's
ssl module exposes the unverified chain only as ``SSLObject.get_unverified_chain`` on the
C object (public API from 3.13), which is what ``fetch_root`` uses.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from labkit import errors
from labkit.engine.swarm import tokens
from labkit.engine.swarm.rpc import swarm_pb2 as pb
from labkit.engine.swarm.rpc import swarm_pb2_grpc as pbg

__all__ = ["cluster_channel", "fetch_root", "join", "split_addr"]

# Every node certificate names its role as a DNS SAN; channels verify that name, so a
# worker's certificate can never serve as a manager's (SWARM12 / ca.py).
MANAGER_NAME = "swarm-manager"


def split_addr(addr: str, default_port: int) -> tuple[str, int]:
    """"10.0.0.1:2377" / "[fd00::1]:2377" / "10.0.0.1" -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or host.count(":") and not host.startswith("["):
        return addr.strip("[]"), default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError as err:
        raise errors.InvalidArgumentError("remote address", f"bad port in {addr!r}") from err


def _peer_chain(host: str, port: int, timeout: float) -> list[bytes]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # on purpose: pinned by the token's digest below
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        chain = tls._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
        return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain or []]  # type: ignore[attr-defined]


async def fetch_root(addr: str, token: str, timeout: float = 5.0) -> bytes:
    """The swarm's root CA (PEM) from the manager at ``addr``, pinned by ``token``."""
    host, port = split_addr(addr, 2377)
    try:
        chain = await asyncio.get_running_loop().run_in_executor(
            None, _peer_chain, host, port, timeout)
    except (OSError, ssl.SSLError) as err:
        raise errors.UnsupportedError(
            "swarm join", f"no manager answers at {host}:{port}: {err}",
            hint="check the address and that the manager's port 2377 is reachable") from err
    for der in reversed(chain):
        pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
        if tokens.matches_ca(token, pem):
            return pem
    raise errors.ForbiddenError(
        f"the manager at {host}:{port} does not present the root CA named by the join token "
        "(another swarm, or a man in the middle): refusing to join")


def _options() -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", MANAGER_NAME),
            ("grpc.default_authority", MANAGER_NAME),
            ("grpc.enable_retries", 0)]


async def join(addr: str, roots_pem: bytes, req: pb.JoinRequest,
               timeout: float = 10.0) -> pb.JoinResponse:
    """Call Join on the manager at ``addr`` (server verified against ``roots_pem``)."""
    host, port = split_addr(addr, 2377)
    creds = grpc.ssl_channel_credentials(root_certificates=roots_pem)
    async with grpc.aio.secure_channel(f"{host}:{port}", creds, options=_options()) as ch:
        try:
            resp: pb.JoinResponse = await pbg.JoinStub(ch).Join(  # type: ignore[no-untyped-call]
                req, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise rpc_error(err, f"{host}:{port}") from err
    return resp


def cluster_channel(addr: str, roots_pem: bytes, cert_pem: bytes,
                    key_pem: bytes) -> grpc.aio.Channel:
    """A mutual-TLS channel to a manager's cluster port (``addr`` is its join address;
    the cluster port is the next one)."""
    host, port = split_addr(addr, 2377)
    creds = grpc.ssl_channel_credentials(root_certificates=roots_pem,
                                         private_key=key_pem, certificate_chain=cert_pem)
    return grpc.aio.secure_channel(f"{host}:{port + 1}", creds, options=_options())


def rpc_error(err: grpc.aio.AioRpcError, where: str) -> errors.LabkitError:
    """A manager's gRPC status back as labkit's error classes (its message kept)."""
    code, msg = err.code(), err.details() or str(err.code())
    if code == grpc.StatusCode.PERMISSION_DENIED or code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.ForbiddenError(msg)
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFoundError("swarm node", msg)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgumentError("swarm request", msg)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return errors.ConflictError(msg)
    return errors.UnsupportedError("swarm manager", f"{where}: {msg}",
                                   hint="the manager may be down or have lost quorum")
