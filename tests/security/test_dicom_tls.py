"""DICOM over TLS (contract §2 IMMUNORAD_DICOM_TLS_CERT/_KEY/_CA; interop-notes §3.4) with DCMTK and pynetdicom.

Certificates are made here with ``cryptography``: a CA, a server certificate for 127.0.0.1 and a client
certificate. With a CA configured the listener requires the client's certificate (mutual TLS); without one it
is TLS with server authentication only. A plain-TCP association to the TLS port never succeeds, and the AE
allow-list applies over TLS as over TCP.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from dicom_listener.scp import ListenerConfig, ReceivedInstance, start_listener
from service.demo.sr_writer import build_ct_image
from tests.support.dcmtk import echoscu, storescu
from tests.support.ports import free_port


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path
    rogue_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(key, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return path


def _certificate(
    subject: str,
    key,
    issuer_name: x509.Name,
    issuer_key,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    san: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "immunorad test CA")])
    ca_cert = _certificate("immunorad test CA", ca_key, ca_name, ca_key, ca=True)
    (folder / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(name: str, usage, *, san: bool = False, issuer=(ca_name, ca_key)) -> tuple[Path, Path]:
        key = _key()
        cert = _certificate(name, key, issuer[0], issuer[1], usage=usage, san=san)
        cert_path = folder / f"{name}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert_path, _write_key(key, folder / f"{name}.key")

    server = issue("server", ExtendedKeyUsageOID.SERVER_AUTH, san=True)
    client = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue_key = _key()
    rogue_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
    rogue = issue("rogue", ExtendedKeyUsageOID.CLIENT_AUTH, issuer=(rogue_name, rogue_key))
    return Pki(folder / "ca.crt", *server, *client, *rogue)


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory) -> Path:
    ds = build_ct_image(
        patient_id="TLS-1",
        patient_name="TLS^TEST",
        study_instance_uid="2.25.101",
        study_date=dt.date(2024, 1, 2),
        series_instance_uid="2.25.102",
        sop_instance_uid="2.25.103",
        accession_number="A1",
    )
    path = tmp_path_factory.mktemp("dicom") / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


class Listener:
    def __init__(self, pki: Pki, *, mutual: bool, allowed: tuple[str, ...] = ()) -> None:
        self.received: list[ReceivedInstance] = []
        self.port = free_port()
        config = ListenerConfig(
            port=self.port,
            tls_cert=str(pki.server_cert),
            tls_key=str(pki.server_key),
            tls_ca=str(pki.ca) if mutual else None,
            allowed_calling_aets=allowed,
        )
        self.server = start_listener(config, self.received.append)

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def mutual(pki):
    listener = Listener(pki, mutual=True, allowed=("STORESCU", "ECHOSCU", "PYNETDICOM"))
    yield listener
    listener.stop()


@pytest.fixture
def server_only(pki):
    listener = Listener(pki, mutual=False)
    yield listener
    listener.stop()


def tls_options(pki: Pki, *, cert: Path | None = None, key: Path | None = None) -> list[str]:
    # DCMTK: +tls private-key certificate, +cf trusted CA (the peer's certificate is verified by default: -rc).
    return ["+tls", str(key or pki.client_key), str(cert or pki.client_cert), "+cf", str(pki.ca)]


def test_storescu_over_mutual_tls(pki, mutual, ct_file):
    result = storescu("127.0.0.1", mutual.port, [ct_file], extra=tls_options(pki))
    assert result.returncode == 0, result.stderr + result.stdout
    assert [r.sop_instance_uid for r in mutual.received] == ["2.25.103"]
    assert echoscu("127.0.0.1", mutual.port, extra=tls_options(pki)).returncode == 0


def test_plain_tcp_to_the_tls_port_fails(mutual, ct_file):
    result = storescu("127.0.0.1", mutual.port, [ct_file])
    assert result.returncode != 0 and not mutual.received
    assert echoscu("127.0.0.1", mutual.port).returncode != 0


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(pki, mutual, ct_file):
    anonymous = storescu("127.0.0.1", mutual.port, [ct_file], extra=["+tla", "+cf", str(pki.ca)])
    assert anonymous.returncode != 0
    rogue = storescu(
        "127.0.0.1", mutual.port, [ct_file], extra=tls_options(pki, cert=pki.rogue_cert, key=pki.rogue_key)
    )
    assert rogue.returncode != 0 and not mutual.received


def test_the_client_verifies_the_server(pki, mutual, ct_file, tmp_path):
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(pki.rogue_cert.read_bytes())
    result = storescu(
        "127.0.0.1",
        mutual.port,
        [ct_file],
        extra=["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(other_ca)],
    )
    assert result.returncode != 0 and not mutual.received


def test_ae_allow_list_over_tls(pki, mutual, ct_file):
    result = storescu("127.0.0.1", mutual.port, [ct_file], aet="UNKNOWN", extra=tls_options(pki))
    assert result.returncode != 0 and "Calling AE Title Not Recognized" in (result.stdout + result.stderr)
    assert not mutual.received


def test_server_authenticated_tls_without_client_certificates(pki, server_only, ct_file):
    result = storescu("127.0.0.1", server_only.port, [ct_file], extra=["+tla", "+cf", str(pki.ca)])
    assert result.returncode == 0, result.stderr + result.stdout
    assert len(server_only.received) == 1


def _pynetdicom_association(pki: Pki, port: int, *, with_client_cert: bool):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if with_client_cert:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae.associate("127.0.0.1", port, ae_title="IMMUNORAD", tls_args=(context, "localhost"))


def test_pynetdicom_over_mutual_tls(pki, mutual, ct_file):
    association = _pynetdicom_association(pki, mutual.port, with_client_cert=True)
    assert association.is_established
    try:
        assert association.send_c_echo().Status == 0
        assert association.send_c_store(ct_file).Status == 0
    finally:
        association.release()
    assert len(mutual.received) == 1
    refused = _pynetdicom_association(pki, mutual.port, with_client_cert=False)
    assert not refused.is_established


def test_plain_pynetdicom_to_the_tls_port_fails(mutual):
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    association = ae.associate("127.0.0.1", mutual.port, ae_title="IMMUNORAD")
    assert not association.is_established
