"""Each dossier's state: the workflow, the ids of outcomes already applied, and the outbox of events decided but not
yet acknowledged by Kafka — all in one write, so each input applies once and no decided event is lost.

Exactly one writer wins each version of a dossier, even with several routing instances: a write *inserts* the new
version as a document of its own (`routing_versions`, `_id` "<code>@<version>"), and an insert of an `_id` that
exists fails atomically on MongoDB and on FerretDB alike. An update with a condition would not do: FerretDB 1.24
(SQLite) checks the condition and writes in two steps, and two writers racing on one version both "matched" in
2,025 of 4,000 tries (measured). Which inserts won is read back from the store, never inferred from an error reply.

The dossier's head (`routing_workflows`), which the ticker reads, is written behind (`write_behind`, every second or
so): the newest body of each dossier written since, its outbox already cleared if it was published by then, so a
dossier that moves several steps in that time costs one head write, and a new one an insert, not an update.
FerretDB does several times more inserts than updates a second, and the head was the one update per step. A head
therefore lags behind the versions (written behind, or its writer died first): a load looks for the versions after
the head, a few at a time, and takes the newest. Versions from a head's version to the newest are never deleted,
so the versions a load looks for have no gap: a version is deleted only once a head at a later version is stored.

`tick_on` is the first day the deadline clock may have something to say about a dossier (due-soon, overdue), so the
ticker reads only the dossiers due for a look (an index on MongoDB; FerretDB scans, see `create_query_indexes`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import TypeAdapter
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError

from lienthong.store import MAX_UPDATES_PER_COMMAND, bulk_update, create_query_indexes
from routing.workflow import Workflow, next_tick_day

_WORKFLOW = TypeAdapter(Workflow)
MAX_REMEMBERED_OUTCOMES = 200
PROBE_AHEAD = 4  # versions a load asks for at once past the head (the head lags by one version or two, mostly)
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


@dataclass
class _Head:
    """A head to write behind: the newest body this process wrote, and whether the dossier has a stored head yet
    (this process wrote its first version: an insert will do)."""

    body: dict[str, Any]
    new: bool


class WorkflowStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.docs = db["routing_workflows"]  # the heads
        self.versions = db["routing_versions"]
        self.heads: dict[str, _Head] = {}  # written behind
        self.superseded: set[str] = set()  # version ids older than a newer version this process wrote

    async def ensure_indexes(self) -> None:
        await create_query_indexes(self.docs, [IndexModel([("tick_on", ASCENDING)], name="tick_on")])

    async def load(self, code: str) -> Record | None:
        return (await self.load_many([code])).get(code)

    async def load_many(self, codes: Iterable[str]) -> dict[str, Record]:
        codes = list(codes)
        if not codes:  # FerretDB scans the whole collection for `$in: []`
            return {}
        records = {doc["_id"]: _record(doc) for doc in await self.docs.find({"_id": {"$in": codes}}).to_list(None)}
        probe = {code: (records[code].version if code in records else 0) + 1 for code in codes}
        while probe:  # versions newer than the heads, PROBE_AHEAD at a time: usually one read
            found = await self.versions.find({"_id": {"$in": [_version_id(c, v + k) for c, v in probe.items()
                                                              for k in range(PROBE_AHEAD)]}}).to_list(None)
            newest: dict[str, dict[str, Any]] = {}
            for doc in found:
                if doc["version"] > newest.get(doc["code"], {"version": 0})["version"]:
                    newest[doc["code"]] = doc
            records.update((code, _record(doc)) for code, doc in newest.items())
            probe = {code: doc["version"] + 1 for code, doc in newest.items()
                     if doc["version"] == probe[code] + PROBE_AHEAD - 1}  # all found: there may be more
        return records

    async def due(self, today: date) -> list[str]:
        """Dossiers the deadline clock must look at today (the heads not yet written behind included)."""
        cursor = self.docs.find({"tick_on": {"$lte": today.isoformat()}}, projection={"_id": 1})
        stored = [doc["_id"] for doc in await cursor.to_list(None)]
        return list(dict.fromkeys([*stored, *(code for code, head in self.heads.items()
                                              if head.body["tick_on"] <= today.isoformat())]))

    async def save_many(self, records: Iterable[Record]) -> set[str]:
        """Write the next version of each record (the one after the version it was read at). Returns the codes
        whose next version another writer took first: their records are not written and must be decided again.
        Their heads are written behind (`write_behind`)."""
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
        for vid in won:  # no await from here on: a write-behind round sees the heads and superseded ids together
            record = claims[vid]
            code = record.workflow.code
            pending = self.heads.get(code)
            self.heads[code] = _Head(bodies[code], new=record.version == 0 or (pending is not None and pending.new))
            if record.version > 0:
                self.superseded.add(_version_id(code, record.version))
            record.version += 1
            record.writer = writer
        return lost

    async def write_behind(self, published: dict[str, str]) -> None:
        """Write the heads of the dossiers written since the last round, with the outboxes `published` names
        (code -> the token of the write whose outbox was published) cleared; clear the published outboxes of
        heads written earlier; then delete the versions the heads have passed. A failure leaves it all for the
        next round (the heads stay behind meanwhile; loads find the versions)."""
        heads, superseded = dict(self.heads), set(self.superseded)
        bodies = {code: {**head.body, "outbox": []} if published.get(code) == head.body["writer"] else head.body
                  for code, head in heads.items()}
        await self._write_heads(bodies, {code for code, head in heads.items() if head.new})
        by_writer: dict[str, list[str]] = {}
        for code, writer in published.items():
            if code not in heads:
                by_writer.setdefault(writer, []).append(code)
        for writer, codes in by_writer.items():  # only documents that write still marks: a newer outbox stays
            await self.docs.update_many({"_id": {"$in": codes}, "writer": writer}, {"$set": {"outbox": []}})
        for code, head in heads.items():
            if self.heads.get(code) is head:  # not written again meanwhile
                del self.heads[code]
        if superseded:  # each is older than a head stored above
            await self.versions.delete_many({"_id": {"$in": list(superseded)}})
            self.superseded -= superseded

    async def _write_heads(self, bodies: dict[str, dict[str, Any]], new: set[str]) -> None:
        """Heads never move back: a head is replaced only by a newer version (a late writer's head is dropped)."""
        complete = True
        inserts = [{"_id": code, **body} for code, body in bodies.items() if code in new]
        if inserts:
            try:
                await self.docs.insert_many(inserts, ordered=False)
            except ConnectionFailure:
                raise
            except PyMongoError:  # only another writer's head refuses it (a dossier this process started first)
                complete = False
        newer = [UpdateOne({"_id": code, "version": {"$lt": body["version"]}}, {"$set": body})
                 for code, body in bodies.items() if code not in new]
        for start in range(0, len(newer), MAX_UPDATES_PER_COMMAND):
            chunk = newer[start:start + MAX_UPDATES_PER_COMMAND]
            complete = (await self.docs.bulk_write(chunk, ordered=False)).matched_count == len(chunk) and complete
        if complete:
            return
        # A head missing altogether (its first writer died before writing it) is created now; a head refused as
        # new is brought forward if it is older; until then loads found the versions anyway.
        held = {doc["_id"]: doc["version"] for doc in await self.docs.find(
            {"_id": {"$in": list(bodies)}}, projection={"version": 1}).to_list(None)}
        missing = [{"_id": code, **body} for code, body in bodies.items() if code not in held]
        if missing:
            with contextlib.suppress(PyMongoError):  # another writer created it meanwhile: it holds a version too
                await self.docs.insert_many(missing, ordered=False)
        behind = [UpdateOne({"_id": code, "version": {"$lt": body["version"]}}, {"$set": body})
                  for code, body in bodies.items() if code in new and held.get(code, body["version"]) < body["version"]]
        if behind:
            await bulk_update(self.docs, behind)


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
