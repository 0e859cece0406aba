"""Session fixtures that provide a real Kafka broker and a real MongoDB-compatible server.

Order of preference: testcontainers when a Docker engine answers; else the servers named by
KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI when both are set; else the deploy/local processes (started here, on test
ports, and stopped at the end). A test that needs a server and cannot get one FAILS with the reason: never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from lienthong.settings import KafkaSettings, MongoSettings
from lienthong_testkit.servers import KAFKA_IMAGE, MONGO_IMAGE, docker_answers
from tests import tokens  # noqa: F401 - sets AUTH_* before any service is built

TEST_KAFKA = "127.0.0.1:19092"
TEST_MONGO = "mongodb://127.0.0.1:27117/"


@dataclass(frozen=True)
class Infra:
    kafka: KafkaSettings
    mongo: MongoSettings
    provider: str
    local: object | None = None  # the deploy/local Environment, when the servers are ours to stop and start

    @contextlib.asynccontextmanager
    async def kafka_outage(self) -> AsyncIterator[None]:
        """Stop the real broker for the duration of the block, then start it again."""
        if self.local is None:
            pytest.fail(f"a Kafka outage can only be staged on deploy/local servers, not on {self.provider}")
        await asyncio.to_thread(self.local.kafka.stop)
        try:
            yield
        finally:
            await asyncio.to_thread(self.local.kafka.start)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    database = f"lienthong_test_{uuid.uuid4().hex[:8]}"
    if docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka, MongoDbContainer(MONGO_IMAGE) as mongo:
            # The container's broker has no authentication: the identity tests say so and fail.
            plain = KafkaSettings(bootstrap_servers=kafka.get_bootstrap_server(), security_protocol="PLAINTEXT")
            yield _ready(plain, mongo.get_connection_url(), database, "testcontainers")
        return
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGODB_URI"):
        # An operator's credentials come with the address (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD).
        yield _ready(KafkaSettings(), os.environ["MONGODB_URI"], database, "environment")
        return
    from lienthong_tools.infra.environment import Environment

    kafka, mongo = KafkaSettings(bootstrap_servers=TEST_KAFKA), MongoSettings(uri=TEST_MONGO)
    env = Environment.from_settings(kafka, mongo, name="test")
    env.down()  # a previous run killed mid-way may have left them up
    shutil.rmtree(env.kafka.state, ignore_errors=True)  # fresh servers: every test session starts from empty topics
    env.kafka.state.mkdir(parents=True)
    try:
        env.up()
    except Exception as exc:  # noqa: BLE001 - any reason must surface as a failure, never a skip
        pytest.fail(f"no Kafka/MongoDB-compatible server for the integration tests: {exc}", pytrace=False)
    try:
        yield _ready(env.kafka.admin_settings(kafka), TEST_MONGO, database, "deploy/local", local=env)
    finally:
        env.down()


def _ready(kafka: KafkaSettings, uri: str, database: str, provider: str, local: object | None = None) -> Infra:
    from lienthong.messaging import ensure_topics
    from lienthong.topics import all_topics

    try:
        asyncio.run(ensure_topics(kafka, all_topics()))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Kafka at {kafka.bootstrap_servers} ({provider}) is not usable: {exc!r}", pytrace=False)
    return Infra(
        kafka=kafka,
        mongo=MongoSettings(uri=uri, database=database),
        provider=provider,
        local=local,
    )
