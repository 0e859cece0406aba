"""Stats' window against a rebalance on the real broker: a fetch handed over before a rebalance and reaching the window
after it is not taken in. The window relies on what aiokafka does to the consumer then (the partition taken away,
or its position moved back to the committed offset); this checks it does, where the unit test can only pretend."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord

from lienthong.contracts import parse_event
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.memory import MemoryStore
from stats.projector import Positioned, Projector
from stats.window import Window
from tests.integration.test_stats import generate, publish_all

pytestmark = pytest.mark.integration

# Other tests' stats consumers read the topic from its start: only closed dossiers are published, and long before
# their periods, so that these count in none of their figures (an open one would count as in progress in every later
# period).
PERIOD = (date(2019, 6, 3), date(2019, 6, 14))


class Reassigned(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.revoked = asyncio.Event()
        self.assigned_after_revoke = asyncio.Event()

    async def on_partitions_revoked(self, revoked) -> None:  # noqa: ANN001
        if revoked:
            self.revoked.set()

    async def on_partitions_assigned(self, assigned) -> None:  # noqa: ANN001
        if self.revoked.is_set():
            self.assigned_after_revoke.set()


def positioned(records: list[ConsumerRecord]) -> tuple[list[Positioned], list[ConsumerRecord]]:
    """What the handler hands the window: the valid events, with their records."""
    items, kept = [], []
    for record in records:
        try:
            items.append(Positioned(parse_event(record.value or b""), record.partition, record.offset))
        except ValueError:  # another test's poison record on the topic
            continue
        kept.append(record)
    return items, kept


async def fetch(consumer: AIOKafkaConsumer, at_least: int) -> list[ConsumerRecord]:
    records: list[ConsumerRecord] = []
    for _ in range(50):
        batch = await consumer.getmany(timeout_ms=200, max_records=at_least)
        records += [r for rs in batch.values() for r in rs]
        if len(records) >= at_least:
            return records
    pytest.fail(f"fetched only {len(records)} records from {DOSSIER_LIFECYCLE.name}")


async def test_a_fetch_from_before_a_rebalance_is_not_taken_in(infra):
    truths, events = generate(40, seed=3, period=PERIOD)
    closed = {t.code for t in truths if t.closed is not None}
    await publish_all(infra, [e for e in events if e.subject in closed])
    group = f"stats-rebalance-{uuid.uuid4().hex[:6]}"
    options = {**infra.kafka.client_options(), "group_id": group, "auto_offset_reset": "earliest",
               "enable_auto_commit": False}
    first, second, listener = AIOKafkaConsumer(**options), AIOKafkaConsumer(**options), Reassigned()
    window = Window(Projector(MemoryStore()), lambda record, reason: asyncio.sleep(0), max_events=10**6,
                    fresh_s=3600, bulk_events=10**6, idle_s=3600, max_wait_s=3600, poll_s=1.0, settle_s=3600)
    joining: asyncio.Task | None = None
    await first.start()
    try:
        first.subscribe([DOSSIER_LIFECYCLE.name], listener=listener)
        taken = await fetch(first, 20)
        await window.add(*positioned(taken), first)
        assert len(window.items) == len(positioned(taken)[0]) > 0  # fetched in this assignment: taken in
        handed_over = await fetch(first, 20)  # ... and the next fetch waits (for the window, say) meanwhile:
        await second.start()
        second.subscribe([DOSSIER_LIFECYCLE.name])  # a second member joins: the first gives its partitions up
        joining = asyncio.create_task(second.getmany(timeout_ms=15_000))
        await asyncio.wait_for(listener.assigned_after_revoke.wait(), timeout=30)
        before = len(window.items)
        await window.add(*positioned(handed_over), first)
        assert positioned(handed_over)[0] and len(window.items) == before  # from before the rebalance: dropped
    finally:
        if joining is not None:
            joining.cancel()
        await second.stop()
        await first.stop()
