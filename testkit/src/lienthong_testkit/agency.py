"""The agency side of Liên Thông, typed: an agency system reads the assignments of the units it acts for on its
own `unit.work.<agency>`, answers each on its own `unit.outcomes.<agency>` naming the assignment by `dossierseq`,
and reads on the same work topic when a dossier it asked papers for runs again and why routing refused an outcome
it sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.contracts.dossier import (
    DeadlineExtended,
    DossierAssigned,
    DossierRejected,
    DossierResumed,
    OutcomeRejected,
    StepCompleted,
    StepStarted,
    SupplementRequested,
)
from lienthong.contracts.envelope import EventData, new_event
from lienthong.messaging import CLOUDEVENTS_JSON
from lienthong.settings import KafkaSettings
from lienthong.topics import outcomes_topic, work_topic


@dataclass(frozen=True)
class Assignment:
    """A step of a dossier a unit must handle; `seq` is what an outcome answering it names as its `dossierseq`."""

    dossier_code: str
    seq: int
    unit_code: str
    step: int
    step_name: str
    step_due_date: date

    @classmethod
    def of(cls, event: CloudEvent) -> Assignment:
        data: DossierAssigned = event.data  # type: ignore[assignment]
        return cls(event.subject, event.dossierseq, data.unit_code, data.step, data.step_name, data.step_due_date)


@dataclass(frozen=True)
class Refusal:
    """Routing refused an outcome this agency sent: nothing changed, and here is why."""

    dossier_code: str
    outcome_id: str
    outcome_type: str
    reason: str


class AgencyClient:
    """`async with AgencyClient("land-registry", kafka) as agency:` — `kafka`: that agency's own credentials."""

    def __init__(self, name: str, kafka: KafkaSettings, *, source: str | None = None) -> None:
        self.name = name
        self.kafka = kafka
        self.source = source or f"/agencies/{name}"
        self._seen: list[CloudEvent] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> AgencyClient:
        self._consumer = AIOKafkaConsumer(
            work_topic(self.name).name, **self.kafka.client_options(), group_id=f"agency-{self.name}-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest", enable_auto_commit=False)
        self._producer = AIOKafkaProducer(**self.kafka.client_options(), acks="all", enable_idempotence=True)
        await self._consumer.start()
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in (self._producer, self._consumer):
            if client is not None:
                try:
                    await client.stop()
                except asyncio.CancelledError:  # aiokafka 0.14 on a short-lived consumer's stop
                    pass

    # -- reading -------------------------------------------------------------------------------------------------

    async def next_assignment(self, dossier_code: str | None = None, *, timeout: float = 60.0) -> Assignment:
        """The next assignment (for `dossier_code`, if given) not returned before."""
        event = await self._next(lambda e: isinstance(e.data, DossierAssigned)
                                 and dossier_code in (None, e.subject), timeout, "assignment")
        return Assignment.of(event)

    async def next_resumption(self, dossier_code: str | None = None, *, timeout: float = 60.0) -> CloudEvent:
        """The next notice that a dossier this agency asked papers for is running again (the citizen provided them)."""
        return await self._next(lambda e: isinstance(e.data, DossierResumed) and dossier_code in (None, e.subject),
                                timeout, "resumption")

    async def next_refusal(self, dossier_code: str | None = None, *, timeout: float = 60.0) -> Refusal:
        """The next refusal of an outcome this agency sent (for `dossier_code`, if given)."""
        event = await self._next(lambda e: isinstance(e.data, OutcomeRejected)
                                 and dossier_code in (None, e.subject), timeout, "refusal")
        data: OutcomeRejected = event.data  # type: ignore[assignment]
        return Refusal(event.subject, data.outcome_id, data.outcome_type, data.reason)

    async def _next(self, wanted: Callable[[CloudEvent], bool], timeout: float, what: str) -> CloudEvent:
        assert self._consumer is not None, "use `async with AgencyClient(...)`"
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._seen):
                if wanted(event):
                    return self._seen.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} for {self.name} within {timeout:.0f}s")
            batches = await self._consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for records in batches.values():
                for record in records:
                    try:
                        self._seen.append(parse_event(record.value or b""))
                    except ValueError:
                        continue  # not ours to judge here

    # -- answering -------------------------------------------------------------------------------------------------

    async def start(self, a: Assignment) -> CloudEvent:
        return await self._answer(a, StepStarted(unit_code=a.unit_code, step=a.step))

    async def complete(self, a: Assignment, result_ref: str | None = None) -> CloudEvent:
        return await self._answer(a, StepCompleted(unit_code=a.unit_code, step=a.step, result_ref=result_ref))

    async def request_supplement(self, a: Assignment, missing: list[str], note: str | None = None) -> CloudEvent:
        return await self._answer(a, SupplementRequested(unit_code=a.unit_code, step=a.step,
                                                         missing_documents=tuple(missing), note=note))

    async def reject(self, a: Assignment, reason: str) -> CloudEvent:
        return await self._answer(a, DossierRejected(unit_code=a.unit_code, reason=reason))

    async def extend_deadline(self, a: Assignment, working_days: int, reason: str) -> CloudEvent:
        return await self._answer(a, DeadlineExtended(unit_code=a.unit_code, working_days=working_days,
                                                      reason=reason))

    async def _answer(self, a: Assignment, data: EventData) -> CloudEvent:
        event = new_event(data, subject=a.dossier_code, source=self.source, seq=a.seq)
        await self.send(event)
        return event

    async def send(self, event: CloudEvent | bytes) -> None:
        """Put an outcome (or any bytes: a conformance test's bad record) on this agency's outcomes topic."""
        assert self._producer is not None, "use `async with AgencyClient(...)`"
        value = event if isinstance(event, bytes) else to_json(event)
        key = None if isinstance(event, bytes) else event.subject.encode()
        await self._producer.send_and_wait(outcomes_topic(self.name).name, value, key=key,
                                           headers=[("content-type", CLOUDEVENTS_JSON.encode())])
