"""Several fetches projected as one batch (the stats edge's write-behind window).

A burst arrives over a few fetches; projected fetch by fetch, a dossier whose events straddle two fetches is written
twice, the second time as a guarded replace, which FerretDB does ~10x slower than an insert. So the window decides
by the rate events arrive at:
- a window whose events come slower than `bulk_events` per `fresh_s` (the steady stream of a working day, up to
  thousands of events a second) is projected once it is `fresh_s` old, so figures are fresh within a fraction of a
  second. Its age counts from when the consumer began accruing its events: a fetch that waited on a projection
  brings what came meanwhile, and at 200 dossiers/s that used to look like a burst (measured: windows of ~6,600
  events held 3 s each);
- a window of `bulk_events` or more that came faster is a burst (a backlog re-sent, a campaign): it is projected
  once the stream pauses
  (no fetch brought anything for `settle_s` and the broker's partitions end where the window does, asked then;
  or, when the broker cannot say, no fetch for `idle_s`, the consumer has polled again since it took the last one
  in, and the broker had nothing more when last asked) or once it is
  `max_wait_s` old, so the burst is written once;
- and always once it holds `max_events`, or before its partitions are given up in a rebalance.
A burst's window is folded fetch by fetch as it grows (`Projector.stage`), so once the stream pauses only its
writes remain.
Offsets are committed explicitly, and only for what a projection stored: a crash loses nothing but the window,
which comes again from the committed offsets. A fetch handed over before a rebalance but taken in after it is
dropped too (the consumer reads it again from there), so a window never continues past a gap.

A steady stream's dossier documents are written behind (`dossiers_s`): a window's rows, which give the figures, are
written at once, its events retained; once it has waited `dossiers_s`, the documents its events changed are written
(as they are by then: changes of later windows ride along) and its offsets committed, a window at a time, so the
writes are spread out rather than one long pause; everything before a burst's window or a rebalance. At a steady
200 dossiers/s a dossier's events span several windows, and FerretDB's guarded replaces were stats' largest cost
(measured). So the figures are fresh while the committed offsets trail them by up to `dossiers_s`: `visible` (and
the `lienthong_stats_visible_offset` gauge) says how far the figures go. A failed write of any kind projects the
retained windows again with the current one, from what the store holds.

A projection that fails (the store away) keeps the window and is tried again, holding the consumer meanwhile (its
fetches wait on the window's lock): nothing is dropped, and nothing past the window is taken in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import Gauge

from lienthong.messaging import stop_consumer
from lienthong.settings import KafkaSettings
from stats.projector import Poison, Positioned, Projector

log = structlog.get_logger("stats.window")
RETRY_S = 1.0
VISIBLE_OFFSET = Gauge("lienthong_stats_visible_offset", "Per partition of the lifecycle topic, the next offset "
                       "whose event is not yet in the figures (the rows written; committed offsets may trail it)",
                       ["partition"])


EndOffsets = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


@dataclass
class Retained:
    """A window whose rows are written and dossier documents pending: its offsets are committed once they are
    stored."""

    items: list[Positioned]
    records: dict[tuple[int, int], ConsumerRecord]
    ends: dict[TopicPartition, int]
    at: float


class OffsetProbe:
    """Partitions' end offsets, asked on a connection of its own: on the consumer's, the request would queue behind
    its fetch long-poll (a broker answers one connection's requests in order), up to `fetch_max_wait_ms`."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._starting: asyncio.Task[None] | None = None

    def connect(self) -> None:
        """Connect in the background (asking never waits for a connection)."""
        if self._consumer is None and (self._starting is None or self._starting.done()):
            self._starting = asyncio.create_task(self._start())

    async def __call__(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self._consumer is None:
            self.connect()
            raise LookupError("offset probe not connected yet")
        return await self._consumer.end_offsets(partitions)

    async def _start(self) -> None:
        consumer = AIOKafkaConsumer(**self.kafka.client_options(), client_id="lienthong-stats-probe",
                                    enable_auto_commit=False)
        try:
            await consumer.start()
        except Exception as exc:  # noqa: BLE001 - asked again at the next burst; the window's other rule holds
            log.warning("offset_probe_unavailable", error=type(exc).__name__)
            await stop_consumer(consumer)
            return
        self._consumer = consumer

    async def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None


class Window(ConsumerRebalanceListener):
    def __init__(self, projector: Projector, park: Callable[[ConsumerRecord, str], Awaitable[None]], *,
                 max_events: int, fresh_s: float, bulk_events: int, idle_s: float, max_wait_s: float,
                 poll_s: float, settle_s: float, end_offsets: EndOffsets | None = None,
                 dossiers_s: float = 0.0) -> None:
        self.projector, self.park, self.end_offsets = projector, park, end_offsets
        self.max_events, self.fresh_s, self.bulk_events = max_events, fresh_s, bulk_events
        self.idle_s, self.max_wait_s, self.poll_s, self.settle_s = idle_s, max_wait_s, poll_s, settle_s
        self.dossiers_s = dossiers_s
        self.items: list[Positioned] = []
        self.records: dict[tuple[int, int], ConsumerRecord] = {}
        self.ends: dict[TopicPartition, int] = {}  # the next offset to commit per partition once stored
        self.retained: list[Retained] = []  # oldest first
        self.parked: set[tuple[int, int]] = set()  # retained events already parked as poison
        self.visible: dict[TopicPartition, int] = {}
        self.opened_at: float | None = None
        self.burst = False
        # when the last fetch was handed over (it may then wait on the lock), arrived, and had been taken in (staged)
        self.fetched_at = self.added_at = self.taken_at = 0.0
        self.consumer: Any = None
        self.lock = asyncio.Lock()

    async def add(self, items: list[Positioned], records: list[ConsumerRecord], consumer: Any) -> None:
        """Take a fetch's events in; project the window if it is full."""
        fetched, previous = time.monotonic(), self.fetched_at
        # A consumer that came straight back from the last fetch (it may have waited on a projection meanwhile)
        # has been accruing this fetch's events since it took that one: the window's age counts from then, so a
        # steady stream held back by a projection is not taken for a burst.
        accruing_since = previous if fetched - self.taken_at < self.poll_s else fetched
        self.fetched_at = fetched
        async with self.lock:
            self.consumer = consumer
            items, records = await self._fetched_since_assignment(items, records)
            for item, record in zip(items, records, strict=True):
                self.items.append(item)
                self.records[(record.partition, record.offset)] = record
            for record in records:
                self.ends[TopicPartition(record.topic, record.partition)] = record.offset + 1
            self.added_at = time.monotonic()
            log.debug("window_added", events=len(items), window=len(self.items))
            if self.opened_at is None and records:
                self.opened_at = accruing_since
            # a burst: bulk_events or more, arriving faster than bulk_events per fresh_s (once one, always one)
            self.burst = self.burst or (len(self.items) >= self.bulk_events and len(self.items) * self.fresh_s
                                        >= self.bulk_events * (self.added_at - (self.opened_at or self.added_at)))
            if len(self.items) >= self.max_events:
                await self._flush_until_stored()
            elif self.burst:  # it waits for a pause, its fold need not
                await self.projector.stage(self.items[self.projector.staged_events:])
            self.taken_at = time.monotonic()

    async def _fetched_since_assignment(self, items: list[Positioned], records: list[ConsumerRecord]
                                        ) -> tuple[list[Positioned], list[ConsumerRecord]]:
        """The fetch, but the partitions it had from before a rebalance. Such records were handed over, then waited
        for the window's lock while the partitions were revoked; if the window was dropped then (the store away),
        taken in they would follow a gap, and a partition's rows moved past a gap never count what it skipped. The
        consumer has since been moved back to the committed offsets (a fresh assignment), or lost the partition:
        it reads them again, or their next owner does. Normally a partition's position is past its last record
        fetched, and asking costs nothing; a position being reset answers late, and is a reset."""
        stale = set()
        position_of = getattr(self.consumer, "position", None)  # FastStream's in-memory test consumer has none
        for partition, first in {r.partition: r.offset for r in reversed(records)}.items() if position_of else ():
            try:
                position = await asyncio.wait_for(position_of(TopicPartition(records[0].topic, partition)),
                                                  timeout=self.poll_s)
            except (IllegalStateError, TimeoutError):  # no longer ours, or being reset
                position = None
            if position is None or position <= first:
                stale.add(partition)
        if not stale:
            return items, records
        log.warning("fetch_from_before_rebalance_dropped", partitions=sorted(stale))
        kept = [(item, record) for item, record in zip(items, records, strict=True) if record.partition not in stale]
        return [item for item, _ in kept], [record for _, record in kept]

    async def flush_if_due(self) -> None:
        """Called periodically (every `fresh_s / 4`): projects the window once it is due, and stores the retained
        windows' dossier documents once the oldest has waited `dossiers_s` (see the module)."""
        now = time.monotonic()
        if self.opened_at is not None and (self.due(now) or self._idle_burst(now)):
            async with self.lock:  # no fetch is taken in while it is held: what is checked here stays true
                now = time.monotonic()
                if self.opened_at is not None and (self.due(now) or await self._caught_up(now)):
                    await self._flush_until_stored()
        if self.retained and now - self.retained[0].at >= self.dossiers_s:
            async with self.lock:
                await self._store_retained(time.monotonic() - self.dossiers_s)

    def due(self, now: float) -> bool:
        age = now - self.opened_at if self.opened_at is not None else 0.0
        if not self.burst:
            return age >= self.fresh_s
        # The pause counts from the last fetch's arrival, so it overlaps that fetch's staging; but it is only taken
        # once the consumer has asked for more since (a whole poll after the staging ended): a long staging is not
        # the stream pausing, and the records that came meanwhile are next in line.
        return age >= self.max_wait_s or (now - self.added_at >= self.idle_s and now - self.taken_at >= self.poll_s
                                          and not self._more_at_broker())

    def _idle_burst(self, now: float) -> bool:
        return self.burst and now - self.added_at >= self.settle_s

    async def _caught_up(self, now: float) -> bool:
        """A burst that no fetch has added to for `settle_s` and whose partitions end, at the broker now, where the
        window ends: the stream has paused, known without waiting `idle_s` and the consumer's next poll. One
        ListOffsets request; unknown counts as no, and the rule of `due` still applies."""
        if self.end_offsets is None or not self._idle_burst(now):
            return False
        try:
            latest = await asyncio.wait_for(self.end_offsets(list(self.ends)), timeout=self.poll_s)
        except Exception:  # noqa: BLE001 - the broker slow or away: the other rule holds
            return False
        return all(latest.get(tp, end + 1) <= end for tp, end in self.ends.items())

    def _more_at_broker(self) -> bool:
        """Whether the last fetch responses saw records past the window (the stream has not paused: we were busy
        staging). Unknown counts as no."""
        try:
            return any((self.consumer.highwater(tp) or 0) > end for tp, end in self.ends.items())
        except Exception:  # noqa: BLE001 - a partition being revoked, a consumer without the call
            return False

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Store the window and the retained ones before giving partitions up, so their next owner never writes
        beside us; if the store is away, drop them instead (nothing of them was committed: the next owner reads
        them again)."""
        async with self.lock:
            try:
                await self._flush(everything=True)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the next owner starts from the committed offsets
                log.warning("window_dropped_at_rebalance", error=type(exc).__name__,
                            events=len(self.items) + self.retained_events)
                self._clear()
                self._release()
            for tp in revoked:
                if self.visible.pop(tp, None) is not None:
                    VISIBLE_OFFSET.remove(str(tp.partition))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None

    async def _flush_until_stored(self, everything: bool = False) -> None:
        while True:
            try:
                await self._flush(everything)
                return
            except Exception as exc:  # noqa: BLE001 - the window stays; the consumer waits on the lock meanwhile
                log.warning("window_projection_failed", error=type(exc).__name__,
                            events=len(self.items) + self.retained_events)
                self._replay_retained()
                await asyncio.sleep(RETRY_S)

    async def _flush(self, everything: bool = False) -> None:
        """Project the window; with `everything`, or for a large window, store every pending dossier document
        too and commit all it covers; else keep the window's documents pending and the window retained."""
        defer = (not everything and self.dossiers_s > 0 and not self.burst
                 and self.retained_events + len(self.items) < self.max_events)
        if self.items:
            log.debug("window_projecting", events=len(self.items), staged=self.projector.staged_events,
                      retained=self.retained_events, defer=defer,
                      age_s=round(time.monotonic() - (self.opened_at or time.monotonic()), 3),
                      idle_s=round(time.monotonic() - self.added_at, 3))
        poison: list[Poison] = await self.projector.project(self.items, defer_dossiers=defer)
        for item in poison:  # validated, but cannot be folded: parked rather than stalling the partition
            position = (item.item.partition, item.item.offset)
            if position not in self.parked:
                await self.park(self.records[position], item.reason)
                self.parked.add(position)
        for tp, end in self.ends.items():
            self.visible[tp] = end
            VISIBLE_OFFSET.labels(str(tp.partition)).set(end)
        if defer:
            if self.items:
                self.retained.append(Retained(self.items, self.records, self.ends, time.monotonic()))
            self._clear()
            return
        ends = _ends_of(self.retained) | self.ends
        self._clear()
        self._release()
        await self._commit(ends)

    @property
    def retained_events(self) -> int:
        return sum(len(window.items) for window in self.retained)

    async def _commit(self, ends: dict[TopicPartition, int]) -> None:
        if not ends:
            return
        try:
            await self.consumer.commit(ends)
        except Exception as exc:  # noqa: BLE001 - stored but not committed: the events come again and change nothing
            log.warning("commit_failed", error=type(exc).__name__)

    async def _store_retained(self, until: float) -> None:
        """Store the dossier documents of the retained windows kept since before `until` and commit their offsets,
        leaving the rest as it is (a burst may be gathering); on failure project them all again with the window."""
        due = [window for window in self.retained if window.at <= until]
        if not due:
            return
        try:
            await self.projector.store_dossiers({item.event.subject for window in due for item in window.items})
        except Exception as exc:  # noqa: BLE001 - the projector kept nothing pending: fold them again
            log.warning("dossier_write_failed", error=type(exc).__name__, events=self.retained_events)
            self._replay_retained()
            await self._flush_until_stored(everything=True)
            return
        del self.retained[:len(due)]
        if not self.retained:
            self.parked.clear()
        await self._commit(_ends_of(due))

    def _replay_retained(self) -> None:
        """After a failed write the projector keeps nothing pending: the retained windows are projected again,
        with the window, from what the store holds."""
        if not self.retained:
            return
        self.items = [item for window in self.retained for item in window.items] + self.items
        self.records = {k: v for window in self.retained for k, v in window.records.items()} | self.records
        self.ends = _ends_of(self.retained) | self.ends
        self.opened_at = self.opened_at or self.retained[0].at
        self.retained = []

    def _clear(self) -> None:
        self.items, self.records, self.ends, self.opened_at, self.burst = [], {}, {}, None, False
        self.projector.discard_staged()

    def _release(self) -> None:
        """The retained windows stored (or handed back)."""
        self.retained = []
        self.parked.clear()


def _ends_of(windows: list[Retained]) -> dict[TopicPartition, int]:
    """The offsets to commit for these windows (oldest first: a later window's end wins)."""
    return {tp: end for window in windows for tp, end in window.ends.items()}
