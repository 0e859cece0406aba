"""Routing's store on the real server: two writers racing for every version of the same dossiers. Exactly one wins
each version and the other is told, so it decides again on a fresh read (FerretDB's conditional updates are not
atomic: this is what the version documents are for)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from lienthong.catalogue import catalogue
from lienthong.store import make_client
from routing.store import Record, WorkflowStore, _body
from routing.workflow import start, tick
from tests.unit.routing.test_workflow import submitted

pytestmark = pytest.mark.integration
TODAY = date(2025, 12, 1)  # the day the writers write on (tick buckets)


@contextlib.asynccontextmanager
async def routing_stores(infra, n: int = 2, keep_superseded_s: float = 0.0) -> AsyncIterator[list[WorkflowStore]]:
    """`n` routing stores on one fresh database, each with a client of its own (as separate processes would be)."""
    mongo = infra.mongo.model_copy(update={"database": f"{infra.mongo.database}_routing_{uuid.uuid4().hex[:6]}"})
    clients = [make_client(mongo) for _ in range(n)]
    try:
        yield [WorkflowStore(c[mongo.database], keep_superseded_s=keep_superseded_s) for c in clients]
    finally:
        for c in clients:
            await c.close()


async def test_two_writers_racing_for_each_version_one_wins_and_the_other_is_told(infra):
    async with routing_stores(infra) as stores:
        codes = [f"HACTHANH-251201-{i:04d}" for i in range(1, 101)]
        first = [Record(start(code, submitted("HT-KS"), catalogue()).workflow, 0) for code in codes]
        assert await stores[0].save_many(first) == set()
        for round_ in range(8):
            read = [await store.load_many(codes) for store in stores]
            for name, records in zip("ab", read):
                for record in records.values():
                    record.applied.append(f"{name}{round_}")
            lost_a, lost_b = await asyncio.gather(*(s.save_many(r.values()) for s, r in zip(stores, read)))
            assert lost_a | lost_b == set(codes) and not lost_a & lost_b, round_  # one winner per dossier
            now = await stores[1].load_many(codes)
            for code in codes:
                winner = "b" if code in lost_a else "a"
                assert now[code].applied[-1] == f"{winner}{round_}" and now[code].version == round_ + 2


async def test_heads_are_written_behind_and_loads_find_the_newest_version_meanwhile(infra):
    async with routing_stores(infra, 3) as (a, b, reader):
        codes = [f"HACTHANH-251201-{i:04d}" for i in range(1, 31)]
        records = {code: Record(start(code, submitted("HT-KS"), catalogue()).workflow, 0, outbox=[f"e-{code}"])
                   for code in codes}
        for step in range(6):  # six versions, no head written: more than one probe round past a missing head
            for record in records.values():
                record.applied.append(f"a{step}")
            assert await a.save_many(records.values()) == set()
        assert await a.docs.count_documents({}) == 0
        seen = await b.load_many(codes)
        assert {r.version for r in seen.values()} == {6} and all(r.applied[-1] == "a5" for r in seen.values())
        assert set(await a.due(date(2099, 1, 1))) == set(codes), "the ticker sees heads not yet written"

        published = {code: records[code].version for code in codes[:20]}
        await a.write_behind(published, TODAY)
        heads = {d["_id"]: d for d in await a.docs.find({}).to_list(None)}
        assert {h["version"] for h in heads.values()} == {6} and "workflow" not in heads[codes[0]], "small heads"
        reread = await reader.load_many(codes)
        assert [c for c in codes if reread[c].outbox] == codes[20:], "published outboxes are not published again"
        assert all(reread[c].applied[-1] == "a5" and reread[c].version == 6 for c in codes)
        assert sorted(d["_id"] for d in await a.versions.find({}).to_list(None)) == sorted(
            f"{c}@6" for c in codes), "versions behind a stored head deleted; the newest kept"

        # Another writer moves a dossier on while the first one's head is behind again: neither write goes back.
        moved = await b.load_many(codes[:1])
        moved[codes[0]].applied.append("b")
        assert await b.save_many(moved.values()) == set()
        again = await a.load_many(codes[:1])
        assert again[codes[0]].version == 7 and again[codes[0]].applied[-1] == "b"
        again[codes[0]].applied.append("a-after-b")
        assert await a.save_many(again.values()) == set()
        await a.write_behind({}, TODAY)
        await b.write_behind({}, TODAY)  # b's head (version 7) is older than the stored one (8): dropped
        head = await a.docs.find_one({"_id": codes[0]})
        assert head["version"] == 8
        assert ((await b.load(codes[0])).version, (await b.load(codes[0])).applied[-1]) == (8, "a-after-b")
        assert await a.versions.count_documents({"code": codes[0]}) == 1


async def test_a_head_an_earlier_release_wrote_is_read_and_then_replaced_by_a_small_one(infra):
    async with routing_stores(infra, 1) as (store,):
        code = "HACTHANH-251201-0001"
        record = Record(start(code, submitted("HT-KS"), catalogue()).workflow, 2, applied=["x"], outbox=[])
        # As the previous release left it: the whole state in the head, the version documents behind it deleted.
        await store.docs.insert_one({"_id": code, **_body(record, "old"), "version": 2})
        loaded = await store.load(code)
        assert (loaded.version, loaded.applied, loaded.outbox) == (2, ["x"], [])
        loaded.applied.append("y")
        assert await store.save_many([loaded]) == set()
        await store.write_behind({}, TODAY)
        head = await store.docs.find_one({"_id": code})
        assert head["version"] == 3 and "workflow" not in head and "applied" not in head
        again = await store.load(code)
        assert (again.version, again.applied) == (3, ["x", "y"])


async def test_any_interleaving_of_two_writers_and_their_rounds_loads_the_newest_version(infra):
    """Steps and write-behind rounds of two writers in a random order (seeded): after each, a reader that starts
    cold finds every dossier at the newest version won, with its state: heads behind, versions deleted behind
    stored heads, and published marks never hide a version's place."""
    rng = random.Random(20261207)
    async with routing_stores(infra, 3) as (first, second, reader):
        writers = [first, second]
        codes = [f"HACTHANH-251201-{i:04d}" for i in range(1, 13)]
        assert await writers[0].save_many(
            [Record(start(code, submitted("HT-KS"), catalogue()).workflow, 0) for code in codes]) == set()
        newest = {code: (1, [], []) for code in codes}  # code -> (version, applied, outbox)
        published: list[dict[str, int]] = [{}, {}]  # what each writer has yet to mark as published
        marked = dict.fromkeys(codes, 0)  # the published marks stored
        for turn in range(60):
            w = rng.randrange(2)
            if rng.random() < 0.3:
                await writers[w].write_behind(published[w], TODAY)
                for code, version in published[w].items():
                    marked[code] = max(marked[code], version)
                published[w] = {}
            else:
                records = await writers[w].load_many(rng.sample(codes, 4))
                for record in records.values():
                    record.applied.append(f"{turn}")
                    record.outbox = [f"event-{turn}"]
                assert not await writers[w].save_many(records.values()), "one writer at a time: nothing lost"
                for code, record in records.items():
                    newest[code] = (record.version, list(record.applied), [f"event-{turn}"])
                    if rng.random() < 0.5:
                        published[w][code] = record.version
            cold = await reader.load_many(codes)
            expected = {c: (v, applied, [] if marked[c] >= v else outbox) for c, (v, applied, outbox) in newest.items()}
            assert {c: (r.version, r.applied, r.outbox) for c, r in cold.items()} == expected, turn


