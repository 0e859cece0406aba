"""Each dossier's state: the workflow, the ids of outcomes already applied, and the outbox of events decided but not
yet acknowledged by Kafka — all in one write, so each input applies once and no decided event is lost.

Exactly one writer wins each version of a dossier, even with several routing instances: a write *inserts* the new
version as a document of its own (`routing_versions`, `_id` "<code>@<version>"), and an insert of an `_id` that
exists fails atomically on MongoDB and on FerretDB alike. An update with a condition would not do: FerretDB 1.24
(SQLite) checks the condition and writes in two steps, and two writers racing on one version both "matched" in
2,025 of 4,000 tries (measured). Which inserts won is read back from the store, never inferred from an error reply.

The dossier's head (`routing_workflows`) is small: its newest stored version, `tick_on` and status for the ticker,
and `published`, the newest version whose outbox Kafka acknowledged. It is written behind (`write_behind`, every
second or so), once per dossier whatever the steps it moved meanwhile: a new dossier costs an insert, and an update
of a small head is ~3x cheaper on FerretDB than one of the whole state (measured: 3,300 against 1,100 updates/s).
A load reads the heads, then the versions from each head's on, a few at a time, and takes the newest. Versions from
a head's version to the newest are never deleted, so a load finds them without a gap: a version is deleted only
once a head at a later version is stored. (A head an earlier release wrote holds the whole state, and is read as
such.)

`tick_on` is the first day the deadline clock may have something to say about a dossier (due-soon, overdue). The
ticker finds the dossiers due for a look in **tick buckets** (`routing_ticks`: documents `<day>|<writer>|<n>` of up
to `BUCKET_CODES` codes whose head that writing process moved to that day; FerretDB rewrites a whole document on
each update, and one bucket of 12,000 codes cost 1.75 ms of store time per dossier end to end, measured), then reads
just those heads by `_id`, never every head (FerretDB answers only `_id` from an index: a `tick_on` range over
100,000 heads took ~4 s there, measured). A code enters its bucket before its head is written, so a stored head whose clock runs is always in
a bucket of its day, or of the day it was written if that is later; a bucket is written by its process alone (no
two writers on one document: FerretDB's updates are not atomic), and dropped by any ticker once it is more than two
days old and every code in it has a head that moved past today. A sweep of all heads (at the first round after
start-up, then daily) puts back any head that is in no bucket: heads written by an earlier release, or by one
still running beside this one during an upgrade.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from itertools import takewhile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, PyMongoError

from lienthong.store import bulk_update, find_by_ids
from routing.workflow import Workflow, next_tick_day

_WORKFLOW = TypeAdapter(Workflow)
MAX_REMEMBERED_OUTCOMES = 200
PROBE_AHEAD = 4  # versions a load asks for at once past the head (the head lags by one version or two, mostly)
NEVER = "9999-12-31"  # tick_on of a dossier whose clock does not run
SWEEP_INTERVAL_S = 24 * 3600  # how often the ticker also scans every head (see the module)
SETTLED_AFTER_DAYS = 2  # a bucket this much older than today gets no more codes, whatever the writers' clocks
BUCKET_CODES = 1000  # codes per bucket document at most: FerretDB rewrites a whole document on every update
# What an earlier release kept in the head too: dropped when a head is next written, or a load would take it as is.
_WHOLE_STATE = dict.fromkeys(("workflow", "applied", "refused", "outbox", "writer"), "")


class ConcurrentUpdate(Exception):
    """Another writer changed the dossier first: reload and decide again."""


@dataclass
class Record:
    workflow: Workflow
    version: int  # 0: not stored yet
    applied: list[str] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)  # CloudEvents JSON, in order
    refused: dict[str, str] = field(default_factory=dict)  # outcomes the workflow refused: id -> why

    def seen(self, event_id: str) -> bool:
        """Applied or refused before: a redelivery changes nothing and alerts no one again."""
        return event_id in self.applied or event_id in self.refused


@dataclass
class _Head:
    """A head to write behind: the newest version this process wrote, and whether the dossier is new (this process
    wrote its first version: no head to update, the round inserts one)."""

    fields: dict[str, Any]  # version, tick_on, status, updated_at
    new: bool


class WorkflowStore:
    def __init__(self, db: AsyncDatabase, *, keep_superseded_s: float = 0.0) -> None:
        self.docs = db["routing_workflows"]  # the heads
        self.versions = db["routing_versions"]
        self.ticks = db["routing_ticks"]
        self.writer = uuid.uuid4().hex  # names this process's tick buckets: no other process writes them
        self.filling: dict[str, tuple[int, int]] = {}  # day -> (this process's bucket being filled, codes in it)
        self.heads: dict[str, _Head] = {}  # written behind
        # (code, version) older than a version this process wrote -> when: deleted once a stored head has passed
        # it and it is `keep_superseded_s` old, so a writer claiming a version from a record it read (or kept in
        # memory, `Router.recent`) less than that long ago finds the slot taken, never freed by a delete
        self.superseded: dict[tuple[str, int], float] = {}
        self.keep_superseded_s = keep_superseded_s
        self.swept_at: float | None = None

    async def drop_retired_indexes(self) -> None:
        """The `tick_on` index an earlier release created is dropped: the tick buckets replace it."""
        if "tick_on" in await self.docs.index_information():
            await self.docs.drop_index("tick_on")

    async def load(self, code: str) -> Record | None:
        return (await self.load_many([code])).get(code)

    async def load_many(self, codes: Iterable[str]) -> dict[str, Record]:
        codes = list(codes)
        if not codes:
            return {}
        heads = {doc["_id"]: doc for doc in await find_by_ids(self.docs, codes)}
        records = {code: _record(head) for code, head in heads.items() if "workflow" in head}  # an earlier release's
        newest: dict[str, dict[str, Any]] = {}
        probe = {code: heads[code]["version"] + (code in records) if code in heads else 1 for code in codes}
        while probe:  # PROBE_AHEAD versions at a time: usually one read
            found = await self.versions.find({"_id": {"$in": [_version_id(c, v + k) for c, v in probe.items()
                                                              for k in range(PROBE_AHEAD)]}}).to_list(None)
            for doc in found:
                if doc["version"] > newest.get(doc["code"], {"version": 0})["version"]:
                    newest[doc["code"]] = doc
            probe = {code: v + PROBE_AHEAD for code, v in probe.items()
                     if newest.get(code, {"version": 0})["version"] == v + PROBE_AHEAD - 1}  # there may be more
        lost = [code for code in heads if code not in newest and code not in records]
        if lost:  # a head moved back past deleted versions (FerretDB's updates are not atomic): look them all up
            for doc in await self.versions.find({"code": {"$in": lost}}).to_list(None):
                if doc["version"] > newest.get(doc["code"], {"version": 0})["version"]:
                    newest[doc["code"]] = doc
            if missing := [code for code in lost if code not in newest]:
                raise RuntimeError(f"{len(missing)} dossiers have a head and no version")  # never started afresh
        for code, doc in newest.items():
            records[code] = record = _record(doc)
            if record.version <= heads.get(code, {}).get("published", 0):
                record.outbox = []  # published already
        return records

    async def due(self, today: date) -> list[str]:
        """Dossiers the deadline clock must look at today (the heads not yet written behind included): the codes
        of the buckets up to today whose stored head is due. Drops the buckets that have settled (see the module),
        and sweeps every head now and then."""
        day = today.isoformat()
        if self.swept_at is None or time.monotonic() - self.swept_at >= SWEEP_INTERVAL_S:
            await self._sweep(today)
        buckets = await self.ticks.find({"day": {"$lte": day}}).to_list(None)
        candidates = list(dict.fromkeys(code for bucket in buckets for code in bucket["codes"]))
        tick_on = {doc["_id"]: doc["tick_on"] for doc in await find_by_ids(self.docs, candidates, {"tick_on": 1})}
        settled = (today - timedelta(days=SETTLED_AFTER_DAYS)).isoformat()
        dropped = [bucket["_id"] for bucket in buckets if bucket["day"] < settled
                   and all(tick_on.get(code, "") > day for code in bucket["codes"])]  # no head yet: not settled
        if dropped:
            await self.ticks.delete_many({"_id": {"$in": dropped}})
        stored = [code for code in candidates if tick_on.get(code, NEVER) <= day]
        return list(dict.fromkeys([*stored, *(code for code, head in self.heads.items()
                                              if head.fields["tick_on"] <= day)]))

    async def _sweep(self, today: date) -> None:
        """Every head whose clock runs into a bucket of this process (the only scan of the heads)."""
        heads = await self.docs.find({"tick_on": {"$lt": NEVER}}, projection={"tick_on": 1}).to_list(None)
        await self._enter_ticks({doc["_id"]: doc["tick_on"] for doc in heads}, today)
        self.swept_at = time.monotonic()

    async def _enter_ticks(self, tick_on: dict[str, str], today: date) -> None:
        """Codes into this process's bucket of their `tick_on`, or of today if that is later (so no code enters a
        bucket old enough to be dropped)."""
        by_bucket: dict[tuple[str, int], list[str]] = defaultdict(list)
        for code, day in tick_on.items():
            if day != NEVER:
                day = max(day, today.isoformat())
                n, held = self.filling.get(day, (0, 0))
                if held >= BUCKET_CODES:
                    n, held = n + 1, 0
                by_bucket[day, n].append(code)
                self.filling[day] = (n, held + 1)
        await bulk_update(self.ticks, [UpdateOne({"_id": f"{day}|{self.writer}|{n}"},
                                                 {"$set": {"day": day}, "$addToSet": {"codes": {"$each": codes}}},
                                                 upsert=True) for (day, n), codes in sorted(by_bucket.items())])

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
            fields = {k: bodies[code][k] for k in ("version", "tick_on", "status", "updated_at")}
            self.heads[code] = _Head(fields, new=record.version == 0 or (pending is not None and pending.new))
            if record.version > 0:
                self.superseded[code, record.version] = time.monotonic()
            record.version += 1
        return lost

    async def write_behind(self, published: dict[str, int], today: date) -> None:
        """Write the heads of the dossiers written since the last round (their codes into the tick buckets first),
        and the versions whose outboxes were published (`published`: code -> version); then delete the versions
        the stored heads have passed. A failure leaves it all for the next round (the heads stay behind meanwhile;
        loads find the versions)."""
        now = time.monotonic()
        heads = dict(self.heads)
        # Oldest first (insertion order): only the ripe prefix is looked at, not the last minutes' versions.
        superseded = set(takewhile(lambda key: now - self.superseded[key] >= self.keep_superseded_s, self.superseded))
        await self._enter_ticks({code: head.fields["tick_on"] for code, head in heads.items()}, today)
        ops = [_forward(code, head.fields, published.get(code, 0)) for code, head in heads.items() if not head.new]
        # Published marks only move forward, whatever version the head is at (a newer version keeps its outbox).
        ops += [UpdateOne({"_id": code}, {"$max": {"published": version}}) for code, version in published.items()
                if code not in heads]
        await bulk_update(self.docs, ops)
        # Read back: a head missing (a new dossier's, or one whose first writer has not written it or died first) is
        # created, one another writer stored at an older version brought forward, and only versions behind a
        # stored head deleted.
        codes = list({*heads, *(code for code, _ in superseded)})  # none on an idle round: nothing is asked
        stored = {doc["_id"]: doc["version"] for doc in await find_by_ids(self.docs, codes, {"version": 1})}
        missing = [{"_id": code, **head.fields, "published": published.get(code, 0)}
                   for code, head in heads.items() if code not in stored]
        if missing:
            with contextlib.suppress(PyMongoError):  # what did not go in stays pending for the next round
                await self.docs.insert_many(missing, ordered=False)
                stored.update((doc["_id"], doc["version"]) for doc in missing)
        passed = {(code, version) for code, version in superseded if version < stored.get(code, 0)}
        behind = [code for code, head in heads.items() if code in stored and stored[code] < head.fields["version"]]
        if behind:  # the head another writer stored at an older version, after this one's version was won
            await bulk_update(self.docs, [_forward(c, heads[c].fields, published.get(c, 0)) for c in behind])
        for code, head in heads.items():  # done, unless written again meanwhile or still missing (next round)
            if self.heads.get(code) is head and code in stored:
                del self.heads[code]
        if passed:
            await self.versions.delete_many({"_id": {"$in": [_version_id(*v) for v in passed]}})
            for key in passed:
                del self.superseded[key]


def _forward(code: str, fields: dict[str, Any], published: int) -> UpdateOne:
    """A head moved to a newer version, never back (an earlier release's whole state dropped from it)."""
    return UpdateOne({"_id": code, "version": {"$lt": fields["version"]}},
                     {"$set": fields, "$max": {"published": published}, "$unset": _WHOLE_STATE})


def _version_id(code: str, version: int) -> str:
    return f"{code}@{version}"


def _record(doc: dict[str, Any]) -> Record:
    return Record(_WORKFLOW.validate_python(doc["workflow"]), doc["version"], doc["applied"], doc["outbox"],
                  doc.get("refused", {}))


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
