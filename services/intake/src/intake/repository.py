"""Intake's store: one document per dossier, keyed by its idempotency key, which is at once the deduplication
record, the holder of the dossier code and the outbox entry of its `dossier.submitted` event.

Every hot-path read is by `_id` (FerretDB's SQLite backend scans for anything else; MongoDB is fast either way).

Codes are `<unit>-<yyMMdd>-<NNNN>`. A unique index on (unit, day, seq) arbitrates: a number is consumed only by a
stored dossier, so retries leave no gaps and concurrent writers no duplicates. Which number to try next comes
from this process's memory, else from a per unit-day counter document that is only a hint (raised with `$max`
after each insert, never ahead of the stored dossiers): a stale hint costs a duplicate-key retry, never a gap.
An in-process lock per unit-day spares one instance the retries; several instances stay correct through the index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from intake.domain import dossier_code, dossier_day
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.locks import KeyedLocks

MAX_ALLOCATION_ATTEMPTS = 1000


@dataclass(frozen=True)
class StoredDossier:
    key: str
    code: str
    event: CloudEvent
    published: bool
    fingerprint: str | None = None  # of the submission it came from (None: stored before fingerprints)


class DossierRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.dossiers = db["intake_dossiers"]
        self.counters = db["intake_code_counters"]
        self._next_seq: dict[str, int] = {}
        self.lock = KeyedLocks()  # per unit-day and per idempotency key, within this process

    async def setup(self) -> None:
        await self.dossiers.create_index([("code", ASCENDING)], unique=True, name="code_unique")
        await self.dossiers.create_index(
            [("unit", ASCENDING), ("day", ASCENDING), ("seq", ASCENDING)], unique=True, name="unit_day_seq_unique"
        )

    async def find_by_key(self, key: str) -> StoredDossier | None:
        return _stored(await self.dossiers.find_one({"_id": key}))

    async def find_by_code(self, code: str) -> StoredDossier | None:
        """By dossier code (unique index); used by the rare personal-data reads, not the hot path."""
        return _stored(await self.dossiers.find_one({"code": code}))

    async def create(
        self, key: str, unit: str, received_at: datetime, build_event: Callable[[str], CloudEvent],
        fingerprint: str | None = None,
    ) -> tuple[StoredDossier, bool]:
        """Store a new dossier under the next free code; (existing, False) if the key was stored meanwhile."""
        day = dossier_day(received_at)
        counter_id = f"{unit}-{day}"
        async with self.lock(counter_id):
            seq = self._next_seq.get(counter_id) or await self._hint(counter_id)
            for _ in range(MAX_ALLOCATION_ATTEMPTS):
                code = dossier_code(unit, day, seq)
                event = build_event(code)
                try:
                    await self.dossiers.insert_one(
                        {
                            "_id": key,
                            "code": code,
                            "unit": unit,
                            "day": day,
                            "seq": seq,
                            "event": to_json(event).decode(),
                            "published": False,
                            "fingerprint": fingerprint,
                            "created_at": datetime.now(UTC),
                        }
                    )
                except DuplicateKeyError:
                    existing = await self.find_by_key(key)
                    if existing is not None:
                        return existing, False
                    seq += 1  # another writer holds this number
                    continue
                self._next_seq[counter_id] = seq + 1
                await self.counters.update_one({"_id": counter_id}, {"$max": {"seq": seq}}, upsert=True)
                return StoredDossier(key, code, event, published=False, fingerprint=fingerprint), True
        raise RuntimeError(f"could not allocate a dossier code for {counter_id}")

    async def _hint(self, counter_id: str) -> int:
        doc = await self.counters.find_one({"_id": counter_id})
        return (doc["seq"] if doc else 0) + 1

    async def mark_published(self, key: str) -> None:
        await self.dossiers.update_one({"_id": key}, {"$set": {"published": True}})

    async def unpublished(self, limit: int = 1000) -> list[StoredDossier]:
        """A full scan: run once at start-up to pick up what a crashed process left unpublished."""
        cursor = self.dossiers.find({"published": False}).limit(limit)
        return [s for doc in await cursor.to_list(limit) if (s := _stored(doc)) is not None]


def _stored(doc: dict | None) -> StoredDossier | None:
    if doc is None:
        return None
    return StoredDossier(key=doc["_id"], code=doc["code"], event=parse_event(doc["event"]), published=doc["published"],
                         fingerprint=doc.get("fingerprint"))
