"""Stats' service layer: fold a batch of lifecycle events in memory, then write the result behind in a few bulk
round trips, with absolute values and each document's own tracking position.

State is partitioned like the log (a dossier's events share its partition, so does everything derived from them):
- one document per dossier, its tracking position `seq` (the last `dossierseq` it includes);
- one rollup row per month x group of slots x partition (`rollups` says what a slot is, `row_group` which slots
  share a row), its tracking position `pos` (the last offset of that partition it includes). No two partitions
  write the same row; readers add them up.

Why this is exact under any crash, whatever the store answers:
- rows are written before dossiers. A dossier document at `seq` k therefore implies every row holds the deltas of
  its events up to k; a replayed event either folds from an older document (its deltas come out the same and each
  row skips what its `pos` already includes) or is no longer the next one (nothing to add, nothing missing);
- every write is a compare-and-set on the position read (or an insert of a document that was absent), and its
  count is checked. Anything unexpected — a failed guard, a duplicate key, an error reply of any shape, a lost
  connection — drops the partitions' cached rows and re-raises: the batch comes again, folds from what the store
  holds then, and writes absolute values. No error reply is interpreted.

Dossier documents may be written behind (`project(..., defer_dossiers=True)`): the rows, which give the figures, are
written at once, the changed dossier documents kept pending and written later, together (a dossier's events of
several windows in one write: FerretDB's guarded replaces cost ~6x its inserts). The rule above still holds (rows
before dossiers), so a crash in between is a replay from the caller's committed offsets, which must therefore stay
behind everything pending until `store_dossiers` has returned; after any failure the caller must project again
everything it has not committed.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from lienthong.contracts import CloudEvent
from lienthong.failpoints import failpoint
from lienthong.phases import PhaseClock, phase_histogram
from stats import rollups
from stats.projection import apply

log = structlog.get_logger("stats.projector")
# Where a batch's time goes: reading state, folding in memory, writing rows, writing dossiers (the store's share is
# what the speed of catch-up turns on).
PHASE_SECONDS = phase_histogram("stats")
UNIT_GROUPS = 8  # rows per month and partition holding the units' slots (~25 units each)
BREAKDOWN_GROUPS = 4  # and their procedure x channel breakdowns


@dataclass(frozen=True)
class Positioned:
    """An event and where it sits in the log: (partition, offset) is the rows' tracking position."""

    event: CloudEvent
    partition: int
    offset: int


@dataclass
class Row:
    """One rollup row in memory, as stored: its cells by slot (`HACTHANH` -> `d05.recv.received_online` -> n) and
    the last offset it includes."""

    id: str
    month: str
    group: str
    partition: int
    pos: int = -1
    cells: dict[str, dict[str, int]] = field(default_factory=dict)
    stored_pos: int | None = None  # what the store holds: a stored row is replaced by compare-and-set on it


@dataclass(frozen=True)
class DossierWrite:
    doc: dict[str, Any]
    stored_seq: int | None  # None: the document was absent and is inserted


@dataclass
class Pending:
    """A dossier document changed in memory, its rows written, the document not yet: the seq the store holds is
    the write's guard (None: absent, inserted)."""

    doc: dict[str, Any]
    stored_seq: int | None


@dataclass(frozen=True)
class Poison:
    """An event that validated but cannot be folded: parked with a reason instead of stalling its partition."""

    item: Positioned
    reason: str


class ProjectionConflict(RuntimeError):
    """A guarded write did not apply: another writer moved a document on, or the store's reply was not the one
    expected. The batch is folded again from what the store holds."""


class ProjectionPort(Protocol):
    """What the projector needs from a store (MongoDB in production, a dict in unit tests)."""

    async def prepare(self) -> str: ...
    async def load_dossiers(self, codes: list[str]) -> dict[str, dict[str, Any]]: ...
    async def load_rows(self, ids: list[str]) -> list[Row]: ...
    async def flush_marks(self, partitions: list[int]) -> dict[int, int]: ...
    async def mark_flushing(self, marks: dict[int, tuple[str | None, int]]) -> None: ...
    async def write_rows(self, rows: list[Row]) -> None: ...
    async def write_dossiers(self, writes: list[DossierWrite]) -> None: ...


