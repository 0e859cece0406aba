"""Intake against the real broker and store: HTTP and Kafka edges, dedup, codes, errors, outage."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import date

import httpx
import pytest
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker

from intake.main import bootstrap
from intake.settings import IntakeSettings
from lienthong.calendar import due_date
from lienthong.catalogue import catalogue
from lienthong.contracts.dossier import Applicant, DossierSubmitted
from lienthong.personaldata import SubmissionKey, seal_for_intake
from lienthong.topics import DOSSIER_LIFECYCLE, INTAKE_SUBMISSIONS
from tests.integration.kafka_reader import body, headers, read_records
from lienthong.auth import SUBMIT
from tests.tokens import EVERYTHING, bearer

pytestmark = pytest.mark.integration

CANARY_ID = "038099001122"
CANARY_PHONE = "0987654321"
CANARY_EMAIL = "canary.nguoidan@example.vn"
CANARY_NAME = "Canary Lê Văn Thử"


def submission(**overrides) -> dict:
    body = {
        "procedure_code": "HT-KS",
        "channel": "online",
        "receiving_unit": "HACTHANH",
        "external_ref": f"G22.99-{uuid.uuid4().hex[:12]}",
        "applicant": {
            "citizen_id": CANARY_ID,
            "full_name": CANARY_NAME,
            "phone": CANARY_PHONE,
            "email": CANARY_EMAIL,
            "address": "Số 1 phố Trương Hán Siêu",
            "residence_unit": "HOANGSON",
        },
        "documents": [
            {"kind": "to-khai", "name": "to-khai.pdf", "sha256": "a" * 64},
            {"kind": "giay-chung-sinh", "name": "chung-sinh.pdf", "sha256": "b" * 64},
        ],
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
async def service(infra):
    settings = IntakeSettings(publish_timeout_s=3.0, outbox_interval_s=0.5, outbox_grace_s=4.0, rate_burst=1000)
    service = bootstrap(settings, infra.kafka, infra.mongo)
    app, intake = service.app, service.core
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        async with httpx.AsyncClient(headers=EVERYTHING, transport=httpx.ASGITransport(app), base_url="http://intake", timeout=30) as http:
            yield http, intake


async def lifecycle_events(infra, predicate, expected, **kw):
    return await read_records(
        infra.kafka, DOSSIER_LIFECYCLE.name, lambda r: predicate(json.loads(r.value)), expected=expected, **kw
    )


def by_ref(ref: str):
    return lambda event: event["data"].get("external_ref") == ref


async def test_http_submission_publishes_dossier_submitted(infra, service):
    http, _ = service
    req = submission()
    resp = await http.post("/v1/dossiers", json=req)
    assert resp.status_code == 201, resp.text
    receipt = resp.json()
    assert re.fullmatch(r"HACTHANH-\d{6}-\d{4}", receipt["dossier_code"])
    [record] = await lifecycle_events(infra, by_ref(req["external_ref"]), 1)
    event = body(record)
    assert record.key.decode() == receipt["dossier_code"] == event["subject"]
    assert event["type"] == "vn.gov.dossier.submitted.v2" and event["dossierseq"] == 1
    assert event["data"]["channel"] == "online"
    assert event["data"]["due_date"] == receipt["due_date"]
    received_at = DossierSubmitted.model_validate(event["data"]).received_at
    assert date.fromisoformat(receipt["due_date"]) == due_date(received_at, 1)
    # Personal data travels only where the contract puts it (data.applicant), nowhere else in the record.
    assert set(event["data"]) <= set(DossierSubmitted.model_fields)
    outside = json.dumps({k: v for k, v in event["data"].items() if k != "applicant"}) + json.dumps(headers(record))
    for canary in (CANARY_ID, CANARY_PHONE, CANARY_EMAIL, CANARY_NAME):
        assert canary not in outside


def over_kafka(req: dict) -> dict:
    """As an agency system files over Kafka: the applicant sealed to intake's key (GET /v1/submission-key)."""
    sealed = seal_for_intake(SubmissionKey().public, Applicant.model_validate(req["applicant"]), req["external_ref"])
    return {**{k: v for k, v in req.items() if k != "applicant"}, "applicant_sealed": sealed.model_dump()}


async def test_kafka_submission_is_validated_and_published(infra, service):
    http, _ = service
    key = (await http.get("/v1/submission-key")).json()
    assert key == {"alg": "X25519-HKDF-SHA256-A256GCM", "public_key": SubmissionKey().public}
    req = over_kafka(submission(channel="direct", receiving_unit="BIMSON"))
    producer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())
    async with producer:
        await producer.start()
        await producer.publish(json.dumps(req).encode(), INTAKE_SUBMISSIONS.name, key=req["external_ref"].encode())
    [record] = await lifecycle_events(infra, by_ref(req["external_ref"]), 1, timeout=60)
    assert body(record)["subject"].startswith("BIMSON-")
    assert body(record)["data"]["channel"] == "direct"


