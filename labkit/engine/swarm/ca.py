"""The swarm's root CA and the node certificates it issues (x509, with ``cryptography``).

Identity in a swarm is a certificate: CN = node id, OU = role, O = cluster id, issued by the
swarm's root CA from a CSR the node made (the CA never sees a node's private key). Every
channel between nodes is mutual TLS on these certificates, so ``verify`` is the one place
where "who is this peer, and may it do this" is answered. Shapes follow swarmkit
(ca/certificates.go): ECDSA P-256, 90-day node certificates renewed at a random point
between 50 % and 80 % of their life, a 20-year root, and a cross-signed intermediate while
the root is rotated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import random
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit import errors

__all__ = [
    "BACKDATE",
    "DEFAULT_NODE_EXPIRY",
    "MIN_NODE_EXPIRY",
    "OU_BY_ROLE",
    "ROOT_CN",
    "NodeIdentity",
    "Role",
    "RootCA",
    "bundle_pem",
    "cert_summary",
    "identity",
    "load_pem_chain",
    "needs_renewal",
    "new_id",
    "new_key_and_csr",
    "renewal_due",
    "verify_with",
]

Role = Literal["manager", "worker"]
OU_BY_ROLE: dict[str, str] = {"manager": "swarm-manager", "worker": "swarm-worker"}
_ROLE_BY_OU: dict[str, Role] = {"swarm-manager": "manager", "swarm-worker": "worker"}
ROOT_CN = "swarm-ca"
DEFAULT_NODE_EXPIRY = dt.timedelta(days=90)  # Docker's NodeCertExpiry default
MIN_NODE_EXPIRY = dt.timedelta(hours=1)  # Docker refuses a shorter --cert-expiry
# Certificates start a little in the past so a peer whose clock lags accepts them at once
# (swarmkit backdates too; a short backdate keeps the 50-80 % renewal window after issuance).
BACKDATE = dt.timedelta(minutes=5)
_ROOT_EXPIRY = dt.timedelta(days=365 * 20)
_ID_RE = re.compile(r"[0-9a-z]{25}")
_MAX_PEM = 1 << 20  # a chain of a few certificates is a few KiB; refuse megabytes of input
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out)).rjust(width, "0")


def new_id() -> str:
    """A node or cluster id: base36 of 128 random bits, zero padded to 25 characters
    (Docker's shape; 36**25 > 2**128, so every value fits)."""
    return _base36(secrets.randbits(128), 25)


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise errors.InvalidArgumentError("now", "must be timezone-aware (UTC)")
    return now


@dataclass(frozen=True)
class NodeIdentity:
    """Who a node certificate names, and for how long (from the certificate itself)."""

    node_id: str
    role: Role
    cluster_id: str
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    serial: int
    fingerprint: str  # sha256 hex of the certificate's DER


# --- parsing -------------------------------------------------------------------------------


def load_pem_chain(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in ``pem``, in order (a node certificate first, then intermediates)."""
    if not isinstance(pem, bytes):
        raise errors.InvalidArgumentError("certificate", "expected PEM bytes")
    if len(pem) > _MAX_PEM:
        raise errors.InvalidArgumentError("certificate", f"PEM of {len(pem)} bytes is too large")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as err:
        raise errors.InvalidArgumentError("certificate", f"not a PEM certificate ({err})") from err
    if not certs:
        raise errors.InvalidArgumentError("certificate", "no PEM certificate found")
    return certs


def _load_one(pem: bytes) -> x509.Certificate:
    return load_pem_chain(pem)[0]


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    """The single value of ``oid`` in ``name``; None when absent or given more than once
    (a name with two OUs is ambiguous, and ambiguity must never grant a role)."""
    vals = name.get_attributes_for_oid(oid)
    if len(vals) != 1:
        return None
    v = vals[0].value
    return v if isinstance(v, str) else None


def _identity(cert: x509.Certificate) -> NodeIdentity:
    subj = cert.subject
    node_id, ou, cluster = (_attr(subj, NameOID.COMMON_NAME),
                            _attr(subj, NameOID.ORGANIZATIONAL_UNIT_NAME),
                            _attr(subj, NameOID.ORGANIZATION_NAME))
    if ou not in _ROLE_BY_OU:
        raise errors.InvalidArgumentError(
            "certificate", f"subject OU {ou!r} is not a swarm role (swarm-manager, swarm-worker)")
    if not node_id or not _ID_RE.fullmatch(node_id):
        raise errors.InvalidArgumentError("certificate", f"subject CN {node_id!r} is not a node id")
    if not cluster or not _ID_RE.fullmatch(cluster):
        raise errors.InvalidArgumentError("certificate",
                                          f"subject O {cluster!r} is not a cluster id")
    return NodeIdentity(node_id=node_id, role=_ROLE_BY_OU[ou], cluster_id=cluster,
                        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                        issuer=cert.issuer.rfc4514_string(), serial=cert.serial_number,
                        fingerprint=_fingerprint(cert))


def identity(cert_pem: bytes) -> NodeIdentity:
    """What a node certificate says, WITHOUT verifying it: for display, never for trust."""
    return _identity(_load_one(cert_pem))


def _key_type(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA P-256" if isinstance(key.curve, ec.SECP256R1) else f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


def cert_summary(cert_pem: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """One certificate as a flat dict for a notebook table (not verified: display only).

    role, node_id and cluster_id are None for a certificate that is not a node's (a root).
    """
    cert = _load_one(cert_pem)
    try:
        ident: NodeIdentity | None = _identity(cert)
    except errors.InvalidArgumentError:
        ident = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [*san.get_values_for_type(x509.DNSName),
                *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        sans = []
    left = cert.not_valid_after_utc - _now(now)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "role": ident.role if ident else None,
        "node_id": ident.node_id if ident else None,
        "cluster_id": ident.cluster_id if ident else None,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "days_left": round(left.total_seconds() / 86400, 2),
        "sans": sans,
        "key_type": _key_type(cert.public_key()),
        "serial": format(cert.serial_number, "x"),
        "fingerprint": _fingerprint(cert),
    }


# --- keys and CSRs -------------------------------------------------------------------------


def new_key_and_csr(node_id: str) -> tuple[bytes, bytes]:
    """A fresh ECDSA P-256 key (PKCS8 PEM, unencrypted: seal.py encrypts it at rest) and a
    CSR for it. The CSR's subject is only a label: the CA decides the identity."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def _check_public_key(key: Any, what: str) -> None:
    """Only keys as strong as the CA's own: EC P-256, or RSA of at least 2048 bits."""
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return
    raise errors.InvalidArgumentError(
        what, f"key type {_key_type(key)} is refused: use ECDSA P-256 or RSA >= 2048")


def load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR and check its self-signature (proof that the sender holds the key)."""
    if not isinstance(csr_pem, bytes) or len(csr_pem) > _MAX_PEM:
        raise errors.InvalidArgumentError("certificate signing request", "expected PEM bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as err:
        raise errors.InvalidArgumentError("certificate signing request",
                                          f"not a PEM CSR ({err})") from err
    if not csr.is_signature_valid:
        raise errors.InvalidArgumentError("certificate signing request",
                                          "its signature does not verify")
    _check_public_key(csr.public_key(), "certificate signing request")
    return csr


def _same_key(a: Any, b: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(a.public_bytes(*fmt) == b.public_bytes(*fmt))


def _check_ids(node_id: str, cluster_id: str) -> None:
    if not isinstance(node_id, str) or not _ID_RE.fullmatch(node_id):
        raise errors.InvalidArgumentError("node id", "must be 25 characters of [0-9a-z]")
    if not isinstance(cluster_id, str) or not _ID_RE.fullmatch(cluster_id):
        raise errors.InvalidArgumentError("cluster id", "must be 25 characters of [0-9a-z]")


# --- the root CA ---------------------------------------------------------------------------


class RootCA:
    """The swarm's root certificate, with its private key when this node may sign.

    ``key_pem`` is None on workers, and for an external CA: such a RootCA only verifies.
    The key never appears in ``repr``.
    """

    def __init__(self, cert_pem: bytes, key_pem: bytes | None = None) -> None:
        cert = _load_one(cert_pem)
        bc = _ext(cert, x509.BasicConstraints)
        if bc is None or not bc.ca:
            raise errors.InvalidArgumentError("root CA certificate",
                                              "is not a CA (BasicConstraints)")
        self._cert = cert
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = key_pem
        self._key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
        if key_pem is not None:
            try:
                key = serialization.load_pem_private_key(key_pem, password=None)
            except (ValueError, TypeError) as err:
                raise errors.InvalidArgumentError(
                    "root CA key", "not an unencrypted PEM private key") from err
            if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
                raise errors.InvalidArgumentError("root CA key", "must be ECDSA or RSA")
            if not _same_key(key.public_key(), cert.public_key()):
                raise errors.InvalidArgumentError("root CA key", "does not match the certificate")
            self._key = key

    def __repr__(self) -> str:
        return f"RootCA(digest={self.digest()[:12]}, can_sign={self.can_sign})"

    @classmethod
    def create(cls, expiry: dt.timedelta = _ROOT_EXPIRY, common_name: str = ROOT_CN) -> RootCA:
        """A new self-signed root: ECDSA P-256, CN swarm-ca, CA:true pathlen 1 (room for one
        cross-signed intermediate during rotation), keyUsage certSign+cRLSign."""
        if expiry < MIN_NODE_EXPIRY:
            raise errors.InvalidArgumentError("root CA expiry", f"{expiry} is shorter than 1 hour")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE).not_valid_after(now + expiry)
                .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cls(cert.public_bytes(serialization.Encoding.PEM), key_pem)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def can_sign(self) -> bool:
        return self._key is not None

    def digest(self) -> str:
        """sha256 hex of the certificate's DER: what a join token pins."""
        return _fingerprint(self._cert)

    def trust_only(self) -> RootCA:
        """The same root without its key (what workers and joining nodes keep)."""
        return RootCA(self.cert_pem)

    def _signing_key(self) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        if self._key is None:
            raise errors.ConflictError(
                "this root CA has no private key here (an external CA, or a node that only "
                "trusts it): it cannot sign certificates")
        return self._key

    def issue(self, csr_pem: bytes, *, node_id: str, role: Role, cluster_id: str,
              expiry: dt.timedelta = DEFAULT_NODE_EXPIRY, ips: Sequence[str] = (),
              now: dt.datetime | None = None) -> bytes:
        """Sign the CSR's public key into a node certificate (PEM).

        The CSR's own subject and extensions are ignored: the CA alone decides who the node
        is (a node asking for OU=swarm-manager in its CSR gets what the caller passes).
        ``not_after`` never passes the root's own. ``now`` moves the start (tests and the
        notebook make already-expired certificates with it).
        """
        key = self._signing_key()
        _check_ids(node_id, cluster_id)
        if role not in OU_BY_ROLE:
            raise errors.InvalidArgumentError("role", f"{role!r} is not manager or worker")
        if not isinstance(expiry, dt.timedelta) or expiry < MIN_NODE_EXPIRY:
            raise errors.InvalidArgumentError(
                "certificate expiry", f"{expiry} is shorter than the minimum of 1 hour")
        addrs = []
        for ip in ips:
            try:
                addrs.append(ipaddress.ip_address(ip))
            except ValueError as err:
                raise errors.InvalidArgumentError("ips", f"{ip!r} is not an IP address") from err
        csr = load_csr(csr_pem)
        start = _now(now)
        not_after = min(start + expiry, self._cert.not_valid_after_utc)
        ou = OU_BY_ROLE[role]
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                             x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
        # etcd checks a peer's IP against the IP SANs (etcd docs, "security": peer TLS).
        sans: list[x509.GeneralName] = [x509.DNSName(ou), x509.DNSName(node_id)]
        sans += [x509.IPAddress(a) for a in dict.fromkeys(addrs)]
        pub = csr.public_key()
        # RSA keys also need keyEncipherment for TLS 1.2 RSA key exchange (RFC 5246 7.4.2).
        enc = isinstance(pub, rsa.RSAPublicKey)
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(self._cert.subject)
                .public_key(cast(Any, pub))
                .serial_number(x509.random_serial_number())
                .not_valid_before(start - BACKDATE).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_encipherment=enc, content_commitment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(cast(Any, pub)),
                               critical=False)
                .add_extension(_aki(self._cert), critical=False)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def cross_sign(self, new: RootCA) -> bytes:
        """An intermediate: ``new``'s subject and key, signed by this (old) root.

        During a root rotation a node that has the new certificate presents it followed by
        this intermediate, so a peer that still trusts only the old root accepts it
        (swarmkit ca.CrossSignRootCA). pathlen 0: it may sign node certificates only.
        """
        key = self._signing_key()
        ncert = new.certificate
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(ncert.subject).issuer_name(self._cert.subject)
                .public_key(cast(Any, ncert.public_key()))
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE)
                .not_valid_after(min(ncert.not_valid_after_utc, self._cert.not_valid_after_utc))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_ca_usage(), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                    cast(Any, ncert.public_key())), critical=False)
                .add_extension(_aki(self._cert), critical=False)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def verify(self, cert_pem: bytes, *, role: Role | None = None, cluster_id: str | None = None,
               now: dt.datetime | None = None) -> NodeIdentity:
        """Check a node certificate (optionally followed by intermediates) against this root.

        Raises ForbiddenError saying what failed: the chain, the validity window, the usage,
        the role or the cluster. ``role``/``cluster_id`` None accept any.
        """
        return verify_with([self], cert_pem, role=role, cluster_id=cluster_id, now=now)


