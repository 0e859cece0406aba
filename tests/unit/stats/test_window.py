"""The stats edge's window (service layer, in-memory store, a fake consumer): a steady stream is projected while
fresh, a burst once it pauses (or is old or full), everything before a rebalance; offsets are committed only for
what was stored; a failing store keeps the window (nothing dropped, nothing committed) until it answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError

from lienthong.topics import DOSSIER_LIFECYCLE
from stats.memory import MemoryStore
from stats.projector import Positioned, Projector
from stats.window import Window
from tests.unit.stats.test_projection import events

CODE = "HACTHANH-251201-0001"
TP = TopicPartition(DOSSIER_LIFECYCLE.name, 3)


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.moved_to: dict[TopicPartition, int] | None = None  # positions after a rebalance; else past every fetch

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def position(self, tp: TopicPartition) -> int:
        if self.moved_to is None:
            return 10**9
        if tp not in self.moved_to:
            raise IllegalStateError(f"{tp} is not assigned")
        return self.moved_to[tp]


class CountingStore(MemoryStore):
    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.dossier_writes, self.failures = 0, failures

    async def write_dossiers(self, writes):  # noqa: ANN001, ANN201
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store away")
        self.dossier_writes += len(writes)
        return await super().write_dossiers(writes)


def fetch(first: int, n: int) -> tuple[list[Positioned], list[ConsumerRecord]]:
    evs = events(CODE)[first:first + n]
    records = [ConsumerRecord(TP.topic, TP.partition, first + i, 0, 0, CODE.encode(), b"", None, 0, 0, [])
               for i in range(n)]
    return [Positioned(e, TP.partition, r.offset) for e, r in zip(evs, records)], records


def window(store: MemoryStore, **limits: Any) -> Window:
    options = {"max_events": 1000, "fresh_s": 10.0, "bulk_events": 2, "idle_s": 0.05, "max_wait_s": 10.0, "poll_s": 0.03,
               "settle_s": 0.02, **limits}
    return Window(Projector(store), lambda record, reason: asyncio.sleep(0), **options)


async def test_a_steady_stream_is_projected_while_fresh():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, fresh_s=0.02, bulk_events=100, idle_s=10.0)
    await w.add(*fetch(0, 1), consumer)
    await w.flush_if_due()
    assert consumer.commits == []  # not yet fresh_s old
    await asyncio.sleep(0.03)
    await w.add(*fetch(1, 1), consumer)  # the stream goes on: no pause, but the window is small
    await w.flush_if_due()
    assert consumer.commits == [{TP: 2}] and store.dossiers[CODE]["seq"] == 2


async def test_fetches_of_one_burst_are_written_once_when_the_stream_pauses():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store)  # two events make a burst here
    for first, n in ((0, 1), (1, 1), (2, 1)):  # a dossier's three events in three fetches
        await w.add(*fetch(first, n), consumer)
        await w.flush_if_due()
    assert store.dossier_writes == 0 and consumer.commits == []  # nothing stored, nothing committed yet
    assert w.projector.staged_events == 3  # but already folded: the pause leaves only the writes
    await asyncio.sleep(0.06)
    await w.flush_if_due()
    assert store.dossier_writes == 1 and store.dossiers[CODE]["seq"] == 3
    assert consumer.commits == [{TP: 3}]


async def test_a_full_or_old_window_is_projected_without_waiting_for_a_pause():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, max_events=2)
    await w.add(*fetch(0, 2), consumer)
    assert consumer.commits == [{TP: 2}]
    w = window(store, idle_s=10.0, max_wait_s=0.0, bulk_events=1)
    await w.add(*fetch(2, 1), consumer)
    await w.flush_if_due()
    assert consumer.commits[-1] == {TP: 3} and store.dossiers[CODE]["seq"] == 3


async def test_a_failing_store_keeps_the_window_until_it_answers(monkeypatch):
    monkeypatch.setattr("stats.window.RETRY_S", 0.01)
    store, consumer = CountingStore(failures=3), FakeConsumer()
    w = window(store, max_events=3)
    await w.add(*fetch(0, 3), consumer)  # returns once stored: the consumer waited meanwhile
    assert store.failures == 0 and store.dossiers[CODE]["seq"] == 3 and consumer.commits == [{TP: 3}]


async def test_a_rebalance_stores_the_window_first_or_drops_it_uncommitted():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, idle_s=10.0)
    await w.add(*fetch(0, 2), consumer)
    await w.on_partitions_revoked({TP})
    assert store.dossiers[CODE]["seq"] == 2 and consumer.commits == [{TP: 2}]
    failing = CountingStore(failures=1)
    w = window(failing, idle_s=10.0)
    await w.add(*fetch(0, 2), consumer)
    await w.on_partitions_revoked({TP})
    assert CODE not in failing.dossiers and consumer.commits == [{TP: 2}] and w.items == []


async def test_a_fetch_from_before_a_rebalance_is_not_taken_in_after_the_window_was_dropped():
    # the window dropped at the revocation (the store away), then the fetch handed over before it: taken in, the
    # partition's rows would move past the dropped events, which would never count
    store, consumer = CountingStore(failures=1), FakeConsumer()
    w = window(store, idle_s=10.0)
    await w.add(*fetch(0, 2), consumer)
    await w.on_partitions_revoked({TP})
    assert w.items == [] and consumer.commits == []
    consumer.moved_to = {TP: 0}  # assigned again, from the committed offset
    await w.add(*fetch(2, 1), consumer)
    assert w.items == []
    consumer.moved_to = {}  # or given to another member
    await w.add(*fetch(2, 1), consumer)
    assert w.items == []
    consumer.moved_to = None  # read again from the committed offset
    await w.add(*fetch(0, 3), consumer)
    await w.on_partitions_revoked({TP})
    assert store.dossiers[CODE]["seq"] == 3 and consumer.commits == [{TP: 3}]
    assert cells(store) == await projected_at_once(3)


async def test_a_pause_waits_for_a_poll_after_a_long_staging(monkeypatch):
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, idle_s=0.05, poll_s=0.05)
    stage = w.projector.stage

    async def slow_stage(items):  # noqa: ANN001, ANN202 - a large fetch takes longer to fold than idle_s
        await asyncio.sleep(0.08)
        await stage(items)

    monkeypatch.setattr(w.projector, "stage", slow_stage)
    await w.add(*fetch(0, 2), consumer)
    await w.flush_if_due()  # idle_s has passed since the fetch arrived, but the next one was not asked for yet
    assert consumer.commits == [] and store.dossier_writes == 0
    await asyncio.sleep(0.06)  # a poll's time and nothing came
    await w.flush_if_due()
    assert consumer.commits == [{TP: 2}]


async def test_a_burst_settled_and_caught_up_at_the_broker_is_projected_without_waiting_for_a_poll():
    for end, projected in ((2, True), (5, False)):  # the broker holds nothing past the window / three more records
        asked: list[list[TopicPartition]] = []

        async def end_offsets(partitions, end=end):  # noqa: ANN001, ANN202
            asked.append(partitions)
            return {tp: end for tp in partitions}

        store, consumer = CountingStore(), FakeConsumer()
        w = window(store, idle_s=10.0, poll_s=10.0, end_offsets=end_offsets)
        await w.add(*fetch(0, 2), consumer)
        await w.flush_if_due()
        assert consumer.commits == [] and asked == []  # not settled yet: the broker is not asked
        await asyncio.sleep(0.03)
        await w.flush_if_due()
        assert asked == [[TP]] and consumer.commits == ([{TP: 2}] if projected else [])


async def test_a_steady_streams_dossier_documents_are_written_behind_and_only_then_committed():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, fresh_s=0.02, bulk_events=100, idle_s=10.0, dossiers_s=0.15)
    for first in (0, 1):  # two windows, one event each
        await w.add(*fetch(first, 1), consumer)
        await asyncio.sleep(0.03)
        await w.flush_if_due()
        assert w.visible == {TP: first + 1}  # in the figures: the rows are written
    assert store.dossier_writes == 0 and consumer.commits == [] and CODE not in store.dossiers
    await asyncio.sleep(0.15)
    await w.flush_if_due()
    # one write for the two windows' changes, then their offsets committed
    assert store.dossier_writes == 1 and store.dossiers[CODE]["seq"] == 2 and consumer.commits == [{TP: 2}]
    assert cells(store) == await projected_at_once(2)


async def test_a_failed_write_behind_projects_the_retained_windows_again(monkeypatch):
    monkeypatch.setattr("stats.window.RETRY_S", 0.01)
    store, consumer = CountingStore(failures=2), FakeConsumer()
    w = window(store, fresh_s=0.02, bulk_events=100, idle_s=10.0, dossiers_s=0.05)
    for first in (0, 1, 2):
        await w.add(*fetch(first, 1), consumer)
        await asyncio.sleep(0.03)
        await w.flush_if_due()
    await asyncio.sleep(0.06)
    await w.flush_if_due()
    assert store.failures == 0 and store.dossiers[CODE]["seq"] == 3 and consumer.commits[-1] == {TP: 3}
    assert cells(store) == await projected_at_once(3)  # replayed from the store: nothing counted twice


async def test_a_rebalance_stores_the_retained_windows_too():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, fresh_s=0.02, bulk_events=100, idle_s=10.0, dossiers_s=60.0)
    await w.add(*fetch(0, 2), consumer)
    await asyncio.sleep(0.03)
    await w.flush_if_due()
    await w.add(*fetch(2, 1), consumer)
    assert consumer.commits == [] and CODE not in store.dossiers
    await w.on_partitions_revoked({TP})
    assert store.dossiers[CODE]["seq"] == 3 and consumer.commits == [{TP: 3}] and w.visible == {}


async def test_a_steady_stream_held_back_by_a_projection_is_not_taken_for_a_burst():
    store, consumer = CountingStore(), FakeConsumer()
    for came_straight_back, burst in ((True, False), (False, True)):
        w = window(store, fresh_s=0.5, bulk_events=2)
        now = time.monotonic()
        # the last fetch was taken a second ago; the consumer then waited on a projection until just now, or was idle
        w.fetched_at, w.taken_at = now - 1.0, now - (0.001 if came_straight_back else 0.9)
        await w.add(*fetch(0, 3), consumer)  # three events accrued over that second: 3/s, under 2 per 0.5 s
        assert w.burst is burst and w.due(time.monotonic()) is not burst


def cells(store: MemoryStore) -> dict:
    """The rows' counts (a row emptied again, such as an open dossier's once it closes, counts as absent)."""
    return {rid: row.cells for rid, row in store.rows.items() if row.cells}


async def projected_at_once(n: int) -> dict:
    """The rows' cells of the dossier's first n events projected in one batch."""
    clean = MemoryStore()
    await Projector(clean).project(fetch(0, n)[0])
    return cells(clean)


async def test_retained_windows_are_stored_and_committed_one_at_a_time_as_each_comes_due():
    store, consumer = CountingStore(), FakeConsumer()
    w = window(store, fresh_s=0.02, bulk_events=100, idle_s=10.0, dossiers_s=0.12)
    for first in (0, 1):  # two windows ~0.06 s apart
        await w.add(*fetch(first, 1), consumer)
        await asyncio.sleep(0.03)
        await w.flush_if_due()
        await asyncio.sleep(0.03)
    await asyncio.sleep(0.03)  # the first window is due, the second not yet
    await w.flush_if_due()
    # the dossier's document as it is by now (both events) written; the first window's offsets committed
    assert store.dossier_writes == 1 and store.dossiers[CODE]["seq"] == 2 and consumer.commits == [{TP: 1}]
    await asyncio.sleep(0.07)
    await w.flush_if_due()
    assert store.dossier_writes == 1 and consumer.commits == [{TP: 1}, {TP: 2}]  # nothing left to write
