"""What a swarm node keeps on disk: $LABKIT_ROOT/swarm/ (0700).

    state.json                     who this node is: ids, role, addresses, known managers
    certificates/swarm-root-ca.crt the trust roots (PEM bundle)
    certificates/swarm-node.crt    this node's certificate
    certificates/swarm-node.key    its private key: sealed with the unlock key under autolock
    dek                            a manager's data key for the store (sealed the same way)
    etcd/                          a manager's etcd member data

etcd reads its TLS files from disk, so a running manager writes them in clear into
$LABKIT_RUN/swarm/tls/ (a tmpfs: gone at reboot) and removes them when it stops; the key
material under LABKIT_ROOT stays sealed while the node is locked.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.engine import paths
from labkit.engine.swarm import seal

__all__ = ["LocalState", "NodeFiles"]

JOIN_PORT = 2377     # Docker's cluster management port: the join service here
CLUSTER_PORT = 2378  # the mutual-TLS channel (swarm.proto says why there are two)


@dataclass
class LocalState:
    """This node's own record of its membership."""

    node_id: str
    cluster_id: str
    role: str                      # "manager" | "worker"
    addr: str                      # the IP this node advertises
    hostname: str
    listen_ip: str = "0.0.0.0"
    join_port: int = JOIN_PORT
    managers: list[str] = field(default_factory=list)   # "ip:2377" of the managers known
    heartbeat_ms: int = 5000
    autolock: bool = False         # key material on disk is sealed with the unlock key
    etcd_cluster: dict[str, str] = field(default_factory=dict)  # initial cluster (name -> URL)
    etcd_new: bool = False         # this member founded the cluster (--initial-cluster-state)
    election_ms: int = 1000        # etcd --election-timeout: Spec.Raft.ElectionTick x 100 ms
    raft_heartbeat_ms: int = 100   # etcd --heartbeat-interval: Spec.Raft.HeartbeatTick x 100 ms
    snapshot_count: int = 10000    # etcd --snapshot-count: Spec.Raft.SnapshotInterval
    max_snapshots: int = 1         # etcd --max-snapshots: Spec.Raft.KeepOldSnapshots + 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LocalState:
        raw: dict[str, Any] = json.loads(data)
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class NodeFiles:
    """Paths and atomic, private reads and writes of one node's swarm state."""

    def __init__(self, root: Path | None = None, run: Path | None = None) -> None:
        self.root = root or paths.root() / "swarm"
        self.run = run or paths.run() / "swarm"

    # --- paths
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def certs(self) -> Path:
        return self.root / "certificates"

    @property
    def roots_file(self) -> Path:
        return self.certs / "swarm-root-ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.certs / "swarm-node.crt"

    @property
    def key_file(self) -> Path:
        return self.certs / "swarm-node.key"

    @property
    def store_cert_file(self) -> Path:
        return self.certs / "store-node.crt"

    @property
    def store_key_file(self) -> Path:
        return self.certs / "store-node.key"

    @property
    def store_roots_file(self) -> Path:
        return self.certs / "store-ca.crt"

    @property
    def dek_file(self) -> Path:
        return self.root / "dek"

    @property
    def etcd_dir(self) -> Path:
        return self.root / "etcd"

    @property
    def tls_dir(self) -> Path:
        return self.run / "tls"

    def exists(self) -> bool:
        return self.state_file.is_file()

    # --- state
    def load(self) -> LocalState:
        try:
            return LocalState.from_json(self.state_file.read_bytes())
        except (OSError, ValueError, TypeError) as err:
            raise errors.ConflictError(
                f"swarm state {self.state_file} is unreadable: {err}",
                hint="`docker swarm leave --force` resets this node") from err

    def save(self, state: LocalState) -> None:
        self._dirs()
        paths.write_secret(self.state_file, state.to_json())

    def _dirs(self) -> None:
        paths.make_dir(self.root, paths.PRIVATE_DIR_MODE)
        paths.make_dir(self.certs, paths.PRIVATE_DIR_MODE)

    # --- certificates and key material
    def write_identity(self, cert_pem: bytes, roots_pem: bytes, key_pem: bytes | None,
                       kek: seal.DataKey | None) -> None:
        """The node's certificate and trust roots, and (when given) its key, sealed with
        ``kek`` when that is set (autolock)."""
        self._dirs()
        paths.write_secret(self.roots_file, roots_pem)
        paths.write_secret(self.cert_file, cert_pem)
        if key_pem is not None:
            seal.write_material(self.key_file, key_pem, kek)

    def read_key(self, kek: seal.DataKey | None) -> bytes:
        return seal.read_material(self.key_file, kek)

    def write_store_identity(self, cert_pem: bytes, roots_pem: bytes, key_pem: bytes,
                             kek: seal.DataKey | None) -> None:
        """A manager's certificate from the store CA (etcd's ports trust only that CA)."""
        self._dirs()
        paths.write_secret(self.store_roots_file, roots_pem)
        paths.write_secret(self.store_cert_file, cert_pem)
        seal.write_material(self.store_key_file, key_pem, kek)

    def read_store_identity(self, kek: seal.DataKey | None) -> tuple[bytes, bytes, bytes]:
        """(cert, key, roots) of the store identity."""
        return (self.store_cert_file.read_bytes(), seal.read_material(self.store_key_file, kek),
                self.store_roots_file.read_bytes())

    def write_dek(self, dek: bytes, kek: seal.DataKey | None) -> None:
        self._dirs()
        seal.write_material(self.dek_file, dek, kek)

    def read_dek(self, kek: seal.DataKey | None) -> bytes:
        return seal.read_material(self.dek_file, kek)

    def material(self) -> list[Path]:
        """The files that hold key material (sealed under autolock)."""
        return [f for f in (self.key_file, self.dek_file, self.store_key_file) if f.exists()]

    def sealed(self) -> bool:
        """Any of them sealed (a crash between two reseals leaves some of each)."""
        return any(seal.is_sealed(f) for f in self.material())

    def check_kek(self, kek: seal.DataKey) -> None:
        """ForbiddenError unless ``kek`` opens every sealed file."""
        for f in self.material():
            seal.read_material(f, kek)

    def reseal(self, old: seal.DataKey | None, new: seal.DataKey | None) -> None:
        """Autolock turned on or off, or the unlock key rotated: every sealed file again."""
        for f in (self.key_file, self.dek_file, self.store_key_file):
            if f.exists():
                seal.reseal(f, old, new)

    def write_tls(self, cert_pem: bytes, key_pem: bytes, roots_pem: bytes) -> tuple[Path, Path, Path]:
        """Clear copies for etcd in the tmpfs run dir: (cert, key, roots)."""
        paths.make_dir(self.run, paths.PRIVATE_DIR_MODE)
        paths.make_dir(self.tls_dir, paths.PRIVATE_DIR_MODE)
        out = (self.tls_dir / "node.crt", self.tls_dir / "node.key", self.tls_dir / "ca.crt")
        for f, data in zip(out, (cert_pem, key_pem, roots_pem), strict=True):
            paths.write_secret(f, data)
        return out

    def drop_tls(self) -> None:
        shutil.rmtree(self.tls_dir, ignore_errors=True)

    def drop_manager_material(self) -> None:
        """A demoted manager keeps nothing of the store: no data key, no etcd data."""
        for f in (self.dek_file, self.store_key_file, self.store_cert_file,
                  self.store_roots_file):
            f.unlink(missing_ok=True)
        shutil.rmtree(self.etcd_dir, ignore_errors=True)

    def wipe(self) -> None:
        """Leave: everything of the swarm goes from this node."""
        self.drop_tls()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.run, ignore_errors=True)

    def make_etcd_dir(self) -> Path:
        self._dirs()
        return paths.make_dir(self.etcd_dir, paths.PRIVATE_DIR_MODE)


def hostname() -> str:
    """The node's name: LABKIT_NODE_NAME when set (several lab nodes share one UTS
    namespace, hence one hostname), else the machine's."""
    return os.environ.get("LABKIT_NODE_NAME") or os.uname().nodename
