"""Notify against the real broker and store, a real SMTP server and real HTTP servers (SMS gateway, webhooks)."""

from __future__ import annotations

import asyncio
import json
import hashlib
import hmac
import random
import uuid
from importlib.resources import files
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from pymongo import AsyncMongoClient
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker

from lienthong.calendar import VN_TZ
from lienthong.contracts import parse_event, to_json
from lienthong.contracts.dossier import (
    Applicant,
    DossierAssigned,
    DossierDueSoon,
    DossierOverdue,
    DossierRejected,
    DossierResolved,
    DossierSubmitted,
    SupplementRequested,
)
from lienthong.contracts.envelope import new_event
from lienthong.auth import CITIZEN_ASSERTION_HEADER
from lienthong.personaldata import PersonalDataSettings, Vault
from lienthong.store import database, make_client
from lienthong.topics import DOSSIER_LIFECYCLE, NOTIFICATION_EVENTS, OPERATOR_ALERTS
from notify.channels import delivery_id
from notify.main import bootstrap
from notify.settings import NotifySettings
from tests.integration.kafka_reader import headers, read_records
from tests.integration.sinks import HttpSink, SmtpSink, eventually
from tests.tokens import EVERYTHING, citizen

pytestmark = pytest.mark.integration

CITIZEN_ID = "038199004455"
FULL_NAME = "Trịnh Văn Quyết"
# An operator's edit of the letter with a bug that shows only for some dossiers.
BROKEN_TEMPLATE = (files("notify") / "templates" / "received.email.html").read_text(encoding="utf-8").replace(
    "{{ due_date }}", "{{ due_date }}{{ '' if not code.endswith('-066666') else no_such_variable }}")


def new_code(unit: str = "HACTHANH") -> str:
    return f"{unit}-251201-{random.randrange(10**5, 10**6)}"


VAULTS: list[Vault] = []  # the module's vault, on the test database (set by the `notify` fixture)


async def submitted(code: str, seq: int = 1, *, email: str | None = None, phone: str | None = None,
                    citizen_id: str = CITIZEN_ID):
    """As intake publishes it: the applicant sealed by the vault notify opens it from."""
    unit = code.split("-")[0]
    applicant = await VAULTS[0].seal(Applicant(citizen_id=citizen_id, full_name=FULL_NAME, email=email, phone=phone,
                                               address="5 Trần Phú", residence_unit=unit))
    data = DossierSubmitted(
        procedure_code="HT-KH", channel="online", receiving_unit=unit, external_ref=f"P-{code}",
        received_at=datetime(2025, 12, 1, 9, tzinfo=VN_TZ), due_date=date(2025, 12, 4), processing_days=3,
        applicant=applicant)
    return new_event(data, subject=code, source="/test/intake", seq=seq)


def later(code: str, seq: int, data):
    return new_event(data, subject=code, source="/test/routing", seq=seq)


@pytest.fixture(scope="module")
async def notify(infra, tmp_path_factory):
    smtp, http = SmtpSink(), HttpSink()
    smtp_port, base = smtp.start(), http.start()
    templates = tmp_path_factory.mktemp("templates")
    (templates / "received.email.html").write_text(BROKEN_TEMPLATE, encoding="utf-8")
    settings = NotifySettings(
        group_id=f"notify-test-{uuid.uuid4().hex[:6]}", start_from="latest", smtp_port=smtp_port,
        sms_gateway_url=f"{base}/sms", sms_gateway_token="t0ken", allow_http_webhooks=True, allow_private_webhooks=True, max_attempts=3,
        backoff_base_s=0.3, retry_hold_max_s=1.0, lease_s=3.0, disable_after_failures=2,
        subscriptions_refresh_s=0.5, templates_dir=templates,
    )
    app = bootstrap(settings, infra.kafka, infra.mongo).app
    client = make_client(infra.mongo)
    VAULTS[:] = [Vault(database(client, infra.mongo))]
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        await asyncio.sleep(3)  # the new group gets its partitions before anything is published
        async with httpx.AsyncClient(headers=EVERYTHING, transport=httpx.ASGITransport(app), base_url="http://notify") as api:
            producer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())
            async with producer:
                await producer.start()

                async def publish(*events):
                    for event in events:
                        await producer.publish(to_json(event), DOSSIER_LIFECYCLE.name, key=event.subject.encode())

                yield settings, smtp, http, base, api, publish
    smtp.stop()
    http.stop()


