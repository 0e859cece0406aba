"""Stats against the real broker and store: figures equal a ground truth computed independently, and stay equal
when every event is delivered again."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import httpx
import openpyxl
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker

from tests.personal import stand_in
from lienthong.calendar import VN_TZ, add_working_days
from lienthong.contracts import to_json
from lienthong.contracts.dossier import (
    Applicant,
    DossierAssigned,
    DossierRejected,
    DossierResolved,
    DossierResumed,
    DossierSubmitted,
    DossierWithdrawn,
    FeePaid,
    SatisfactionRated,
)
from lienthong.contracts.envelope import new_event
from lienthong.messaging import stop_consumer
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.main import bootstrap
from stats.rebuild import rebuild
from stats.settings import StatsSettings
from stats.window import OffsetProbe
from tests.integration.kafka_reader import wait_caught_up
from lienthong.tracking import TrackingSettings
from tests.tokens import EVERYTHING

pytestmark = pytest.mark.integration

# A period no other test writes into: the lifecycle topic is shared by the whole session.
PERIOD = (date(2019, 12, 2), date(2019, 12, 13))
CANARY_ID, CANARY_NAME = "038099001122", "Canary Lê Văn Thử"


@dataclass
class Truth:
    code: str
    channel: str
    received: date
    due: date
    outcome: str  # resolved | rejected | withdrawn | open
    closed: date | None
    on_time: bool | None
    unit: str  # receiving
    competent: str  # holds every step; another unit for dossiers filed away from it ("phi địa giới")
    step_dues: list[date]  # one per step of the chain, as moved by a pause
    # the service index's facts
    digitised: bool = False
    fee: str = "none"  # none | due | exempt
    paid: str | None = None  # online | counter
    paid_day: date | None = None
    e_result: bool = False
    rating: str | None = None  # the latest
    rated_day: date | None = None


def as_steps(truths: list[Truth]) -> list[Truth]:
    """The units' view: each step an item, closed with the dossier (no step completes early here)."""
    return [replace(t, unit=t.competent, due=d, on_time=t.closed <= d if t.outcome == "resolved" else None)
            for t in truths for d in t.step_dues]


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=VN_TZ)


def generate(n: int, seed: int = 7, period: tuple[date, date] = PERIOD) -> tuple[list[Truth], list]:
    rng = random.Random(seed)
    prefix = "S" + uuid.uuid4().hex[:6].upper()
    truths, events = [], []
    for i in range(n):
        code = f"{prefix}-{period[0]:%y%m%d}-{i + 1:04d}"
        channel = rng.choices(["online", "direct", "postal"], [96, 3, 1])[0]
        received = period[0] + timedelta(days=rng.randrange(0, 14))  # some after the period
        due = received + timedelta(days=rng.randrange(1, 8))
        unit, competent, residence = (rng.choice(["HACTHANH", "HOANGSON", "BIMSON"]) for _ in range(3))
        if rng.random() < 0.7:
            competent = residence = unit
        seq = 1
        digitised = channel == "online" or rng.random() < 0.6
        fee = rng.choices(["none", "due", "exempt"], [50, 40, 10])[0]
        evs = [new_event(DossierSubmitted(
            procedure_code="HT-KH", channel=channel, receiving_unit=unit, external_ref=f"T-{code}",
            received_at=at(received), due_date=due, processing_days=5,
            applicant=stand_in(Applicant(citizen_id=CANARY_ID, full_name=CANARY_NAME, address="X", residence_unit=residence)),
            documents_digitised=digitised, fee_vnd=0 if fee == "none" else 50_000, fee_exempt=fee == "exempt"),
            subject=code, source="/test", seq=seq, time=at(received))]
        steps = rng.choice([1, 1, 2, 3])
        for step in range(steps):  # chains count once for the citizen, per step for the units
            seq += 1
            evs.append(new_event(DossierAssigned(unit_code=competent, step=step, step_name="x", step_due_date=due),
                                 subject=code, source="/test", seq=seq, time=at(received, 11)))
        step_dues = [due] * steps
        paid = None
        if fee == "due" and rng.random() < 0.7:  # paid on the day received, online or at the counter
            paid = rng.choice(["online", "online", "counter"])
            seq += 1
            evs.append(new_event(FeePaid(unit_code=unit, method=paid, amount_vnd=50_000, paid_at=at(received, 12)),
                                 subject=code, source="/test", seq=seq, time=at(received, 12)))
        if rng.random() < 0.2:  # a supplement pause moved the due date
            step_dues = [add_working_days(d, 2) for d in step_dues]
            due = due + timedelta(days=2)
            seq += 1
            evs.append(new_event(DossierResumed(unit_code=unit, paused_working_days=2, new_due_date=due),
                                 subject=code, source="/test", seq=seq, time=at(received, 15)))
        outcome = rng.choices(["resolved", "rejected", "withdrawn", "open"], [80, 5, 3, 12])[0]
        closed = on_time = None
        if outcome != "open":
            closed = received + timedelta(days=rng.randrange(0, 10))
            seq += 1
            if outcome == "resolved":
                e_result = rng.random() < 0.8
                data = DossierResolved(unit_code=unit, resolved_at=at(closed), due_date=due, on_time=closed <= due,
                                       result_electronic=e_result)
            elif outcome == "rejected":
                data = DossierRejected(unit_code=unit, reason="thiếu giấy tờ")
            else:
                data = DossierWithdrawn(reason=None)
            on_time = closed <= due if outcome == "resolved" else None
            evs.append(new_event(data, subject=code, source="/test", seq=seq, time=at(closed, 16)))
        rating = rated_day = None
        if outcome in ("resolved", "rejected") and rng.random() < 0.5:  # rated, and some change their mind
            rated_day = closed
            for _ in range(rng.choice([1, 1, 2])):
                rated_day += timedelta(days=rng.randrange(0, 3))
                rating = rng.choice(["very_satisfied", "satisfied", "satisfied", "unsatisfied"])
                seq += 1
                evs.append(new_event(SatisfactionRated(rating=rating), subject=code, source="/portal", seq=seq,
                                     time=at(rated_day, 17)))
        truths.append(Truth(code, channel, received, due, outcome, closed, on_time, unit, competent, step_dues,
                            digitised, fee, paid, received if paid else None,
                            outcome == "resolved" and e_result, rating, rated_day))
        events.extend(evs)
    return truths, events


