"""Intake's store: one document per dossier, which is at once the idempotency record, the code allocator and the
outbox of its `dossier.submitted` event.

Codes are `<unit>-<yyMMdd>-<NNNN>`. The next number is the highest stored one for that unit and day plus one, and a
unique index on (unit, day, seq) arbitrates between writers: a number is consumed only by a stored dossier, so
retries leave no gaps and concurrent writers no duplicates. An in-process lock per unit-day spares one instance
the duplicate-key retries; several instances stay correct through the index.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from intake.domain import dossier_code, dossier_day
from lienthong.contracts import CloudEvent, parse_event, to_json

MAX_ALLOCATION_ATTEMPTS = 100


@dataclass(frozen=True)
class StoredDossier:
    code: str
    event: CloudEvent
    published: bool


class DossierRepository:
    def __init__(self, db: AsyncDatabase) -> None:
        self.dossiers = db["intake_dossiers"]
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def setup(self) -> None:
        await self.dossiers.create_index([("idem_key", ASCENDING)], unique=True, name="idem_key_unique")
        await self.dossiers.create_index(
            [("unit", ASCENDING), ("day", ASCENDING), ("seq", ASCENDING)], unique=True, name="unit_day_seq_unique"
        )
        await self.dossiers.create_index([("published", ASCENDING), ("created_at", ASCENDING)], name="outbox")

    def lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def find_by_key(self, idem_key: str) -> StoredDossier | None:
        return _stored(await self.dossiers.find_one({"idem_key": idem_key}))

    async def create(
        self, idem_key: str, unit: str, received_at: datetime, build_event: Callable[[str], CloudEvent]
    ) -> tuple[StoredDossier, bool]:
        """Store a new dossier under the next free code; (existing, False) if the key was stored meanwhile."""
        day = dossier_day(received_at)
        async with self.lock(f"{unit}-{day}"):
            for _ in range(MAX_ALLOCATION_ATTEMPTS):
                last = await self.dossiers.find_one(
                    {"unit": unit, "day": day}, sort=[("seq", DESCENDING)], projection={"seq": 1}
                )
                seq = (last["seq"] if last else 0) + 1
                code = dossier_code(unit, day, seq)
                event = build_event(code)
                try:
                    await self.dossiers.insert_one(
                        {
                            "_id": code,
                            "idem_key": idem_key,
                            "unit": unit,
                            "day": day,
                            "seq": seq,
                            "event": to_json(event).decode(),
                            "published": False,
                            "created_at": datetime.now(UTC),
                        }
                    )
                    return StoredDossier(code, event, published=False), True
                except DuplicateKeyError:
                    existing = await self.find_by_key(idem_key)
                    if existing is not None:
                        return existing, False
                    # Another writer took this number: read the new maximum and try the next one.
        raise RuntimeError(f"could not allocate a dossier code for {unit}-{day}")

    async def mark_published(self, code: str) -> None:
        await self.dossiers.update_one({"_id": code}, {"$set": {"published": True}})

    async def unpublished(self, older_than: timedelta, limit: int = 500) -> list[StoredDossier]:
        cutoff = datetime.now(UTC) - older_than
        cursor = self.dossiers.find({"published": False, "created_at": {"$lt": cutoff}}).sort("created_at", 1)
        return [s for doc in await cursor.to_list(limit) if (s := _stored(doc)) is not None]


def _stored(doc: dict | None) -> StoredDossier | None:
    if doc is None:
        return None
    return StoredDossier(code=doc["_id"], event=parse_event(doc["event"]), published=doc["published"])