async def outcomes(infra, code: str, expected: int, settle: float = 1.0):
    records = await read_records(infra.kafka, NOTIFICATION_EVENTS.name, lambda r: r.key == code.encode(),
                                 expected=expected, timeout=60, settle=settle)
    return [parse_event(r.value) for r in records]


async def test_every_rule_reaches_the_right_recipient_on_the_right_channel(infra, notify):
    _, smtp, http, _, api, publish = notify
    code, refused = new_code(), new_code()
    mail, phone = f"{code.lower()}@example.vn", "0987654321"
    await publish(
        await submitted(code, email=mail, phone=phone),
        later(code, 2, DossierAssigned(unit_code="HACTHANH", step=0, step_name="Đăng ký kết hôn",
                                       step_due_date=date(2025, 12, 4))),
        later(code, 3, DossierDueSoon(unit_code="HACTHANH", step=0, due_date=date(2025, 12, 4))),
        later(code, 4, SupplementRequested(unit_code="HACTHANH", step=0, missing_documents=("Tờ khai",))),
        later(code, 5, DossierOverdue(unit_code="HACTHANH", step=0, due_date=date(2025, 12, 4))),
        later(code, 6, DossierOverdue(unit_code="HACTHANH", step=None, due_date=date(2025, 12, 4))),
        later(code, 7, DossierResolved(unit_code="HACTHANH", resolved_at=datetime(2025, 12, 9, tzinfo=VN_TZ),
                                       due_date=date(2025, 12, 4), on_time=False)),
        await submitted(refused, email=f"{refused.lower()}@example.vn"),
        later(refused, 2, DossierRejected(unit_code="HACTHANH", reason="Không thuộc thẩm quyền")),
    )
    citizen = await eventually(lambda: len(smtp.to(mail)) >= 4 and smtp.to(mail))
    assert [m.subject for m in citizen] == [
        f"Đã tiếp nhận hồ sơ {code}", f"Hồ sơ {code} cần bổ sung giấy tờ",
        f"Thư xin lỗi: hồ sơ {code} chậm trả kết quả", f"Hồ sơ {code} đã có kết quả"]
    assert all(FULL_NAME in m.body and CITIZEN_ID not in m.body for m in citizen)
    unit_mails = await eventually(lambda: len(u := [m for m in smtp.to("hacthanh@thanhhoa.gov.vn")
                                                    if code in m.subject]) >= 3 and u)
    assert [m.subject.split("] ")[1] for m in unit_mails] == [
        "Hồ sơ mới cần xử lý: Đăng ký kết hôn", "Sắp đến hạn xử lý (04/12/2025)", "Hồ sơ đã quá hạn xử lý"]
    sms = await eventually(lambda: len(s := [r.json() for r in http.to("/sms") if code in r.json()["text"]]) >= 4
                           and s)
    assert {s["to"] for s in sms} == {phone}
    assert all(FULL_NAME not in s["text"] and CITIZEN_ID not in s["text"] and "T**** V** Q****" in s["text"]
               for s in sms if "xin lỗi" not in s["text"])
    assert all(r.headers["authorization"] == "Bearer t0ken" for r in http.to("/sms"))
    rejected = await eventually(lambda: len(smtp.to(f"{refused.lower()}@example.vn")) >= 2
                                and smtp.to(f"{refused.lower()}@example.vn"))
    assert "Lý do: Không thuộc thẩm quyền" in rejected[1].body
    sent = await outcomes(infra, code, 11)
    assert len(sent) == 11 and {e.type for e in sent} == {"vn.gov.notification.sent.v1"}
    metrics = (await api.get("/metrics")).text
    for line in ('lienthong_notify_sent_total{channel="email"}', 'lienthong_notify_sent_total{channel="sms"}',
                 "lienthong_notify_retry_backlog"):
        assert line in metrics
    assert "example.vn" not in metrics and "0987654321" not in metrics


