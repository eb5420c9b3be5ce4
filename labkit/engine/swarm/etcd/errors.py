"""Errors of the cluster store, beside the shared vocabulary of labkit.errors.

``QuorumError`` is the one the daemon must tell apart: the store cannot take writes (no
endpoint answers, no leader, a write timed out), so the API answers 503 until a majority of
managers is back.  ``StoreAuthError`` is a TLS refusal, which retrying will not mend.
``EtcdError`` carries any other etcd message that has no better labkit class.
"""

from __future__ import annotations

from labkit import errors

__all__ = ["EtcdError", "QuorumError", "StoreAuthError"]


class EtcdError(errors.LabkitError):
    """etcd refused a request; ``message`` is etcd's own text, ``code`` its gRPC code."""

    def __init__(self, message: str, code: int = 2, hint: str | None = None) -> None:
        super().__init__(f"cluster store: {message}")
        self.message, self.code, self.hint = message, code, hint
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.code, self.hint))


class QuorumError(errors.LabkitError):
    """The cluster store has no quorum, or none of its members could be reached.

    ``reachable``/``total`` count the endpoints that answered at all; ``detail`` keeps the
    last etcd (or connection) message; ``outcome_unknown`` is true when a write was sent but
    not confirmed (it may still be applied later, Raft may commit it after a new election).
    """

    def __init__(self, reachable: int, total: int, detail: str,
                 outcome_unknown: bool = False, hint: str | None = None) -> None:
        if outcome_unknown:
            msg = (f"the swarm's cluster store did not confirm a write ({detail}); "
                   f"its outcome is unknown: {reachable} of {total} managers reachable")
        else:
            msg = (f"the swarm's cluster store has no quorum: {reachable} of {total} managers "
                   f"reachable; writes are stopped until a majority is back ({detail})")
        super().__init__(msg)
        self.reachable, self.total, self.detail = reachable, total, detail
        self.outcome_unknown = outcome_unknown
        self.hint = hint or "start the stopped managers, or wait for a leader election to end"
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.reachable, self.total, self.detail, self.outcome_unknown,
                             self.hint))


class StoreAuthError(errors.LabkitError):
    """Mutual TLS with a cluster store member failed (a certificate of another CA, expired...)."""

    def __init__(self, endpoint: str, reason: str, hint: str | None = None) -> None:
        super().__init__(f"TLS with the cluster store at {endpoint} failed: {reason}")
        self.endpoint, self.reason = endpoint, reason
        self.hint = hint or ("the client certificate must be signed by the swarm's root CA, "
                             "and the member's certificate must name its IP")
        self._note_hint()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.endpoint, self.reason, self.hint))
