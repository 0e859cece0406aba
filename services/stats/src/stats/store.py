"""Projections in MongoDB: one document per dossier, whose `seq` is its tracking position, and one rollup row per
month x slot (a unit, the province, a level, a procedure) with a sub-document per day, whose `applied.p<partition>`
is the last log offset it includes. Each position is stored in the same write as the effect, so each event
applies once, whatever Kafka redelivers or a replay sends again.

Rows are month-sized so that a figure for the province, a level or a unit reads one row per month by `_id` (the
only lookup FerretDB indexes), and a ranking of all units scans a few thousand rows, not one per day."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lienthong.contracts import CloudEvent
from lienthong.store import bulk_write_chunked
from stats import rollups
from stats.projection import apply

MAX_CONFLICT_RETRIES = 5
DUPLICATE_KEY = 11000
ACTIVE = "active"
DEFAULT_COLLECTION = "stats_dossiers"


@dataclass(frozen=True)
class Positioned:
    """An event and where it sits in the log: the rollups' tracking position is (partition, offset)."""

    event: CloudEvent
    partition: int
    offset: int


RowKey = tuple[str, str]  # month (YYYY-MM), slot
SPAN = "span"  # the row that records the first month with data: running figures start there
_ROW_FIELDS = {"_id", "month", "slot", "applied"}
# (row, partition) -> [(offset, field, delta)], in offset order
Deltas = dict[tuple[RowKey, int], list[tuple[int, str, int]]]


