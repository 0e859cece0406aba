"""A local certificate authority for the brokers that `infra up` starts and docker-compose runs: the CA's
certificate is what every client trusts (KAFKA_SSL_CAFILE), the broker's key and certificate (signed by it, valid
for the names and addresses clients dial) are its PEM keystore. Production uses the province's own PKI: the
clients then need only its CA file."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
BROKER_DAYS = 825


@dataclass(frozen=True)
class BrokerTls:
    """What a broker's SSL settings name: its keystore (key + chain, PEM) and the CA it trusts."""

    keystore: Path
    ca: Path

    def properties(self) -> list[str]:
        """`ssl.*` lines of server.properties; the truststore serves the brokers' connections to each other."""
        return ["ssl.keystore.type=PEM", f"ssl.keystore.location={self.keystore}",
                "ssl.truststore.type=PEM", f"ssl.truststore.location={self.ca}"]


class LocalCA:
    """Files in `directory`: `ca.pem` (public), `ca.key` and `broker.pem` (mode 600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def broker(self, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> BrokerTls:
        """The broker's keystore for `names` (DNS names or IP addresses), made once and kept: a broker restarted
        keeps its certificate, and clients their trust."""
        key, cert = self._authority()
        keystore = self.directory / "broker.pem"
        if not keystore.exists():
            broker_key = ec.generate_private_key(ec.SECP256R1())
            now = datetime.now(UTC)
            sans = [x509.IPAddress(ipaddress.ip_address(n)) if _is_address(n) else x509.DNSName(n) for n in names]
            leaf = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lienthong-kafka")]))
                .issuer_name(cert.subject)
                .public_key(broker_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=BROKER_DAYS))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(key, hashes.SHA256())
            )
            # Unencrypted PKCS#8, protected by the file's mode: Kafka 4.4 on Java 17 cannot decrypt a PBES2 key
            # ("PBES2 SecretKeyFactory not available"), and a password beside the key would protect nothing more.
            pem = broker_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
            _write(keystore, pem + leaf.public_bytes(serialization.Encoding.PEM)
                   + cert.public_bytes(serialization.Encoding.PEM), 0o600)
        return BrokerTls(keystore, self.ca_file)

    def _authority(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_file = self.directory / "ca.key"
        if key_file.exists() and self.ca_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key, x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lien Thong local CA"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lienthong (local)")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
        _write(self.ca_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        (self.directory / "broker.pem").unlink(missing_ok=True)  # a new CA: the old broker certificate is void
        return key, cert


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=mode)
    tmp.write_bytes(data)
    tmp.replace(path)
