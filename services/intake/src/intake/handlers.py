"""Kafka edge of intake: agency systems publish raw submissions to `intake.submissions`."""

from __future__ import annotations

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from intake.api import SUBMISSIONS
from intake.domain import Rejected
from intake.submit import Intake
from lienthong.contracts.errors import summarize
from lienthong.contracts.intake import DossierSubmission
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, dead_letter
from lienthong.topics import INTAKE_SUBMISSIONS

GROUP_ID = "intake"


def build_router(intake: Intake) -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(
        INTAKE_SUBMISSIONS.name,
        group_id=GROUP_ID,
        auto_offset_reset="earliest",
        ack_policy=SUBSCRIBER_ACK_POLICY,
        title="intake.submissions",
        description="Raw dossier submissions from agency systems (body: DossierSubmission, see docs/schemas)",
    )
    async def on_submission(message: KafkaMessage, broker: KafkaBroker) -> None:
        try:
            submission = DossierSubmission.model_validate_json(message.body)
        except ValidationError as exc:
            SUBMISSIONS.labels("kafka", "unknown", "invalid").inc()
            await dead_letter(broker, message, dlq_topic=INTAKE_SUBMISSIONS.dlq, service="intake", reason=summarize(exc))
            return
        try:
            await intake.submit(submission)  # KafkaUnavailable propagates: NACK, the record comes again
        except Rejected as exc:
            SUBMISSIONS.labels("kafka", submission.channel, "invalid").inc()
            await dead_letter(broker, message, dlq_topic=INTAKE_SUBMISSIONS.dlq, service="intake", reason=str(exc))
            return
        SUBMISSIONS.labels("kafka", submission.channel, "accepted").inc()

    return router