async def test_opted_out_channel_is_not_used(infra, notify):
    _, smtp, http, _, api, publish = notify
    other_citizen = "038199007788"
    opt_out = {"channel": "sms", "opted_out": True}
    no_assertion = await api.put("/v1/opt-outs", json=opt_out)  # the portal's token alone names nobody
    forged = await api.put("/v1/opt-outs", json=opt_out, headers={CITIZEN_ASSERTION_HEADER: "e30.e30.x"})
    assert no_assertion.status_code == forged.status_code == 401
    subject = PersonalDataSettings().subject_of(other_citizen)  # the pseudonym the portal read on the receipt
    resp = await api.put("/v1/opt-outs", json=opt_out, headers=citizen(subject))
    assert resp.status_code == 200 and resp.json() == {"opted_out_channels": ["sms"]}
    code = new_code()
    await publish(await submitted(code, email=f"{code.lower()}@example.vn", phone="0911000111",
                                  citizen_id=other_citizen))
    await eventually(lambda: smtp.to(f"{code.lower()}@example.vn"))
    await outcomes(infra, code, 1, settle=2.0)
    assert not [r for r in http.to("/sms") if code in r.json()["text"]]
    bad = await api.put("/v1/opt-outs", json={"citizen_id": "0381990077", "channel": "fax", "opted_out": True},
                        headers=citizen(subject))
    assert bad.status_code == 422 and "0381990077" not in bad.text
    assert {e["field"] for e in bad.json()["detail"]} == {"citizen_id", "channel"}  # no citizen in the body


async def subscribe(api, base: str, path: str, unit: str) -> dict:
    resp = await api.post("/v1/subscriptions", json={
        "url": f"{base}{path}", "unit_codes": [unit], "event_types": ["vn.gov.dossier.submitted.v2"]})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_webhook_500_then_200_is_delivered_once_and_signed(infra, notify):
    _, _, http, base, api, publish = notify
    subscription = await subscribe(api, base, "/hooks/flaky", "HOANGSON")
    http.script["/hooks/flaky"].append((500, {}))
    await asyncio.sleep(1)  # the subscription cache refreshes
    code = new_code("HOANGSON")
    event = await submitted(code)
    await publish(event)
    [failed, delivered] = await eventually(lambda: len(http.to("/hooks/flaky")) >= 2 and http.to("/hooks/flaky"))
    [sent] = await outcomes(infra, code, 1, settle=2.0)
    assert len(http.to("/hooks/flaky")) == 2 and sent.data.attempts == 2 and sent.data.channel == "webhook"
    for request in (failed, delivered):
        mac = hmac.new(subscription["secret"].encode(),
                       request.headers["x-signature-timestamp"].encode() + b"." + request.body, hashlib.sha256)
        assert request.headers["x-signature"] == "sha256=" + mac.hexdigest()
        body = json.loads(request.body)
        assert body["id"] == event.id and body["type"] == event.type and body["personaldata"] == "withheld"
        assert "applicant" not in body["data"]
        assert CITIZEN_ID.encode() not in request.body and FULL_NAME.encode() not in request.body
    assert failed.headers["x-delivery-id"] == delivered.headers["x-delivery-id"]
    client = AsyncMongoClient(infra.mongo.uri)
    stored = await client[infra.mongo.database]["notify_subscriptions"].find_one({"_id": subscription["id"]})
    await client.close()
    assert stored["secret"].startswith("v1:") and subscription["secret"] not in str(stored)  # sealed at rest
    listed = (await api.get("/v1/subscriptions")).json()
    assert subscription["id"] in {s["id"] for s in listed} and all("secret" not in s for s in listed)
    assert (await api.delete(f"/v1/subscriptions/{subscription['id']}")).status_code == 204
    assert (await api.get(f"/v1/subscriptions/{subscription['id']}")).status_code == 404


