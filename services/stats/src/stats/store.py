"""Projections in MongoDB, for the projector (`stats.projector`) and the readers (`stats.api`).

Collections, all named after the active dossier collection `<c>` (the `stats_meta` pointer names it, so a rebuild
fills fresh collections and switches every reader and writer over with one single-document write; FerretDB v1 has
no renameCollection with dropTarget):
- `<c>`: one document per dossier (`seq` = its tracking position);
- `<c>_rows`: one rollup row per month x group of slots x partition (`pos` = the partition's last offset it
  includes), its cells one compressed field (`{slot: {"d05.recv.received_online": n}}`);
- `<c>_partitions`: one document per partition with the first month it has rows for.

Every lookup by the projector is by `_id` (FerretDB indexes nothing else; our FerretDB build answers
`_id: {$in: [...]}` through that index too), so a batch of dossiers or rows is one query. The overdue list reads
rows too (the `~open` slot); the readers' listings by day have indexes on MongoDB (`create_indexes`) and scan on
FerretDB.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import orjson
from pymongo import ASCENDING, IndexModel, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from lienthong.store import BULK_CHUNK, READ_CHUNK, create_query_indexes, find_by_ids
from stats import rollups
from stats.projector import DossierWrite, ProjectionConflict, Row, row_group, row_id, unit_groups

ACTIVE = "active-v5"  # the pointer of this layout's collections: an older version's pointer names older ones
# v5: rows of grouped slots, packed, with the service index's facts and the open dossiers (`~open`); an older
# layout's collections are not read (the v5 group replays the log into these).
DEFAULT_COLLECTION = "stats_v5_dossiers"


class ProjectionStore:
    def __init__(self, db: AsyncDatabase, collection: str | None = None) -> None:
        self.db = db
        self.meta = db["stats_meta"]
        self.fixed = collection
        self._active: str | None = collection

    # -- the active collection ---------------------------------------------------------------------------------
    async def collection(self) -> AsyncCollection:
        if self.fixed is not None:
            return self.db[self.fixed]
        pointer = await self.meta.find_one({"_id": ACTIVE})
        return self.db[pointer["collection"] if pointer else DEFAULT_COLLECTION]

    async def prepare(self) -> str:
        """Read the pointer once per batch: the projector writes where readers read."""
        self._active = (await self.collection()).name
        return self._active

    def _named(self, suffix: str = "") -> AsyncCollection:
        assert self._active is not None, "prepare() first"
        return self.db[self._active + suffix]

    async def create_indexes(self) -> bool:
        """The readers' indexes on the active dossier collection (the listings by day), where the server uses them
        (`create_query_indexes`: MongoDB, not FerretDB)."""
        return await create_query_indexes(await self.collection(), [
            IndexModel([("received_day", ASCENDING)], name="received_day"),
            IndexModel([("closed_day", ASCENDING)], name="closed_day"),
        ])

    async def switch_to(self, name: str) -> str:
        """Point every reader and writer at `name`; returns the collection it replaced."""
        previous = (await self.collection()).name
        await self.meta.update_one({"_id": ACTIVE}, {"$set": {"collection": name}}, upsert=True)
        return previous

    async def drop(self, name: str) -> None:
        for suffix in ("", "_rows", "_partitions"):
            await self.db.drop_collection(name + suffix)

    # -- the projector's port ----------------------------------------------------------------------------------
    async def load_dossiers(self, codes: list[str]) -> dict[str, dict[str, Any]]:
        return {doc["_id"]: _dossier_from(doc) for doc in await find_by_ids(self._named(), codes)}

    async def load_rows(self, ids: list[str]) -> list[Row]:
        return [_row_from(doc) for doc in await find_by_ids(self._named("_rows"), ids)]

    async def flush_marks(self, partitions: list[int]) -> dict[int, int]:
        docs = await find_by_ids(self._named("_partitions"), [f"p{p}" for p in partitions])
        return {d["partition"]: d["flushing"] for d in docs if "flushing" in d}

    async def mark_flushing(self, marks: dict[int, tuple[str | None, int]]) -> None:
        """Per partition: the first month it has rows for (readers start there) and the last offset this flush
        may write (a replay up to there folds event by event). One small document per partition, one bulk."""
        ops = []
        for partition, (month, last) in marks.items():
            update: dict[str, Any] = {"$max": {"flushing": last}, "$set": {"partition": partition}}
            if month is not None:
                update["$min"] = {"first": month}
            ops.append(UpdateOne({"_id": f"p{partition}"}, update, upsert=True))
        for start in range(0, len(ops), BULK_CHUNK):
            await self._named("_partitions").bulk_write(ops[start:start + BULK_CHUNK], ordered=False)

    async def write_rows(self, rows: list[Row]) -> None:
        await _write(self._named("_rows"),
                     [_packed_row(r) for r in rows if r.stored_pos is None],
                     [ReplaceOne({"_id": r.id, "pos": r.stored_pos}, _packed_row(r))
                      for r in rows if r.stored_pos is not None])

    async def write_dossiers(self, writes: list[DossierWrite]) -> None:
        await _write(self._named(),
                     [_packed_dossier(w.doc) for w in writes if w.stored_seq is None],
                     [ReplaceOne({"_id": w.doc["_id"], "seq": w.stored_seq}, _packed_dossier(w.doc))
                      for w in writes if w.stored_seq is not None])

    async def insert_all(self, dossiers: list[dict[str, Any]], rows: list[Row], firsts: dict[int, str],
                         marks: dict[int, int]) -> None:
        """A rebuild's bulk load into empty collections."""
        for suffix, docs, encode in (("", dossiers, _packed_dossier), ("_rows", rows, _packed_row)):
            for start in range(0, len(docs), 10 * READ_CHUNK):
                await self._named(suffix).insert_many([encode(d) for d in docs[start:start + 10 * READ_CHUNK]],
                                                      ordered=False)
        await self.mark_flushing({p: (firsts.get(p), mark) for p, mark in marks.items()})

    # -- readers -----------------------------------------------------------------------------------------------
    async def _readable(self) -> tuple[AsyncCollection, tuple[str, list[int]] | None]:
        """The active rows and their layout (the first month with data and the partitions that wrote rows; None
        before any), named per request: readers never move the projector's own pointer (`prepare`)."""
        name = (await self.collection()).name
        docs = [d for d in await self.db[name + "_partitions"].find({}).to_list(None) if "first" in d]
        layout = (min(d["first"] for d in docs), sorted(d["partition"] for d in docs)) if docs else None
        return self.db[name + "_rows"], layout

    async def slot_rows(self, up_to: str, slot: str) -> list[dict[str, Any]]:
        """Day rows of one slot (one per partition and day), from the first month with data to `up_to`:
        running figures need them all; `rollups.figures` adds them up."""
        rows, layout = await self._readable()
        if layout is None:
            return []
        first, partitions = layout
        group = row_group(slot)
        docs = await find_by_ids(rows, [row_id(m, group, p) for m in _months(first, up_to[:7]) for p in partitions])
        return [r for doc in docs for r in _days(doc["month"], slot, _slots(doc).get(slot, {})) if r["day"] <= up_to]

    async def ranking_rows(self, start: date, end: date) -> list[dict[str, Any]]:
        """Rows that give every unit's figures for the period: the `~units` rows of each month up to its end, and
        the unit rows of the (at most two) months it cuts."""
        rows, layout = await self._readable()
        if layout is None:
            return []
        first, partitions = layout
        months = _months(first, end.isoformat()[:7])
        found = await find_by_ids(rows, [row_id(m, rollups.UNIT_MONTHS, p) for m in months for p in partitions])
        monthly: dict[str, dict[str, Any]] = defaultdict(dict)
        for doc in found:
            _add_into(monthly[doc["month"]], _nested(_slots(doc).get(rollups.UNIT_MONTHS, {})))
        cut = [m for m in rollups.cut_months(start, end) if m in monthly]
        docs = await find_by_ids(rows, [row_id(m, g, p) for m in cut for g in unit_groups() for p in partitions])
        days = [r for doc in docs for unit, cells in _slots(doc).items() if unit in monthly[doc["month"]]
                for r in _days(doc["month"], unit, cells)]
        return rollups.ranking_rows(monthly, days, start, end)

    async def overdue(self, today: str, unit: str | None, limit: int) -> list[dict[str, Any]]:
        """Open dossiers due before `today` (held by `unit`, if given), earliest due first: from the `~open` rows of
        the months up to today's (a row per month and partition, holding only the dossiers still open), not from
        the dossiers (FerretDB would read every one of them)."""
        rows, layout = await self._readable()
        if layout is None:
            return []
        first, partitions = layout
        group = row_group(rollups.OPEN)
        docs = await find_by_ids(rows, [row_id(m, group, p) for m in _months(first, today[:7]) for p in partitions])
        listed = [rollups.open_dossier(f"{doc['month']}-{path[1:3]}", path[4:])
                  for doc in docs for path, n in _slots(doc).get(rollups.OPEN, {}).items() if n > 0]
        overdue = [d for d in listed if d["due_date"] < today and unit in (None, d["unit"])]
        return sorted(overdue, key=lambda d: (d["due_date"], d["code"]))[:limit]

    async def shortfalls(self, measure: str, lo: str, hi: str) -> list[tuple[str, str, str, str]]:
        """(day, code, receiving unit, competent unit) of the dossiers short of an index measure on the days [lo, hi],
        from the `~short<DD>` rows (a row per day and partition), not from the dossiers."""
        rows, layout = await self._readable()
        if layout is None:
            return []
        first, partitions = layout
        start, end = max(date.fromisoformat(lo), date.fromisoformat(f"{first}-01")), date.fromisoformat(hi)
        days = [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
        docs = await find_by_ids(rows, [row_id(day[:7], row_group(rollups.short_slot(day)), p)
                                        for day in days for p in partitions])
        out = []
        for doc in docs:
            for cells in _slots(doc).values():
                for path, n in cells.items():
                    entry = path[4:].split("|")
                    if n > 0 and entry[0] == measure:
                        out.append((f"{doc['month']}-{path[1:3]}", *entry[1:]))
        return out

    async def dossiers(self, codes: list[str]) -> list[dict[str, Any]]:
        """Dossier documents by code, without their packed lists."""
        return await find_by_ids(await self.collection(), codes, {"packed": 0})

    async def dossiers_between(self, day_field: str, lo: str, hi: str, units: list[str] | None) -> list[dict[str, Any]]:
        """Dossiers whose `day_field` is in [lo, hi] (for `closed_day`, or the day received: an item closes no earlier
        than received), at `units` (received or competent there; None: all), without their packed lists. A scan on
        FerretDB."""
        period = {"$gte": lo, "$lte": hi}
        days = [day_field, "received_day"] if day_field == "closed_day" else [day_field]
        match: dict[str, Any] = {"$or": [{day: period} for day in days]}
        if units is not None:
            match = {"$and": [match, {"$or": [{"receiving_unit": {"$in": units}}, {"competent_unit": {"$in": units}}]}]}
        return await (await self.collection()).find(match, projection={"packed": 0}).to_list(None)

    async def tracking(self, code: str) -> dict[str, Any] | None:
        doc = await (await self.collection()).find_one({"_id": code})
        return None if doc is None else _dossier_from(doc)


async def _write(collection: AsyncCollection, inserts: list[dict[str, Any]], replaces: list[ReplaceOne]) -> None:
    """Inserts in one bulk, guarded replaces in chunks (FerretDB hangs on update commands of ~100+ statements).
    Each count is checked; any shortfall or error, of whatever shape, is a conflict for the caller to redo."""
    try:
        if inserts:
            result = await collection.bulk_write([InsertOne(d) for d in inserts], ordered=False)
            if result.inserted_count != len(inserts):
                raise ProjectionConflict(f"{len(inserts) - result.inserted_count} inserts did not apply")
        for start in range(0, len(replaces), BULK_CHUNK):
            chunk = replaces[start:start + BULK_CHUNK]
            result = await collection.bulk_write(chunk, ordered=False)
            if result.matched_count != len(chunk):
                raise ProjectionConflict(f"{len(chunk) - result.matched_count} guarded writes did not apply")
    except ProjectionConflict:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the store answered, the batch is redone from what it holds
        raise ProjectionConflict(f"{collection.name}: write failed ({type(exc).__name__})") from exc


# FerretDB's cost per document grows with its fields, not only with the number of documents: a replace of a row of
# ~180 nested counters ran at ~450/s, of the same counters packed at ~1,500/s (one run). No query looks inside a row
# (rows are read by `_id` only), nor inside a dossier's lists (the overdue query reads its top-level fields), so
# those travel as one binary field each: a row's cells compressed, a dossier's lists as JSON (compressing ~700
# bytes cost the projector 16 us a dossier and FerretDB's inserts no less time; measured 2026-12-06).
_PACKED_LISTS = ("units", "steps", "timeline")


def _pack(value: Any) -> bytes:
    return zlib.compress(orjson.dumps(value), 1)


def _unpack(blob: bytes) -> Any:
    """Either form: JSON starts with `{`, a zlib stream never does (and dossiers stored before were compressed)."""
    return orjson.loads(blob if blob[:1] == b"{" else zlib.decompress(blob))


def _packed_row(row: Row) -> dict[str, Any]:
    return {"_id": row.id, "month": row.month, "group": row.group, "partition": row.partition, "pos": row.pos,
            "cells": _pack(row.cells)}


def _slots(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    return _unpack(doc["cells"])


def _row_from(doc: dict[str, Any]) -> Row:
    return Row(doc["_id"], doc["month"], doc["group"], doc["partition"], doc["pos"], _slots(doc),
               stored_pos=doc["pos"])


def _packed_dossier(doc: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in doc.items() if k not in _PACKED_LISTS},
            "packed": orjson.dumps({k: doc[k] for k in _PACKED_LISTS if k in doc})}


def _dossier_from(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored dossier as the projector and the readers take it."""
    return {**{k: v for k, v in doc.items() if k != "packed"}, **_unpack(doc["packed"])}


def _nested(cells: dict[str, int]) -> dict[str, Any]:
    """`d05.recv.received_online` -> n as {"d05": {"recv": {"received_online": n}}}."""
    out: dict[str, Any] = {}
    for path, n in cells.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = n
    return out


def _add_into(into: dict[str, Any], counts: dict[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, dict):
            _add_into(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value


def _months(first: str, last: str) -> list[str]:
    months, (y, m) = [], map(int, first.split("-"))
    while f"{y:04d}-{m:02d}" <= last:
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return months


def _days(month: str, slot: str, cells: dict[str, int]) -> list[dict[str, Any]]:
    """A slot's month of cells as day rows: {"day", "unit", <basis>: {counter: n}}."""
    return [{"day": f"{month}-{key[1:]}", "unit": slot, **value} for key, value in _nested(cells).items()]