@dataclass
class Fold:
    """A batch folded: the new dossier documents and, per row, the deltas with the offset they come from."""

    docs: dict[str, dict[str, Any] | None]
    deltas: dict[str, list[tuple[int, str, str, int]]] = field(default_factory=lambda: defaultdict(list))
    where: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # row id -> (month, group, partition)
    changed: set[str] = field(default_factory=set)
    poison: list[Poison] = field(default_factory=list)
    # per partition, day and slot: the deltas of the row the slot's day is in, and the prefix of its cells' paths
    # (the fold's inner loop; a day's slot has ~20 fields, named once here)
    _places: dict[int, dict[str, dict[str, tuple[list[tuple[int, str, str, int]], str]]]] = field(
        default_factory=dict)

    def add(self, cells: dict[rollups.Cell, int], partition: int, offset: int) -> None:
        days = self._places.get(partition)
        if days is None:
            days = self._places[partition] = {}
        for (day, slot, field_), n in cells.items():
            slots = days.get(day)
            if slots is None:
                slots = days[day] = {}
            place = slots.get(slot)
            if place is None:
                place = slots[slot] = self._place(day, slot, partition)
            place[0].append((offset, slot, place[1] + field_, n))

    def _place(self, day: str, slot: str, partition: int) -> tuple[list[tuple[int, str, str, int]], str]:
        group = (day[:7], row_group(slot), partition)
        rid = row_id(*group)
        self.where[rid] = group
        return self.deltas[rid], path_of(day, slot, "")


def _fold(by_partition: dict[int, list[Positioned]], stored: dict[str, dict[str, Any]], exact: set[int],
          fold: Fold | None = None) -> Fold:
    """Apply each event to its dossier. In `exact` partitions every event's deltas are kept with its offset;
    elsewhere a dossier's net change over the batch is one delta at the offset of its last event (a row holds
    either all of a batch's events or none of them there), which costs one rollup computation per dossier.
    Given a `fold`, the events continue it (a window folded fetch by fetch): deltas are differences of states,
    so a dossier's changes over two parts add up to its change over the whole."""
    fold = fold or Fold(docs={})
    for its in by_partition.values():
        for item in its:
            if item.event.subject not in fold.docs:
                fold.docs[item.event.subject] = stored.get(item.event.subject)
    for partition, its in by_partition.items():
        if partition in exact:
            for item in its:
                _fold_one(fold, item)
            continue
        stories: dict[str, list[Positioned]] = defaultdict(list)
        for item in its:
            stories[item.event.subject].append(item)
        for code, story in stories.items():
            before, doc, last = fold.docs[code], fold.docs[code], None
            try:
                for item in story:
                    after = apply(doc, item.event)
                    if after is not None:
                        doc, last = after, item.offset
                cells = rollups.delta(before, doc) if last is not None else {}
            except Exception:  # noqa: BLE001 - find the event that breaks the fold, one by one
                for item in story:
                    _fold_one(fold, item)
                continue
            if last is not None:
                fold.add(cells, partition, last)
                fold.docs[code] = doc
                fold.changed.add(code)
    return fold


async def folded(by_partition: dict[int, list[Positioned]], stored: dict[str, dict[str, Any]], exact: set[int],
                 fold: Fold | None = None) -> Fold:
    """`_fold` in a worker thread: a large window is seconds of pure Python, and the event loop must meanwhile keep
    the consumer's heartbeats going (a member silent past its session timeout is expelled, and would fold the same
    window again after every rejoin) and answer /healthz, /readyz and /metrics. The fold touches only what the
    projector owns, under the window's lock."""
    return await asyncio.to_thread(_fold, by_partition, stored, exact, fold)


def _by_partition(items: list[Positioned]) -> dict[int, list[Positioned]]:
    by_partition: dict[int, list[Positioned]] = defaultdict(list)
    for item in items:
        by_partition[item.partition].append(item)
    return by_partition


def _fold_one(fold: Fold, item: Positioned) -> None:
    code = item.event.subject
    try:
        after = apply(fold.docs[code], item.event)
        if after is None:
            return  # already applied (redelivery, replay) or not the next event of its dossier
        cells = rollups.delta(fold.docs[code], after)
    except Exception as exc:  # noqa: BLE001 - a fold that fails for one event must not stall the rest
        fold.poison.append(Poison(item, f"fold failed: {type(exc).__name__}"))
        return
    fold.add(cells, item.partition, item.offset)
    fold.docs[code] = after
    fold.changed.add(code)


