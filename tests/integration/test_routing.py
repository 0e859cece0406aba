"""Routing against the real broker and store, driven by simulated agencies answering on their unit.outcomes.<agency>."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker

from intake.main import bootstrap as bootstrap_intake
from intake.settings import IntakeSettings
from tests.personal import stand_in
from lienthong.calendar import VN_TZ, add_working_days, today_vn
from lienthong.catalogue import catalogue
from lienthong.contracts import parse_event, to_json
from lienthong.contracts.dossier import (
    Applicant,
    DeadlineExtended,
    DossierRejected,
    DossierSubmitted,
    DossierWithdrawn,
    FeePaid,
    ResultReturned,
    SatisfactionRated,
    StepCompleted,
    SupplementProvided,
    SupplementRequested,
)
from lienthong.contracts.envelope import new_event
from lienthong.identity import registry
from lienthong.topics import DOSSIER_LIFECYCLE, OPERATOR_ALERTS, OUTCOMES_DLQ, outcomes_topic, work_topic
from routing.main import bootstrap as bootstrap_routing
from routing.settings import RoutingSettings
from tests.integration.kafka_reader import headers, read_records, wait_committed
from tests.integration.test_intake import submission
from lienthong.auth import CITIZEN_ASSERTION_HEADER, CITIZEN_AUDIENCE, LocalIssuer
from tests.tokens import EVERYTHING, ISSUER, citizen

pytestmark = pytest.mark.integration


class Clock:
    """Routing's clock, moved by the test: the working-day rules need days to pass."""

    def __init__(self) -> None:
        self.now = datetime.now(VN_TZ)

    def __call__(self) -> datetime:
        return self.now

    def to_working_day(self, n: int) -> None:
        self.now = datetime.combine(add_working_days(today_vn(self.now), n), self.now.time(), VN_TZ)


@pytest.fixture(scope="module")
async def system(infra):
    clock = Clock()
    intake_app = bootstrap_intake(IntakeSettings(rate_burst=1000), infra.kafka, infra.mongo).app
    routing = bootstrap_routing(
        RoutingSettings(group_id=f"routing-test-{uuid.uuid4().hex[:6]}", start_from="latest", tick_interval_s=3600),
        infra.kafka, infra.mongo, clock=clock,
    )
    routing_app, router = routing.app, routing.core
    async with LifespanManager(intake_app, startup_timeout=60), LifespanManager(routing_app, startup_timeout=60):
        await asyncio.sleep(3)  # let the new consumer group get its partitions before we publish
        async with httpx.AsyncClient(headers=EVERYTHING, transport=httpx.ASGITransport(intake_app), base_url="http://intake") as http:
            producer = KafkaBroker(infra.kafka.servers, security=infra.kafka.security())
            async with producer:
                await producer.start()
                yield http, producer, router, clock


async def events_of(infra, topic, code, expected, **kw):
    records = await read_records(infra.kafka, topic, lambda r: r.key == code.encode(), expected=expected,
                                 **kw)
    if not isinstance(topic, str):  # several topics (every agency's work) come in any order: put them in the dossier's
        records.sort(key=lambda r: parse_event(r.value).dossierseq)
    return [parse_event(r.value) for r in records], records


async def submit(http, **overrides) -> str:
    return (await file(http, **overrides))["dossier_code"]


async def file(http, **overrides) -> dict:
    """The receipt: the code, and the applicant's pseudonym the portal names the citizen by."""
    resp = await http.post("/v1/dossiers", json=submission(**overrides))
    assert resp.status_code == 201, resp.text
    return resp.json()


UNIT_WORK = [work_topic(agency.name).name for agency in registry().agencies]  # every agency's assignments
PORTAL = outcomes_topic("portal").name  # where citizens' actions come from


def outcomes_of(unit: str) -> str:
    """The topic of the agency system acting for `unit`: the only one routing accepts its outcomes from."""
    [agency] = registry().acting_for(unit)
    return outcomes_topic(agency).name


async def answer(producer, code, assignment, data=None, times=1):
    outcome = new_event(data or StepCompleted(unit_code=assignment.data.unit_code, step=assignment.data.step),
                        subject=code, source=f"/units/{assignment.data.unit_code}", seq=assignment.dossierseq)
    unit = getattr(outcome.data, "unit_code", assignment.data.unit_code)  # sent by the system acting for it
    for _ in range(times):
        await producer.publish(to_json(outcome), outcomes_of(unit), key=code.encode())
    return outcome


