"""Kafka edges of routing: `dossier.submitted` from the lifecycle topic, outcomes from every agency's
`unit.outcomes.<agency>` (the topic names the sender: only that agency may write it)."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from lienthong.auth import CITIZEN_ASSERTION_HEADER
from lienthong.contracts import parse_event
from lienthong.contracts.dossier import DossierSubmitted
from lienthong.contracts.errors import summarize
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, dead_letter
from lienthong.topics import DOSSIER_LIFECYCLE, OUTCOMES_DLQ, OUTCOMES_PATTERN, agency_of
from routing.router import Router

def build_router(router: Router, group_id: str = "routing", start_from: str = "earliest") -> KafkaRouter:
    kafka = KafkaRouter()

    async def decode(message: KafkaMessage, broker: KafkaBroker, dlq: str):  # noqa: ANN202
        try:
            return parse_event(message.body)
        except ValidationError as exc:
            await dead_letter(broker, message.raw_message, dlq_topic=dlq, service="routing", reason=summarize(exc))
            return None

    @kafka.subscriber(
        DOSSIER_LIFECYCLE.name, group_id=group_id, auto_offset_reset=start_from, ack_policy=SUBSCRIBER_ACK_POLICY,
        description="routing starts a workflow for each dossier.submitted",
    )
    async def on_lifecycle(message: KafkaMessage, broker: KafkaBroker) -> None:
        event = await decode(message, broker, DOSSIER_LIFECYCLE.dlq)
        if event is None or not isinstance(event.data, DossierSubmitted):
            return  # routing's own events come back here: nothing to do
        with structlog.contextvars.bound_contextvars(event_id=event.id, dossier_code=event.subject):
            await router.on_submitted(event)

    @kafka.subscriber(
        pattern=OUTCOMES_PATTERN, group_id=group_id, auto_offset_reset=start_from, ack_policy=SUBSCRIBER_ACK_POLICY,
        description="What units did (CloudEvents: step-started/completed, supplement-requested, rejected; "
        "supplement-provided, withdrawn), one topic per agency system; `dossierseq` names the assignment answered",
    )
    async def on_outcome(message: KafkaMessage, broker: KafkaBroker) -> None:
        event = await decode(message, broker, OUTCOMES_DLQ)
        if event is None:
            return
        record = message.raw_message
        sender = agency_of(record.topic) or "?"
        with structlog.contextvars.bound_contextvars(event_id=event.id, dossier_code=event.subject, sender=sender):
            await router.on_outcome(event, sender, assertion=message.headers.get(CITIZEN_ASSERTION_HEADER),
                                    written_at=record.timestamp / 1000)

    return kafka
