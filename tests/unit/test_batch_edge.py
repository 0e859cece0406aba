"""The one edge every subscriber shares (`lienthong.messaging.decode_batch` + the poison policy), through a real
service's handler: the handler gets the batch's valid records typed and in order, with their records; every other
record is parked on its topic's DLQ with a reason that quotes no value, and the batch is acknowledged. A handler
unit test: FastStream's in-memory TestKafkaBroker, never in place of the integration tests."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from types import SimpleNamespace

import orjson
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CollectorRegistry

from lienthong.calendar import VN_TZ
from lienthong.contracts import to_json
from lienthong.contracts.dossier import OutcomeRejected
from lienthong.contracts.envelope import new_event
from lienthong.messaging import DLQ_REASON, OFF_LOOP_RECORDS, decode_batch, make_broker
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.handlers import build_router
from stats.memory import MemoryStore
from stats.projector import Projector
from stats.window import Window
from tests.unit.stats.test_projection import events

CODE = "HACTHANH-251201-0001"


async def test_valid_events_are_projected_and_the_rest_parked_with_a_value_free_reason():
    broker = make_broker("stats", registry=CollectorRegistry())
    store = MemoryStore()
    window = Window(Projector(store), lambda record, reason: None, max_events=1, fresh_s=1, bulk_events=1,
                    idle_s=1, max_wait_s=1, poll_s=1, settle_s=1)
    broker.include_router(build_router(broker, window))
    parked: list[tuple[dict, bytes]] = []

    @broker.subscriber(DOSSIER_LIFECYCLE.dlq, group_id="dlq-reader")
    async def dead_letters(message: KafkaMessage) -> None:
        parked.append((message.headers, message.body))

    good = [to_json(e) for e in events(CODE)]
    not_json = b'{"citizen_id": "038099001122"'
    # A valid CloudEvent of a type the lifecycle topic does not carry (an alert).
    wrong_topic = to_json(new_event(OutcomeRejected(outcome_id="o-1", outcome_type="x", reason="r"), subject=CODE,
                                    source="/t", seq=9, time=datetime(2025, 12, 1, tzinfo=VN_TZ)))
    bad_field = orjson.loads(good[1])
    bad_field["data"]["step_due_date"] = "9999-12-31"
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(good[0], not_json, good[1], wrong_topic, orjson.dumps(bad_field), good[2],
                                        topic=DOSSIER_LIFECYCLE.name)

    assert store.dossiers[CODE]["seq"] == 3 and store.dossiers[CODE]["status"] == "resolved"
    reasons = sorted(headers[DLQ_REASON] for headers, _ in parked)
    assert len(reasons) == 3, reasons
    assert any("data.step_due_date" in r for r in reasons)  # names the field, not the value
    assert all("038099001122" not in r and "9999" not in r for r in reasons)
    assert {body for _, body in parked} == {not_json, wrong_topic, orjson.dumps(bad_field)}  # kept byte for byte
    assert all(headers["dlq-service"] == "stats" and headers["dlq-source-topic"] == DOSSIER_LIFECYCLE.name
               for headers, _ in parked)


async def test_a_refused_submission_keeps_no_value_on_the_dlq():
    """intake.submissions may hold an applicant in clear: its dead letters keep only why and where from."""
    from intake.handlers import build_router as intake_router
    from lienthong.topics import INTAKE_SUBMISSIONS

    class NoIntake:
        async def submit(self, *args: object) -> None:  # never reached: nothing here validates
            raise AssertionError("an invalid submission reached intake")

    broker = make_broker("intake", registry=CollectorRegistry())
    broker.include_router(intake_router(broker, NoIntake()))  # type: ignore[arg-type]
    parked: list[tuple[dict, bytes]] = []

    @broker.subscriber(INTAKE_SUBMISSIONS.dlq, group_id="dlq-reader")
    async def dead_letters(message: KafkaMessage) -> None:
        parked.append((message.headers, message.body))

    clear = orjson.dumps({"procedure_code": "HT-KS", "channel": "online", "receiving_unit": "HACTHANH",
                          "applicant": {"citizen_id": "038099001122", "full_name": "Ngô Thị Trang"}})
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(clear, topic=INTAKE_SUBMISSIONS.name)
    [(headers, body)] = parked
    assert body == b"" and headers["dlq-value"] == "withheld"
    assert "038099001122" not in headers[DLQ_REASON] and "Trang" not in headers[DLQ_REASON]


async def test_a_large_fetch_is_validated_without_holding_the_event_loop():
    """Stats takes up to 100,000 records a fetch: validating them takes about a second here, and the consumer's
    heartbeats and /healthz run on the same loop meanwhile."""
    body = to_json(events(CODE)[0])
    records = 40_000
    assert records >= OFF_LOOP_RECORDS
    message = SimpleNamespace(raw_message=[SimpleNamespace(topic=DOSSIER_LIFECYCLE.name, value=body)] * records)
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    values = await decode_batch(message)
    took = time.monotonic() - started
    await asyncio.sleep(0.02)  # the heartbeat notes its last gap
    beating.cancel()
    assert len(values) == len(message.decoded_records) == records and not message.undecodable
    assert max(gaps) < took / 2, (max(gaps), took)  # held throughout, the loop would show one gap of `took`
