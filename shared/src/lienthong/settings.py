"""Configuration from environment variables (pydantic-settings).

One settings class per concern; every service composes the ones it needs. Defaults suit a laptop:
Kafka on 127.0.0.1:9092 and a MongoDB-compatible server on 127.0.0.1:27017.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list")
    security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    client_id_prefix: str = Field("lienthong", description="Prefix of every client.id, for broker-side quotas/logs")

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


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