def row_id(month: str, group: str, partition: int) -> str:
    return f"{month}|{group}|p{partition}"


def row_group(slot: str) -> str:
    """The row a slot's cells share with other slots. The store's cost is per document far more than per byte
    (FerretDB: ~1,500 small replaces/s), and a month has ~340 slots per partition: grouped, a flush writes 14
    documents per month and partition. Readers of one slot read its group (the ranking's `~units`, the overdue
    list's `~open` and each day's `~short<DD>` are alone; a unit's procedure x channel breakdown, which figures
    never read, stays out of the units' groups)."""
    if slot in (rollups.UNIT_MONTHS, rollups.OPEN) or slot.startswith(rollups.SHORT):
        return slot
    if not rollups.is_unit_slot(slot) and not slot.endswith("#"):
        return "totals"  # the province, the levels, the procedures
    if slot.endswith("#"):
        return f"b{zlib.crc32(slot.encode()) % BREAKDOWN_GROUPS}"
    return f"u{zlib.crc32(slot.encode()) % UNIT_GROUPS}"


def path_of(day: str, slot: str, field_: str) -> str:
    """Where a cell's count lives in its slot's month: under its day, but for the month-only `~units` slot."""
    return field_ if slot == rollups.UNIT_MONTHS else f"d{day[8:]}.{field_}"


def unit_groups() -> list[str]:
    return [f"u{i}" for i in range(UNIT_GROUPS)]


@dataclass
class PartitionState:
    """What the projector keeps of a partition between batches while it reads it in order."""

    next_offset: int
    rows: OrderedDict[str, Row] = field(default_factory=OrderedDict)
    # the dossier documents as stored, as this projector last wrote or read them here: a dossier's next events
    # mostly come within seconds (assigned right after it is filed, steps answered at once), and reading them again
    # was a quarter of stats' store time at 200 dossiers/s (measured); a document moved on by another writer fails
    # the write's guard
    docs: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    first_month: str | None = None
    flushed: int | None = None  # the partition's flush mark: the last offset any flush may have written


@dataclass
class Staged:
    """A window's events folded ahead of its projection, and what that fold read from the store."""

    collection: str
    by_partition: dict[int, list[Positioned]] = field(default_factory=dict)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    exact: set[int] = field(default_factory=set)
    fold: Fold = field(default_factory=lambda: Fold(docs={}))
    events: int = 0
    last: Positioned | None = None

    def covers(self, items: list[Positioned], collection: str) -> bool:
        """Whether these are exactly the staged events (the window appends in order, so count and last suffice)."""
        return collection == self.collection and self.events == len(items) and self.last is items[-1]