def expected(truths: list[Truth], start: date, end: date, unit: str | None = None) -> dict:
    ts = [t for t in truths if unit is None or unit in (t.unit, t.competent)]
    received = [t for t in ts if start <= t.received <= end]
    closed = [t for t in ts if t.closed is not None and start <= t.closed <= end]
    open_at_end = [t for t in ts if t.received <= end and (t.closed is None or t.closed > end)]
    resolved = [t for t in closed if t.outcome == "resolved"]
    on_time = sum(1 for t in resolved if t.on_time)
    return {
        "received": len(received),
        "received_online": sum(t.channel == "online" for t in received),
        "received_direct": sum(t.channel == "direct" for t in received),
        "received_postal": sum(t.channel == "postal" for t in received),
        "resolved": len(resolved),
        "resolved_on_time": on_time,
        "resolved_late": len(resolved) - on_time,
        "rejected": sum(t.outcome == "rejected" for t in closed),
        "withdrawn": sum(t.outcome == "withdrawn" for t in closed),
        "in_progress": len(open_at_end),
        "overdue": sum(t.due < end for t in open_at_end),
        "on_time_rate": round(on_time / len(resolved), 4) if resolved else None,
        "online_rate": round(sum(t.channel == "online" for t in received) / len(received), 4) if received else None,
    }


def members(truths: list[Truth], start: date, end: date, unit: str | None = None) -> dict[str, tuple[list, list]]:
    """Each component's numerator and denominator, dossier by dossier."""
    ts = [t for t in truths if unit is None or unit in (t.unit, t.competent)]
    within = lambda day: day is not None and start <= day <= end  # noqa: E731
    received = [t for t in ts if within(t.received)]
    resolved = [t for t in ts if t.outcome == "resolved" and within(t.closed)]
    paid = [t for t in ts if t.paid and within(t.paid_day)]
    rated = [t for t in ts if t.rating and within(t.rated_day)]
    return {
        "public_progress": (received, received),
        "on_time": ([t for t in resolved if t.on_time], resolved),
        "online_filing": ([t for t in received if t.channel == "online"], received),
        "online_payment": ([t for t in paid if t.paid == "online"], paid),
        "satisfied": ([t for t in rated if t.rating != "unsatisfied"], rated),
        "digitised": ([t for t in received if t.digitised], received),
        "electronic_result": ([t for t in resolved if t.e_result], resolved),
    }


