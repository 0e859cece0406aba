"""Routing's store on the real server: two writers racing for every version of the same dossiers. Exactly one wins
each version and the other is told, so it decides again on a fresh read (FerretDB's conditional updates are not
atomic: this is what the version documents are for)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lienthong.catalogue import catalogue
from lienthong.store import make_client
from routing.store import Record, WorkflowStore
from routing.workflow import start
from tests.unit.routing.test_workflow import submitted

pytestmark = pytest.mark.integration


async def test_two_writers_racing_for_each_version_one_wins_and_the_other_is_told(infra):
    mongo = infra.mongo.model_copy(update={"database": f"{infra.mongo.database}_race_{uuid.uuid4().hex[:4]}"})
    clients = [make_client(mongo), make_client(mongo)]
    try:
        stores = [WorkflowStore(c[mongo.database]) for c in clients]
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
    finally:
        for c in clients:
            await c.close()
