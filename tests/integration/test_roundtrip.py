"""Foundation: a CloudEvent round-trips through the real broker, and a document through the real store."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import date

import pytest
from prometheus_client import CollectorRegistry
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from lienthong.contracts import parse_event, to_json
from lienthong.contracts.dossier import DossierRejected, DossierRejectedEvent
from lienthong.contracts.envelope import new_event
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, ensure_topics, make_broker
from lienthong.store import database, make_client
from lienthong.topics import Topic

pytestmark = pytest.mark.integration


async def test_cloudevent_round_trips_through_real_kafka(infra):
    topic = Topic(f"test.roundtrip.{uuid.uuid4().hex[:8]}", 3, 3_600_000, "round-trip test")
    await ensure_topics(infra.kafka, [topic])
    event = new_event(
        DossierRejected(unit_code="HACTHANH", reason="Thiếu giấy tờ"),
        subject="HACTHANH-260105-0001",
        source="/units/HACTHANH/test",
        seq=3,
    )
    received: asyncio.Queue[tuple[KafkaMessage, object]] = asyncio.Queue()

    consumer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())

    @consumer.subscriber(
        topic.name, group_id=f"roundtrip-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
        ack_policy=SUBSCRIBER_ACK_POLICY,
    )
    async def on_event(message: KafkaMessage) -> None:
        await received.put((message, parse_event(message.body)))

    producer = make_broker("test-producer", infra.kafka, registry=CollectorRegistry())
    async with consumer, producer:
        await consumer.start()
        await producer.start()
        aiokafka_producer = producer.config.producer._producer.producer
        await producer.publish(to_json(event), topic.name, key=event.subject.encode())
        message, decoded = await asyncio.wait_for(received.get(), timeout=60)

    assert decoded == event
    assert isinstance(decoded, DossierRejectedEvent)
    assert message.raw_message.key == b"HACTHANH-260105-0001"
    # The producer FastStream built really is idempotent with acks=all (-1).
    assert aiokafka_producer._txn_manager is not None  # aiokafka builds one only with enable_idempotence
    assert aiokafka_producer._sender._acks == -1


async def test_document_round_trips_through_real_store(infra):
    client = make_client(infra.mongo)
    try:
        collection = database(client, infra.mongo)["roundtrip"]
        await collection.create_index("code", unique=True)
        doc = {"_id": "HACTHANH-260105-0002", "code": "HACTHANH-260105-0002", "due": date(2026, 1, 9).isoformat()}
        await collection.insert_one(doc)
        assert await collection.find_one({"code": "HACTHANH-260105-0002"}) == doc
    finally:
        await client.close()


def test_real_servers_are_running(infra):
    """While the suite runs, real server processes are up (not an in-memory fake)."""
    if infra.provider != "deploy/local":
        pytest.fail(f"this check is for the deploy/local provider; running against {infra.provider}")
    procs = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "kafka.Kafka" in procs
    assert "ferretdb" in procs