async def test_a_writer_whose_dossier_has_no_head_yet_creates_it_and_keeps_the_versions_until_then(infra):
    async with routing_stores(infra) as (a, b):
        code = "HACTHANH-251201-0001"
        assert await a.save_many([Record(start(code, submitted("HT-KS"), catalogue()).workflow, 0)]) == set()
        moved = await b.load_many([code])  # a's head is not written yet: b finds the version
        moved[code].applied.append("b")
        assert await b.save_many(moved.values()) == set()
        await b.write_behind({code: 2}, TODAY)  # b's head update finds no head: b creates it
        assert (await b.docs.find_one({"_id": code}))["version"] == 2
        assert [d["_id"] for d in await b.versions.find({}).to_list(None)] == [f"{code}@2"]
        await a.write_behind({}, TODAY)  # a's head (version 1) is refused: the stored one is newer
        head = await a.docs.find_one({"_id": code})
        assert (head["version"], head["published"]) == (2, 2)
        loaded = await a.load(code)
        assert (loaded.version, loaded.applied[-1], loaded.outbox) == (2, "b", [])


async def stored_due(store: WorkflowStore, day: date) -> set[str]:
    """The definition: every stored head whose clock has something to say by `day` (a scan of the heads)."""
    return {d["_id"] for d in await store.docs.find({"tick_on": {"$lte": day.isoformat()}}).to_list(None)}