async def test_429_retry_after_is_honoured(infra, notify):
    _, _, http, base, api, publish = notify
    await subscribe(api, base, "/hooks/busy", "NGHISON")
    http.script["/hooks/busy"].append((429, {"Retry-After": "3"}))
    await asyncio.sleep(1)
    code = new_code("NGHISON")
    await publish(await submitted(code))
    first, second = await eventually(lambda: len(http.to("/hooks/busy")) >= 2 and http.to("/hooks/busy"))
    assert second.at - first.at >= 3.0


async def test_dead_subscriber_is_disabled_and_reported(infra, notify):
    settings, _, http, base, api, publish = notify
    subscription = await subscribe(api, base, "/hooks/dead", "BIMSON")
    http.always["/hooks/dead"] = 500
    await asyncio.sleep(1)
    codes = [new_code("BIMSON"), new_code("BIMSON")]
    for code in codes:
        await publish(await submitted(code))
        [failed] = await outcomes(infra, code, 1)
        assert failed.type == "vn.gov.notification.failed.v1" and failed.data.reason == "webhook http 500"
        assert failed.data.attempts == settings.max_attempts
    assert len(http.to("/hooks/dead")) == 2 * settings.max_attempts
    state = (await api.get(f"/v1/subscriptions/{subscription['id']}")).json()
    assert state["active"] is False and state["consecutive_failures"] == 2
    [alert] = await read_records(infra.kafka, OPERATOR_ALERTS.name, lambda r: r.key == codes[1].encode(),
                                 expected=1, timeout=30)
    assert parse_event(alert.value).data.subscription_id == subscription["id"]
    parked = await read_records(infra.kafka, NOTIFICATION_EVENTS.dlq, lambda r: r.key in
                                {c.encode() for c in codes}, expected=2, timeout=30)
    assert {headers(r)["dlq-reason"] for r in parked} == {"webhook http 500"}
    await asyncio.sleep(1)
    await publish(await submitted(new_code("BIMSON")))  # switched off: no more attempts
    await asyncio.sleep(3)
    assert len(http.to("/hooks/dead")) == 2 * settings.max_attempts


async def test_failures_of_one_dossier_do_not_hold_up_the_others(infra, notify):
    _, smtp, _, _, _, publish = notify
    slow = new_code()
    smtp.refuse[f"{slow.lower()}@example.vn"] = "451 4.3.0 Mailbox busy, try later"
    broken = "HACTHANH-251201-066666"
    good = [new_code() for _ in range(5)]
    await publish(await submitted(slow, email=f"{slow.lower()}@example.vn"),
                  await submitted(broken, email="broken@example.vn"),
                  *[await submitted(c, email=f"{c.lower()}@example.vn") for c in good])
    started = asyncio.get_running_loop().time()
    await eventually(lambda: all(smtp.to(f"{c.lower()}@example.vn") for c in good), timeout=30)
    assert asyncio.get_running_loop().time() - started < 15
    [template_failure] = await outcomes(infra, broken, 1)
    assert template_failure.type.endswith("failed.v1")
    assert template_failure.data.reason == "template received.email: UndefinedError"
    [busy] = await outcomes(infra, slow, 1)
    assert busy.data.reason == "smtp 451" and busy.data.attempts == 3
    assert not smtp.to("broken@example.vn") and not smtp.to(f"{slow.lower()}@example.vn")


