"""Notify throughput end to end, and how fast a retry backlog drains, on the real broker and store with a local
SMTP server and a local HTTP server (SMS gateway and one agency webhook).

    uv run python benchmarks/bench_notify.py

Prints: notifications delivered per second (dossier.submitted published -> e-mail, SMS and webhook received), and
after a webhook receiver that answered 503 recovers, how many queued retries per second are delivered.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
from common import MONGO, TOKEN, kafka_as, KAFKA, environment, service  # noqa: E402

from lienthong.calendar import VN_TZ, due_date  # noqa: E402
from lienthong.contracts import to_json  # noqa: E402
from lienthong.contracts.dossier import Applicant, DossierSubmitted  # noqa: E402
from lienthong.contracts.envelope import new_event  # noqa: E402
from lienthong.personaldata import Vault  # noqa: E402
from lienthong.settings import MongoSettings  # noqa: E402
from lienthong.store import make_client  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE  # noqa: E402
from tests.integration.sinks import HttpSink, SmtpSink, eventually  # noqa: E402

DOSSIERS = 300  # x (e-mail + SMS + webhook)
BACKLOG = 100


async def submitted(vault: Vault, code: str, unit: str, contacts: bool):
    """As intake publishes it: the applicant sealed by the vault notify opens it from."""
    now = datetime.now(VN_TZ)
    applicant = await vault.seal(Applicant(
        citizen_id="038099001122", full_name="Nguyễn Văn Bench", address="X", residence_unit=unit,
        email=f"{code.lower()}@example.vn" if contacts else None, phone="0912345678" if contacts else None))
    data = DossierSubmitted(
        procedure_code="HT-KH", channel="online", receiving_unit=unit, external_ref=code, received_at=now,
        due_date=due_date(now, 3), processing_days=3, applicant=applicant)
    return new_event(data, subject=code, source="/bench", seq=1)


async def publish(producer: AIOKafkaProducer, events: list) -> None:
    await asyncio.gather(*[await producer.send(DOSSIER_LIFECYCLE.name, to_json(e), key=e.subject.encode())
                           for e in events])


async def measure(base: str, smtp: SmtpSink, http: HttpSink, database: str) -> tuple[float, int, float]:
    mongo = MongoSettings(uri=MONGO, database=database)
    client = make_client(mongo)
    vault = Vault(client[database])
    async with httpx.AsyncClient(base_url=base, headers=TOKEN) as api:
        for path, unit in (("/hooks/all", "HACTHANH"), ("/hooks/drain", "HOANGSON")):
            resp = await api.post("/v1/subscriptions", json={"url": f"{http.base}{path}", "unit_codes": [unit]})
            resp.raise_for_status()
    await asyncio.sleep(6)  # subscriptions are re-read every few seconds
    producer = AIOKafkaProducer(**kafka_as().client_options(), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        events = [await submitted(vault, f"HACTHANH-261123-{i + 10**5}", "HACTHANH", True) for i in range(DOSSIERS)]
        started = time.monotonic()
        await publish(producer, events)
        expected = 3 * DOSSIERS
        await eventually(lambda: len(smtp.mails) + len(http.to("/sms")) + len(http.to("/hooks/all")) >= expected,
                         timeout=900, interval=0.05)
        throughput = expected / (time.monotonic() - started)

        http.always["/hooks/drain"] = 503
        backlog = [await submitted(vault, f"HOANGSON-261123-{i + 10**5}", "HOANGSON", False) for i in range(BACKLOG)]
        await publish(producer, backlog)
        await eventually(lambda: len({r.headers["x-delivery-id"] for r in http.to("/hooks/drain")}) >= BACKLOG,
                         timeout=600, interval=0.05)
        recovered = time.monotonic()
        http.always["/hooks/drain"] = 200
        await eventually(lambda: sum(r.status == 200 for r in http.to("/hooks/drain")) >= BACKLOG, timeout=900,
                         interval=0.05)
        drain = BACKLOG / (time.monotonic() - recovered)
        attempts = len(http.to("/hooks/drain"))
    finally:
        await producer.stop()
        await client.close()
    return throughput, attempts, drain


def main() -> None:
    smtp, http = SmtpSink(), HttpSink()
    smtp_port = smtp.start()
    http.base = http.start()
    with environment():
        database = f"bench_notify_{uuid.uuid4().hex[:6]}"
        with service("notify", 18083, database,
                     NOTIFY_GROUP_ID=f"notify-bench-{uuid.uuid4().hex[:6]}", NOTIFY_START_FROM="latest",
                     NOTIFY_SMTP_PORT=str(smtp_port), NOTIFY_SMS_GATEWAY_URL=f"{http.base}/sms", NOTIFY_SMS_GATEWAY_TOKEN="bench",
                     NOTIFY_ALLOW_HTTP_WEBHOOKS="true", NOTIFY_ALLOW_PRIVATE_WEBHOOKS="true", NOTIFY_MAX_ATTEMPTS="20", NOTIFY_BACKOFF_BASE_S="0.5",
                     NOTIFY_BACKOFF_MAX_S="5", NOTIFY_RETRY_HOLD_MAX_S="2") as base:
            time.sleep(3)  # the new group gets its partitions
            throughput, attempts, drain = asyncio.run(measure(base, smtp, http, database))
    smtp.stop()
    http.stop()
    print(f"notifications delivered end to end: {throughput:.1f}/s ({3 * DOSSIERS} = {DOSSIERS} dossiers x e-mail, "
          "SMS, webhook)")
    print(f"retry backlog of {BACKLOG} webhook deliveries ({attempts} attempts in all) drained at {drain:.1f}/s "
          "after the receiver recovered")


if __name__ == "__main__":
    main()
