"""Personal data on the real broker and store: sealed in the topic and the outbox, read only through the scoped and
logged API, and gone everywhere at once when the citizen is erased (crypto-shredding)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from asgi_lifespan import LifespanManager

from intake.main import bootstrap
from intake.settings import IntakeSettings
from lienthong.auth import AUDIT_READ, ERASE, PERSONAL_READ
from lienthong.calendar import today_vn
from lienthong.contracts import parse_event
from lienthong.contracts.dossier import Applicant
from lienthong.personaldata import Access, Vault
from lienthong.store import database, make_client
from stats import rollups
from stats.rebuild import rebuild
from stats.store import ProjectionStore
from tests.integration import test_intake as intake_cases
from tests.integration.kafka_reader import read_records
from tests.tokens import EVERYTHING, bearer
from lienthong.topics import DOSSIER_LIFECYCLE, INTAKE_SUBMISSIONS

pytestmark = pytest.mark.integration

CITIZEN = "038077001199"
NAME = "Phạm Thị Bảo Mật"
PHONE, EMAIL = "0912777001", "bao.mat@example.vn"


def submission(**overrides) -> dict:
    body = intake_cases.submission(**overrides)
    body["applicant"] = {**body["applicant"], "citizen_id": CITIZEN, "full_name": NAME, "phone": PHONE,
                         "email": EMAIL}
    return body


def plain_forms(*values: str) -> list[bytes]:
    """Each value as UTF-8 and as JSON with escaped non-ASCII: either would be a leak."""
    return [form for v in values for form in (v.encode(), json.dumps(v).strip('"').encode())]


LEAKS = plain_forms(CITIZEN, NAME, PHONE, EMAIL)


@pytest.fixture(scope="module")
async def service(infra):
    app = bootstrap(IntakeSettings(rate_burst=1000, purge_interval_s=1.0), infra.kafka, infra.mongo).app
    client = make_client(infra.mongo)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        async with httpx.AsyncClient(headers=EVERYTHING, transport=httpx.ASGITransport(app), base_url="http://intake",
                                     timeout=30) as http:
            yield http, Vault(database(client, infra.mongo)), database(client, infra.mongo)
    await client.close()


async def file(http: httpx.AsyncClient, infra, **overrides) -> tuple[str, bytes]:
    """File a dossier; its code and the raw bytes of its record on the lifecycle topic."""
    req = submission(**overrides)
    resp = await http.post("/v1/dossiers", json=req)
    assert resp.status_code == 201, resp.text
    code = resp.json()["dossier_code"]
    [record] = await read_records(infra.kafka, DOSSIER_LIFECYCLE.name, lambda r: r.key == code.encode(), expected=1)
    return code, record.value


async def test_the_applicant_is_sealed_in_the_topic_and_the_outbox_and_opens_through_the_vault(service, infra):
    http, vault, db = service
    code, raw = await file(http, infra)
    assert not [leak for leak in LEAKS if leak in raw]
    stored = await db["intake_dossiers"].find_one({"code": code})
    assert not [leak for leak in LEAKS if leak in json.dumps(stored, default=str, ensure_ascii=False).encode()]
    sealed = parse_event(raw).data.applicant
    assert sealed.subject == vault.subject_of(CITIZEN) and sealed.residence_unit == "HOANGSON"
    opened = await vault.open(sealed, Access("test", code, "checking the seal"))
    assert opened == Applicant.model_validate(submission()["applicant"])
    keys = await db["personal_data_keys"].find_one({"_id": sealed.subject})
    assert keys is not None and not [leak for leak in LEAKS if leak in repr(keys).encode()]  # wrapped, not plain


async def test_reading_an_applicant_needs_the_scope_the_unit_and_a_purpose_and_is_logged(service, infra):
    http, _, _ = service
    code, _ = await file(http, infra)
    path = f"/v1/dossiers/{code}/applicant"
    ok = await http.get(path, params={"purpose": "trả kết quả"}, headers=bearer(PERSONAL_READ, units=("HACTHANH",),
                                                                                  client="commune-one-stop"))
    assert ok.status_code == 200 and ok.json()["citizen_id"] == CITIZEN and ok.headers["cache-control"] == "no-store"
    other_unit = await http.get(path, params={"purpose": "x-check"}, headers=bearer(PERSONAL_READ, units=("BIMSON",)))
    unknown = await http.get("/v1/dossiers/HACTHANH-010101-9999/applicant", params={"purpose": "x-check"},
                             headers=bearer(PERSONAL_READ))
    assert other_unit.status_code == unknown.status_code == 404 and other_unit.json() == unknown.json()
    assert (await http.get(path, params={"purpose": "x-check"}, headers=bearer("stats:read"))).status_code == 403
    assert (await http.get(path, headers=bearer(PERSONAL_READ))).status_code == 422  # no purpose, no data
    log = await http.get("/v1/personal-data/access", params={"dossier": code}, headers=bearer(AUDIT_READ))
    assert log.status_code == 200
    [line] = log.json()
    assert (line["reader"], line["dossier"], line["purpose"]) == ("commune-one-stop", code, "trả kết quả")
    assert not [leak for leak in LEAKS if leak in log.content]
    assert (await http.get("/v1/personal-data/access", headers=bearer(PERSONAL_READ))).status_code == 403


async def test_erasure_makes_every_copy_unreadable_at_once(service, infra):
    http, vault, db = service
    first, raw_first = await file(http, infra)
    second, raw_second = await file(http, infra, receiving_unit="BIMSON", channel="direct")
    assert (await http.post("/v1/citizens/erasure", json={"citizen_id": CITIZEN},
                            headers=bearer(PERSONAL_READ))).status_code == 403
    bad = await http.post("/v1/citizens/erasure", json={"citizen_id": "12345"}, headers=bearer(ERASE))
    assert bad.status_code == 422 and "12345" not in bad.text
    erased = await http.post("/v1/citizens/erasure", json={"citizen_id": CITIZEN}, headers=bearer(ERASE))
    assert erased.status_code == 200 and erased.json()["status"] == "erased"
    for code, raw in ((first, raw_first), (second, raw_second)):
        assert await vault.open(parse_event(raw).data.applicant, Access("test", code, "after erasure")) is None
        resp = await http.get(f"/v1/dossiers/{code}/applicant", params={"purpose": "after erasure"},
                              headers=bearer(PERSONAL_READ))
        assert resp.status_code == 404
    # The dossiers themselves stay: same codes, same facts, no person (tracking and figures are unchanged).
    assert await db["intake_dossiers"].count_documents({"code": {"$in": [first, second]}}) == 2
    assert await vault.erased(CITIZEN)
    again = await http.post("/v1/citizens/erasure", json={"citizen_id": CITIZEN}, headers=bearer(ERASE))
    assert again.json()["status"].startswith("nothing to erase")
    # A later filing by the same person is a new consent: a new key, which opens nothing of before.
    third, raw_third = await file(http, infra)
    assert await vault.open(parse_event(raw_third).data.applicant, Access("test", third, "new filing")) is not None
    assert await vault.open(parse_event(raw_first).data.applicant, Access("test", first, "old filing")) is None


async def test_submissions_filed_over_kafka_are_sealed_and_deleted_from_the_topic_once_taken_in(service, infra):
    """Agency systems seal applicants to intake's key, and intake deletes what it has taken in all the same."""
    body = intake_cases.over_kafka(submission(channel="direct", receiving_unit="BIMSON"))
    assert not [leak for leak in LEAKS if leak in json.dumps(body).encode()]  # sealed to intake's key
    producer = AIOKafkaProducer(**infra.kafka.client_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = await producer.send_and_wait(INTAKE_SUBMISSIONS.name, json.dumps(body).encode(),
                                            key=body["external_ref"].encode())
    finally:
        await producer.stop()
    [published] = await read_records(infra.kafka, DOSSIER_LIFECYCLE.name,
                                     lambda r: json.loads(r.value)["data"].get("external_ref") == body["external_ref"],
                                     expected=1, timeout=60, settle=0.2)
    assert not [leak for leak in LEAKS if leak in published.value]
    partition = TopicPartition(INTAKE_SUBMISSIONS.name, sent.partition)
    consumer = AIOKafkaConsumer(**infra.kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        for _ in range(60):  # the purge runs every second here (every minute by default)
            if (await consumer.beginning_offsets([partition]))[partition] > sent.offset:
                break
            await asyncio.sleep(0.5)
        assert (await consumer.beginning_offsets([partition]))[partition] > sent.offset, "still readable"
    finally:
        await consumer.stop()


async def test_erasure_holds_through_a_rebuild_of_the_projections_and_changes_no_figure(service, infra):
    http, vault, db = service
    citizen = "038077002288"
    body = submission()
    body["applicant"] = {**body["applicant"], "citizen_id": citizen}
    resp = await http.post("/v1/dossiers", json=body)
    assert resp.status_code == 201, resp.text
    code = resp.json()["dossier_code"]
    await read_records(infra.kafka, DOSSIER_LIFECYCLE.name, lambda r: r.key == code.encode(), expected=1)
    store = ProjectionStore(db)

    async def figures() -> dict:
        today = today_vn()
        rows = await store.slot_rows(today.isoformat(), "HACTHANH")
        return asdict(rollups.figures(rows, "recv", today - timedelta(days=30), today, today))

    await rebuild(infra.kafka, infra.mongo)
    before, tracked = await figures(), await store.tracking(code)
    assert before["received"] >= 1 and tracked is not None
    erased = await http.post("/v1/citizens/erasure", json={"citizen_id": citizen}, headers=bearer(ERASE))
    assert erased.json()["status"] == "erased"
    await rebuild(infra.kafka, infra.mongo)  # replays the log, the erased applicant's sealed record included
    assert await figures() == before
    after = await store.tracking(code)
    assert after == tracked  # the dossier is all there, as before, without the person
    assert not [leak for leak in plain_forms(citizen, NAME, PHONE, EMAIL)
                if leak in json.dumps(after, default=str, ensure_ascii=False).encode()]
