"""Play a plan against the running system, as the province's people and agencies would: citizens and counters
file through intake (HTTP, or Kafka for counter applications), units answer the assignments routing publishes on
their `unit.work.<agency>` with outcomes on `unit.outcomes.<agency>`, citizens (through the portal's topic) supply
papers or withdraw."""

from __future__ import annotations

import asyncio
import os
import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import structlog
from aiokafka import AIOKafkaConsumer

from lienthong.auth import CITIZEN_ASSERTION_HEADER, LocalIssuer
from lienthong.calendar import VN_TZ, working_days_between
from lienthong.contracts import CloudEvent, parse_event
from lienthong.contracts.dossier import (
    Applicant,
    DocumentRef,
    DossierAssigned,
    DossierRejected,
    DossierWithdrawn,
    FeePaid,
    SatisfactionRated,
    StepCompleted,
    StepStarted,
    SupplementProvided,
    SupplementRequested,
)
from lienthong.contracts.envelope import EventData, deterministic_id, new_event
from lienthong.messaging import make_broker, publish_event
from lienthong.settings import KafkaSettings
from lienthong.catalogue import catalogue
from lienthong_tools.simulation.plan import (
    Action,
    Filing,
    actions,
    add_office_time,
    electronic_result,
    filings,
    paid_online,
    rating,
)
from lienthong.personaldata import seal_for_intake
from lienthong.topics import INTAKE_SUBMISSIONS, WORK_PREFIX, outcomes_topic

log = structlog.get_logger("simulator")
MAX_FILINGS_IN_FLIGHT = 64
FINISH_GRACE_S = 30.0


@dataclass
class SimClock:
    """Simulated time: `speedup` simulated seconds per real second from `start`."""

    speedup: float
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.t0) * self.speedup)

    async def sleep_until(self, moment: datetime) -> None:
        await asyncio.sleep(max(0.0, (moment - self.now()).total_seconds() / self.speedup))


