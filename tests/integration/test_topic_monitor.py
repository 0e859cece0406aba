"""The dashboard's topic monitor against the real broker: rates, lag per consumer group, DLQ sizes and the
newest DLQ reasons (from headers only)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from lienthong.messaging import consumer_lag
from lienthong.topics import OUTCOMES_DLQ, outcomes_topic
from stats.dashboard.topics import TopicMonitor

pytestmark = pytest.mark.integration

POLICE = outcomes_topic("police")  # any agency's outcomes topic: one of routing's inputs


async def test_monitor_reports_rates_lag_and_dead_letters(infra):
    monitor = TopicMonitor(infra.kafka)
    await monitor.sample()
    group = f"monitor-test-{uuid.uuid4().hex[:6]}"
    reason = f"outcome_invalid: data.step: missing ({uuid.uuid4().hex[:6]})"
    producer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())
    async with producer:
        await producer.start()
        for _ in range(5):
            await producer.publish(b'{"not": "an event"}', POLICE.name, key=b"MONITOR-261124-0001")
        for i in range(3):
            await producer.publish(b"{}", OUTCOMES_DLQ, key=b"MONITOR-261124-0001",
                                   headers={"dlq-reason": reason, "dlq-service": "routing",
                                            "dlq-time": f"2999-01-01T00:00:0{i}+00:00"})
    # A consumer group that has read nothing of unit.outcomes yet: everything there is its lag.
    consumer = AIOKafkaConsumer(**infra.kafka.client_options(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(POLICE.name, p) for p in range(POLICE.partitions)]
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()

    await monitor.sample()
    row = next(r for r in monitor.table() if r["topic"] == POLICE.name)
    assert row["partitions"] == POLICE.partitions
    assert row["lag"][group] == sum(ends.values())
    assert row["in_per_s"] is not None and row["in_per_s"] > 0  # five records since the first sample
    assert row["dlq"] == OUTCOMES_DLQ and row["dlq_size"] >= 3 and row["dlq_growing"]
    assert [r["reason"] for r in row["dlq_reasons"]] == [reason] * 3  # the newest first, header text only
    assert all(r["service"] == "routing" for r in row["dlq_reasons"])
    assert group in monitor.lag_history()


async def test_consumer_lag_can_be_asked_again_and_again(infra):
    """Periodic jobs (notify's retry backlog) ask for lag every few seconds; a short-lived offsets consumer used to
    raise CancelledError from its stop() (aiokafka 0.14), which ended the job for good."""
    for _ in range(5):
        lag = await consumer_lag(infra.kafka, f"lag-{uuid.uuid4().hex[:4]}", [POLICE.name])
        assert set(lag) == {POLICE.name} and lag[POLICE.name] >= 0
