"""The projector's service layer against the in-memory store, no servers: whatever Kafka redelivers, wherever a
write fails (or a process dies and a fresh one takes over), and however records are batched, the rows give the
figures counted dossier by dossier (`summarize`, the definition)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lienthong.contracts.dossier import DeadlineExtended, DossierResumed
from lienthong.contracts.envelope import new_event
from stats import rollups
from stats.memory import MemoryStore
from stats.projection import summarize
from stats.projector import Positioned, ProjectionConflict, Projector
from tests.unit.stats.test_rollups import START, UNITS, at, dossier_events

PARTITIONS = 3


def log_of(seed: int, dossiers: int) -> list[Positioned]:
    """A partitioned log: each dossier's events on one partition, in order; dossiers interleaved in time."""
    rng = random.Random(seed)
    per_partition: dict[int, list] = defaultdict(list)
    for n in range(dossiers):
        per_partition[n % PARTITIONS].append(list(dossier_events(rng, n)))
    log = []
    for partition, stories in per_partition.items():
        merged, offset = [], 0
        while any(stories):
            story = rng.choice([s for s in stories if s])
            merged.append(Positioned(story.pop(0), partition, offset))
            offset += 1
        log += merged
    return log


class FlakyStore(MemoryStore):
    """Fails the n-th write of any kind after part of it is stored: a crash mid-flush, a lost reply."""

    def __init__(self, rng: random.Random, failure_rate: float) -> None:
        super().__init__()
        self.rng, self.failure_rate = rng, failure_rate

    async def _maybe_fail(self, kind: str, items: list, write) -> None:  # noqa: ANN001
        if items and self.rng.random() < self.failure_rate:
            await write(items[: self.rng.randrange(len(items) + 1)])  # part of it lands, then the "crash"
            raise ProjectionConflict(f"injected failure in {kind}")
        await write(items)

    async def write_rows(self, rows):  # noqa: ANN001, ANN201
        await self._maybe_fail("rows", rows, super().write_rows)

    async def write_dossiers(self, writes):  # noqa: ANN001, ANN201
        await self._maybe_fail("dossiers", writes, super().write_dossiers)


def consume(log: list[Positioned], store: MemoryStore, rng: random.Random, *, restart_rate: float) -> int:
    """Kafka as the projector sees it: batches of any size across partitions; some with their dossier documents
    written behind (committed once the documents they changed are stored, oldest first, or a later batch stores
    everything); a failed batch or write is redelivered from the last committed offset, sometimes to a fresh
    process (empty cache); sometimes the process dies with documents pending. Returns the failures survived."""
    by_partition = defaultdict(list)
    for item in log:
        by_partition[item.partition].append(item)
    committed = dict.fromkeys(by_partition, 0)
    position = dict(committed)  # where the consumer reads next: past what is pending
    deferred: list[tuple[dict[int, int], set[str]]] = []  # batches projected, documents pending: (taken, codes)
    projector = Projector(store, cached_rows_per_partition=rng.choice([0, 5, 10_000]),
                          cached_dossiers_per_partition=rng.choice([0, 3, 10_000]))
    failures = 0
    while any(committed[p] < len(items) for p, items in by_partition.items()):
        if rng.random() < 0.05:  # killed with documents pending: a fresh process from the committed offsets
            projector, position, deferred = Projector(store), dict(committed), []
        if deferred and rng.random() < 0.3:  # the oldest deferred batch's documents written, its offsets committed
            taken, codes = deferred[0]
            try:
                asyncio.run(projector.store_dossiers(codes))
            except ProjectionConflict:
                failures += 1
                position, deferred = dict(committed), []
                continue
            committed.update(taken)
            del deferred[0]
            continue
        batch, taken = [], {}
        for p, items in by_partition.items():
            # At-least-once: sometimes records already committed come again (a rebalance before the commit).
            start = position[p] - rng.choice([0, 0, 0, 3]) if position[p] == committed[p] else position[p]
            end = min(len(items), max(0, start) + rng.randrange(1, 40))
            batch += items[max(0, start):end]
            taken[p] = end
        defer = bool(batch) and rng.random() < 0.5
        try:
            asyncio.run(stage_then_project(projector, batch, rng, defer))
        except ProjectionConflict:
            failures += 1
            if rng.random() < restart_rate:
                projector = Projector(store)
            position, deferred = dict(committed), []
            continue
        position.update(taken)
        if defer:
            deferred.append((taken, {item.event.subject for item in batch}))
        else:
            committed, deferred = dict(position), []
    return failures