LAND = dict(procedure_code="DD-CNQSDD", channel="direct", land_parcel="HOANGSON-12-345", documents=[
    {"kind": k, "name": f"{k}.pdf", "sha256": "f" * 64} for k in ("don-dang-ky", "hop-dong-chuyen-nhuong",
                                                                   "giay-chung-nhan")])
BRANCH = catalogue().units["HOANGSON"].land_branch


@pytest.mark.parametrize(
    ("overrides", "units"),
    [
        ({"procedure_code": "LT-KS-TT-BHYT"}, ["HACTHANH", "CATINH", "BHXH"]),
        ({"procedure_code": "LT-KT-XTT-MT", "documents": [
            {"kind": "to-khai", "name": "t.pdf", "sha256": "a" * 64},
            {"kind": "giay-bao-tu", "name": "b.pdf", "sha256": "b" * 64}]}, ["HACTHANH", "CATINH", "HACTHANH"]),
        (LAND, [BRANCH, "THUE", "HACTHANH", BRANCH, "HACTHANH"]),
    ],
    ids=["birth", "death", "land-transfer"],
)
async def test_chain_end_to_end_with_every_outcome_sent_twice(infra, system, overrides, units):
    http, producer, _, _ = system
    code = await submit(http, **overrides)
    for step in range(len(units)):
        work, records = await events_of(infra, UNIT_WORK, code, step + 1, timeout=60, settle=0.3)
        assert headers(records[step])["unit"] == work[step].data.unit_code
        await answer(producer, code, work[step], times=2)  # the agency's system retries: applied once
    n = 2 + 2 * len(units) + (1 if units[0] != "HACTHANH" else 0)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, n, timeout=60, settle=3)
    assert [e.dossierseq for e in lifecycle] == list(range(1, n + 1))
    assert [e.data.unit_code for e in lifecycle if e.type.endswith("assigned.v1")] == units
    assert lifecycle[-1].type == "vn.gov.dossier.resolved.v1" and lifecycle[-1].data.on_time is True
    if units[0] != "HACTHANH":  # non-boundary: received at the commune, competent unit elsewhere; both on record
        transferred = next(e for e in lifecycle if e.type.endswith("transferred.v1"))
        assert (transferred.data.from_unit, transferred.data.to_unit) == ("HACTHANH", units[0])


async def test_supplement_pause_moves_the_due_date_by_the_paused_working_days(infra, system):
    http, producer, _, clock = system
    receipt = await file(http, procedure_code="HT-KH")
    code = receipt["dossier_code"]
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    original_due = (await events_of(infra, DOSSIER_LIFECYCLE.name, code, 1, settle=0.3))[0][0].data.due_date
    await answer(producer, code, assignment,
                 SupplementRequested(unit_code=assignment.data.unit_code, step=0, missing_documents=("to-khai",)))
    await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=0.3)  # + requested, paused
    clock.to_working_day(2)
    provided = new_event(SupplementProvided(), subject=code, source="/portal", seq=assignment.dossierseq)
    await producer.publish(to_json(provided), PORTAL, key=code.encode(),
                           headers=citizen(receipt["applicant_subject"], provided))
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 5, timeout=60, settle=0.5)
    resumed = lifecycle[-1].data
    assert resumed.paused_working_days == 2
    assert resumed.new_due_date == add_working_days(original_due, 2)
    await answer(producer, code, assignment)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 7, timeout=60, settle=0.5)
    assert lifecycle[-1].type.endswith("resolved.v1") and lifecycle[-1].data.due_date == resumed.new_due_date


async def test_the_index_facts_travel_an_electronic_result_and_the_citizens_rating(infra, system):
    http, producer, _, _ = system
    receipt = await file(http)  # online: its papers are electronic from reception
    code = receipt["dossier_code"]
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    unit = assignment.data.unit_code
    no_fee = new_event(FeePaid(unit_code=unit, method="counter", amount_vnd=20_000, paid_at=datetime.now(VN_TZ)),
                       subject=code, source=f"/units/{unit}", seq=assignment.dossierseq)
    await producer.publish(to_json(no_fee), outcomes_of(unit), key=code.encode())  # refused: no fee is due
    await answer(producer, code, assignment, StepCompleted(unit_code=unit, step=0, result_electronic=True))
    await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=0.3)  # resolved: now it may be rated
    rated = new_event(SatisfactionRated(rating="very_satisfied"), subject=code, source="/portal", seq=4)
    await producer.publish(to_json(rated), PORTAL, key=code.encode(), headers=citizen(receipt["applicant_subject"], rated))
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 5, timeout=60, settle=1)
    assert [e.type.split(".")[3] for e in lifecycle] == ["submitted", "assigned", "step-completed", "resolved",
                                                          "satisfaction-rated"]
    assert lifecycle[0].data.documents_digitised and lifecycle[0].data.catalogue_version >= 0
    assert lifecycle[3].data.result_electronic and lifecycle[4].data.rating == "very_satisfied"


