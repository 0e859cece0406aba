"""The overdue list on the real server: read from the `~open` rows the projector keeps (a row per month and
partition), it must equal what a search of the dossier documents finds — the definition it replaces, which FerretDB
answers by reading every dossier (55-80 s at the five months' 554,068 dossiers, measured) — for any day and unit,
after batches of any size and a replay of everything."""

from __future__ import annotations

import uuid
import zlib
from datetime import date, timedelta

import httpx
import pytest
from fastapi import FastAPI

from lienthong.auth import Verifier
from lienthong.calendar import today_vn, working_days_between
from lienthong.store import database, make_client
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.dashboard.routes import build_router
from stats.dashboard.topics import TopicMonitor
from stats.projector import Positioned, Projector
from stats.store import ProjectionStore
from tests.integration.test_stats import PERIOD, generate
from tests.tokens import EVERYTHING, ISSUER

pytestmark = pytest.mark.integration


def positioned(events: list) -> list[Positioned]:
    """The events as the lifecycle topic holds them: partitioned by dossier code, in order."""
    offsets: dict[int, int] = {}
    out = []
    for event in events:
        partition = zlib.crc32(event.subject.encode()) % DOSSIER_LIFECYCLE.partitions
        offsets[partition] = offsets.get(partition, -1) + 1
        out.append(Positioned(event, partition, offsets[partition]))
    return out


async def searched(store: ProjectionStore, today: str, unit: str | None) -> list[dict]:
    """The overdue list as the dossier documents define it: open, due before today, held by `unit`."""
    docs = await (await store.collection()).find({"closed_day": None, "due_date": {"$lt": today}}).to_list(None)
    listed = [{"code": d["_id"], "unit": d.get("current_unit") or d["receiving_unit"], "procedure": d["procedure"],
               "step": d.get("step"), "due_date": d["due_date"]} for d in docs]
    return sorted((d for d in listed if unit in (None, d["unit"])), key=lambda d: (d["due_date"], d["code"]))


async def test_the_overdue_list_read_from_rows_equals_a_search_of_the_dossiers(infra):
    truths, events = generate(400, seed=11)
    items = positioned(events)
    mongo = infra.mongo.model_copy(update={"database": f"{infra.mongo.database}_overdue_{uuid.uuid4().hex[:6]}"})
    client = make_client(mongo)
    try:
        store = ProjectionStore(database(client, mongo))
        projector = Projector(store)
        start = 0
        for size in [1] * 50 + [7] * 50 + [500] * 20:  # one by one, then small batches, then large ones
            await projector.project(items[start:start + size])
            start += size
            if start >= len(items):
                break
        assert start >= len(items)
        await Projector(store).project(items)  # everything again, by a projector that starts cold: nothing changes

        days = [PERIOD[0] + timedelta(days=n) for n in range(0, 30, 3)] + [date(2030, 1, 1)]
        units = [None, *sorted({t.competent for t in truths}), "NOWHERE"]
        seen = 0
        for today in days:
            for unit in units:
                expected = await searched(store, today.isoformat(), unit)
                assert await store.overdue(today.isoformat(), unit, 1000) == expected, (today, unit)
                seen += len(expected)
        assert seen > 100  # the days and units asked for do list dossiers
        everything = await store.overdue("2030-01-01", None, 1000)
        assert {d["code"] for d in everything} == {t.code for t in truths if t.outcome == "open"}
        assert await store.overdue("2030-01-01", None, 5) == everything[:5]

        # The dashboard's endpoint over the same store (its "today" is the real one: every open dossier of 2019)
        app = FastAPI()
        app.state.verifier = Verifier(ISSUER.settings())
        app.include_router(build_router(store, TopicMonitor(infra.kafka)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://stats",
                                     headers=EVERYTHING) as http:
            for unit in (None, units[1]):
                answer = await http.get("/v1/stats/overdue", params={"limit": 500, **({"unit": unit} if unit else {})})
                assert answer.status_code == 200, answer.text
                today, listed = today_vn(), answer.json()
                assert [{k: v for k, v in d.items() if k != "procedure_name"} for d in listed] == [
                    {**d, "working_days_late": working_days_between(date.fromisoformat(d["due_date"]), today)}
                    for d in (await searched(store, today.isoformat(), unit))[:500]]
                assert listed and all(d["procedure_name"] for d in listed)
    finally:
        await client.drop_database(mongo.database)
        await client.close()
