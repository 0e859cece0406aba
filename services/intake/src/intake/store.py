"""Intake's store: one document per dossier, keyed by its idempotency key, which is at once the deduplication
record and the holder of the dossier code and its `dossier.submitted` event; and the outbox, one small document
per dossier whose event Kafka has not yet acknowledged.

Every hot-path read is by `_id` (FerretDB's SQLite backend scans for anything else; MongoDB is fast either way).
Nothing on the hot path updates a document: FerretDB does ~10x more inserts than updates a second, and a filing
used to cost two updates (its counter hint and its published mark), which bounded intake (measured under wrk: 849
filings/s with them, 1,166/s without, one run each). So a filing's outbox entry is inserted before its dossier,
in one insert per group, and deleted once Kafka acknowledged the event, in one statement per group; the outbox
stays as small as what is in flight, so reading it whole at start-up is cheap.

Codes are `<unit>-<yyMMdd>-<NNNN>`. A unique index on (unit, day, seq) arbitrates: a number is consumed only by a
stored dossier, so retries leave no gaps and concurrent writers no duplicates. Which number to try next comes
from this process's memory, else from a per unit-day counter document that is only a hint (raised with `$max`,
never ahead of the stored dossiers, written behind every second, `flush_hints`): a stale hint costs a retry, never
a gap. Many filings are stored in one insert (intake's group commit); whatever the store answers, the dossiers it
then holds decide which were stored, so no correctness rests on the shape of an error reply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from intake.domain import dossier_code, dossier_day
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.locks import KeyedLocks
from lienthong.store import bulk_update

MAX_ALLOCATION_ATTEMPTS = 1000
# An outbox entry with no dossier (a process stopped between the two inserts, or its number went to another
# writer) is removed at start-up once this old: a younger one may belong to another process's flush in progress.
ORPHAN_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class NewDossier:
    key: str
    unit: str
    received_at: datetime
    build_event: Callable[[str], CloudEvent]  # the dossier's `dossier.submitted`, given its code
    fingerprint: str | None = None

    @cached_property
    def day(self) -> str:
        return dossier_day(self.received_at)

    @cached_property
    def counter(self) -> str:
        """Its unit-day counter's id (codes are numbered per unit and day)."""
        return f"{self.unit}-{self.day}"


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
        self.outbox = db["intake_outbox"]
        self._next_seq: dict[str, int] = {}
        self._hints: dict[str, int] = {}  # counter -> highest number stored since the last `flush_hints`
        self._legacy: set[str] = set()  # dossiers stored with `published: false` before the outbox existed
        self.lock = KeyedLocks()  # per idempotency key, within this process

    async def setup(self) -> None:
        await self.dossiers.create_index([("code", ASCENDING)], unique=True, name="code_unique")
        await self.dossiers.create_index(
            [("unit", ASCENDING), ("day", ASCENDING), ("seq", ASCENDING)], unique=True, name="unit_day_seq_unique"
        )

    async def find_by_key(self, key: str) -> StoredDossier | None:
        return (await self.find_many([key])).get(key)

    async def find_many(self, keys: list[str]) -> dict[str, StoredDossier]:
        """The dossiers stored under these keys (a new filing's finds none, and costs one query)."""
        return await self._with_outbox(await self.dossiers.find({"_id": {"$in": keys}}).to_list(None))

    async def find_by_code(self, code: str) -> StoredDossier | None:
        """By dossier code (unique index); used by the rare personal-data reads, not the hot path."""
        doc = await self.dossiers.find_one({"code": code})
        return None if doc is None else (await self._with_outbox([doc])).get(doc["_id"])

    async def _with_outbox(self, docs: list[dict]) -> dict[str, StoredDossier]:
        """Dossiers as stored, each published unless its outbox entry is still there."""
        keys = [d["_id"] for d in docs if "published" not in d]
        waiting = {e["_id"] for e in await self.outbox.find({"_id": {"$in": keys}}).to_list(None)} if keys else set()
        return {doc["_id"]: _stored(doc, doc.get("published", doc["_id"] not in waiting)) for doc in docs}

    async def create_many(self, new: list[NewDossier], *, entered: bool = False) -> list[tuple[StoredDossier, bool]]:
        """Store new dossiers under the next free codes, many in one insert, after entering them in the outbox
        (unless the caller did: `entered`). A key stored meanwhile by another writer comes back as (existing,
        False). Whatever the store answers to the insert, what it then holds decides: a dossier whose key is absent
        lost its number to another writer and tries the next one."""
        counters = {n.counter for n in new}
        if not entered:
            await self.enter_outbox([n.key for n in new])
        try:
            results, stored_up_to = await self._insert(new, counters)
        except BaseException:
            for counter_id in counters:  # numbers handed out may not be stored: start again from what is
                self._next_seq.pop(counter_id, None)
            raise
        for counter_id, seq in stored_up_to.items():
            self._hints[counter_id] = max(seq, self._hints.get(counter_id, 0))
        return [results[n.key] for n in new]

    async def enter_outbox(self, keys: list[str]) -> None:
        """Before the dossiers: a dossier stored is then always either published or in the outbox. An entry there
        already (a retry, another writer) is as good as ours; whatever the reply, what the outbox holds decides."""
        now = datetime.now(UTC)
        try:
            await self.outbox.insert_many([{"_id": key, "at": now} for key in keys], ordered=False)
        except Exception:  # noqa: BLE001 - not interpreted: read back what is there
            held = {e["_id"] for e in await self.outbox.find({"_id": {"$in": keys}}).to_list(None)}
            if missing := len(set(keys) - held):
                raise RuntimeError(f"{missing} outbox entries could not be stored") from None

    async def flush_hints(self) -> None:
        """Write the counter hints behind (every second, and at shutdown): for the next process only, which after
        a crash retries from an older hint (a few round trips at most), never reusing a number."""
        hints, self._hints = self._hints, {}
        try:
            await bulk_update(self.counters, [UpdateOne({"_id": c}, {"$max": {"seq": seq}}, upsert=True)
                                              for c, seq in hints.items()])
        except BaseException:
            for c, seq in hints.items():  # next round
                self._hints[c] = max(seq, self._hints.get(c, 0))
            raise

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
                counter_id, day = n.counter, n.day
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
                    stored_up_to[n.counter] = max(stored_up_to.get(n.counter, 0), seq)
        else:
            raise RuntimeError(f"could not allocate dossier codes for {len(pending)} dossiers")
        return results, stored_up_to

    async def mark_published_many(self, keys: list[str]) -> None:
        await self.outbox.delete_many({"_id": {"$in": keys}})  # one statement, over a collection of what is in flight
        if legacy := [k for k in keys if k in self._legacy]:
            await bulk_update(self.dossiers, [UpdateOne({"_id": k}, {"$set": {"published": True}}) for k in legacy])
            self._legacy -= set(legacy)

    async def unpublished(self, limit: int = 1000) -> list[StoredDossier]:
        """At start-up, what a stopped process left unpublished: the outbox, and dossiers an older release stored
        with `published: false` (a scan, as it always was)."""
        entries = await self.outbox.find({}).limit(limit).to_list(limit)
        found = await self.find_many([e["_id"] for e in entries])
        orphans = [e["_id"] for e in entries if e["_id"] not in found and e["at"] < datetime.now(UTC) - ORPHAN_AGE]
        if orphans:
            await self.outbox.delete_many({"_id": {"$in": orphans}})
        legacy = await self.dossiers.find({"published": False}).limit(limit).to_list(limit)
        self._legacy |= {doc["_id"] for doc in legacy}
        return [s for s in found.values() if not s.published] + [_stored(doc, False) for doc in legacy]


def _document(stored: StoredDossier, unit: str, day: str, seq: int) -> dict:
    return {"_id": stored.key, "code": stored.code, "unit": unit, "day": day, "seq": seq,
            "event": to_json(stored.event).decode(), "fingerprint": stored.fingerprint, "created_at": datetime.now(UTC)}


def _stored(doc: dict, published: bool) -> StoredDossier:
    return StoredDossier(key=doc["_id"], code=doc["code"], event=parse_event(doc["event"]), published=published,
                         fingerprint=doc.get("fingerprint"))