async def test_late_step_ends_resolved_late_with_one_overdue_event(infra, system):
    http, producer, router, clock = system
    code = await submit(http, procedure_code="HT-KS")
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    saved = clock.now
    try:
        clock.to_working_day(3)
        for day in range(3):  # the scheduler runs several times: one overdue per step and one for the dossier
            await router.on_tick(code, today_vn(clock()) + timedelta(days=day))
        await answer(producer, code, assignment)
        lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 6, timeout=60, settle=2)
    finally:
        clock.now = saved
    overdue = [e.data for e in lifecycle if e.type.endswith("overdue.v1")]
    assert [o.step for o in overdue] == [0, None]
    assert lifecycle[-1].type.endswith("resolved.v1") and lifecycle[-1].data.on_time is False


async def test_foreign_and_stale_outcomes_go_to_operators(infra, system):
    http, producer, _, _ = system
    code = await submit(http, procedure_code="LT-KS-TT-BHYT")
    [first], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    foreign = await answer(producer, code, first, StepCompleted(unit_code="BHXH", step=0))
    await answer(producer, code, first)
    work, _ = await events_of(infra, UNIT_WORK, code, 2, timeout=60, settle=0.3)
    stale = await answer(producer, code, first, StepCompleted(unit_code="CATINH", step=1))  # answers step 0's seq
    alerts, _ = await events_of(infra, OPERATOR_ALERTS.name, code, 2, timeout=60, settle=1)
    reasons = {a.data.outcome_id: a.data.reason for a in alerts}
    assert "does not hold" in reasons[foreign.id]
    assert reasons[stale.id].startswith("stale")
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, settle=1)
    assert [e.type.split(".")[3] for e in lifecycle] == ["submitted", "assigned", "step-completed", "assigned"]


async def test_full_replay_from_offset_zero_changes_nothing(infra, system):
    http, producer, router, _ = system
    code = await submit(http, procedure_code="HT-KS")
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    await answer(producer, code, assignment)
    before, before_records = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=1)
    outcomes = await read_records(infra.kafka, outcomes_of(assignment.data.unit_code), lambda r: r.key == code.encode(),
                                  expected=1, settle=0.3)
    state_before = await router.store.load(code)
    # A second routing instance in a fresh group re-reads both input topics from offset 0 over the same store.
    group = f"replay-{uuid.uuid4().hex[:6]}"
    replay_app = bootstrap_routing(RoutingSettings(group_id=group), infra.kafka, infra.mongo).app
    async with LifespanManager(replay_app, startup_timeout=60):
        await wait_committed(infra.kafka, group, before_records[-1])
        await wait_committed(infra.kafka, group, outcomes[-1])
    after, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, settle=2)
    work, _ = await events_of(infra, UNIT_WORK, code, 1, settle=1)
    assert [e.id for e in after] == [e.id for e in before]
    assert len(work) == 1
    state_after = await router.store.load(code)
    assert state_after.workflow == state_before.workflow and state_after.applied == state_before.applied


async def test_malformed_outcome_goes_to_the_dlq_and_routing_carries_on(infra, system):
    http, producer, _, _ = system
    code = await submit(http, procedure_code="HT-KS")
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    garbage = b'{"specversion": "1.0", "type": "vn.gov.dossier.step-completed.v1", "citizen": "038099001122"}'
    await producer.publish(garbage, outcomes_of(assignment.data.unit_code), key=code.encode())
    await answer(producer, code, assignment)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=0.5)
    assert lifecycle[-1].type.endswith("resolved.v1")
    [dead] = await read_records(infra.kafka, OUTCOMES_DLQ, lambda r: r.key == code.encode(),
                                expected=1, timeout=30, settle=0.5)
    assert dead.value == garbage
    reason = headers(dead)["dlq-reason"]
    assert "dossierseq: missing" in reason and "038099001122" not in reason