def expected_index(truths: list[Truth], start: date, end: date, unit: str | None = None) -> dict:
    """The index counted dossier by dossier: each component's numerator and denominator, its points, the total."""
    measured = {k: (len(n), len(d)) for k, (n, d) in members(truths, start, end, unit).items()}
    weights = {"public_progress": 18, "on_time": 20, "online_filing": 12, "online_payment": 10, "satisfied": 18,
               "digitised": 11, "electronic_result": 11}  # Decision 766 as stats/data/index-766.json reads it
    points = {k: weights[k] * n / d for k, (n, d) in measured.items() if d}
    return {"components": {k: (n, d, round(points[k], 2) if d else None) for k, (n, d) in measured.items()},
            "total": round(sum(points.values()) * 100 / sum(weights[k] for k in points), 2) if points else None}


def index_of(body: dict) -> dict:
    return {"components": {c["key"]: (c["numerator"], c["denominator"], c["points"])
                           for g in body["groups"] for c in g["components"]}, "total": body["total"]}


async def publish_all(infra, events) -> None:
    producer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())
    async with producer:
        await producer.start()
        for event in events:
            await producer.publish(to_json(event), DOSSIER_LIFECYCLE.name, key=event.subject.encode())


async def test_figures_match_ground_truth_and_survive_redelivery(infra):
    truths, events = generate(400)
    await publish_all(infra, events)
    group = f"stats-test-{uuid.uuid4().hex[:6]}"
    app = bootstrap(StatsSettings(group_id=group), infra.kafka, infra.mongo).app
    async with LifespanManager(app, startup_timeout=60), httpx.AsyncClient(headers=EVERYTHING, 
        transport=httpx.ASGITransport(app), base_url="http://stats", timeout=60
    ) as http:
        await wait_caught_up(infra.kafka, group, DOSSIER_LIFECYCLE.name)
        periods = [PERIOD, (date(2019, 12, 4), date(2019, 12, 7))]

        async def figures(start, end, unit=None, **extra):
            params = {"from": start.isoformat(), "to": end.isoformat(), **({"unit": unit} if unit else {}), **extra}
            resp = await http.get("/v1/stats/summary", params=params)
            assert resp.status_code == 200, resp.text
            return {k: v for k, v in resp.json().items() if k not in {"from", "to", "unit", "level", "basis"}}

        first = {p: await figures(*p) for p in periods}
        for start, end in periods:
            assert first[(start, end)] == expected(truths, start, end)
        assert await figures(*PERIOD, unit="HOANGSON") == expected(truths, *PERIOD, unit="HOANGSON")
        assert await figures(*PERIOD, basis="steps") == expected(as_steps(truths), *PERIOD)
        assert (await figures(*PERIOD, unit="BIMSON", basis="steps")
                == expected(as_steps(truths), *PERIOD, unit="BIMSON"))
        assert await figures(*PERIOD, level="commune") == first[PERIOD]  # all three units are communes
        assert (await figures(*PERIOD, level="province"))["received"] == 0

        async def index(start, end, **params):
            resp = await http.get("/v1/stats/index", params={"from": start.isoformat(), "to": end.isoformat(), **params})
            assert resp.status_code == 200, resp.text
            return index_of(resp.json())

        for start, end in periods:  # the service index, each component and the total, as counted one by one
            assert await index(start, end) == expected_index(truths, start, end)
            assert await index(start, end, unit="HOANGSON") == expected_index(truths, start, end, unit="HOANGSON")
        assert expected_index(truths, *PERIOD)["components"]["satisfied"][1] > 20  # ratings were counted

        await publish_all(infra, events)  # every event delivered again
        await wait_caught_up(infra.kafka, group, DOSSIER_LIFECYCLE.name)
        for p in periods:
            assert await figures(*p) == first[p]
            assert await index(*p) == expected_index(truths, *p)

        params = {"from": PERIOD[0].isoformat(), "to": PERIOD[1].isoformat()}
        ranking = (await http.get("/v1/stats/units", params=params)).json()
        hoangson = next(r for r in ranking if r["unit"] == "HOANGSON")
        assert {k: hoangson[k] for k in expected(truths, *PERIOD)} == expected(truths, *PERIOD, unit="HOANGSON")
        rates = [r["on_time_rate"] for r in ranking if r["on_time_rate"] is not None]
        assert rates == sorted(rates)  # worst first
        by_index = (await http.get("/v1/stats/index/units", params=params)).json()
        hoangson = next(r for r in by_index if r["unit"] == "HOANGSON")
        assert index_of(hoangson) == expected_index(truths, *PERIOD, unit="HOANGSON")
        totals = [r["total"] for r in by_index if r["total"] is not None]
        assert totals == sorted(totals, reverse=True)  # best first

        for unit in (None, "HOANGSON"):  # the dossiers behind each component are the ones counted one by one
            scope = {"unit": unit} if unit else {}
            for key, (numerator, denominator) in members(truths, *PERIOD, unit).items():
                listed = await http.get("/v1/stats/index/dossiers",
                                        params={**params, **scope, "component": key, "which": "all", "limit": 1000})
                assert listed.status_code == 200, listed.text
                body = listed.json()
                assert {d["code"] for d in body["dossiers"]} == {t.code for t in denominator}, key
                assert {d["code"] for d in body["dossiers"] if d["counted"]} == {t.code for t in numerator}, key
                assert (body["numerator"], body["denominator"]) == (len(numerator), len(denominator))
                short = (await http.get("/v1/stats/index/dossiers",  # the default, read from the `~short` rows
                                        params={**params, **scope, "component": key, "limit": 1000})).json()
                assert {d["code"] for d in short["dossiers"]} == {t.code for t in denominator} - {
                    t.code for t in numerator}, key
                assert (short["numerator"], short["denominator"], short["count"]) == (
                    len(numerator), len(denominator), len(denominator) - len(numerator)), key
        short = (await http.get("/v1/stats/index/dossiers", params={**params, "component": "on_time"})).json()
        late = {t.code for t in members(truths, *PERIOD)["on_time"][1] if not t.on_time}
        assert late and {d["code"] for d in short["dossiers"]} == late  # the default: the ones short of it
        assert all(d["procedure_name"] and d["closed_day"] > d["due_date"] for d in short["dossiers"])
        unknown = await http.get("/v1/stats/index/dossiers", params={**params, "component": "nope"})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "component"

        months = (await http.get("/v1/stats/index/timeseries", params={
            "from": "2019-11-25", "to": "2019-12-31", "unit": "HOANGSON"})).json()
        assert [(m["from"], m["to"]) for m in months] == [("2019-11-25", "2019-11-30"), ("2019-12-01", "2019-12-31")]
        assert months[0]["total"] is None  # nothing to measure before the dossiers
        assert index_of(months[1]) == expected_index(truths, date(2019, 12, 1), date(2019, 12, 31), unit="HOANGSON")

        exported = list(csv.DictReader(io.StringIO((await http.get("/v1/stats/index.csv", params=params)).text)))
        truth = expected_index(truths, *PERIOD)
        assert {r["component"]: (int(r["numerator"]), int(r["denominator"])) for r in exported if r["component"]} \
            == {k: v[:2] for k, v in truth["components"].items()}
        assert float(exported[-1]["points"]) == truth["total"] and exported[-1]["group"] == "total"
        sheet = openpyxl.load_workbook(io.BytesIO((await http.get(
            "/v1/stats/index/units.xlsx", params=params)).content)).active
        header = [c.value for c in sheet[1]]
        by_unit = {r[header.index("unit")]: dict(zip(header, r, strict=True))
                   for r in sheet.iter_rows(min_row=2, values_only=True)}
        assert by_unit["HOANGSON"]["total"] == expected_index(truths, *PERIOD, unit="HOANGSON")["total"]
        assert by_unit["HOANGSON"]["on_time"] == expected_index(truths, *PERIOD, unit="HOANGSON")["components"]["on_time"][2]

        series = (await http.get("/v1/stats/timeseries", params={**params, "interval": "week"})).json()
        assert [(b["from"], b["to"]) for b in series] == [("2019-12-02", "2019-12-08"), ("2019-12-09", "2019-12-13")]
        assert sum(b["received"] for b in series) == expected(truths, *PERIOD)["received"]
        assert series[1]["in_progress"] == expected(truths, *PERIOD)["in_progress"]

        csv_text = (await http.get("/v1/stats/summary.csv", params=params)).text
        header, values = csv_text.strip().splitlines()
        row = dict(zip(header.split(","), values.split(","), strict=True))
        assert int(row["received"]) == expected(truths, *PERIOD)["received"]
        xlsx = await http.get("/v1/stats/summary.xlsx", params=params)
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
        cells = dict(zip([c.value for c in sheet[1]], [c.value for c in sheet[2]], strict=True))
        assert cells["resolved_on_time"] == expected(truths, *PERIOD)["resolved_on_time"]
        assert cells["on_time_rate"] == expected(truths, *PERIOD)["on_time_rate"]

        result = await rebuild(infra.kafka, infra.mongo)  # replay everything into a fresh collection, switch
        assert result["events"] >= len(events) * 2 and result["collection"] != result["replaced"]
        for p in periods:
            assert await figures(*p) == first[p]

        code = truths[0].code
        public = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://stats")  # no token
        tracking = await public.get(f"/v1/dossiers/{code}", params={"secret": TrackingSettings().secret(code)})
        assert tracking.status_code == 200
        body = tracking.text
        assert CANARY_ID not in body and CANARY_NAME not in body
        assert "applicant" not in tracking.json() and tracking.json()["code"] == code  # the dossier, not the person
        unknown = await public.get("/v1/dossiers/NOPE-251201-0001", params={"secret": "AAAAAAAAAA"})
        for wrong in (None, "AAAAAAAAAA", TrackingSettings().secret("NOPE-251201-0001")):  # the code alone is not enough
            answer = await public.get(f"/v1/dossiers/{code}", params={"secret": wrong} if wrong else {})
            assert (answer.status_code, answer.json()) == (unknown.status_code, unknown.json()) == (404, unknown.json())
        await public.aclose()
        assert (await http.get("/v1/stats/summary", params={"from": "2025-12-05", "to": "2025-12-01"})).status_code == 422


