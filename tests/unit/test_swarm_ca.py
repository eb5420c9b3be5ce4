"""labkit.engine.swarm.ca: the root CA, node certificates, verification, renewal, rotation."""

from __future__ import annotations

import datetime as dt
import random
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit import errors
from labkit.engine.swarm import ca

HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def root() -> ca.RootCA:
    return ca.RootCA.create()


@pytest.fixture(scope="module")
def other() -> ca.RootCA:
    return ca.RootCA.create()


@pytest.fixture(scope="module")
def ids() -> tuple[str, str]:
    return ca.new_id(), ca.new_id()


def _issue(r: ca.RootCA, ids: tuple[str, str], role: ca.Role = "worker", **kw: Any) -> bytes:
    _, csr = ca.new_key_and_csr(ids[0])
    return r.issue(csr, node_id=ids[0], role=role, cluster_id=ids[1], **kw)


def _csr_for(key: Any, cn: str = "x", ou: str | None = None) -> bytes:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, algo)
    return csr.public_bytes(serialization.Encoding.PEM)


def _root_key(r: ca.RootCA) -> Any:
    assert r.key_pem is not None
    return serialization.load_pem_private_key(r.key_pem, None)


def _manual(r: ca.RootCA, subject: x509.Name, *, eku: bool = True, ca_cert: bool = False,
            signer: Any = None, issuer: x509.Name | None = None) -> bytes:
    """A certificate built by hand, for shapes issue() never makes."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer or r.certificate.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - HOUR).not_valid_after(now + HOUR)
         .add_extension(x509.BasicConstraints(ca=ca_cert, path_length=None), critical=True))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    cert = b.sign(signer or _root_key(r), hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, ous: list[str], o: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
                      *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in ous),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


# --- ids, root --------------------------------------------------------------------------------


def test_new_id_shape() -> None:
    got = {ca.new_id() for _ in range(200)}
    assert len(got) == 200
    assert all(len(i) == 25 and set(i) <= set("0123456789abcdefghijklmnopqrstuvwxyz") for i in got)
    assert ca._base36(0, 25) == "0" * 25
    assert ca._base36(2**128 - 1, 25) == "f5lxx1zz5pnorynqglhzmsp33"


def test_root_shape(root: ca.RootCA) -> None:
    cert = root.certificate
    assert cert.subject.rfc4514_string() == "CN=swarm-ca" == cert.issuer.rfc4514_string()
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365 * 20) <= life <= dt.timedelta(days=365 * 20) + HOUR
    assert len(root.digest()) == 64 and root.can_sign
    assert b"PRIVATE" not in repr(root).encode() and root.digest()[:12] in repr(root)
    assert root.key_pem is not None and root.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_trust_only_cannot_sign(root: ca.RootCA, ids: tuple[str, str]) -> None:
    t = ca.RootCA(root.cert_pem)
    assert not t.can_sign and t.key_pem is None and t.digest() == root.digest()
    assert not root.trust_only().can_sign
    with pytest.raises(errors.ConflictError, match="cannot sign"):
        _issue(t, ids)
    with pytest.raises(errors.ConflictError):
        t.cross_sign(root)


def test_root_refuses_wrong_key_and_non_ca(root: ca.RootCA, other: ca.RootCA,
                                           ids: tuple[str, str]) -> None:
    with pytest.raises(errors.InvalidArgumentError, match="does not match"):
        ca.RootCA(root.cert_pem, other.key_pem)
    with pytest.raises(errors.InvalidArgumentError, match="not a CA"):
        ca.RootCA(_issue(root, ids))
    with pytest.raises(errors.InvalidArgumentError, match="unencrypted PEM"):
        ca.RootCA(root.cert_pem, b"junk")
    with pytest.raises(errors.InvalidArgumentError, match="not a PEM certificate|no PEM"):
        ca.RootCA(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# --- issue ------------------------------------------------------------------------------------


def test_issue_takes_identity_from_ca_not_csr(root: ca.RootCA, ids: tuple[str, str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _csr_for(key, cn="attacker", ou="swarm-manager")
    pem = root.issue(csr, node_id=ids[0], role="worker", cluster_id=ids[1],
                     ips=["10.1.2.3", "127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject == _name(ids[0], ["swarm-worker"], ids[1])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["swarm-worker", ids[0]]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [
        "10.1.2.3", "127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert ca._same_key(cert.public_key(), key.public_key())
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life == ca.DEFAULT_NODE_EXPIRY + ca.BACKDATE


def test_issue_expiry(root: ca.RootCA, ids: tuple[str, str]) -> None:
    ident = ca.identity(_issue(root, ids, expiry=HOUR))
    assert ident.not_after - ident.not_before == HOUR + ca.BACKDATE
    with pytest.raises(errors.InvalidArgumentError, match=r"0:59:59 is shorter"):
        _issue(root, ids, expiry=dt.timedelta(minutes=59, seconds=59))
    # never past the root's own end
    long = ca.identity(_issue(root, ids, expiry=dt.timedelta(days=365 * 30)))
    assert long.not_after == root.certificate.not_valid_after_utc


@pytest.mark.parametrize("kw,match", [
    ({"node_id": "short"}, "node id"),
    ({"node_id": "A" * 25}, "node id"),
    ({"cluster_id": "x" * 26}, "cluster id"),
    ({"role": "admin"}, "role"),
    ({"ips": ["10.0.0.300"]}, "not an IP"),
])
def test_issue_refuses_bad_arguments(root: ca.RootCA, ids: tuple[str, str], kw: dict[str, Any],
                                     match: str) -> None:
    _, csr = ca.new_key_and_csr(ids[0])
    args: dict[str, Any] = {"node_id": ids[0], "role": "worker", "cluster_id": ids[1], **kw}
    with pytest.raises(errors.InvalidArgumentError, match=match):
        root.issue(csr, **args)


@pytest.mark.parametrize("make_key,ok", [
    (lambda: ec.generate_private_key(ec.SECP384R1()), False),
    (lambda: rsa.generate_private_key(65537, 1024), False),
    (lambda: ed25519.Ed25519PrivateKey.generate(), False),
    (lambda: rsa.generate_private_key(65537, 2048), True),
])
def test_issue_key_types(root: ca.RootCA, ids: tuple[str, str], make_key: Any, ok: bool) -> None:
    csr = _csr_for(make_key())
    if ok:
        pem = root.issue(csr, node_id=ids[0], role="manager", cluster_id=ids[1])
        assert root.verify(pem, role="manager").node_id == ids[0]
        ku = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.value.key_encipherment
    else:
        with pytest.raises(errors.InvalidArgumentError, match="is refused"):
            root.issue(csr, node_id=ids[0], role="manager", cluster_id=ids[1])


def test_issue_refuses_forged_csr(root: ca.RootCA, ids: tuple[str, str]) -> None:
    _, csr = ca.new_key_and_csr(ids[0])
    der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    bad = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(errors.InvalidArgumentError, match="signature does not verify"):
        root.issue(bad, node_id=ids[0], role="worker", cluster_id=ids[1])
    with pytest.raises(errors.InvalidArgumentError, match="not a PEM CSR"):
        root.issue(b"nope", node_id=ids[0], role="worker", cluster_id=ids[1])


def test_new_key_and_csr() -> None:
    key_pem, csr_pem = ca.new_key_and_csr("n")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    key = serialization.load_pem_private_key(key_pem, None)
    csr = ca.load_csr(csr_pem)
    assert csr.is_signature_valid and ca._same_key(csr.public_key(), key.public_key())


# --- verify -----------------------------------------------------------------------------------


def test_verify_ok_and_role_cluster(root: ca.RootCA, ids: tuple[str, str]) -> None:
    pem = _issue(root, ids, role="manager")
    ident = root.trust_only().verify(pem, role="manager", cluster_id=ids[1])
    assert (ident.node_id, ident.role, ident.cluster_id) == (ids[0], "manager", ids[1])
    assert ident.issuer == "CN=swarm-ca" and len(ident.fingerprint) == 64
    assert root.verify(pem, role=None).role == "manager"
    worker = _issue(root, ids, role="worker")
    with pytest.raises(errors.ForbiddenError,
                       match="certificate is for a worker, a manager is required"):
        root.verify(worker, role="manager")
    with pytest.raises(errors.ForbiddenError, match=f"is for cluster {ids[1]}, not"):
        root.verify(worker, cluster_id=ca.new_id())


def test_verify_refuses_other_ca(root: ca.RootCA, other: ca.RootCA,
                                 ids: tuple[str, str]) -> None:
    with pytest.raises(errors.ForbiddenError,
                       match="certificate is not signed by this swarm's root CA"):
        root.verify(_issue(other, ids))
    # the same names, signed by another key, still fail
    forged = _manual(root, _name(ids[0], ["swarm-manager"], ids[1]),
                     signer=_root_key(other))
    with pytest.raises(errors.ForbiddenError, match="not signed by this swarm"):
        root.verify(forged)


def test_verify_validity_window(root: ca.RootCA, ids: tuple[str, str]) -> None:
    pem = _issue(root, ids, expiry=HOUR)
    ident = ca.identity(pem)
    later = ident.not_after + dt.timedelta(seconds=1)
    with pytest.raises(errors.ForbiddenError, match="^certificate expired at 20"):
        root.verify(pem, now=later)
    with pytest.raises(errors.ForbiddenError, match="not valid before"):
        root.verify(pem, now=ident.not_before - dt.timedelta(seconds=1))
    assert root.verify(pem, now=ident.not_after).node_id == ids[0]
    with pytest.raises(errors.InvalidArgumentError, match="timezone-aware"):
        root.verify(pem, now=dt.datetime.now())  # a naive time is refused


def test_verify_refuses_odd_shapes(root: ca.RootCA, ids: tuple[str, str]) -> None:
    with pytest.raises(errors.ForbiddenError, match="CA certificate, not a node's"):
        root.verify(root.cert_pem)
    no_eku = _manual(root, _name(ids[0], ["swarm-manager"], ids[1]), eku=False)
    with pytest.raises(errors.ForbiddenError, match="server and client auth"):
        root.verify(no_eku)
    two_ous = _manual(root, _name(ids[0], ["swarm-worker", "swarm-manager"], ids[1]))
    with pytest.raises(errors.ForbiddenError, match="names no swarm node"):
        root.verify(two_ous)
    bad_cn = _manual(root, _name("Not-An-Id", ["swarm-manager"], ids[1]))
    with pytest.raises(errors.ForbiddenError, match="not a node id"):
        root.verify(bad_cn)
    with pytest.raises(errors.InvalidArgumentError):
        root.verify(b"garbage")


# --- rotation ---------------------------------------------------------------------------------


def test_cross_signed_rotation(root: ca.RootCA, other: ca.RootCA, ids: tuple[str, str]) -> None:
    new = ca.RootCA.create()
    inter = root.cross_sign(new)
    icert = x509.load_pem_x509_certificate(inter)
    bc = icert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    leaf = _issue(new, ids, role="manager")
    old_only = root.trust_only()
    # a node that trusts only the old root accepts a new certificate through the intermediate
    assert old_only.verify(leaf + inter, role="manager").node_id == ids[0]
    with pytest.raises(errors.ForbiddenError, match="not signed by this swarm"):
        old_only.verify(leaf)
    # an intermediate from an unrelated CA does not help
    with pytest.raises(errors.ForbiddenError, match="not signed by this swarm"):
        old_only.verify(leaf + other.cross_sign(new))
    # nor does it let the unrelated CA in
    with pytest.raises(errors.ForbiddenError, match="not signed by this swarm"):
        old_only.verify(_issue(other, ids) + inter)
    # a trust bundle of both roots accepts both generations
    both = [root.trust_only(), new.trust_only()]
    assert ca.verify_with(both, leaf).node_id == ids[0]
    assert ca.verify_with(both, _issue(root, ids)).node_id == ids[0]
    assert ca.bundle_pem(both) == root.cert_pem + new.cert_pem
    with pytest.raises(errors.ForbiddenError):
        ca.verify_with(both, _issue(other, ids))


def test_node_certificate_cannot_act_as_intermediate(root: ca.RootCA,
                                                     ids: tuple[str, str]) -> None:
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = root.issue(_csr_for(node_key), node_id=ids[0], role="manager", cluster_id=ids[1])
    node_subject = x509.load_pem_x509_certificate(node_cert).subject
    evil = _manual(root, _name(ca.new_id(), ["swarm-manager"], ids[1]), signer=node_key,
                   issuer=node_subject)
    with pytest.raises(errors.ForbiddenError, match="intermediate certificate is not a CA"):
        root.verify(evil + node_cert)


# --- renewal, display -------------------------------------------------------------------------


def test_renewal_window(root: ca.RootCA, ids: tuple[str, str]) -> None:
    pem = _issue(root, ids)
    ident = ca.identity(pem)
    life = ident.not_after - ident.not_before
    rng = random.Random(12)
    dues = [ca.renewal_due(pem, now=ident.not_before, rng=rng) for _ in range(200)]
    assert all(ident.not_before + life / 2 <= d <= ident.not_before + life * 0.8 for d in dues)
    assert max(dues) - min(dues) > life / 5  # spread out, not one instant
    late = ident.not_before + life * 0.9
    assert ca.renewal_due(pem, now=late) == late  # overdue: now
    assert not ca.needs_renewal(pem, now=ident.not_before + life * 0.49)
    assert ca.needs_renewal(pem, now=ident.not_before + life * 0.5)
    assert ca.needs_renewal(pem, now=ident.not_after + HOUR)


def test_cert_summary(root: ca.RootCA, ids: tuple[str, str]) -> None:
    pem = _issue(root, ids, role="manager", ips=["127.0.0.1"])
    s = ca.cert_summary(pem)
    assert (s["role"], s["node_id"], s["cluster_id"]) == ("manager", ids[0], ids[1])
    assert s["issuer"] == "CN=swarm-ca" and s["key_type"] == "ECDSA P-256"
    assert s["sans"] == ["swarm-manager", ids[0], "127.0.0.1"]
    assert 89.9 < s["days_left"] <= 90.01
    r = ca.cert_summary(root.cert_pem)
    assert r["role"] is None and r["subject"] == "CN=swarm-ca" and r["sans"] == []


def test_load_pem_chain_limits() -> None:
    with pytest.raises(errors.InvalidArgumentError, match="too large"):
        ca.load_pem_chain(b"x" * (2 << 20))
    with pytest.raises(errors.InvalidArgumentError):
        ca.load_pem_chain(b"")
    with pytest.raises(errors.InvalidArgumentError):
        ca.load_pem_chain("text")  # type: ignore[arg-type]


# --- the certificates in real TLS (OpenSSL through the ssl module, in memory) ------------------


def _ctx(side: int, root_pems: bytes, chain: bytes, key: bytes, tmp: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(side)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: each side checks the other
    ctx.check_hostname = False  # peers are named by certificate identity, not hostname
    ctx.load_verify_locations(cadata=root_pems.decode())
    cert, keyf = tmp / f"c{side}.pem", tmp / f"k{side}.pem"
    cert.write_bytes(chain)
    keyf.write_bytes(key)
    ctx.load_cert_chain(cert, keyf)
    return ctx


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    """Run a TLS handshake over memory BIOs; the server's view of the client certificate."""
    bios = [ssl.MemoryBIO() for _ in range(4)]
    s = server.wrap_bio(bios[0], bios[1], server_side=True)
    c = client.wrap_bio(bios[2], bios[3], server_side=False)
    done = [False, False]
    for _ in range(20):
        for i, end in enumerate((c, s)):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        bios[0].write(bios[3].read())
        bios[2].write(bios[1].read())
        if all(done):
            der = s.getpeercert(binary_form=True)
            assert der is not None
            return der
    raise AssertionError("handshake did not finish")