async def test_due_soon_is_emitted_once_a_working_day_before(infra, system):
    http, _, router, clock = system
    code = await submit(http, procedure_code="HT-KH")
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 2, timeout=60, settle=0.3)
    due = lifecycle[0].data.due_date
    day_before = next(d for d in (due - timedelta(days=i) for i in range(1, 10)) if add_working_days(d, 1) == due)
    for _ in range(3):  # the scheduler runs again and again: one due-soon per step and one for the dossier
        await router.on_tick(code, day_before)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=1)
    soon = [e.data for e in lifecycle if e.type.endswith("due-soon.v1")]
    assert sorted((s.step is None, s.due_date) for s in soon) == [(False, due), (True, due)]


async def test_unroutable_dossier_is_reported_to_operators(infra, system):
    _, producer, _, _ = system
    code = f"HACTHANH-251201-{uuid.uuid4().int % 9000 + 1000}"
    good = submission()
    data = {
        "procedure_code": "XX-GONE", "channel": "online", "receiving_unit": "HACTHANH", "external_ref": "R-gone",
        "received_at": "2025-12-01T09:00:00+07:00", "due_date": "2025-12-02", "processing_days": 1,
        "applicant": stand_in(Applicant.model_validate(good["applicant"])).model_dump(), "documents": [],
    }
    event = new_event(DossierSubmitted.model_validate(data), subject=code, source="/test", seq=1)
    await producer.publish(to_json(event), DOSSIER_LIFECYCLE.name, key=code.encode())
    alerts, _ = await events_of(infra, OPERATOR_ALERTS.name, code, 1, timeout=60, settle=0.5)
    assert alerts[0].type == "vn.gov.dossier.routing-failed.v1" and "XX-GONE" in alerts[0].data.reason
    work, _ = await events_of(infra, UNIT_WORK, code, 0, timeout=3, settle=0.5)
    assert work == []


async def test_non_boundary_commune_filing_extension_and_result_returned(infra, system):
    """Received at commune A for a procedure of the applicant's commune B: transferred, both units on record;
    B extends the deadline with a reason, completes, and A hands the result back to the citizen."""
    http, producer, _, clock = system
    applicant = {**submission()["applicant"], "residence_unit": "HAMRONG"}
    code = await submit(http, procedure_code="HT-XNHN", receiving_unit="BATMOT", applicant=applicant,
                        documents=[{"kind": "to-khai", "name": "t.pdf", "sha256": "a" * 64}])
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    assert assignment.data.unit_code == "HAMRONG"
    await answer(producer, code, assignment,
                 DeadlineExtended(unit_code="HAMRONG", working_days=2, reason="xác minh tại nơi cư trú cũ"))
    await answer(producer, code, assignment)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 6, timeout=60, settle=0.3)
    returned = ResultReturned(unit_code="BATMOT", method="counter", returned_at=clock())
    await answer(producer, code, lifecycle[-1], returned)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 7, timeout=60, settle=1)
    kinds = [e.type.split(".")[3] for e in lifecycle]
    assert kinds == ["submitted", "transferred", "assigned", "deadline-extended", "step-completed", "resolved",
                     "result-returned"]
    transferred, extended = lifecycle[1].data, lifecycle[3].data
    assert (transferred.from_unit, transferred.to_unit) == ("BATMOT", "HAMRONG")
    assert extended.new_due_date == add_working_days(lifecycle[0].data.due_date, 2)
    assert lifecycle[5].data.due_date == extended.new_due_date


async def test_an_outcome_from_an_agency_not_acting_for_the_unit_changes_nothing_and_alerts(infra, system):
    """The sender is the topic's agency (only it may write there): the police's system cannot reject, complete or
    withdraw a commune's dossier, and its forged rejection never becomes an event a citizen would be told of."""
    http, producer, _, _ = system
    code = await submit(http, procedure_code="HT-KS")
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    assert assignment.data.unit_code == "HACTHANH"
    police = outcomes_topic("police").name
    forged = [new_event(data, subject=code, source="/units/HACTHANH", seq=assignment.dossierseq) for data in (
        DossierRejected(unit_code="HACTHANH", reason="Giả mạo: hồ sơ bị từ chối"),
        StepCompleted(unit_code="HACTHANH", step=0))]
    for event in forged:
        await producer.publish(to_json(event), police, key=code.encode())
    citizen_action = new_event(SupplementProvided(), subject=code, source="/x", seq=assignment.dossierseq)
    await producer.publish(to_json(citizen_action), outcomes_of("HACTHANH"), key=code.encode())  # not the portal
    alerts, _ = await events_of(infra, OPERATOR_ALERTS.name, code, 3, timeout=60, settle=1)
    assert sorted(a.data.reason for a in alerts) == sorted([
        "police does not act for HACTHANH", "police does not act for HACTHANH",
        "commune-one-stop does not act for citizens"])
    assert {a.data.outcome_id for a in alerts} == {e.id for e in [*forged, citizen_action]}
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 2, settle=2)
    assert [e.type.split(".")[3] for e in lifecycle] == ["submitted", "assigned"]  # nothing happened
    await answer(producer, code, assignment)  # the commune's own system: applied
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=1)
    assert lifecycle[-1].type.endswith("resolved.v1")