async def test_consumer_stopped_mid_batch_and_restarted_loses_and_doubles_nothing(infra):
    period = (date(2018, 12, 3), date(2018, 12, 14))  # again a period no other test writes into
    truths, events = generate(300, seed=11, period=period)
    group = f"stats-restart-{uuid.uuid4().hex[:6]}"
    first = bootstrap(StatsSettings(group_id=group, graceful_timeout_s=1), infra.kafka, infra.mongo).app
    async with LifespanManager(first, startup_timeout=60, shutdown_timeout=60):
        await asyncio.sleep(3)  # partitions assigned
        await publish_all(infra, events)
        await asyncio.sleep(0.5)  # stop while batches are likely still in flight
    second = bootstrap(StatsSettings(group_id=group), infra.kafka, infra.mongo).app
    async with LifespanManager(second, startup_timeout=60), httpx.AsyncClient(headers=EVERYTHING, 
        transport=httpx.ASGITransport(second), base_url="http://stats", timeout=60
    ) as http:
        await wait_caught_up(infra.kafka, group, DOSSIER_LIFECYCLE.name)
        resp = await http.get("/v1/stats/summary", params={"from": period[0].isoformat(), "to": period[1].isoformat()})
    figures = {k: v for k, v in resp.json().items() if k not in {"from", "to", "unit", "level", "basis"}}
    assert figures == expected(truths, *period)