async def stage_then_project(projector: Projector, batch: list[Positioned], rng: random.Random,
                             defer: bool = False) -> None:
    """As the window does with a burst, sometimes: the batch folded ahead in parts (sometimes not all of them, and
    then the projection must fold it from the store instead)."""
    if rng.random() < 0.5:
        cuts = sorted(rng.choices(range(len(batch) + 1), k=2))
        parts = [batch[:cuts[0]], batch[cuts[0]:cuts[1]], batch[cuts[1]:]]
        for part in parts[:rng.choice([2, 3, 3])]:
            await projector.stage(part)
    await projector.project(batch, defer_dossiers=defer)


def figures_from(store: MemoryStore, slot: str, basis: str, start: date, end: date, today: date | None) -> dict:
    rows = [r for row in store.rows.values() for r in day_rows(row, slot)]
    return rollups.figures(rows, basis, start, end, today).as_dict()


def day_rows(row, slot: str) -> list[dict]:  # noqa: ANN001
    days: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    for path, n in row.cells.get(slot, {}).items():
        day, basis, counter = path.split(".")
        days[day][basis][counter] = n
    return [{"day": f"{row.month}-{d[1:]}", "unit": slot, **bases} for d, bases in days.items()]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), failure_rate=st.sampled_from([0.0, 0.1, 0.3]),
       lo=st.integers(0, 40), length=st.integers(0, 60), today_after=st.integers(-20, 80))
def test_any_redelivery_failure_or_restart_gives_the_oracles_figures(seed, failure_rate, lo, length, today_after):
    rng = random.Random(seed)
    log = log_of(seed, 45)
    store = FlakyStore(rng, failure_rate)
    consume(log, store, rng, restart_rate=0.5)
    store.failure_rate = 0
    docs = list(store.dossiers.values())
    assert len(docs) == 45
    start, today = START + timedelta(days=lo), START + timedelta(days=today_after)
    end = start + timedelta(days=length)
    for basis in rollups.TOTAL_BASES:
        items = [i for d in docs for _, i in rollups.work_items(d, basis)]
        assert figures_from(store, rollups.PROVINCE, basis, start, end, today) == \
            summarize(items, start, end, today).as_dict(), basis
    for unit in UNITS:
        items = [i for d in docs for u, i in rollups.work_items(d, "step") if u == unit]
        assert figures_from(store, unit, "step", start, end, today) == summarize(items, start, end, today).as_dict()


def test_the_projection_equals_a_single_clean_pass():
    """Dossier documents and every row cell are the same after a run full of failures as after a clean one."""
    log = log_of(11, 60)
    clean, flaky = MemoryStore(), FlakyStore(random.Random(3), 0.3)
    consume(log, clean, random.Random(1), restart_rate=0)
    failures = consume(log, flaky, random.Random(2), restart_rate=0.5)
    assert failures >= 3
    assert flaky.dossiers == clean.dossiers
    # A row whose cells all came back to zero (its open dossiers since closed, a rating since changed) holds nothing;
    # it exists only where an earlier batch had stored it non-empty.
    assert {i: r.cells for i, r in flaky.rows.items() if r.cells} == {i: r.cells for i, r in clean.rows.items()
                                                                       if r.cells}


def test_an_event_that_cannot_be_folded_is_returned_and_the_rest_are_projected():
    log = log_of(5, 6)
    # a dossier no later event moves the due date of (a later one would supersede the bad date in the batch's net
    # change, which then folds without error)
    first = next(item.event.subject for item in log if not any(
        isinstance(other.event.data, (DossierResumed, DeadlineExtended)) for other in log
        if other.event.subject == item.event.subject and other.event.dossierseq > 2))
    second = next(i for i, item in enumerate(log) if item.event.subject == first and item.event.dossierseq == 2)
    # Written under an older contract without date bounds: validates no more, but is in the log. Its date overflows
    # the fold (the day after 9999-12-31).
    data = DossierResumed.model_construct(unit_code=UNITS[0], paused_working_days=0, new_due_date=date(9999, 12, 31))
    bad = new_event(data, subject=first, source="/t", seq=2, time=at(START, 9))
    log[second] = Positioned(bad, log[second].partition, log[second].offset)
    store = MemoryStore()
    poisoned = asyncio.run(Projector(store).project(log))
    assert [(p.item.offset, p.reason) for p in poisoned] == [(log[second].offset, "fold failed: OverflowError")]
    assert len(store.dossiers) == 6 and store.dossiers[first]["seq"] == 1  # its later events wait behind it
    assert all(d["seq"] > 1 for code, d in store.dossiers.items() if code != first)


