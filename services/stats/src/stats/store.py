"""Projections in MongoDB: one document per dossier whose `seq` is the tracking position, stored in the same
write as the effect — so each event applies once, whatever Kafka redelivers or a replay sends again."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lienthong.contracts import CloudEvent
from stats.projection import apply

MAX_CONFLICT_RETRIES = 5
ACTIVE = "active"
DEFAULT_COLLECTION = "stats_dossiers"
FIGURE_FIELDS = {"received_day": 1, "channel": 1, "closed_day": 1, "status": 1, "on_time": 1, "due_date": 1,
                 "receiving_unit": 1, "competent_unit": 1}


class ProjectionStore:
    """Projections live in the collection that the `stats_meta` pointer names, so a rebuild can fill a fresh
    collection and switch every reader and writer over with one single-document write (atomic everywhere;
    FerretDB v1 has no renameCollection with dropTarget)."""

    def __init__(self, db: AsyncDatabase, collection: str | None = None) -> None:
        self.db = db
        self.meta = db["stats_meta"]
        self.fixed = collection

    async def collection(self) -> AsyncCollection:
        if self.fixed is not None:
            return self.db[self.fixed]
        pointer = await self.meta.find_one({"_id": ACTIVE})
        return self.db[pointer["collection"] if pointer else DEFAULT_COLLECTION]

    async def switch_to(self, name: str) -> str:
        """Point every reader and writer at `name`; returns the collection it replaced."""
        previous = (await self.collection()).name
        await self.meta.update_one({"_id": ACTIVE}, {"$set": {"collection": name}}, upsert=True)
        return previous

    async def project(self, events: list[CloudEvent]) -> int:
        """Fold a batch: one read and at most one write per dossier. Returns how many documents changed."""
        by_dossier: dict[str, list[CloudEvent]] = defaultdict(list)
        for event in events:
            by_dossier[event.subject].append(event)
        dossiers = await self.collection()
        changed = 0
        for code, evs in by_dossier.items():
            changed += await self._project_one(dossiers, code, sorted(evs, key=lambda e: e.dossierseq))
        return changed

    async def _project_one(self, dossiers: AsyncCollection, code: str, events: list[CloudEvent]) -> int:
        for _ in range(MAX_CONFLICT_RETRIES):
            stored = await dossiers.find_one({"_id": code})
            doc = stored
            for event in events:
                doc = apply(doc, event) or doc
            if doc is stored:
                return 0  # everything already applied (redelivery, replay) or not yet applicable
            try:
                if stored is None:
                    await dossiers.insert_one(doc)
                    return 1
                result = await dossiers.replace_one({"_id": code, "seq": stored["seq"]}, doc)
                if result.matched_count == 1:
                    return 1
            except DuplicateKeyError:
                pass
            # another writer moved the dossier on meanwhile: read again and re-fold
        raise RuntimeError(f"dossier {code}: too many concurrent projection updates")

    async def figure_docs(self, up_to: str) -> list[dict[str, Any]]:
        cursor = (await self.collection()).find({"received_day": {"$lte": up_to}}, projection=FIGURE_FIELDS)
        return await cursor.to_list(None)

    async def tracking(self, code: str) -> dict[str, Any] | None:
        return await (await self.collection()).find_one({"_id": code})
