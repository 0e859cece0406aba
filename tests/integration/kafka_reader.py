"""Read what services published, straight from the real broker (no consumer group, no commits)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from lienthong.settings import KafkaSettings
from lienthong.messaging import partitions_of


async def read_records(
    kafka: KafkaSettings,
    topic: str | list[str],
    match: Callable[[ConsumerRecord], bool],
    *,
    expected: int,
    timeout: float = 30.0,
    settle: float = 2.0,
) -> list[ConsumerRecord]:
    """Every matching record from the start of the topic (or topics); waits for `expected`, then `settle` more
    seconds so that an unexpected duplicate would be seen too."""
    consumer = AIOKafkaConsumer(
        *([topic] if isinstance(topic, str) else topic), **kafka.client_options(), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    settle_until: float | None = None
    try:
        while loop.time() < (settle_until or deadline):
            batches = await consumer.getmany(timeout_ms=200)
            found.extend(r for records in batches.values() for r in records if match(r))
            if settle_until is None and len(found) >= expected:
                settle_until = loop.time() + settle
    finally:
        await consumer.stop()
    return found


def body(record: ConsumerRecord) -> dict[str, Any]:
    return json.loads(record.value)


def headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def wait_committed(kafka: KafkaSettings, group: str, record: ConsumerRecord, timeout: float = 90.0) -> None:
    """Wait until `group` has committed past `record`: it has really consumed it, not just had the chance to."""
    probe = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await probe.start()
    tp = TopicPartition(record.topic, record.partition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while (await probe.committed(tp) or -1) <= record.offset:
            if loop.time() > deadline:
                raise AssertionError(f"group {group} did not consume {tp} offset {record.offset} in {timeout}s")
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()


async def wait_caught_up(kafka: KafkaSettings, group: str, topic: str, timeout: float = 180.0) -> None:
    """Wait until `group` has committed every partition of `topic` up to its current end."""
    probe = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        assert partitions, f"topic {topic} has no partitions"
        ends = await probe.end_offsets(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for tp in partitions:
            while (await probe.committed(tp) or 0) < ends[tp]:
                if loop.time() > deadline:
                    raise AssertionError(f"group {group} did not catch up with {tp} in {timeout}s")
                await asyncio.sleep(0.5)
    finally:
        await probe.stop()


async def start_group_at_end(kafka: KafkaSettings, group: str, topic: str) -> None:
    """Commit a new group's offsets at the topic's current end, so that it reads only what comes next (what other
    tests of the session left on the shared topic would otherwise count in its figures)."""
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()