@dataclass
class Simulator:
    seed: int
    intake_url: str
    kafka: KafkaSettings
    clock: SimClock
    counts: Counter[str] = field(default_factory=Counter)
    portal: LocalIssuer | None = None  # signs citizens' assertions, as the portal would; None: citizens never act
    _intake_key: str | None = None  # intake's public submission key, asked for once
    _applicants: dict[str, str] = field(default_factory=dict)  # dossier code -> the receipt's applicant_subject
    _procedures: dict[str, str] = field(default_factory=dict)  # dossier code -> procedure (filings with a receipt)

    async def run(self, rate: float, duration_s: float | None) -> Counter[str]:
        broker = make_broker("simulator", self.kafka)
        # The portal's bearer token (dossiers:submit for every unit), as any client of intake needs one.
        token = os.environ.get("SIMULATOR_TOKEN", "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with broker, httpx.AsyncClient(base_url=self.intake_url, timeout=10, headers=headers) as http:
            await broker.start()
            agencies = asyncio.create_task(self._agencies(broker))
            filing_tasks: set[asyncio.Task] = set()
            try:
                for filing in filings(self.seed, rate, duration_s, self.clock.start, self.clock.speedup):
                    await self.clock.sleep_until(filing.at)
                    if len(filing_tasks) >= MAX_FILINGS_IN_FLIGHT:  # intake is slow or away: keep the schedule
                        self.counts["skipped_backlog"] += 1
                        continue
                    task = asyncio.create_task(self._file(filing, http, broker))  # a retry never delays others
                    filing_tasks.add(task)
                    task.add_done_callback(filing_tasks.discard)
                if filing_tasks:
                    await asyncio.wait(filing_tasks, timeout=FINISH_GRACE_S)
                    self.counts["abandoned"] += len(filing_tasks)  # still retrying an absent intake
                await asyncio.sleep(2)  # let the last assignments arrive before stopping the agencies
            finally:
                for task in [*filing_tasks, agencies]:
                    task.cancel()
                await asyncio.gather(*filing_tasks, agencies, return_exceptions=True)
        return self.counts

    async def _file(self, filing: Filing, http: httpx.AsyncClient, broker) -> None:  # noqa: ANN001
        ref = filing.body["external_ref"]
        if filing.via == "kafka":  # as a counter application does: the applicant sealed to intake's key
            if self._intake_key is None:
                resp = await http.get("/v1/submission-key")
                resp.raise_for_status()
                self._intake_key = resp.json()["public_key"]
            body = {k: v for k, v in filing.body.items() if k != "applicant"}
            body["applicant_sealed"] = seal_for_intake(
                self._intake_key, Applicant.model_validate(filing.body["applicant"]), ref).model_dump()
            await broker.publish(orjson.dumps(body), INTAKE_SUBMISSIONS.name, key=ref.encode())
            self.counts["filed_kafka"] += 1
            return
        for attempt in range(6):
            try:
                resp = await http.post("/v1/dossiers", json=filing.body)
            except httpx.HTTPError as exc:  # intake not up yet, or restarting: try again shortly
                log.warning("intake_unreachable", external_ref=ref, error=type(exc).__name__)
                await asyncio.sleep(min(2**attempt, 10))
                continue
            if resp.status_code in (429, 503):
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            self.counts["filed_http" if resp.status_code in (200, 201) else f"refused_{resp.status_code}"] += 1
            if resp.status_code in (200, 201):
                receipt = resp.json()
                self._applicants[receipt["dossier_code"]] = receipt["applicant_subject"]
                self._procedures[receipt["dossier_code"]] = filing.body["procedure_code"]
            if resp.status_code >= 400:  # the body lists fields and rules, never values
                log.warning("filing_refused", external_ref=ref, status=resp.status_code, detail=resp.text[:300])
            return
        self.counts["gave_up"] += 1

    async def _agencies(self, broker) -> None:  # noqa: ANN001
        consumer = AIOKafkaConsumer(**self.kafka.client_options(), group_id=f"simulator-agencies-{self.seed}",
                                    auto_offset_reset="latest", enable_auto_commit=True, metadata_max_age_ms=5000)
        consumer.subscribe(pattern="^" + re.escape(WORK_PREFIX) + "[a-z0-9-]+$")  # every agency's assignments
        await consumer.start()
        pending: set[asyncio.Task] = set()
        try:
            async for record in consumer:
                try:
                    event = parse_event(record.value or b"")
                except ValueError:
                    continue
                if isinstance(event.data, DossierAssigned):
                    agency = record.topic[len(WORK_PREFIX):]
                    task = asyncio.create_task(self._answer(event, agency, broker))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()
            await consumer.stop()

    async def _answer(self, assignment: CloudEvent, agency: str, broker) -> None:  # noqa: ANN001
        """As the agency system that received the assignment would; citizens' actions as the portal would."""
        data: DossierAssigned = assignment.data  # type: ignore[assignment]
        assigned_at = self.clock.now()
        days = working_days_between(assigned_at.astimezone(VN_TZ).date(), data.step_due_date)
        for action in actions(self.seed, assignment.subject, data.step, days):
            await self.clock.sleep_until(add_office_time(assigned_at, action.after))
            if action.kind == "started" and data.step == 0:
                await self._pay(assignment, agency, broker)
            outcome = _outcome(action, data, electronic_result(self.seed, assignment.subject, data.step))
            event = new_event(outcome, subject=assignment.subject, source=f"/units/{data.unit_code}/simulator",
                              seq=assignment.dossierseq, time=datetime.now(UTC),
                              event_id=deterministic_id("sim", self.seed, assignment.subject, assignment.dossierseq,
                                                        action.kind))
            headers = {}
            sender = agency
            if isinstance(outcome, (SupplementProvided, DossierWithdrawn)):  # the citizen, through the portal
                subject = self._applicants.get(assignment.subject)
                if subject is None or self.portal is None:  # filed at a counter: no receipt reached the portal
                    self.counts["citizen_action_without_receipt"] += 1
                    return
                sender = "portal"
                headers = {CITIZEN_ASSERTION_HEADER: self.portal.citizen_assertion(
                    subject, event.type, dossier=event.subject, event_id=event.id)}
            await publish_event(broker.publisher(outcomes_topic(sender).name), event, headers=headers)
            self.counts[f"outcome_{action.kind}"] += 1
            if action.kind == "rejected" or (action.kind == "completed" and self._last_step(assignment)):
                await self._rate(assignment, broker)

    def _last_step(self, assignment: CloudEvent) -> bool:
        procedure = catalogue().procedures.get(self._procedures.get(assignment.subject, ""))
        return procedure is not None and assignment.data.step == len(procedure.steps) - 1

    async def _pay(self, assignment: CloudEvent, agency: str, broker) -> None:  # noqa: ANN001
        """The fee, when one is due, paid as work starts: online (the unit confirms the payment platform's
        receipt) or at its counter. Only for dossiers whose procedure the simulator knows (filed over HTTP)."""
        procedure = catalogue().procedures.get(self._procedures.get(assignment.subject, ""))
        if procedure is None or not procedure.fee_vnd or procedure.fee_exemption:
            return
        data: DossierAssigned = assignment.data  # type: ignore[assignment]
        method = "online" if paid_online(self.seed, assignment.subject) else "counter"
        paid = FeePaid(unit_code=data.unit_code, method=method, amount_vnd=procedure.fee_vnd, paid_at=datetime.now(UTC))
        event = new_event(paid, subject=assignment.subject, source=f"/units/{data.unit_code}/simulator",
                          seq=assignment.dossierseq, time=datetime.now(UTC),
                          event_id=deterministic_id("sim", self.seed, assignment.subject, "fee"))
        await publish_event(broker.publisher(outcomes_topic(agency).name), event)
        self.counts[f"fee_paid_{method}"] += 1

    async def _rate(self, assignment: CloudEvent, broker) -> None:  # noqa: ANN001
        """The citizen rates the outcome through the portal, some hours later, if at all."""
        decided = rating(self.seed, assignment.subject)
        subject = self._applicants.get(assignment.subject)
        if decided is None or subject is None or self.portal is None:
            return
        value, after = decided
        await self.clock.sleep_until(add_office_time(self.clock.now(), after))
        event = new_event(SatisfactionRated(rating=value), subject=assignment.subject, source="/portal/simulator",
                          seq=assignment.dossierseq, time=datetime.now(UTC),
                          event_id=deterministic_id("sim", self.seed, assignment.subject, "rating"))
        headers = {CITIZEN_ASSERTION_HEADER: self.portal.citizen_assertion(
            subject, event.type, dossier=event.subject, event_id=event.id)}
        await publish_event(broker.publisher(outcomes_topic("portal").name), event, headers=headers)
        self.counts[f"rated_{value}"] += 1


def _outcome(action: Action, data: DossierAssigned, electronic: bool = False) -> EventData:
    unit, step = data.unit_code, data.step
    match action.kind:
        case "started":
            return StepStarted(unit_code=unit, step=step)
        case "completed":
            return StepCompleted(unit_code=unit, step=step, result_ref=f"KQ-{step}", result_electronic=electronic)
        case "supplement-requested":
            return SupplementRequested(unit_code=unit, step=step, missing_documents=("Bản sao giấy tờ còn thiếu",))
        case "supplement-provided":
            paper = DocumentRef(kind="bo-sung", name="bo-sung.pdf", sha256=hashlib.sha256(b"bo-sung").hexdigest())
            return SupplementProvided(documents=(paper,))
        case "rejected":
            return DossierRejected(unit_code=unit, reason="Hồ sơ không đủ điều kiện giải quyết")
        case _:
            return DossierWithdrawn(reason="Công dân rút hồ sơ")