async def test_the_ticker_finds_what_is_due_in_the_buckets_and_drops_those_that_settled(infra, monkeypatch):
    """Two writers move dossiers' clocks day by day as the ticker would; a cold reader that never sweeps the heads
    finds, from the buckets alone, exactly the dossiers a scan of the heads finds due; settled buckets go."""
    monkeypatch.setattr("routing.store.BUCKET_CODES", 7)  # a day's codes over several bucket documents
    procedures = ["HT-KS", "HT-KH", "LT-KS-TT-BHYT", "TP-LLTP"]
    async with routing_stores(infra, 3) as (a, b, reader):
        codes = [f"HACTHANH-251201-{i:04d}" for i in range(1, 41)]
        started = [Record(start(c, submitted(procedures[i % 4]), catalogue()).workflow, 0) for i, c in enumerate(codes)]
        assert await a.save_many(started[:20]) == set() and await b.save_many(started[20:]) == set()
        await a.write_behind({}, TODAY)
        await b.write_behind({}, TODAY)
        reader.swept_at = time.monotonic()  # the buckets alone
        buckets_seen = []
        for offset in range(0, 40, 3):
            day = TODAY + timedelta(days=offset)
            due = set(await reader.due(day))
            assert due == await stored_due(reader, day), day
            buckets_seen.append(await reader.ticks.count_documents({}))
            if offset % 9:
                continue  # no tick this time (a ticker down for days): what is due stays due, in its old buckets
            writer = (a, b)[offset % 2]  # either process ticks what is due, as any routing instance may
            records = await writer.load_many(sorted(due))
            for record in records.values():
                record.workflow = tick(record.workflow, day).workflow
            assert await writer.save_many(records.values()) == set()
            await writer.write_behind({}, day)
        assert await stored_due(reader, TODAY + timedelta(days=400)) == set(), "every clock has said all it had to"
        assert await reader.due(TODAY + timedelta(days=400)) == []
        assert await reader.ticks.count_documents({}) == 0 < max(buckets_seen), "settled buckets are dropped"


async def test_heads_in_no_bucket_are_swept_into_one(infra):
    """Heads an earlier release wrote (no buckets): the first round of a process sweeps them in."""
    async with routing_stores(infra, 2) as (sweeper, reader):
        codes = [f"HACTHANH-251201-{i:04d}" for i in range(1, 6)]
        for code in codes:
            record = Record(start(code, submitted("HT-KS"), catalogue()).workflow, 1)
            await sweeper.docs.insert_one({"_id": code, **_body(record, "old")})
        day = TODAY + timedelta(days=60)
        assert set(await sweeper.due(day)) == set(codes) == await stored_due(sweeper, day)
        reader.swept_at = time.monotonic()  # no sweep of its own: the buckets the sweeper filled
        assert set(await reader.due(day)) == set(codes)


async def test_the_tick_on_index_an_earlier_release_created_is_dropped(infra):
    async with routing_stores(infra, 1) as (store,):
        await store.drop_retired_indexes()  # a fresh database: nothing to drop
        await store.docs.create_index("tick_on", name="tick_on")
        await store.drop_retired_indexes()
        assert "tick_on" not in await store.docs.index_information()


async def test_an_idle_write_behind_round_asks_the_store_nothing(infra):
    """The round runs every second whatever happens: with nothing pending it must not read the heads (an empty
    `$in` made FerretDB read every head: 3.1-3.5 s a round over 100,000 heads, measured)."""
    from lienthong.store import COMMAND_METRICS

    def sent() -> float:
        return sum(sample.value for metric in COMMAND_METRICS.commands.collect() for sample in metric.samples
                   if sample.name.endswith("_total"))

    async with routing_stores(infra, 1) as (store,):
        code = "HACTHANH-251201-0001"
        assert await store.save_many([Record(start(code, submitted("HT-KS"), catalogue()).workflow, 0)]) == set()
        await store.write_behind({}, TODAY)
        before = sent()
        await store.write_behind({}, TODAY)
        assert sent() == before


async def test_a_version_claimed_from_a_record_kept_in_memory_finds_its_slot_taken_while_versions_are_kept(infra):
    """A routing process keeps the dossiers it stored in memory (`Router.recent`) for less than `keep_superseded_s`;
    meanwhile another writer moves one on twice and writes its head. Its superseded versions are kept that long, so
    the claim made from the record in memory loses; with nothing kept (0 s), the claim would win a freed slot."""
    for keep, stale_claim_wins in ((60.0, False), (0.0, True)):
        async with routing_stores(infra, 2, keep_superseded_s=keep) as (a, b):
            code = "HACTHANH-251201-0001"
            assert await a.save_many([Record(start(code, submitted("HT-KS"), catalogue()).workflow, 0)]) == set()
            kept = await a.load(code)  # version 1, as the process remembers it
            for step in range(2):
                moved = await b.load(code)
                moved.applied.append(f"b{step}")
                assert await b.save_many([moved]) == set()
            await b.write_behind({}, TODAY)  # b's head at version 3 passes versions 1 and 2
            kept.applied.append("a-from-memory")
            assert (await a.save_many([kept]) == set()) is stale_claim_wins
            if not stale_claim_wins:
                assert await b.versions.count_documents({"code": code}) == 3, "superseded versions kept"