async def test_bad_kafka_record_goes_to_dlq_and_consumer_carries_on(infra, service):
    bad = submission(receiving_unit="BIMSON")
    bad["applicant"] = {**bad["applicant"], "citizen_id": "12345"}
    unknown_proc = over_kafka(submission(procedure_code="NO-SUCH", receiving_unit="BIMSON"))
    in_clear = submission(receiving_unit="BIMSON")  # valid, but the agency did not seal the applicant
    wrong_ref = over_kafka(submission(receiving_unit="BIMSON"))
    wrong_ref["external_ref"] += "-moved"  # sealed for another reference: does not open
    good = over_kafka(submission(receiving_unit="BIMSON"))
    key = f"same-partition-{uuid.uuid4().hex[:6]}".encode()
    producer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())
    async with producer:
        await producer.start()
        for payload in (b"{not json", json.dumps(bad).encode(), json.dumps(unknown_proc).encode(),
                        json.dumps(in_clear).encode(), json.dumps(wrong_ref).encode(), json.dumps(good).encode()):
            await producer.publish(payload, INTAKE_SUBMISSIONS.name, key=key)
    await lifecycle_events(infra, by_ref(good["external_ref"]), 1, timeout=60)
    dead = await read_records(infra.kafka, INTAKE_SUBMISSIONS.dlq, lambda r: r.key == key, expected=5)
    reasons = sorted(headers(r)["dlq-reason"] for r in dead)
    assert len(dead) == 5
    assert any("json_invalid" in r for r in reasons)
    assert any("applicant.citizen_id: string_pattern_mismatch" in r for r in reasons)
    assert any("procedure_code: unknown_procedure" in r for r in reasons)
    assert any("must be sealed" in r for r in reasons)
    assert any("applicant_sealed: unopenable" in r for r in reasons)
    for record in dead:
        h = headers(record)
        assert h["dlq-source-topic"] == INTAKE_SUBMISSIONS.name and h["dlq-source-offset"].isdigit()
        assert CANARY_ID not in json.dumps(h) and "12345" not in h["dlq-reason"]
        # Never the bytes: in clear they are personal data, sealed to intake's key an erasure could not reach them.
        assert h["dlq-value"] == "withheld" and record.value == b""


async def test_same_external_ref_twenty_times_concurrently_is_one_dossier(infra, service):
    http, _ = service
    req = submission(receiving_unit="DONGHUONG")
    responses = await asyncio.gather(*(http.post("/v1/dossiers", json=req) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["dossier_code"] for r in responses}) == 1
    records = await lifecycle_events(infra, by_ref(req["external_ref"]), 1)
    assert len(records) == 1


async def test_a_reference_belongs_to_its_client_and_names_one_submission(infra, service):
    http, _ = service
    req = submission(receiving_unit="HAMRONG")
    first = await http.post("/v1/dossiers", json=req)
    assert first.status_code == 201
    # The same client, the same reference, another applicant: refused, and nothing of the first comes back.
    other = {**req, "applicant": {**req["applicant"], "citizen_id": "038199009999", "full_name": "Trần Thị B"}}
    conflict = await http.post("/v1/dossiers", json=other)
    assert conflict.status_code == 409
    assert first.json()["dossier_code"] not in conflict.text and CANARY_NAME not in conflict.text
    assert conflict.json() == {"detail": [{"field": "external_ref", "type": "conflict", "message":
                                           "this reference was already used for a different submission"}]}
    # Another client cannot take (or read back) that reference: it files a dossier of its own.
    theirs = await http.post("/v1/dossiers", json=req, headers=bearer(SUBMIT, client="another-portal"))
    assert theirs.status_code == 201 and theirs.json()["dossier_code"] != first.json()["dossier_code"]
    assert (await http.post("/v1/dossiers", json=req)).json()["dossier_code"] == first.json()["dossier_code"]


async def test_two_hundred_concurrent_submissions_get_consecutive_codes(infra, service):
    http, _ = service
    unit = "DIENBIEN"
    responses = await asyncio.gather(*(http.post("/v1/dossiers", json=submission(receiving_unit=unit))
                                       for _ in range(200)))
    assert all(r.status_code == 201 for r in responses), {r.status_code for r in responses}
    codes = sorted(r.json()["dossier_code"] for r in responses)
    seqs = [int(code.rsplit("-", 1)[1]) for code in codes]
    assert len(set(codes)) == 200
    assert seqs == list(range(seqs[0], seqs[0] + 200))


