"""A real Kafka broker and MongoDB-compatible server for a test session, each session its own.

Order of preference: the servers named by the environment (KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI, with an
operator's KAFKA_SASL_* credentials); testcontainers when a Docker engine answers; else the project's own
provisioning (Kafka from Maven Central, FerretDB built from the Go proxy) on free ports with state in a directory
of the session's own, so parallel workers never share a port or a file. Never a silent fallback: a server that
cannot be had raises with the reason.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lienthong_tools.infra import ports
from lienthong_tools.infra.environment import Environment
from lienthong_tools.infra.servers import LocalFerretDB, LocalKafka, PortTaken
from lienthong.messaging import ensure_topics
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong.topics import all_topics

KAFKA_IMAGE = "apache/kafka:4.4.0"
MONGO_IMAGE = "mongo:8.0"


class ServersUnavailable(RuntimeError):
    """No Kafka or MongoDB-compatible server could be had; the message says why."""


@dataclass(frozen=True)
class Servers:
    """Where the servers are. `kafka` carries the operator's credentials (topics, reading any topic in a test);
    `client(name)` a registered client's own (an agency system, a service)."""

    kafka: KafkaSettings
    mongo: MongoSettings
    provider: str  # "environment", "testcontainers" or "local"
    local: Environment | None = None

    def client(self, name: str) -> KafkaSettings:
        """The Kafka settings of the registry's client `name`, with its own principal. Servers from the environment
        or testcontainers bring one identity only: the operator's."""
        if self.local is None:
            return self.kafka
        return self.local.kafka.client_settings(name, KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers))


def free_ports(count: int = 1) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1, below the ephemeral range."""
    try:
        return ports.free_ports(count)
    except OSError as exc:
        raise ServersUnavailable(str(exc)) from exc


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def start_servers(state: Path, *, database: str | None = None) -> Iterator[Servers]:
    """Servers for one session, their topics created; stopped (when they are ours) on exit."""
    database = database or f"lienthong_kit_{uuid.uuid4().hex[:8]}"
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"):
        yield _with_topics(Servers(KafkaSettings(), MongoSettings(database=database), "environment"))
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka, MongoDbContainer(MONGO_IMAGE) as mongo:
            plain = KafkaSettings(bootstrap_servers=kafka.get_bootstrap_server(), security_protocol="PLAINTEXT")
            yield _with_topics(Servers(plain, MongoSettings(uri=mongo.get_connection_url(), database=database),
                                       "testcontainers"))
        return
    env = _started(state)
    try:
        mongo = MongoSettings(uri=f"mongodb://{env.mongo.address}/", database=database)
        yield Servers(env.kafka.admin_settings(), mongo, "local", env)
    finally:
        env.down()


def _started(state: Path, attempts: int = 3) -> Environment:
    """Kafka and FerretDB on free ports. Another process of the machine may bind a chosen port before the server
    does (every test session and service here picks ports in the same range): then again on other ports, each try
    in a state directory of its own."""
    attempt = 0
    while True:
        where = state / f"retry-{attempt}" if attempt else state
        where.mkdir(parents=True, exist_ok=True)
        env = Environment(kafka=LocalKafka("kafka", "127.0.0.1", free_ports(2), where),
                          mongo=LocalFerretDB("ferretdb", "127.0.0.1", free_ports(1), where))
        try:
            env.up()
            return env
        except PortTaken as exc:
            env.down()
            attempt += 1
            if attempt == attempts:
                raise ServersUnavailable(f"could not start Kafka and FerretDB in {state}: {exc}") from exc
        except Exception as exc:
            env.down()
            raise ServersUnavailable(f"could not start Kafka and FerretDB in {where}: {exc} "
                                     f"(logs: {env.kafka.log_file}, {env.mongo.log_file})") from exc


def _with_topics(servers: Servers) -> Servers:
    try:
        asyncio.run(ensure_topics(servers.kafka, all_topics()))
    except Exception as exc:
        raise ServersUnavailable(f"Kafka at {servers.kafka.bootstrap_servers} ({servers.provider}) is not usable: "
                                 f"{exc!r}") from exc
    return servers
