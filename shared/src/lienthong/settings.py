"""Configuration from environment variables (pydantic-settings).

One settings class per concern; every service composes the ones it needs. Defaults suit a laptop:
Kafka on 127.0.0.1:9092 and a MongoDB-compatible server on 127.0.0.1:27017.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where the brokers are and who this client is. Every Kafka client of the project (producers, consumers,
    admin clients, the dashboard's monitor, the tools) is built from these, through `client_options()` or
    `security()`: none is anonymous when the cluster asks for credentials."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list")
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "SASL_PLAINTEXT", description="SASL_SSL: the local brokers' and production's (a service outside `local` "
        "refuses anything else); PLAINTEXT only for a cluster without authentication (never the project's own)")
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field("SCRAM-SHA-512")
    sasl_username: str | None = Field(None, description="This client's principal (see lienthong/identity)")
    sasl_password: SecretStr | None = Field(None, description="Its password, from the credential store")
    sasl_password_file: Path | None = Field(
        None, description="A file holding the password instead (a mounted secret: docker-compose, Kubernetes); "
        "read once at start-up when KAFKA_SASL_PASSWORD is not set")
    ssl_cafile: Path | None = Field(
        None, description="With SASL_SSL: the CA certificate(s) that signed the brokers' certificates (PEM); the "
        "system's trust store when unset. The broker's name or address is always verified")
    client_id_prefix: str = Field("lienthong", description="Prefix of every client.id, for broker-side quotas/logs")
    linger_ms: int = Field(
        0, ge=0, le=1000, description="How long a producer waits to fill a batch before sending. 0: send at once; "
        "under load batches form anyway while a request to the broker is in flight (measured: 5 ms added ~6 ms to "
        "every publish when traffic was light)")

    @model_validator(mode="after")
    def _password_from_file(self) -> KafkaSettings:
        if self.sasl_password is None and self.sasl_password_file is not None:
            try:
                secret = self.sasl_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:  # the path is configuration, not a secret: it may be named
                raise ValueError(f"KAFKA_SASL_PASSWORD_FILE {self.sasl_password_file} cannot be read "
                                 f"({type(exc).__name__})") from None
            self.sasl_password = SecretStr(secret)
        return self

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def authenticated(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    @property
    def encrypted(self) -> bool:
        return self.security_protocol == "SASL_SSL"

    def ssl_context(self) -> Any:
        """TLS that verifies the broker's certificate against `ssl_cafile` (or the system's CAs) and its name."""
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"bootstrap_servers": self.servers, "security_protocol": self.security_protocol}
        if self.authenticated:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username or "",
                           sasl_plain_password=self.sasl_password.get_secret_value() if self.sasl_password else "")
        if self.encrypted:
            options["ssl_context"] = self.ssl_context()
        return options

    def security(self) -> Any:
        """FastStream's security object for the same credentials (None without authentication)."""
        from faststream.security import SASLPlaintext, SASLScram256, SASLScram512

        if not self.authenticated:
            return None
        kind = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        return kind[self.sasl_mechanism](self.sasl_username or "", password, use_ssl=self.encrypted,
                                         ssl_context=self.ssl_context() if self.encrypted else None)

    def as_client(self, name: str, password: str) -> KafkaSettings:
        return self.model_copy(update={"sasl_username": name, "sasl_password": SecretStr(password)})

    def as_env(self) -> dict[str, str]:
        """The same settings as environment variables, for a child process."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": self.security_protocol,
               "KAFKA_SASL_MECHANISM": self.sasl_mechanism}
        if self.sasl_username:
            env["KAFKA_SASL_USERNAME"] = self.sasl_username
        if self.sasl_password:
            env["KAFKA_SASL_PASSWORD"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            env["KAFKA_SSL_CAFILE"] = str(self.ssl_cafile)
        return env


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MONGODB_", extra="ignore")

    uri: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB connection string")
    database: str = Field("lienthong", description="Database name")
    server_selection_timeout_ms: int = Field(5000, ge=100)
    max_pool_size: int = Field(
        100,
        ge=1,
        description="Concurrent operations per client. FerretDB's SQLite backend has one writer and answers "
        "SQLITE_BUSY to concurrent writes, so the local environment runs with a small pool",
    )

    @property
    def host_port(self) -> tuple[str, int]:
        netloc = urlsplit(self.uri).netloc.rsplit("@", 1)[-1].split(",")[0]
        host, sep, port = netloc.rpartition(":")
        return (host, int(port)) if sep else (netloc, 27017)


class ServiceSettings(BaseSettings):
    """HTTP side of a service. Each service subclasses it with its env prefix (INTAKE_, ...) and port default."""

    model_config = SettingsConfigDict(extra="ignore")

    http_host: str = Field("127.0.0.1", description="Interface the HTTP API listens on")
    http_port: int = Field(8080, ge=1, le=65535)
    graceful_timeout_s: float = Field(
        15.0, gt=0, description="How long shutdown waits for in-flight messages before handing them back"
    )
    log_level: str = Field("INFO")
    gc_gen0_threshold: int = Field(50_000, ge=700, description="Allocations between two young-generation garbage "
                                   "collections (CPython's default: 700; see `lienthong.service.tune_gc`)")


class CatalogueReaderSettings(ServiceSettings):
    """A service that follows the procedure catalogue the province imports (intake files under it; notify and stats
    name its procedures)."""

    catalogue_refresh_s: float = Field(10.0, gt=0, description="How often the service looks for a newer procedure "
                                       "catalogue version (`lienthong catalogue import`)")


class Deployment(BaseSettings):
    """Where this process runs. Outside `local`, a service refuses to start with a development key."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore")

    environment: Literal["local", "test", "production"] = Field("local", description="production: no dev keys")


class DevelopmentSecret(RuntimeError):
    """A production process was configured with a key that ships in the source code."""


def refuse_development_secrets(service: str, in_use: dict[str, bool]) -> None:
    """`in_use`: setting name -> whether it still holds its development default. Names only, never values."""
    if Deployment().environment == "local":
        return
    weak = sorted(name for name, dev in in_use.items() if dev)
    if weak:
        raise DevelopmentSecret(f"{service} refuses to start in {Deployment().environment} with development keys: "
                                f"set {', '.join(weak)}")


def shared_secrets(kafka: KafkaSettings) -> dict[str, bool]:
    """The development defaults every service shares: the tracking key, and a broker reached without
    authentication or without TLS (passwords' exchanges and every record would cross the network in clear)."""
    from lienthong.tracking import DEV_KEY, TrackingSettings

    return {"TRACKING_KEY": TrackingSettings().key.get_secret_value() == DEV_KEY,
            "KAFKA_SECURITY_PROTOCOL (SASL_SSL)": not kafka.encrypted}
