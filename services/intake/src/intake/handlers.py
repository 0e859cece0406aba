"""Kafka edge of intake: agency systems publish raw submissions to `intake.submissions`, the applicant sealed to
intake's key (`applicant_sealed`): a submission with the applicant in clear is refused. Dead letters keep only the
reason and where the record came from, and the topic itself is purged of everything intake has taken in.

Records are consumed in batches and submitted concurrently (per-unit and per-key locks keep codes consecutive and
duplicates out); the batch's offsets are committed only once every record is stored and published, or parked in
the dead-letter topic with its reason.
"""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import asyncio

import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from intake.api import SUBMISSIONS
from intake.domain import Rejected
from intake.submit import Conflict, Intake
from lienthong.contracts.errors import summarize
from lienthong.contracts.intake import DossierSubmission
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, dead_letter, record_context
from lienthong.topics import INTAKE_SUBMISSIONS

GROUP_ID = "intake"
# Kafka stamps no sender on a record: submissions on intake.submissions are the counter application's (the only
# principal with write access to the topic besides the simulator), and their references are scoped to it.
KAFKA_CLIENT = "intake.submissions"
MAX_BATCH = 200


def build_router(intake: Intake) -> KafkaRouter:
    router = KafkaRouter()

    async def park(broker: KafkaBroker, record: ConsumerRecord, reason: str) -> None:
        # Only why and where from: the bytes may hold an applicant in clear, or sealed to intake's key, which an
        # erasure could not reach; the agency system keeps what it sent and fixes it from the reason.
        await dead_letter(broker, record, dlq_topic=INTAKE_SUBMISSIONS.dlq, service="intake", reason=reason,
                          withhold_value=True)

    async def ingest(record: ConsumerRecord, broker: KafkaBroker) -> None:
        with structlog.contextvars.bound_contextvars(**record_context(record)):
            try:
                submission = DossierSubmission.model_validate_json(record.value or b"")
            except ValidationError as exc:
                SUBMISSIONS.labels("kafka", "unknown", "invalid").inc()
                await park(broker, record, summarize(exc))
                return
            if submission.applicant_sealed is None:  # the broker now holds it in clear: refuse, and say so
                SUBMISSIONS.labels("kafka", submission.channel, "invalid").inc()
                await park(broker, record, "applicant: must be sealed to intake's key on Kafka (applicant_sealed)")
                return
            try:
                await intake.submit(submission, KAFKA_CLIENT)  # KafkaUnavailable propagates: NACK, comes again
            except Conflict:
                SUBMISSIONS.labels("kafka", submission.channel, "conflict").inc()
                await park(broker, record, "external_ref: conflict (used before for a different submission)")
                return
            except Rejected as exc:
                SUBMISSIONS.labels("kafka", submission.channel, "invalid").inc()
                await park(broker, record, str(exc))
                return
            SUBMISSIONS.labels("kafka", submission.channel, "accepted").inc()

    @router.subscriber(
        INTAKE_SUBMISSIONS.name,
        group_id=GROUP_ID,
        auto_offset_reset="earliest",
        batch=True,
        max_records=MAX_BATCH,
        ack_policy=SUBSCRIBER_ACK_POLICY,
        description="Raw dossier submissions from agency systems (body: DossierSubmission, see docs/schemas)",
    )
    async def on_submissions(message: KafkaMessage, broker: KafkaBroker) -> None:
        await asyncio.gather(*(ingest(record, broker) for record in message.raw_message))

    return router