async def test_redelivery_restart_and_a_second_consumer_send_nothing_twice(infra, notify):
    settings, smtp, http, _, _, publish = notify
    codes = [new_code("DONGHUONG") for _ in range(20)]
    events = [await submitted(c, email=f"{c.lower()}@example.vn", phone="0977000111") for c in codes]
    second = NotifySettings(**{**settings.model_dump(), "group_id": f"{settings.group_id}-b"})
    app = bootstrap(second, infra.kafka, infra.mongo).app
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        await asyncio.sleep(3)
        await publish(*events)
        await eventually(lambda: sum(bool(smtp.to(f"{c.lower()}@example.vn")) for c in codes) >= 5)
    # second consumer stopped mid-batch; it starts again in the same group and every event comes again
    app = bootstrap(second, infra.kafka, infra.mongo).app
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        await publish(*events)
        await eventually(lambda: all(smtp.to(f"{c.lower()}@example.vn") for c in codes), timeout=90)
        await asyncio.sleep(settings.lease_s + 5)  # any look scheduled after a lease has happened
    mails = [m for c in codes for m in smtp.to(f"{c.lower()}@example.vn")]
    texts = [r for r in http.to("/sms") if any(c in r.json()["text"] for c in codes)]
    assert len(mails) == 20 and len({m.message_id for m in mails}) == 20
    assert len(texts) == 20 and len({r.json()["reference"] for r in texts}) == 20
    sent = await read_records(infra.kafka, NOTIFICATION_EVENTS.name,
                              lambda r: r.key.decode() in codes, expected=40, timeout=30)
    assert len({parse_event(r.value).id for r in sent}) == 40


async def test_an_attempt_that_died_mid_send_is_taken_over_after_its_lease(infra, notify):
    settings, smtp, _, _, _, publish = notify
    code = new_code()
    address = f"{code.lower()}@example.vn"
    event = await submitted(code, email=address)
    key = f"{event.id}/citizen:applicant/email"
    client = make_client(infra.mongo)
    # What a process that claimed the delivery and died before recording the outcome leaves behind.
    lease_until = datetime.now(UTC) + timedelta(seconds=settings.lease_s)
    await database(client, infra.mongo)["notify_deliveries"].insert_one({
        "_id": key, "status": "sending", "attempts": 1, "lease_until": lease_until, "cause_event_id": event.id,
        "dossier_code": code, "message": {"to": address, "subject": "Đã tiếp nhận hồ sơ " + code, "body": "<p>x</p>"},
    })
    await client.close()
    await publish(event)
    [mail] = await eventually(lambda: smtp.to(address), timeout=30)
    assert datetime.now(UTC) >= lease_until
    assert mail.message_id == f"<{delivery_id(key)}@lienthong.thanhhoa.gov.vn>"
    [sent] = await outcomes(infra, code, 1, settle=3.0)
    assert sent.data.attempts == 2 and len(smtp.to(address)) == 1


async def test_an_erased_citizen_is_told_nothing_and_notify_keeps_nothing_readable(infra, notify):
    _, smtp, http, _, _, publish = notify
    code, citizen = new_code(), "038199006600"
    mail, phone = f"{code.lower()}@example.vn", "0911222333"
    event = await submitted(code, email=mail, phone=phone, citizen_id=citizen)
    assert await VAULTS[0].erase(citizen, by="test")  # between filing and notify's turn: the worst case
    await publish(event)
    client = make_client(infra.mongo)
    try:
        db = database(client, infra.mongo)
        remembered = None
        for _ in range(300):
            if (remembered := await db["notify_dossiers"].find_one({"_id": code})) is not None:
                break
            await asyncio.sleep(0.2)
        assert remembered is not None, "notify never took the event in"
        await asyncio.sleep(2)  # time enough for the messages that must not come
        text = json.dumps(remembered, default=str, ensure_ascii=False)
        assert citizen not in text and FULL_NAME not in text and mail not in text and phone not in text
        assert not smtp.to(mail) and not [r for r in http.to("/sms") if code in r.json()["text"]]
        assert await db["notify_deliveries"].count_documents({"dossier_code": code, "recipient_kind": "citizen"}) == 0
    finally:
        await client.close()