def _ext(cert: x509.Certificate, cls: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = _ext(issuer, x509.SubjectKeyIdentifier)
    if ski is not None:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(Any, issuer.public_key()))


def bundle_pem(roots: Sequence[RootCA]) -> bytes:
    """The trusted roots as one PEM (what a TLS context loads as cafile during rotation)."""
    return b"".join(r.cert_pem for r in roots)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _window(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise errors.ForbiddenError(
            f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise errors.ForbiddenError(f"{what} expired at {cert.not_valid_after_utc.isoformat()}")


def _is_ca(cert: x509.Certificate) -> bool:
    """BasicConstraints CA:true, and keyCertSign when a keyUsage is present (RFC 5280 4.2.1.3)."""
    bc = _ext(cert, x509.BasicConstraints)
    ku = _ext(cert, x509.KeyUsage)
    return bool(bc is not None and bc.ca and (ku is None or ku.key_cert_sign))


def _chains_to(leaf: x509.Certificate, inters: Sequence[x509.Certificate],
               root: x509.Certificate, now: dt.datetime) -> bool:
    """Whether ``leaf`` is signed by ``root`` directly, or through one intermediate that
    ``root`` signed (the root's pathlen 1 allows exactly one). An intermediate that chains
    but is no CA or out of its window is refused loudly, not skipped."""
    if _signed_by(leaf, root):
        return True
    for inter in inters:
        if _signed_by(leaf, inter) and _signed_by(inter, root):
            if not _is_ca(inter):
                raise errors.ForbiddenError("the intermediate certificate is not a CA")
            _window(inter, now, "the intermediate certificate")
            return True
    return False


def verify_with(roots: Sequence[RootCA], cert_pem: bytes, *, role: Role | None = None,
                cluster_id: str | None = None, now: dt.datetime | None = None) -> NodeIdentity:
    """``RootCA.verify`` against a trust bundle: accepted when any root anchors the chain
    (during a CA rotation nodes trust the old and the new root)."""
    when = _now(now)
    chain = load_pem_chain(cert_pem)
    leaf, inters = chain[0], chain[1:]
    anchor = next((r for r in roots if _chains_to(leaf, inters, r.certificate, when)), None)
    if anchor is None:
        raise errors.ForbiddenError("certificate is not signed by this swarm's root CA")
    _window(anchor.certificate, when, "the root CA certificate")
    _window(leaf, when, "certificate")
    if _is_ca(leaf):
        raise errors.ForbiddenError("certificate is a CA certificate, not a node's")
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    if eku is None or not {ExtendedKeyUsageOID.SERVER_AUTH,
                           ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku):
        raise errors.ForbiddenError("certificate lacks the TLS server and client auth usages")
    try:
        ident = _identity(leaf)
    except errors.InvalidArgumentError as err:
        raise errors.ForbiddenError(f"certificate names no swarm node: {err.problem}") from err
    if role is not None and ident.role != role:
        raise errors.ForbiddenError(
            f"certificate is for a {ident.role}, a {role} is required")
    if cluster_id is not None and ident.cluster_id != cluster_id:
        raise errors.ForbiddenError(
            f"certificate is for cluster {ident.cluster_id}, not {cluster_id}")
    return ident


# --- renewal -------------------------------------------------------------------------------


def renewal_due(cert_pem: bytes, now: dt.datetime | None = None,
                rng: random.Random | None = None) -> dt.datetime:
    """When this node should renew: a random point between 50 % and 80 % of the
    certificate's validity (swarmkit ca/config.go calculateRandomExpiry), so many nodes
    with certificates from one moment do not all renew at once; never before ``now``."""
    cert = _load_one(cert_pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    frac = (rng or random).uniform(0.5, 0.8)
    return max(start + (end - start) * frac, _now(now))


def needs_renewal(cert_pem: bytes, now: dt.datetime | None = None) -> bool:
    """True once half the validity is gone (the earliest renewal point), or it expired."""
    cert = _load_one(cert_pem)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return _now(now) >= start + (end - start) / 2