VALID_DOCS = submission()["documents"]


@pytest.mark.parametrize(
    ("overrides", "field", "error_type"),
    [
        ({"procedure_code": "XX-NOPE"}, "procedure_code", "unknown_procedure"),
        ({"procedure_code": "CT-BS", "documents": [{"kind": "ban-chinh", "name": "a.pdf", "sha256": "c" * 64}]},
         "channel", "channel_not_offered"),
        ({"receiving_unit": "NOWHERE"}, "receiving_unit", "unknown_unit"),
        ({"receiving_unit": "SYT"}, "receiving_unit", "unit_does_not_receive"),
        ({"receiving_unit": "PVHCCTINH"}, "receiving_unit", "wrong_level"),
        ({"documents": VALID_DOCS[:1]}, "documents", "missing_document"),
        ({"procedure_code": "DD-CDGCN", "channel": "direct", "documents": [
            {"kind": "don-de-nghi", "name": "d.pdf", "sha256": "d" * 64},
            {"kind": "giay-chung-nhan", "name": "g.pdf", "sha256": "e" * 64}]}, "land_parcel", "missing"),
        ({"applicant": {**submission()["applicant"], "residence_unit": "SYT"}}, "applicant.residence_unit",
         "unknown_unit"),
        ({"applicant": {**submission()["applicant"], "citizen_id": "03809900112"}}, "applicant.citizen_id",
         "string_pattern_mismatch"),
        ({"applicant": {**submission()["applicant"], "phone": "0187654321"}}, "applicant.phone",
         "string_pattern_mismatch"),
        ({"applicant": {**submission()["applicant"], "email": "canary.nguoidan@"}}, "applicant.email",
         "string_pattern_mismatch"),
        ({"channel": 3}, "channel", "literal_error"),
        ({"documents": "all of them"}, "documents", "tuple_type"),
        ({"surprise": "field"}, "surprise", "extra_forbidden"),
    ],
)
async def test_every_rule_has_a_field_level_422(service, overrides, field, error_type):
    http, _ = service
    resp = await http.post("/v1/dossiers", json=submission(**overrides))
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert {"field": field, "type": error_type} in [{"field": e["field"], "type": e["type"]} for e in detail], detail
    for canary in (CANARY_ID, CANARY_PHONE, CANARY_EMAIL, CANARY_NAME, "03809900112", "canary.nguoidan@"):
        assert canary not in resp.text


async def test_malformed_json_and_oversized_body(service):
    http, _ = service
    resp = await http.post("/v1/dossiers", content=b'{"procedure_code": ', headers={"content-type": "application/json"})
    assert resp.status_code == 422 and resp.json()["detail"][0]["type"] == "json_invalid"
    big = submission()
    big["applicant"] = {**big["applicant"], "address": "x" * (300 * 1024)}
    resp = await http.post("/v1/dossiers", json=big)
    assert resp.status_code == 413 and resp.json()["detail"][0]["type"] == "too_large"


async def test_rate_limit_per_receiving_unit(infra):
    settings = IntakeSettings(rate_per_unit_per_s=0.01, rate_burst=2)  # no refill within the test
    app = bootstrap(settings, infra.kafka, infra.mongo).app
    async with LifespanManager(app, startup_timeout=60), httpx.AsyncClient(headers=EVERYTHING, 
        transport=httpx.ASGITransport(app), base_url="http://intake", timeout=30
    ) as http:
        codes = [(await http.post("/v1/dossiers", json=submission(receiving_unit="BATMOT"))).status_code
                 for _ in range(3)]
        other = await http.post("/v1/dossiers", json=submission(receiving_unit="HAMRONG"))
        limited = await http.post("/v1/dossiers", json=submission(receiving_unit="BATMOT"))
    assert codes == [201, 201, 429]
    assert other.status_code == 201  # one unit's burst does not block another's
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


async def test_procedures_and_units_catalogues(service):
    http, _ = service
    procs = (await http.get("/v1/procedures")).json()
    units = (await http.get("/v1/units")).json()
    assert {p["code"] for p in procs} == set(catalogue().procedures)
    assert sum(1 for u in units if u["level"] == "commune") == 166


