"""Routing against the real broker and store, driven by simulated agencies answering on unit.outcomes."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker

from intake.main import build as build_intake
from intake.settings import IntakeSettings
from lienthong.contracts import parse_event, to_json
from lienthong.contracts.dossier import StepCompleted
from lienthong.contracts.envelope import new_event
from lienthong.topics import DOSSIER_LIFECYCLE, OPERATOR_ALERTS, UNIT_OUTCOMES, UNIT_WORK
from routing.main import build as build_routing
from routing.settings import RoutingSettings
from tests.integration.kafka_reader import headers, read_records
from tests.integration.test_intake import submission

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def system(infra):
    intake_app, _, _ = build_intake(IntakeSettings(rate_burst=1000), infra.kafka, infra.mongo)
    routing_app, _, _ = build_routing(
        RoutingSettings(group_id=f"routing-test-{uuid.uuid4().hex[:6]}", start_from="latest"), infra.kafka, infra.mongo
    )
    async with LifespanManager(intake_app, startup_timeout=60), LifespanManager(routing_app, startup_timeout=60):
        await asyncio.sleep(3)  # let the new consumer group get its partitions before we publish
        async with httpx.AsyncClient(transport=httpx.ASGITransport(intake_app), base_url="http://intake") as http:
            producer = KafkaBroker(infra.kafka.servers)
            async with producer:
                await producer.start()
                yield http, producer


async def events_of(infra, topic, code, expected, **kw):
    records = await read_records(infra.kafka.servers, topic, lambda r: r.key == code.encode(), expected=expected,
                                 **kw)
    return [parse_event(r.value) for r in records], records


async def test_birth_chain_end_to_end_with_redelivered_outcomes(infra, system):
    http, producer = system
    resp = await http.post("/v1/dossiers", json=submission(procedure_code="LT-KS-TT-BHYT"))
    assert resp.status_code == 201, resp.text
    code = resp.json()["dossier_code"]
    for step in range(3):
        work, records = await events_of(infra, UNIT_WORK.name, code, step + 1, timeout=60, settle=0.5)
        assignment = work[step]
        assert headers(records[step])["unit"] == assignment.data.unit_code
        outcome = new_event(StepCompleted(unit_code=assignment.data.unit_code, step=step), subject=code,
                            source=f"/units/{assignment.data.unit_code}", seq=assignment.dossierseq)
        for _ in range(2):  # the agency's system sends its outcome twice: applied once
            await producer.publish(to_json(outcome), UNIT_OUTCOMES.name, key=code.encode())
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 8, timeout=60, settle=3)
    types = [e.type.split(".")[3] for e in lifecycle]
    assert types == ["submitted", "assigned", "step-completed", "assigned", "step-completed", "assigned",
                     "step-completed", "resolved"]
    assert [e.dossierseq for e in lifecycle] == list(range(1, 9))
    assert [e.data.unit_code for e in lifecycle if e.type.endswith("assigned.v1")] == ["HACTHANH", "CATINH", "BHXH"]
    assert lifecycle[-1].data.on_time is True


async def test_foreign_unit_outcome_goes_to_operators(infra, system):
    http, producer = system
    resp = await http.post("/v1/dossiers", json=submission(procedure_code="HT-KS"))
    code = resp.json()["dossier_code"]
    work, _ = await events_of(infra, UNIT_WORK.name, code, 1, timeout=60, settle=0.5)
    foreign = new_event(StepCompleted(unit_code="BHXH", step=0), subject=code, source="/units/BHXH",
                        seq=work[0].dossierseq)
    await producer.publish(to_json(foreign), UNIT_OUTCOMES.name, key=code.encode())
    alerts, _ = await events_of(infra, OPERATOR_ALERTS.name, code, 1, timeout=60, settle=0.5)
    assert alerts[0].data.outcome_id == foreign.id
    assert "does not hold" in alerts[0].data.reason
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 2, settle=1)
    assert [e.type.split(".")[3] for e in lifecycle] == ["submitted", "assigned"]  # nothing moved