async def test_a_previous_layouts_pointer_is_not_followed(infra):
    """A deployment that rebuilt under v2, v3 or v4 left `stats_meta` pointing at its collection: the current layout
    must neither write its rows there nor read them as its own."""
    from lienthong.store import database, make_client
    from stats.store import DEFAULT_COLLECTION, ProjectionStore

    settings = infra.mongo.model_copy(update={"database": f"layout_{uuid.uuid4().hex[:6]}"})
    client = make_client(settings)
    try:
        db = database(client, settings)
        await db["stats_meta"].insert_one({"_id": "active", "collection": "stats_v2_dossiers_20261124"})
        await db["stats_meta"].insert_one({"_id": "active-v3", "collection": "stats_v3_dossiers_20261206"})
        await db["stats_meta"].insert_one({"_id": "active-v4", "collection": "stats_v4_dossiers_20261207"})
        store = ProjectionStore(db)
        assert await store.prepare() == DEFAULT_COLLECTION
        await store.switch_to(f"{DEFAULT_COLLECTION}_rebuilt")
        assert (await store.collection()).name == f"{DEFAULT_COLLECTION}_rebuilt"
        assert (await db["stats_meta"].find_one({"_id": "active"}))["collection"] == "stats_v2_dossiers_20261124"
    finally:
        await client.close()


async def test_the_windows_offset_probe_reads_end_offsets_as_the_stats_principal(infra):
    """The burst rule asks the broker where partitions end, on a connection of its own, under stats' own ACLs."""
    as_stats = infra.local.kafka.client_settings("stats", infra.kafka) if infra.local else infra.kafka
    probe = OffsetProbe(as_stats)
    partitions = [TopicPartition(DOSSIER_LIFECYCLE.name, p) for p in range(DOSSIER_LIFECYCLE.partitions)]
    try:
        with pytest.raises(LookupError):
            await probe(partitions)  # connecting in the background: asking never waits for it
        for _ in range(100):
            try:
                got = await probe(partitions)
                break
            except LookupError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the offset probe did not connect within 10 s")
    finally:
        await probe.close()
    reader = AIOKafkaConsumer(**infra.kafka.client_options(), enable_auto_commit=False)
    await reader.start()
    try:
        assert got == await reader.end_offsets(partitions)
    finally:
        await stop_consumer(reader)
