"""The shared poison policy on the real broker: a record whose handler keeps failing is parked on its topic's DLQ
after MAX_ATTEMPTS with a value-free reason, and the records behind it on the same partition are handled; an
infrastructure error is waited out, never counted against the record."""

from __future__ import annotations

import asyncio
import uuid

from pymongo.errors import AutoReconnect

from lienthong.messaging import MAX_ATTEMPTS, SUBSCRIBER_ACK_POLICY, make_broker
from lienthong.topics import OUTCOMES_DLQ, outcomes_topic
from prometheus_client import CollectorRegistry
from tests.integration.kafka_reader import headers, read_records

POLICE = outcomes_topic("police")  # any agency's outcomes topic: one of routing's inputs


async def test_a_poison_record_is_parked_after_bounded_attempts_and_its_partition_moves_on(infra):
    key = f"POISON{uuid.uuid4().hex[:6].upper()}-251201-0001"
    broker = make_broker("poison-test", infra.kafka, registry=CollectorRegistry())
    calls: dict[bytes, int] = {}
    handled: list[bytes] = []
    done = asyncio.Event()

    @broker.subscriber(POLICE.name, group_id=f"poison-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                       ack_policy=SUBSCRIBER_ACK_POLICY)
    async def handle(body: bytes) -> None:
        if not body.startswith(key.encode()):
            return  # other tests' outcomes
        calls[body] = calls.get(body, 0) + 1
        if body.endswith(b"bad"):
            raise ValueError("citizen 038099001122 phone 0912345678")  # personal data must not reach the DLQ
        if body.endswith(b"store-away") and calls[body] <= MAX_ATTEMPTS + 2:
            raise AutoReconnect("store unreachable")
        handled.append(body)
        if len(handled) == 2:
            done.set()

    async with broker:
        await broker.start()
        for suffix in (b"bad", b"good", b"store-away"):  # one key: one partition, in this order
            await broker.publish(key.encode() + b" " + suffix, POLICE.name, key=key.encode())
        await asyncio.wait_for(done.wait(), 60)

    assert handled == [key.encode() + b" good", key.encode() + b" store-away"]
    assert calls[key.encode() + b" bad"] == MAX_ATTEMPTS
    assert calls[key.encode() + b" store-away"] == MAX_ATTEMPTS + 3  # waited out, not parked
    parked = await read_records(infra.kafka, OUTCOMES_DLQ, lambda r: r.key == key.encode(),
                                expected=1)
    assert [r.value for r in parked] == [key.encode() + b" bad"]  # byte for byte, once
    reason = headers(parked[0])["dlq-reason"]
    assert reason == f"handler failed {MAX_ATTEMPTS} times: ValueError"
    assert "038099001122" not in str(headers(parked[0])) and "0912345678" not in str(headers(parked[0]))