class Projector:
    """Projects batches; keeps each partition's recently used rows while the partition is read in order. A batch
    that does not continue where the last one ended (a rebalance, a redelivery) starts that partition afresh.

    A burst's window may be staged fetch by fetch (`stage`) while it waits for the stream to pause: its dossiers are
    read and its events folded then, so only the writes remain once it is projected. Staging is only a head start:
    `project` uses it when it covers exactly the batch given, and folds from the store otherwise."""

    def __init__(self, store: ProjectionPort, *, cached_rows_per_partition: int = 4000,
                 cached_dossiers_per_partition: int = 2000) -> None:
        self.store = store
        self.cached_rows, self.cached_dossiers = cached_rows_per_partition, cached_dossiers_per_partition
        self._partitions: dict[int, PartitionState] = {}
        self._collection: str | None = None
        self._staged: Staged | None = None
        self._pending: dict[str, Pending] = {}

    @property
    def pending_dossiers(self) -> int:
        return len(self._pending)

    @property
    def staged_events(self) -> int:
        return self._staged.events if self._staged else 0

    def discard_staged(self) -> None:
        self._staged = None

    async def stage(self, items: list[Positioned]) -> None:
        """Fold the next events of the window to be projected (each partition's continuing the last staged)."""
        if not items:
            return
        try:
            await self._stage(items)
        except Exception as exc:  # noqa: BLE001 - a head start only: the projection folds from the store instead
            log.warning("staging_failed", error=type(exc).__name__)
            self._staged = None

    async def _stage(self, items: list[Positioned]) -> None:
        clock = PhaseClock(PHASE_SECONDS)
        collection = await self._prepare()
        staged = self._staged if self._staged and self._staged.collection == collection else Staged(collection)
        self._staged = None  # until this part is folded in
        by_partition = _by_partition(items)
        if any(p in staged.by_partition and its[0].offset <= staged.by_partition[p][-1].offset
               for p, its in by_partition.items()):
            return  # not a continuation (the consumer was moved back): the projection folds from the store
        fresh = [p for p in by_partition if p not in staged.by_partition]
        states = {p: self._state(p, by_partition[p][0].offset) for p in fresh}
        staged.stored.update(await self._stored_dossiers(by_partition, skip=staged.fold.docs))
        await self._load_flush_marks(states)
        staged.exact |= {p for p in fresh if by_partition[p][0].offset <= states[p].flushed}
        clock.lap("load")
        await folded(by_partition, staged.stored, staged.exact, staged.fold)
        clock.lap("fold")
        for p, its in by_partition.items():
            staged.by_partition.setdefault(p, []).extend(its)
        staged.events += len(items)
        staged.last = items[-1]
        self._staged = staged

    async def project(self, items: list[Positioned], *, defer_dossiers: bool = False) -> list[Poison]:
        """Fold and store a batch (records of any partitions, each partition's in offset order). Returns the
        events that could not be folded; everything else is stored when this returns, but the dossier documents
        when `defer_dossiers` (then pending, see the module). Without it, whatever was pending is stored too."""
        staged, self._staged = self._staged, None
        if not items:
            if not defer_dossiers:
                await self.store_dossiers()
            return []
        collection = await self._prepare()
        by_partition = _by_partition(items)
        states = {p: self._state(p, its[0].offset) for p, its in by_partition.items()}
        try:
            return await self._project(by_partition, states,
                                       staged if staged and staged.covers(items, collection) else None,
                                       defer_dossiers)
        except BaseException:
            self._forget()
            raise

    async def store_dossiers(self, codes: Iterable[str] | None = None) -> None:
        """Write the pending dossier documents (of these dossiers, else all). On failure nothing is pending any more:
        the caller projects again what it has not committed."""
        chosen = self._pending if codes is None else {c: self._pending[c] for c in codes if c in self._pending}
        if not chosen:
            return
        clock = PhaseClock(PHASE_SECONDS)
        try:
            await self.store.write_dossiers([DossierWrite(p.doc, p.stored_seq) for p in chosen.values()])
        except BaseException:
            self._forget()
            raise
        if chosen is self._pending:
            self._pending = {}
        else:
            for code in chosen:
                del self._pending[code]
        clock.lap("write_dossiers")
        failpoint("stats.after_dossiers")  # stored, offsets not committed: the batches come again

    def _forget(self) -> None:
        """After a failed write: the cached rows and documents may hold what was not stored."""
        self._partitions.clear()
        self._pending.clear()
        self._staged = None

    async def _prepare(self) -> str:
        collection = await self.store.prepare()
        if collection != self._collection:
            # A rebuild switched collections: nothing cached is valid, and the pending documents belong to the old
            # ones (their events, all logged before the switch, reach the new ones through the rebuild's top-up).
            self._forget()
            self._collection = collection
        return collection

    async def _load_flush_marks(self, states: dict[int, PartitionState]) -> None:
        fresh = [p for p, s in states.items() if s.flushed is None]
        marks = await self.store.flush_marks(fresh) if fresh else {}
        for p in fresh:
            states[p].flushed = marks.get(p, -1)

    def _state(self, partition: int, first_offset: int) -> PartitionState:
        state = self._partitions.get(partition)
        if state is None or state.next_offset != first_offset:
            state = PartitionState(next_offset=first_offset)
            self._partitions[partition] = state
        return state

    async def _project(self, by_partition: dict[int, list[Positioned]], states: dict[int, PartitionState],
                       staged: Staged | None, defer_dossiers: bool) -> list[Poison]:
        clock = PhaseClock(PHASE_SECONDS)
        codes = list(dict.fromkeys(i.event.subject for its in by_partition.values() for i in its))
        if staged is not None:
            stored, exact, fold = staged.stored, staged.exact, staged.fold
        else:
            stored = await self._stored_dossiers(by_partition)
            await self._load_flush_marks(states)
            # A partition whose batch starts at or before its last flush mark replays a flush that may have stopped
            # half-way: its rows may hold part of the batch, so each event's deltas are kept apart.
            exact = {p for p, its in by_partition.items() if its[0].offset <= states[p].flushed}
            clock.lap("load")
            fold = await folded(by_partition, stored, exact)
            clock.lap("fold")
        rows = await self._rows(fold.where, states)
        overlap = {p for rid, (_, _, p) in fold.where.items()
                   if p not in exact and rows[rid].pos >= by_partition[p][0].offset}
        if overlap:  # a row written past our position by another writer: fold those partitions event by event
            fold = await folded(by_partition, stored, exact | overlap)
            rows = await self._rows(fold.where, states)
        dirty = []
        for rid, ds in fold.deltas.items():
            row = rows[rid]
            new = [d for d in ds if d[0] > row.pos]
            if not new:
                continue
            for _, slot, path, n in new:
                cells = row.cells.setdefault(slot, {})
                total = cells.get(path, 0) + n
                if total:
                    cells[path] = total
                else:
                    cells.pop(path, None)
                    if not cells:
                        del row.cells[slot]
            dirty.append(row)
        last = {p: its[-1].offset for p, its in by_partition.items()}
        earliest: dict[int, str] = {}
        for month, _, p in fold.where.values():
            earliest[p] = min(month, earliest.get(p, month))
        marks = {p: (min(filter(None, (earliest.get(p), states[p].first_month)), default=None), last[p])
                 for p in by_partition}
        for row in dirty:
            row.pos = last[row.partition]
        clock.lap("rows")
        await self.store.mark_flushing(marks)  # before the rows: readers start at `first`, replays see the mark
        await self.store.write_rows(dirty)
        clock.lap("write_rows")
        failpoint("stats.after_rows")  # rows hold the batch, dossiers not yet: the replay must not count twice
        for code in codes:
            if code in fold.changed:
                before = self._pending.get(code)
                self._pending[code] = Pending(fold.docs[code], before.stored_seq if before else
                                              stored[code]["seq"] if code in stored else None)
        if not defer_dossiers:
            await self.store_dossiers()
        for row in dirty:
            row.stored_pos = row.pos
        for p, state in states.items():
            state.first_month, state.flushed, state.next_offset = marks[p][0], last[p], last[p] + 1
            for code in dict.fromkeys(i.event.subject for i in by_partition[p]) if self.cached_dossiers else ():
                doc = fold.docs[code] if code in fold.changed else stored.get(code)
                if doc is not None:
                    state.docs[code] = doc
                    state.docs.move_to_end(code)
            self._trim(state)
        return fold.poison

    async def _stored_dossiers(self, by_partition: dict[int, list[Positioned]],
                               skip: Container[str] = ()) -> dict[str, dict[str, Any]]:
        """The batch's dossier documents as this projector last left them (but those in `skip`): pending, else from
        the partitions' caches, else read."""
        found: dict[str, dict[str, Any]] = {}
        missing: dict[str, None] = {}
        for p, its in by_partition.items():
            state = self._partitions.get(p)
            cached = state.docs if state is not None else {}
            for item in its:
                code = item.event.subject
                if code in skip or code in found:
                    continue
                pending = self._pending.get(code)
                doc = pending.doc if pending is not None else cached.get(code)
                if doc is None:
                    missing[code] = None
                else:
                    found[code] = doc
        if missing:
            found.update(await self.store.load_dossiers(list(missing)))
        return found

    async def _rows(self, where: dict[str, tuple[str, str, int]],
                    states: dict[int, PartitionState]) -> dict[str, Row]:
        """The rows a batch touches: from the cache, else as stored, else new."""
        rows: dict[str, Row] = {}
        missing = []
        for rid, (_, _, partition) in where.items():
            cached = states[partition].rows.get(rid)
            if cached is not None:
                states[partition].rows.move_to_end(rid)
                rows[rid] = cached
            else:
                missing.append(rid)
        found = {row.id: row for row in await self.store.load_rows(missing)} if missing else {}
        for rid in missing:
            month, group, partition = where[rid]
            row = found.get(rid) or Row(rid, month, group, partition)
            rows[rid] = states[partition].rows[rid] = row
        return rows

    def _trim(self, state: PartitionState) -> None:
        while len(state.rows) > self.cached_rows:
            state.rows.popitem(last=False)
        while len(state.docs) > self.cached_dossiers:
            state.docs.popitem(last=False)
