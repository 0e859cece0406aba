"""One document per dossier: the workflow, the ids of outcomes already applied, and the outbox of events decided
but not yet acknowledged by Kafka — all in one write, so each input applies once and no decided event is lost.

Routing works in batches: the batch's dossiers are read in one query and written in a few commands. Writes are
compare-and-set on `version` and stamp the batch's `writer` token, so two routing instances never overwrite each
other; which writes won is read back from the store, never inferred from the shape of an error reply (FerretDB's
differ from MongoDB's).

`tick_on` is the first day the deadline clock may have something to say about a dossier (due-soon, overdue), so the
ticker reads only the dossiers due for a look (an index on MongoDB).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import TypeAdapter
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError

from lienthong.store import MAX_UPDATES_PER_COMMAND
from routing.workflow import Workflow, next_tick_day

_WORKFLOW = TypeAdapter(Workflow)
MAX_REMEMBERED_OUTCOMES = 200
NEVER = "9999-12-31"  # tick_on of a dossier whose clock does not run


class ConcurrentUpdate(Exception):
    """Another writer changed the dossier first: reload and decide again."""


@dataclass
class Record:
    workflow: Workflow
    version: int  # 0: not stored yet
    applied: list[str] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)  # CloudEvents JSON, in order
    refused: dict[str, str] = field(default_factory=dict)  # outcomes the workflow refused: id -> why
    writer: str = ""  # the token of the batch that wrote it last

    def seen(self, event_id: str) -> bool:
        """Applied or refused before: a redelivery changes nothing and alerts no one again."""
        return event_id in self.applied or event_id in self.refused


class WorkflowStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.docs = db["routing_workflows"]

    async def ensure_indexes(self) -> None:
        await self.docs.create_index([("tick_on", ASCENDING)], name="tick_on")

    async def load(self, code: str) -> Record | None:
        return (await self.load_many([code])).get(code)

    async def load_many(self, codes: Iterable[str]) -> dict[str, Record]:
        codes = list(codes)
        if not codes:  # FerretDB scans the whole collection for `$in: []`
            return {}
        docs = await self.docs.find({"_id": {"$in": codes}}).to_list(None)
        return {doc["_id"]: Record(_WORKFLOW.validate_python(doc["workflow"]), doc["version"], doc["applied"],
                                   doc["outbox"], doc.get("refused", {}), doc.get("writer", "")) for doc in docs}

    async def due(self, today: date) -> list[str]:
        """Dossiers the deadline clock must look at today."""
        cursor = self.docs.find({"tick_on": {"$lte": today.isoformat()}}, projection={"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list(None)]

    async def save_many(self, records: Iterable[Record]) -> set[str]:
        """Write every record whose version is still the one it was read at (version 0: absent) and bump it.
        Returns the codes another writer changed first: their records are not written and must be decided again."""
        records = list(records)
        if not records:
            return set()
        writer = uuid.uuid4().hex
        bodies = {r.workflow.code: _body(r, writer) for r in records}
        new = [r for r in records if r.version == 0]
        old = [r for r in records if r.version > 0]
        complete = True
        try:
            if new:
                await self.docs.insert_many([{"_id": r.workflow.code, **bodies[r.workflow.code]} for r in new],
                                            ordered=False)
            for start in range(0, len(old), MAX_UPDATES_PER_COMMAND):
                chunk = old[start:start + MAX_UPDATES_PER_COMMAND]
                result = await self.docs.bulk_write(
                    [UpdateOne({"_id": r.workflow.code, "version": r.version}, {"$set": bodies[r.workflow.code]})
                     for r in chunk], ordered=False)
                complete = complete and result.matched_count == len(chunk)
        except ConnectionFailure:
            raise  # the store is away: the batch comes again
        except PyMongoError:  # not interpreted: what the store holds decides
            complete = False
        if complete:
            lost: set[str] = set()
        else:
            held = await self.docs.find({"_id": {"$in": list(bodies)}}, projection={"writer": 1}).to_list(None)
            won = {doc["_id"] for doc in held if doc.get("writer") == writer}
            lost = set(bodies) - won
        for record in records:
            if record.workflow.code not in lost:
                record.version += 1
                record.writer = writer
        return lost

    async def clear_outboxes(self, published: dict[str, str]) -> None:
        """Clear the outboxes of these dossiers (code -> the token of the write whose outbox was published): one
        statement per token, matching only documents that write still marks; a dossier written since keeps its
        newer outbox. The version does not move: clearing what was published changes no decision, so it never
        makes a batch that read the dossier before decide again."""
        by_writer: dict[str, list[str]] = {}
        for code, writer in published.items():
            by_writer.setdefault(writer, []).append(code)
        for writer, codes in by_writer.items():
            await self.docs.update_many({"_id": {"$in": codes}, "writer": writer}, {"$set": {"outbox": []}})


def _body(record: Record, writer: str) -> dict[str, Any]:
    tick_on = next_tick_day(record.workflow)
    return {
        "workflow": _WORKFLOW.dump_python(record.workflow, mode="json"),
        "status": record.workflow.status,
        "tick_on": tick_on.isoformat() if tick_on else NEVER,
        "applied": record.applied[-MAX_REMEMBERED_OUTCOMES:],
        "refused": dict(list(record.refused.items())[-MAX_REMEMBERED_OUTCOMES:]),
        "outbox": record.outbox,
        "version": record.version + 1,
        "writer": writer,
        "updated_at": datetime.now(UTC),
    }