class CountingLoads(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads, self.codes_read = 0, []

    async def load_dossiers(self, codes):  # noqa: ANN001, ANN201
        self.loads += 1
        self.codes_read += codes
        return await super().load_dossiers(codes)


def test_a_staged_batch_is_projected_without_reading_or_folding_it_again():
    log = log_of(7, 30)
    half = len(log) // 2
    staged, direct = CountingLoads(), MemoryStore()
    projector = Projector(staged)

    async def run() -> None:
        await projector.stage(log[:half])
        await projector.stage(log[half:])
        assert projector.staged_events == len(log)
        loads = staged.loads
        await projector.project(log)
        assert staged.loads == loads  # the projection only wrote
        await Projector(direct).project(log)

    asyncio.run(run())
    assert staged.dossiers == direct.dossiers
    assert {i: r.cells for i, r in staged.rows.items()} == {i: r.cells for i, r in direct.rows.items()}


def test_a_staging_that_does_not_cover_the_batch_is_not_used():
    log = log_of(8, 20)
    store = MemoryStore()
    projector = Projector(store)

    async def run() -> None:
        await projector.stage(log[:5])  # a window that was then cleared and refilled differently
        await projector.project(log)

    asyncio.run(run())
    clean = MemoryStore()
    asyncio.run(Projector(clean).project(log))
    assert store.dossiers == clean.dossiers
    assert {i: r.cells for i, r in store.rows.items()} == {i: r.cells for i, r in clean.rows.items()}


async def test_the_event_loop_keeps_running_while_a_window_is_folded(monkeypatch):
    """A large window folds for seconds; meanwhile the consumer's heartbeats and the health endpoints run on the
    same loop, so the fold must not hold it."""
    import time

    from stats import projector as module

    fold = module._fold

    def slow_fold(*args):  # noqa: ANN002, ANN202 - the CPU a window of 100,000 events takes, without yielding
        time.sleep(0.3)
        return fold(*args)

    monkeypatch.setattr(module, "_fold", slow_fold)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    store = MemoryStore()
    await Projector(store).project(log_of(seed=1, dossiers=5))
    beating.cancel()
    assert ticks >= 10 and store.dossiers  # the loop ran throughout, and the window was stored


def test_a_partition_read_in_order_reads_its_dossiers_once_and_a_dossier_moved_on_elsewhere_is_caught():
    log = log_of(9, 12)
    first, second, third = ([i for i in log if lo <= i.offset < hi] for lo, hi in ((0, 10), (10, 14), (14, 99)))
    store, clean = CountingLoads(), MemoryStore()
    projector = Projector(store)

    def subjects(items: list[Positioned]) -> set[str]:
        return {i.event.subject for i in items}

    async def run() -> None:
        await projector.project(first)
        store.codes_read = []
        await projector.project(second)
        assert set(store.codes_read) == subjects(second) - subjects(first)  # the others come from memory
        # Another writer (the partitions' next owner after a rebalance) moves the dossiers on: this projector's
        # memory is stale, its guarded write fails, and the batch folded again from the store is exact.
        await Projector(store).project(third)
        with pytest.raises(ProjectionConflict):
            await projector.project(third)
        await projector.project(third)
        await Projector(clean).project(log)

    asyncio.run(run())
    assert store.dossiers == clean.dossiers
    assert {i: r.cells for i, r in store.rows.items()} == {i: r.cells for i, r in clean.rows.items()}


async def test_documents_pending_when_a_rebuild_switches_collections_are_not_written_to_the_new_ones():
    """Their events were logged before the switch, so the rebuild's top-up brings them to the new collections; the
    pending documents belong to the old ones (their guards name the old documents)."""

    class Switching(MemoryStore):
        collection = "old"

        async def prepare(self) -> str:
            return self.collection

    store = Switching()
    projector = Projector(store)
    log = log_of(seed=4, dossiers=6)
    before, after = [i for i in log if i.partition > 0], [i for i in log if i.partition == 0]
    await projector.project(before, defer_dossiers=True)
    assert projector.pending_dossiers == 4 and not store.dossiers  # rows written, documents pending
    store.collection = "new"
    await projector.project(after, defer_dossiers=True)  # the next window finds the switch
    await projector.store_dossiers()
    assert set(store.dossiers) == {i.event.subject for i in after}  # none of the old collections' documents