async def test_two_writers_storing_groups_at_once_share_one_unit_day_without_gaps_or_duplicates(infra):
    """Two intake processes (two repositories, each with its own memory of the next number) store groups of new
    dossiers for the same unit and day at the same time: the store decides who got which number, each loser takes
    the next one, and the codes end up unique and consecutive."""
    from datetime import UTC, datetime

    from intake.store import DossierStore, NewDossier
    from lienthong.contracts.envelope import new_event
    from lienthong.contracts.dossier import StepStarted
    from lienthong.store import database, make_client

    client = make_client(infra.mongo)
    try:
        db = database(client, infra.mongo)
        writers = [DossierStore(db), DossierStore(db)]
        await writers[0].setup()
        unit, now = "QUANGPHU", datetime.now(UTC)

        def group(writer: int, round_: int) -> list[NewDossier]:
            return [NewDossier(f"two-writers:{writer}-{round_}-{i}-{uuid.uuid4().hex[:6]}", unit, now,
                               lambda code: new_event(StepStarted(unit_code=unit, step=0), subject=code,
                                                      source="/test", seq=1)) for i in range(25)]

        results = []
        for round_ in range(4):  # both start from the same hint each time a round's memory is warm or not
            made = await asyncio.gather(*(w.create_many(group(n, round_)) for n, w in enumerate(writers)))
            results += [r for batch in made for r in batch]
        assert all(created for _, created in results)
        codes = sorted(stored.code for stored, _ in results)
        seqs = [int(code.rsplit("-", 1)[1]) for code in codes]
        assert len(set(codes)) == 200 and seqs == list(range(seqs[0], seqs[0] + 200))
        stored = await writers[1].find_many([s.key for s, _ in results])
        assert {k: s.code for k, s in stored.items()} == {s.key: s.code for s, _ in results}
    finally:
        await client.close()


async def test_the_outbox_holds_what_kafka_has_not_acknowledged_and_hints_are_written_behind(infra):
    """A dossier is stored with an outbox entry (inserted first) and leaves the outbox when marked published; a
    new process finds what is left there, and dossiers an older release stored with `published: false`; an entry
    whose dossier never came is removed once an hour old. A process that stopped before writing its counter hints
    leaves the next one to retry from the older hint: codes stay consecutive, none reused."""
    from datetime import UTC, datetime, timedelta

    from intake.store import DossierStore, NewDossier
    from lienthong.contracts.envelope import new_event
    from lienthong.contracts.dossier import StepStarted
    from lienthong.store import database, make_client

    client = make_client(infra.mongo)
    try:
        db = database(client, infra.mongo.model_copy(update={"database": f"outbox_{uuid.uuid4().hex[:8]}"}))
        unit, now = "QUANGNHAM", datetime.now(UTC)

        def new(n: int) -> list[NewDossier]:
            return [NewDossier(f"outbox:{uuid.uuid4().hex}", unit, now, lambda code: new_event(
                StepStarted(unit_code=unit, step=0), subject=code, source="/test", seq=1)) for _ in range(n)]

        first = DossierStore(db)
        await first.setup()
        made = [s for s, _ in await first.create_many(new(10))]
        assert not any(s.published for s in made)
        assert {e["_id"] for e in await db["intake_outbox"].find({}).to_list(None)} == {s.key for s in made}
        await first.mark_published_many([s.key for s in made[:7]])
        assert [s.published for s in (await first.find_many([s.key for s in made])).values()].count(True) == 7
        await first.flush_hints()
        more = [s for s, _ in await first.create_many(new(5))]  # stored, then the process stops: no hints written

        old, young = {"_id": "outbox:orphan-old", "at": now - timedelta(hours=2)}, {"_id": "outbox:orphan-young", "at": now}
        await db["intake_outbox"].insert_many([old, young])
        legacy = {"_id": "legacy:1", "code": f"{unit}-251201-0001", "unit": unit, "day": "251201", "seq": 1,
                  "event": made[0].event.model_dump_json(), "published": False}
        await db["intake_dossiers"].insert_one(legacy)

        second = DossierStore(db)  # the next process
        left = await second.unpublished()
        assert {s.key for s in left} == {s.key for s in made[7:] + more} | {"legacy:1"}
        held = {e["_id"] for e in await db["intake_outbox"].find({}).to_list(None)}
        assert "outbox:orphan-old" not in held and "outbox:orphan-young" in held
        await second.mark_published_many([s.key for s in left])
        assert await second.unpublished() == []
        assert (await db["intake_dossiers"].find_one({"_id": "legacy:1"}))["published"] is True

        after = [s for s, _ in await second.create_many(new(3))]  # from a hint 5 behind: retries, no reuse
        seqs = sorted(int(s.code.rsplit("-", 1)[1]) for s in made + more + after)
        assert seqs == list(range(1, 19))
    finally:
        await client.close()