class ProjectionStore:
    """Projections live in the collection that the `stats_meta` pointer names (rollups beside it, `_rollups`), so
    a rebuild can fill fresh collections and switch every reader and writer over with one single-document write
    (atomic everywhere; FerretDB v1 has no renameCollection with dropTarget)."""

    def __init__(self, db: AsyncDatabase, collection: str | None = None) -> None:
        self.db = db
        self.meta = db["stats_meta"]
        self.fixed = collection

    async def collection(self) -> AsyncCollection:
        if self.fixed is not None:
            return self.db[self.fixed]
        pointer = await self.meta.find_one({"_id": ACTIVE})
        return self.db[pointer["collection"] if pointer else DEFAULT_COLLECTION]

    async def rollups(self, dossiers: AsyncCollection | None = None) -> AsyncCollection:
        """The rows beside a dossier collection (the active one unless given: one pointer read, not two)."""
        return self.db[(dossiers if dossiers is not None else await self.collection()).name + "_rollups"]

    async def switch_to(self, name: str) -> str:
        """Point every reader and writer at `name`; returns the collection it replaced."""
        previous = (await self.collection()).name
        await self.meta.update_one({"_id": ACTIVE}, {"$set": {"collection": name}}, upsert=True)
        return previous

    async def project(self, items: list[Positioned]) -> int:
        """Fold a batch: one read per dossier, one bulk write for the rollup rows it touches, one for the dossiers.
        Returns how many dossier documents changed.

        Rows go first, each guarded by the log position it already includes; then the dossiers, each guarded by
        `seq`. A crash in between replays the batch: the dossiers are unchanged, so the same deltas come out again
        and the guard lets through only what a row lacks. An event's deltas depend only on the dossier's earlier
        events, so a concurrent writer (a rebuild's top-up, a consumer being fenced) computes the same ones."""
        by_dossier: dict[str, list[Positioned]] = defaultdict(list)
        for item in items:
            by_dossier[item.event.subject].append(item)
        dossiers = await self.collection()
        rows = await self.rollups(dossiers)
        # One read per dossier by `_id` (the lookup FerretDB indexes; `$in` would scan), all in flight at once.
        stored_docs = await asyncio.gather(*(dossiers.find_one({"_id": code}) for code in by_dossier))
        deltas: Deltas = defaultdict(list)
        folded = []
        for its, stored in zip(by_dossier.values(), stored_docs, strict=True):
            its.sort(key=lambda i: i.event.dossierseq)
            doc = _fold(stored, its, deltas)
            if doc is not stored:
                folded.append((its, stored, doc))
        for key in deltas:
            deltas[key].sort()
        await add_to_rows(rows, deltas)
        await self._save(dossiers, folded)
        return len(folded)

    async def _save(self, dossiers: AsyncCollection, folded: list) -> None:
        if not folded:
            return
        ops = [InsertOne(doc) if stored is None else ReplaceOne({"_id": doc["_id"], "seq": stored["seq"]}, doc)
               for _, stored, doc in folded]
        done, errors = await bulk_write_chunked(dossiers, ops)
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise RuntimeError(f"dossier projection writes failed: {[e.get('code') for e in errors]}")
        if done < len(ops):  # another writer moved some dossiers on meanwhile: check each one
            for its, _, doc in folded:
                await self._save_one(dossiers, its, doc)

    async def _save_one(self, dossiers: AsyncCollection, items: list[Positioned], doc: dict[str, Any]) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            stored = await dossiers.find_one({"_id": doc["_id"]})
            if stored is not None and stored["seq"] >= doc["seq"]:
                return  # ours, or further on (its rows were written before it, like ours)
            doc = _fold(stored, items, defaultdict(list))
            if doc is stored:
                return
            try:
                if stored is None:
                    await dossiers.insert_one(doc)
                    return
                if (await dossiers.replace_one({"_id": doc["_id"], "seq": stored["seq"]}, doc)).matched_count:
                    return
            except DuplicateKeyError:
                pass
        raise RuntimeError(f"dossier {doc['_id']}: too many concurrent projection updates")

    async def slot_rows(self, up_to: str, slot: str) -> list[dict[str, Any]]:
        """Day rows of one slot, from the first month with data to `up_to` (running figures need them all)."""
        rows = await self.rollups()
        span = await rows.find_one({"_id": SPAN})
        if span is None:
            return []
        months = _months(span["first"], up_to[:7])
        docs = await asyncio.gather(*(rows.find_one({"_id": f"{m}|{slot}"}) for m in months))
        return [r for doc in docs if doc for r in _days(doc) if r["day"] <= up_to]

    async def ranking_rows(self, start: date, end: date) -> list[dict[str, Any]]:
        """Rows that give every unit's figures for the period: the `~units` row of each month up to its end, and
        the unit rows of the (at most two) months it cuts, all read by `_id`."""
        rows = await self.rollups()
        span = await rows.find_one({"_id": SPAN})
        if span is None:
            return []
        months = _months(span["first"], end.isoformat()[:7])
        found = await asyncio.gather(*(rows.find_one({"_id": f"{m}|{rollups.UNIT_MONTHS}"}) for m in months))
        monthly = {m: {k: v for k, v in doc.items() if k not in _ROW_FIELDS}
                   for m, doc in zip(months, found, strict=True) if doc}
        cut = [(m, unit) for m in rollups.cut_months(start, end) if m in monthly for unit in monthly[m]]
        docs = await asyncio.gather(*(rows.find_one({"_id": f"{m}|{unit}"}) for m, unit in cut))
        return rollups.ranking_rows(monthly, [r for doc in docs if doc for r in _days(doc)], start, end)

    async def overdue(self, today: str, unit: str | None, limit: int) -> list[dict[str, Any]]:
        """Open dossiers due before `today`, earliest due first. A scan on FerretDB (it indexes only `_id`)."""
        match: dict[str, Any] = {"closed_day": None, "due_date": {"$lt": today}}
        if unit is not None:
            match["current_unit"] = unit
        fields = {"procedure": 1, "current_unit": 1, "receiving_unit": 1, "step": 1, "due_date": 1}
        cursor = (await self.collection()).find(match, projection=fields).sort("due_date", 1).limit(limit)
        return await cursor.to_list(None)

    async def tracking(self, code: str) -> dict[str, Any] | None:
        return await (await self.collection()).find_one({"_id": code})


