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
from faststream.kafka import KafkaBroker, KafkaRouter

from intake.api import SUBMISSIONS
from intake.domain import Rejected
from intake.submit import Conflict, Intake
from lienthong.contracts.intake import DossierSubmission
from lienthong.messaging import (batch_subscription, current_message, park_record, record_context, records_of,
                                 undecodable_of)
from lienthong.topics import INTAKE_SUBMISSIONS

# Kafka stamps no sender on a record: submissions on intake.submissions are the counter application's (the only
# principal with write access to the topic besides the simulator), and their references are scoped to it.
KAFKA_CLIENT = "intake.submissions"
MAX_BATCH = 200


def build_router(broker: KafkaBroker, intake: Intake, group_id: str = "intake") -> KafkaRouter:
    router = KafkaRouter()

    async def ingest(submission: DossierSubmission, record: ConsumerRecord) -> None:
        # A refusal is parked with only why and where from (the topic's DLQ keeps no value): the bytes may hold an
        # applicant in clear, which an erasure could not reach; the agency system fixes it from the reason.
        with structlog.contextvars.bound_contextvars(**record_context(record)):
            if submission.applicant_sealed is None:  # the broker now holds it in clear: refuse, and say so
                SUBMISSIONS.labels("kafka", submission.channel, "invalid").inc()
                await park_record(broker, record, "intake", "applicant: must be sealed to intake's key on Kafka (applicant_sealed)")
                return
            try:
                await intake.submit(submission, KAFKA_CLIENT)  # KafkaUnavailable propagates: NACK, comes again
            except Conflict:
                SUBMISSIONS.labels("kafka", submission.channel, "conflict").inc()
                await park_record(broker, record, "intake", "external_ref: conflict (used before for a different submission)")
                return
            except Rejected as exc:
                SUBMISSIONS.labels("kafka", submission.channel, "invalid").inc()
                await park_record(broker, record, "intake", str(exc))
                return
            SUBMISSIONS.labels("kafka", submission.channel, "accepted").inc()

    @router.subscriber(
        INTAKE_SUBMISSIONS.name, **batch_subscription(group_id=group_id, auto_offset_reset="earliest",
                                                      max_records=MAX_BATCH),
        description="Dossier submissions from agency systems, the applicant sealed to intake's key "
                    "(`applicant_sealed`); a refused one is parked on the DLQ with only the reason",
    )
    async def on_submissions(submissions: list[DossierSubmission]) -> None:
        message = current_message(broker)
        SUBMISSIONS.labels("kafka", "unknown", "invalid").inc(len(undecodable_of(message)))
        await asyncio.gather(*(ingest(submission, record)
                               for submission, record in zip(submissions, records_of(message), strict=True)))

    return router
