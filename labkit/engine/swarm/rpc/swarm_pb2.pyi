# ruff: noqa
# mypy: ignore-errors
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Description(_message.Message):
    __slots__ = ("hostname", "engine_version", "os", "architecture", "nano_cpus", "memory_bytes")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    NANO_CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    engine_version: str
    os: str
    architecture: str
    nano_cpus: int
    memory_bytes: int
    def __init__(self, hostname: _Optional[str] = ..., engine_version: _Optional[str] = ..., os: _Optional[str] = ..., architecture: _Optional[str] = ..., nano_cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("token", "csr", "addr", "availability", "description", "store_csr")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STORE_CSR_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr: bytes
    addr: str
    availability: str
    description: Description
    store_csr: bytes
    def __init__(self, token: _Optional[str] = ..., csr: _Optional[bytes] = ..., addr: _Optional[str] = ..., availability: _Optional[str] = ..., description: _Optional[_Union[Description, _Mapping]] = ..., store_csr: _Optional[bytes] = ...) -> None: ...

class EtcdPeer(_message.Message):
    __slots__ = ("name", "peer_url")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PEER_URL_FIELD_NUMBER: _ClassVar[int]
    name: str
    peer_url: str
    def __init__(self, name: _Optional[str] = ..., peer_url: _Optional[str] = ...) -> None: ...

class ManagerMaterial(_message.Message):
    __slots__ = ("data_key", "etcd_cluster", "etcd_member_id", "election_ms", "heartbeat_ms", "store_certificate", "store_roots", "snapshot_count", "max_snapshots")
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    ETCD_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ETCD_MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    ELECTION_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    STORE_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    STORE_ROOTS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    data_key: bytes
    etcd_cluster: _containers.RepeatedCompositeFieldContainer[EtcdPeer]
    etcd_member_id: int
    election_ms: int
    heartbeat_ms: int
    store_certificate: bytes
    store_roots: bytes
    snapshot_count: int
    max_snapshots: int
    def __init__(self, data_key: _Optional[bytes] = ..., etcd_cluster: _Optional[_Iterable[_Union[EtcdPeer, _Mapping]]] = ..., etcd_member_id: _Optional[int] = ..., election_ms: _Optional[int] = ..., heartbeat_ms: _Optional[int] = ..., store_certificate: _Optional[bytes] = ..., store_roots: _Optional[bytes] = ..., snapshot_count: _Optional[int] = ..., max_snapshots: _Optional[int] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("node_id", "cluster_id", "role", "certificate", "trust_roots", "managers", "heartbeat_period_ms", "manager")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    TRUST_ROOTS_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    MANAGER_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster_id: str
    role: str
    certificate: bytes
    trust_roots: bytes
    managers: _containers.RepeatedScalarFieldContainer[str]
    heartbeat_period_ms: int
    manager: ManagerMaterial
    def __init__(self, node_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., role: _Optional[str] = ..., certificate: _Optional[bytes] = ..., trust_roots: _Optional[bytes] = ..., managers: _Optional[_Iterable[str]] = ..., heartbeat_period_ms: _Optional[int] = ..., manager: _Optional[_Union[ManagerMaterial, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("period_ms", "managers", "desired_role", "root_digest", "removed", "trust_roots")
    PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    MANAGERS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_ROLE_FIELD_NUMBER: _ClassVar[int]
    ROOT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    TRUST_ROOTS_FIELD_NUMBER: _ClassVar[int]
    period_ms: int
    managers: _containers.RepeatedScalarFieldContainer[str]
    desired_role: str
    root_digest: str
    removed: bool
    trust_roots: bytes
    def __init__(self, period_ms: _Optional[int] = ..., managers: _Optional[_Iterable[str]] = ..., desired_role: _Optional[str] = ..., root_digest: _Optional[str] = ..., removed: _Optional[bool] = ..., trust_roots: _Optional[bytes] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr", "store_csr")
    CSR_FIELD_NUMBER: _ClassVar[int]
    STORE_CSR_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    store_csr: bytes
    def __init__(self, csr: _Optional[bytes] = ..., store_csr: _Optional[bytes] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("certificate", "trust_roots", "role", "manager")
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    TRUST_ROOTS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MANAGER_FIELD_NUMBER: _ClassVar[int]
    certificate: bytes
    trust_roots: bytes
    role: str
    manager: ManagerMaterial
    def __init__(self, certificate: _Optional[bytes] = ..., trust_roots: _Optional[bytes] = ..., role: _Optional[str] = ..., manager: _Optional[_Union[ManagerMaterial, _Mapping]] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AssignmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("id", "task_ids", "follow", "tail", "since_unix_nano", "until_unix_nano", "stdout", "stderr", "cancel")
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    follow: bool
    tail: int
    since_unix_nano: int
    until_unix_nano: int
    stdout: bool
    stderr: bool
    cancel: bool
    def __init__(self, id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since_unix_nano: _Optional[int] = ..., until_unix_nano: _Optional[int] = ..., stdout: _Optional[bool] = ..., stderr: _Optional[bool] = ..., cancel: _Optional[bool] = ...) -> None: ...

class AssignmentSet(_message.Message):
    __slots__ = ("revision", "snapshot", "logs")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: bytes
    logs: _containers.RepeatedCompositeFieldContainer[LogRequest]
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[bytes] = ..., logs: _Optional[_Iterable[_Union[LogRequest, _Mapping]]] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "state", "message", "err", "container_id", "pid", "exit_code", "timestamp")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: str
    message: str
    err: str
    container_id: str
    pid: int
    exit_code: int
    timestamp: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., err: _Optional[str] = ..., container_id: _Optional[str] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., timestamp: _Optional[str] = ...) -> None: ...

class TaskStatusRequest(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[TaskStatus]
    def __init__(self, updates: _Optional[_Iterable[_Union[TaskStatus, _Mapping]]] = ...) -> None: ...

class TaskStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "task_id", "stream", "time_unix_nano", "data", "eof", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_id: str
    stream: int
    time_unix_nano: int
    data: bytes
    eof: bool
    error: str
    def __init__(self, request_id: _Optional[str] = ..., task_id: _Optional[str] = ..., stream: _Optional[int] = ..., time_unix_nano: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class PublishLogsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("network", "container_id", "aliases", "address")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    network: str
    container_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    address: str
    def __init__(self, network: _Optional[str] = ..., container_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., address: _Optional[str] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ("attachment_id", "network", "address")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    network: bytes
    address: str
    def __init__(self, attachment_id: _Optional[str] = ..., network: _Optional[bytes] = ..., address: _Optional[str] = ...) -> None: ...

class DetachRequest(_message.Message):
    __slots__ = ("attachment_id",)
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    def __init__(self, attachment_id: _Optional[str] = ...) -> None: ...

class DetachResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