def row_of(day: str, slot: str) -> RowKey:
    return day[:7], slot


def path_of(day: str, slot: str, field: str) -> str:
    """Where a cell's count lives in its month row: under its day, but for the month-only `~units` slot."""
    return field if slot == rollups.UNIT_MONTHS else f"d{day[8:]}.{field}"


def _fold(stored: dict[str, Any] | None, items: list[Positioned], deltas: Deltas) -> dict[str, Any] | None:
    """Apply the items in order; the rollup deltas of every applied event are added to `deltas`."""
    doc = stored
    for item in items:
        after = apply(doc, item.event)
        if after is None:
            continue  # already applied (redelivery, replay) or not yet applicable
        for (day, slot, field), n in rollups.delta(doc, after).items():
            deltas[(row_of(day, slot), item.partition)].append((item.offset, path_of(day, slot, field), n))
        doc = after
    return doc


async def add_to_rows(rows: AsyncCollection, deltas: Deltas) -> None:
    """Add each row's deltas once. Fast path: one bulk of upserts, each applying only if the row's position for
    the partition is before every delta. A row that has some of them already (a replay after a crash) fails that
    guard with a duplicate key and is brought up to date exactly, by compare-and-set."""
    if not deltas:
        return
    keys = list(deltas)
    ops = [UpdateOne({"_id": _row_id(row), f"applied.p{partition}": {"$not": {"$gte": deltas[(row, partition)][0][0]}}},
                     _increment(row, partition, deltas[(row, partition)]), upsert=True)
           for row, partition in keys]
    first = {"$min": {"first": min(month for (month, _), _ in keys)}}
    try:
        await rows.update_one({"_id": SPAN}, first, upsert=True)
    except DuplicateKeyError:  # created meanwhile by another writer: now it exists
        await rows.update_one({"_id": SPAN}, first)
    _, errors = await bulk_write_chunked(rows, ops)
    if any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise RuntimeError(f"rollup writes failed: {[e.get('code') for e in errors]}")
    for error in errors:
        row, partition = keys[error["index"]]
        await _catch_up(rows, row, partition, deltas[(row, partition)])


async def _catch_up(rows: AsyncCollection, row: RowKey, partition: int, ds: list[tuple[int, str, int]]) -> None:
    position = f"applied.p{partition}"
    for _ in range(MAX_CONFLICT_RETRIES):
        current = await rows.find_one({"_id": _row_id(row)})
        applied = (current or {}).get("applied", {}).get(f"p{partition}", -1)
        missing = [d for d in ds if d[0] > applied]
        if not missing:
            return
        guard = {position: applied} if applied >= 0 else {position: {"$exists": False}}
        try:
            result = await rows.update_one({"_id": _row_id(row), **guard}, _increment(row, partition, missing),
                                           upsert=current is None)
        except DuplicateKeyError:
            continue
        if result.matched_count or result.upserted_id is not None:
            return
    raise RuntimeError("rollup row: too many concurrent updates")


def _row_id(row: RowKey) -> str:
    return "|".join(row)


def _increment(row: RowKey, partition: int, ds: list[tuple[int, str, int]]) -> dict[str, Any]:
    sums: dict[str, int] = defaultdict(int)
    for _, field, n in ds:
        sums[field] += n
    month, slot = row
    return {"$inc": dict(sums), "$max": {f"applied.p{partition}": ds[-1][0]},
            "$setOnInsert": {"month": month, "slot": slot}}


def _months(first: str, last: str) -> list[str]:
    months, (y, m) = [], map(int, first.split("-"))
    while f"{y:04d}-{m:02d}" <= last:
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return months


def _days(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A month row as day rows: {"day", "unit", <basis>: {counter: n}}."""
    return [{"day": f"{doc['month']}-{key[1:]}", "unit": doc["slot"], **value}
            for key, value in doc.items() if key[:1] == "d" and key[1:].isdigit()]