def test_node_certificates_work_for_mutual_tls(root: ca.RootCA, other: ca.RootCA,
                                               ids: tuple[str, str], tmp_path: Any) -> None:
    k1, c1 = ca.new_key_and_csr("a")
    k2, c2 = ca.new_key_and_csr("b")
    mgr = root.issue(c1, node_id=ids[0], role="manager", cluster_id=ids[1], ips=["127.0.0.1"])
    wrk = root.issue(c2, node_id=ca.new_id(), role="worker", cluster_id=ids[1])
    server = _ctx(ssl.PROTOCOL_TLS_SERVER, root.cert_pem, mgr, k1, tmp_path)
    client = _ctx(ssl.PROTOCOL_TLS_CLIENT, root.cert_pem, wrk, k2, tmp_path)
    der = _handshake(server, client)
    peer = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    assert root.verify(peer, role="worker").cluster_id == ids[1]
    # a client whose certificate comes from another CA is refused by OpenSSL itself
    k3, c3 = ca.new_key_and_csr("c")
    stranger = other.issue(c3, node_id=ca.new_id(), role="manager", cluster_id=ids[1])
    bad = _ctx(ssl.PROTOCOL_TLS_CLIENT, root.cert_pem, stranger, k3, tmp_path)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _handshake(server, bad)


def test_cross_signed_chain_in_tls(root: ca.RootCA, ids: tuple[str, str], tmp_path: Any) -> None:
    """Mid-rotation: a server with a new-root certificate presents it with the cross-signed
    intermediate; a client that trusts only the old root accepts it."""
    new = ca.RootCA.create()
    k1, c1 = ca.new_key_and_csr("a")
    leaf = new.issue(c1, node_id=ids[0], role="manager", cluster_id=ids[1])
    k2, c2 = ca.new_key_and_csr("b")
    wrk = root.issue(c2, node_id=ca.new_id(), role="worker", cluster_id=ids[1])
    both = ca.bundle_pem([root, new])
    server = _ctx(ssl.PROTOCOL_TLS_SERVER, both, leaf + root.cross_sign(new), k1, tmp_path)
    client = _ctx(ssl.PROTOCOL_TLS_CLIENT, root.cert_pem, wrk, k2, tmp_path)
    _handshake(server, client)
    without = _ctx(ssl.PROTOCOL_TLS_SERVER, both, leaf, k1, tmp_path)
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _handshake(without, client)
