"""Intake's store: one document per dossier, keyed by its idempotency key, which is at once the deduplication
record, the holder of the dossier code and the outbox entry of its `dossier.submitted` event.

Every hot-path read is by `_id` (FerretDB's SQLite backend scans for anything else; MongoDB is fast either way).

Codes are `<unit>-<yyMMdd>-<NNNN>`. A unique index on (unit, day, seq) arbitrates: a number is consumed only by a
stored dossier, so retries leave no gaps and concurrent writers no duplicates. Which number to try next comes
from this process's memory, else from a per unit-day counter document that is only a hint (raised with `$max`
after each insert, never ahead of the stored dossiers): a stale hint costs a retry, never a gap. Many filings are
stored in one insert (intake's group commit); whatever the store answers, the dossiers it then holds decide which
were stored, so no correctness rests on the shape of an error reply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from intake.domain import dossier_code, dossier_day
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.locks import KeyedLocks
from lienthong.store import bulk_update

MAX_ALLOCATION_ATTEMPTS = 1000


@dataclass(frozen=True)
class NewDossier:
    key: str
    unit: str
    received_at: datetime
    build_event: Callable[[str], CloudEvent]  # the dossier's `dossier.submitted`, given its code
    fingerprint: str | None = None


@dataclass(frozen=True)
class StoredDossier:
    key: str
    code: str
    event: CloudEvent
    published: bool
    fingerprint: str | None = None  # of the submission it came from (None: stored before fingerprints)


class DossierStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.dossiers = db["intake_dossiers"]
        self.counters = db["intake_code_counters"]
        self._next_seq: dict[str, int] = {}
        self.lock = KeyedLocks()  # per idempotency key, within this process

    async def setup(self) -> None:
        await self.dossiers.create_index([("code", ASCENDING)], unique=True, name="code_unique")
        await self.dossiers.create_index(
            [("unit", ASCENDING), ("day", ASCENDING), ("seq", ASCENDING)], unique=True, name="unit_day_seq_unique"
        )

    async def find_by_key(self, key: str) -> StoredDossier | None:
        return (await self.find_many([key])).get(key)

    async def find_many(self, keys: list[str]) -> dict[str, StoredDossier]:
        docs = await self.dossiers.find({"_id": {"$in": keys}}).to_list(None)
        return {doc["_id"]: stored for doc in docs if (stored := _stored(doc)) is not None}

    async def find_by_code(self, code: str) -> StoredDossier | None:
        """By dossier code (unique index); used by the rare personal-data reads, not the hot path."""
        return _stored(await self.dossiers.find_one({"code": code}))

    async def create_many(self, new: list[NewDossier]) -> list[tuple[StoredDossier, bool]]:
        """Store new dossiers under the next free codes, many in one insert. A key stored meanwhile by another
        writer comes back as (existing, False). Whatever the store answers to the insert, what it then holds
        decides: a dossier whose key is absent lost its number to another writer and tries the next one."""
        counters = {_counter(n) for n in new}
        try:
            results, stored_up_to = await self._insert(new, counters)
        except BaseException:
            for counter_id in counters:  # numbers handed out may not be stored: start again from what is
                self._next_seq.pop(counter_id, None)
            raise
        # Hints for the next process; never ahead of stored dossiers.
        await bulk_update(self.counters, [UpdateOne({"_id": c}, {"$max": {"seq": seq}}, upsert=True)
                                          for c, seq in stored_up_to.items()])
        return [results[n.key] for n in new]

    async def _insert(self, new: list[NewDossier], counters: set[str]
                      ) -> tuple[dict[str, tuple[StoredDossier, bool]], dict[str, int]]:
        results: dict[str, tuple[StoredDossier, bool]] = {}
        stored_up_to: dict[str, int] = {}
        unknown = [c for c in counters if c not in self._next_seq]
        if unknown:
            hints = await self.counters.find({"_id": {"$in": unknown}}).to_list(None)
            self._next_seq |= {c: 1 for c in unknown} | {doc["_id"]: doc["seq"] + 1 for doc in hints}
        pending = list({n.key: n for n in reversed(new)}.values())[::-1]  # one per key, in arrival order
        for _ in range(MAX_ALLOCATION_ATTEMPTS):
            if not pending:
                break
            attempt = []
            for n in pending:
                counter_id, day = _counter(n), dossier_day(n.received_at)
                seq = self._next_seq[counter_id]
                self._next_seq[counter_id] = seq + 1
                code = dossier_code(n.unit, day, seq)
                attempt.append((n, StoredDossier(n.key, code, n.build_event(code), published=False,
                                                 fingerprint=n.fingerprint), day, seq))
            try:
                await self.dossiers.insert_many([_document(stored, n.unit, day, seq) for n, stored, day, seq in attempt],
                                                ordered=False)
                held = {stored.key: stored for _, stored, _, _ in attempt}
            except Exception:  # noqa: BLE001 - not interpreted: read back what was stored
                held = await self.find_many([n.key for n in pending])
            pending = []
            for n, stored, _, seq in attempt:
                if (mine := held.get(n.key)) is None:
                    pending.append(n)  # its number was taken meanwhile: the next one
                    continue
                ours = mine.event.id == stored.event.id
                results[n.key] = (mine, ours)
                if ours:
                    stored_up_to[_counter(n)] = max(stored_up_to.get(_counter(n), 0), seq)
        else:
            raise RuntimeError(f"could not allocate dossier codes for {len(pending)} dossiers")
        return results, stored_up_to

    async def mark_published_many(self, keys: list[str]) -> None:
        # One statement per key, by `_id`: FerretDB's indexed path (an `update_many` with `$in` scans the table).
        await bulk_update(self.dossiers, [UpdateOne({"_id": key}, {"$set": {"published": True}}) for key in keys])

    async def unpublished(self, limit: int = 1000) -> list[StoredDossier]:
        """A full scan: run once at start-up to pick up what a crashed process left unpublished."""
        cursor = self.dossiers.find({"published": False}).limit(limit)
        return [s for doc in await cursor.to_list(limit) if (s := _stored(doc)) is not None]


def _counter(n: NewDossier) -> str:
    return f"{n.unit}-{dossier_day(n.received_at)}"


def _document(stored: StoredDossier, unit: str, day: str, seq: int) -> dict:
    return {"_id": stored.key, "code": stored.code, "unit": unit, "day": day, "seq": seq,
            "event": to_json(stored.event).decode(), "published": False, "fingerprint": stored.fingerprint,
            "created_at": datetime.now(UTC)}


def _stored(doc: dict | None) -> StoredDossier | None:
    if doc is None:
        return None
    return StoredDossier(key=doc["_id"], code=doc["code"], event=parse_event(doc["event"]), published=doc["published"],
                         fingerprint=doc.get("fingerprint"))
