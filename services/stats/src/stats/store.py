"""Projections in MongoDB: one document per dossier, whose `seq` is its tracking position, and one rollup row per
day x unit, whose `applied.p<partition>` is the last log offset it includes. Each position is stored in the same
write as the effect, so each event applies once, whatever Kafka redelivers or a replay sends again."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lienthong.catalogue import catalogue
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


RowKey = tuple[str, str]  # day, unit
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

    async def rollups(self) -> AsyncCollection:
        return self.db[(await self.collection()).name + "_rollups"]

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
        dossiers, rows = await self.collection(), await self.rollups()
        deltas: Deltas = defaultdict(list)
        folded = []
        for code, its in by_dossier.items():
            its.sort(key=lambda i: i.event.dossierseq)
            stored = await dossiers.find_one({"_id": code})
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

    async def rows(self, up_to: str, basis: rollups.Basis, unit: str | None = None) -> list[dict[str, Any]]:
        """Rollup rows up to a day (every day before it: running figures need them), one basis's counters."""
        match: dict[str, Any] = {"day": {"$lte": up_to}, **({"unit": unit} if unit else {})}
        cursor = (await self.rollups()).find(match, projection={"_id": 0, "day": 1, "unit": 1, "level": 1, basis: 1})
        return await cursor.to_list(None)

    async def tracking(self, code: str) -> dict[str, Any] | None:
        return await (await self.collection()).find_one({"_id": code})


def _fold(stored: dict[str, Any] | None, items: list[Positioned], deltas: Deltas) -> dict[str, Any] | None:
    """Apply the items in order; the rollup deltas of every applied event are added to `deltas`."""
    doc = stored
    for item in items:
        after = apply(doc, item.event)
        if after is None:
            continue  # already applied (redelivery, replay) or not yet applicable
        for (day, unit, field), n in rollups.delta(doc, after).items():
            deltas[((day, unit), item.partition)].append((item.offset, field, n))
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
    day, unit = row
    known = catalogue().units.get(unit)
    return {
        "$inc": dict(sums),
        "$max": {f"applied.p{partition}": ds[-1][0]},
        "$setOnInsert": {"day": day, "unit": unit, "level": known.level if known else "unknown"},
    }