async def test_a_citizens_action_needs_the_portals_assertion_that_the_applicant_did_it(infra, system):
    """The portal may act only for the dossier's own applicant, named by the assertion it signs (not by the body),
    bound to the one event it authorizes: missing, forged, another citizen's, or one lifted from another action:
    nothing changes and the operators are alerted."""
    http, producer, _, _ = system
    neighbour = {**submission()["applicant"], "citizen_id": "038199004455", "full_name": "Lê Thị Hàng Xóm"}
    mine, other = await file(http, procedure_code="HT-KS"), await file(http, procedure_code="HT-KS",
                                                                         applicant=neighbour)
    assert mine["applicant_subject"] != other["applicant_subject"]
    code = mine["dossier_code"]
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)

    def withdrawal():
        return new_event(DossierWithdrawn(reason="Công dân rút hồ sơ"), subject=code, source="/portal",
                         seq=assignment.dossierseq)

    forger = LocalIssuer(ISSUER.directory / "forger", issuer="portal", audience=CITIZEN_AUDIENCE)
    refused = {"no citizen assertion": (withdrawal(), {}),
               "citizen assertion names another citizen": (e := withdrawal(), citizen(other["applicant_subject"], e)),
               "citizen assertion is for another action": (withdrawal(), citizen(mine["applicant_subject"],
                                                                                   withdrawal())),
               "citizen assertion not valid": (e := withdrawal(), {CITIZEN_ASSERTION_HEADER: forger.citizen_assertion(
                   mine["applicant_subject"], e.type, dossier=code, event_id=e.id)})}
    for event, header in refused.values():
        await producer.publish(to_json(event), PORTAL, key=code.encode(), headers=header)
    alerts, _ = await events_of(infra, OPERATOR_ALERTS.name, code, len(refused), timeout=60, settle=1)
    assert sorted(a.data.reason for a in alerts) == sorted(refused)
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 2, settle=1)
    assert [e.type.split(".")[3] for e in lifecycle] == ["submitted", "assigned"]  # nothing happened

    withdrawn = withdrawal()
    await producer.publish(to_json(withdrawn), PORTAL, key=code.encode(),
                           headers=citizen(mine["applicant_subject"], withdrawn))
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 3, timeout=60, settle=1)
    assert lifecycle[-1].type.endswith("withdrawn.v1")


async def test_an_agency_added_while_routing_runs_gets_its_work_and_is_heard_without_a_restart(
        infra, system, tmp_path, monkeypatch):
    """`lienthong clients add` edits the registry routing re-reads: the new agency's first assignment goes to its own
    topic, and its outcomes are read once the pattern subscription sees the new topic (metadata every 30 s)."""
    import shutil

    from lienthong import identity
    from lienthong.messaging import ensure_topics

    http, producer, _, _ = system
    path = tmp_path / "clients.toml"
    shutil.copy(identity.registry_path(), path)
    monkeypatch.setenv("LIENTHONG_CLIENTS", str(path))
    name = f"xa-dong-son-{uuid.uuid4().hex[:6]}"
    identity.save(identity.registry(), add=identity.Client(name=name, kind="agency", units=("DONGSON",)))
    await ensure_topics(infra.kafka, [work_topic(name), outcomes_topic(name)])
    code = await submit(http, procedure_code="HT-KS", receiving_unit="DONGSON")
    [assignment], _ = await events_of(infra, work_topic(name).name, code, 1, timeout=60, settle=0.3)
    assert assignment.data.unit_code == "DONGSON"
    await asyncio.sleep(35)  # the pattern subscription's next metadata refresh
    completed = new_event(StepCompleted(unit_code="DONGSON", step=0), subject=code, source=f"/agencies/{name}",
                          seq=assignment.dossierseq)
    await producer.publish(to_json(completed), outcomes_topic(name).name, key=code.encode())
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 4, timeout=60, settle=0.5)
    assert lifecycle[-1].type.endswith("resolved.v1")
