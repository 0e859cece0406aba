"""Each dossier's state: the workflow, the ids of outcomes already applied, and the outbox of events decided but not
yet acknowledged by Kafka — all in one write, so each input applies once and no decided event is lost.

Exactly one writer wins each version of a dossier, even with several routing instances: a write *inserts* the new
version as a document of its own (`routing_versions`, `_id` "<code>@<version>"), and an insert of an `_id` that
exists fails atomically on MongoDB and on FerretDB alike. An update with a condition would not do: FerretDB 1.24
(SQLite) checks the condition and writes in two steps, and two writers racing on one version both "matched" in
2,025 of 4,000 tries (measured). Which inserts won is read back from the store, never inferred from an error reply.

The winner then writes the dossier's head (`routing_workflows`), which readers and the ticker read. A head may lag
behind the versions (a writer died between the two writes, or writes it right now): a load also looks for the
versions after the head and takes the newest. Versions older than the newest are deleted behind.

`tick_on` is the first day the deadline clock may have something to say about a dossier (due-soon, overdue), so the
ticker reads only the dossiers due for a look (an index on MongoDB).
"""

from __future__ import annotations

import contextlib
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
        self.docs = db["routing_workflows"]  # the heads
        self.versions = db["routing_versions"]
        self.superseded: set[str] = set()  # version ids older than a newer version this process wrote

    async def ensure_indexes(self) -> None:
        await self.docs.create_index([("tick_on", ASCENDING)], name="tick_on")

    async def load(self, code: str) -> Record | None:
        return (await self.load_many([code])).get(code)

    async def load_many(self, codes: Iterable[str]) -> dict[str, Record]:
        codes = list(codes)
        if not codes:  # FerretDB scans the whole collection for `$in: []`
            return {}
        records = {doc["_id"]: _record(doc) for doc in await self.docs.find({"_id": {"$in": codes}}).to_list(None)}
        probe = {code: (records[code].version if code in records else 0) + 1 for code in codes}
        while probe:  # versions newer than the heads: usually none, so one read
            found = await self.versions.find({"_id": {"$in": [_version_id(c, v) for c, v in probe.items()]}}
                                             ).to_list(None)
            for doc in found:
                records[doc["code"]] = _record(doc)
            probe = {doc["code"]: doc["version"] + 1 for doc in found}
        return records

    async def due(self, today: date) -> list[str]:
        """Dossiers the deadline clock must look at today."""
        cursor = self.docs.find({"tick_on": {"$lte": today.isoformat()}}, projection={"_id": 1})
        return [doc["_id"] for doc in await cursor.to_list(None)]

    async def save_many(self, records: Iterable[Record]) -> set[str]:
        """Write the next version of each record (the one after the version it was read at). Returns the codes
        whose next version another writer took first: their records are not written and must be decided again."""
        records = list(records)
        if not records:
            return set()
        writer = uuid.uuid4().hex
        bodies = {r.workflow.code: _body(r, writer) for r in records}
        claims = {_version_id(r.workflow.code, r.version + 1): r for r in records}
        try:
            await self.versions.insert_many([{"_id": vid, "code": r.workflow.code, **bodies[r.workflow.code]}
                                             for vid, r in claims.items()], ordered=False)
            won = list(claims)
        except ConnectionFailure:
            raise  # the store is away: the batch comes again
        except PyMongoError:  # not interpreted: what the store holds decides
            held = await self.versions.find({"_id": {"$in": list(claims)}}, projection={"writer": 1}).to_list(None)
            won = [doc["_id"] for doc in held if doc.get("writer") == writer]
        lost = {r.workflow.code for r in records} - {claims[vid].workflow.code for vid in won}
        await self._write_heads({claims[vid].workflow.code: bodies[claims[vid].workflow.code] for vid in won})
        for vid in won:
            record = claims[vid]
            if record.version > 0:
                self.superseded.add(_version_id(record.workflow.code, record.version))
            record.version += 1
            record.writer = writer
        return lost

    async def _write_heads(self, bodies: dict[str, dict[str, Any]]) -> None:
        """Heads never move back: a head is replaced only by a newer version (a late writer's head is dropped)."""
        complete = True
        new = [{"_id": code, **body} for code, body in bodies.items() if body["version"] == 1]
        if new:
            try:
                await self.docs.insert_many(new, ordered=False)
            except ConnectionFailure:
                raise
            except PyMongoError:  # only a newer writer's head refuses it
                complete = False
        newer = [UpdateOne({"_id": code, "version": {"$lt": body["version"]}}, {"$set": body})
                 for code, body in bodies.items() if body["version"] > 1]
        for start in range(0, len(newer), MAX_UPDATES_PER_COMMAND):
            chunk = newer[start:start + MAX_UPDATES_PER_COMMAND]
            complete = (await self.docs.bulk_write(chunk, ordered=False)).matched_count == len(chunk) and complete
        if complete:
            return
        # A head missing altogether (its first writer died between the version and the head) is created now;
        # until then loads found the versions anyway.
        held = {doc["_id"] for doc in await self.docs.find({"_id": {"$in": list(bodies)}}, projection={"_id": 1}
                                                              ).to_list(None)}
        missing = [{"_id": code, **body} for code, body in bodies.items() if code not in held]
        if missing:
            with contextlib.suppress(PyMongoError):  # another writer created it meanwhile: it holds a version too
                await self.docs.insert_many(missing, ordered=False)

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
        superseded, self.superseded = list(self.superseded), set()
        if superseded:
            await self.versions.delete_many({"_id": {"$in": superseded}})


def _version_id(code: str, version: int) -> str:
    return f"{code}@{version}"


def _record(doc: dict[str, Any]) -> Record:
    return Record(_WORKFLOW.validate_python(doc["workflow"]), doc["version"], doc["applied"], doc["outbox"],
                  doc.get("refused", {}), doc.get("writer", ""))


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
