"""The Kafka edge of the adapter: read the land registry's `unit.work.<agency>`, answer on `unit.outcomes.<agency>`.

Written as an agency would, with aiokafka and Liên Thông's published contracts (lienthong-shared) only: each outcome
names the assignment it answers (`dossierseq` = the assignment's), the offset is committed once the answer is sent,
and an answer is deterministic (same dossier, same assignment, same id), so a redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agency_adapter.decide import AskForPapers, Complete, decide
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.contracts.dossier import (
    DossierAssigned,
    DossierResumed,
    StepCompleted,
    StepStarted,
    SupplementRequested,
)
from lienthong.contracts.envelope import EventData, deterministic_id, new_event
from lienthong.settings import KafkaSettings


class LandRegistryAdapter:
    def __init__(self, agency: str, kafka: KafkaSettings, papers_on_file: Callable[[str], set[str]],
                 required: tuple[str, ...] = ("don-de-nghi", "giay-chung-nhan")) -> None:
        self.agency, self.kafka = agency, kafka
        self.papers_on_file, self.required = papers_on_file, required
        self.waiting: dict[str, CloudEvent] = {}  # dossiers asked for papers -> their assignment (an agency's DB)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(f"unit.work.{self.agency}", **self.kafka.client_options(),
                                    group_id=f"agency-{self.agency}-adapter", auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        producer = AIOKafkaProducer(**self.kafka.client_options(), acks="all", enable_idempotence=True)
        await consumer.start()
        await producer.start()
        try:
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        for answer in self.on_work(parse_event(record.value or b"")):
                            await producer.send_and_wait(f"unit.outcomes.{self.agency}", to_json(answer),
                                                         key=answer.subject.encode())
                await consumer.commit()  # only after the answers are on the broker
        finally:
            await producer.stop()
            await consumer.stop()

    def on_work(self, event: CloudEvent) -> list[CloudEvent]:
        """The answers to one record of the work topic: an assignment is started and decided; a dossier that was
        waiting for papers is decided again when it resumes; anything else (a refusal notice) is for the logs."""
        if isinstance(event.data, DossierAssigned):
            data = event.data
            return [self._answer(event, StepStarted(unit_code=data.unit_code, step=data.step)), self._decide(event)]
        if isinstance(event.data, DossierResumed) and event.subject in self.waiting:
            return [self._decide(self.waiting[event.subject], again=event.dossierseq)]
        return []

    def _decide(self, assignment: CloudEvent, again: int | None = None) -> CloudEvent:
        data: DossierAssigned = assignment.data  # type: ignore[assignment]
        outcome: EventData
        match decide(assignment.subject, self.papers_on_file(assignment.subject), self.required):
            case Complete(result_ref):
                self.waiting.pop(assignment.subject, None)
                outcome = StepCompleted(unit_code=data.unit_code, step=data.step, result_ref=result_ref)
            case AskForPapers(missing):
                self.waiting[assignment.subject] = assignment
                outcome = SupplementRequested(unit_code=data.unit_code, step=data.step, missing_documents=missing)
        return self._answer(assignment, outcome, round_=again)

    def _answer(self, assignment: CloudEvent, data: EventData, round_: int | None = None) -> CloudEvent:
        """An outcome naming the assignment; its id is the same on every redelivery of what caused it."""
        return new_event(data, subject=assignment.subject, source=f"/agencies/{self.agency}",
                         seq=assignment.dossierseq,
                         event_id=deterministic_id(self.agency, assignment.id, data.EVENT_TYPE, round_ or 0))
