"""One document per dossier: the workflow, the ids of outcomes already applied, and the outbox of events decided
but not yet acknowledged by Kafka — all in one write, so each input applies once and no decided event is lost.

Writes are compare-and-set on `version` (atomic on MongoDB), so two routing instances never overwrite each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import TypeAdapter
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lienthong.locks import KeyedLocks
from routing.workflow import Workflow

_WORKFLOW = TypeAdapter(Workflow)
MAX_REMEMBERED_OUTCOMES = 200


class ConcurrentUpdate(Exception):
    """Another writer changed the dossier first: reload and decide again."""


@dataclass
class Record:
    workflow: Workflow
    version: int
    applied: list[str] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)  # CloudEvents JSON, in order
    refused: dict[str, str] = field(default_factory=dict)  # outcomes the workflow refused: id -> why

    def seen(self, event_id: str) -> bool:
        """Applied or refused before: a redelivery changes nothing and alerts no one again."""
        return event_id in self.applied or event_id in self.refused


class WorkflowStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.docs = db["routing_workflows"]
        self.lock = KeyedLocks()  # one writer per dossier within this process

    async def load(self, code: str) -> Record | None:
        doc = await self.docs.find_one({"_id": code})
        if doc is None:
            return None
        return Record(_WORKFLOW.validate_python(doc["workflow"]), doc["version"], doc["applied"], doc["outbox"],
                      doc.get("refused", {}))

    async def save(self, record: Record, *, new: bool = False) -> None:
        body = {
            "workflow": _WORKFLOW.dump_python(record.workflow, mode="json"),
            "status": record.workflow.status,
            "applied": record.applied[-MAX_REMEMBERED_OUTCOMES:],
            "refused": dict(list(record.refused.items())[-MAX_REMEMBERED_OUTCOMES:]),
            "outbox": record.outbox,
            "version": record.version + 1,
            "updated_at": datetime.now(UTC),
        }
        if new:
            try:
                await self.docs.insert_one({"_id": record.workflow.code, **body})
            except DuplicateKeyError as exc:
                raise ConcurrentUpdate(record.workflow.code) from exc
        else:
            result = await self.docs.update_one({"_id": record.workflow.code, "version": record.version}, {"$set": body})
            if result.matched_count == 0:
                raise ConcurrentUpdate(record.workflow.code)
        record.version += 1

    async def clear_outbox(self, record: Record) -> None:
        record.outbox = []
        await self.save(record)

    async def open_codes(self) -> list[str]:
        """Dossiers whose clock runs (for the due-soon/overdue scheduler; not a hot path)."""
        cursor = self.docs.find({"status": "in_progress"}, projection={"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list(None)]
