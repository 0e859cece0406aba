"""Kafka edges of routing: `dossier.submitted` from the lifecycle topic, outcomes from every agency's
`unit.outcomes.<agency>` (the topic names the sender: only that agency may write it).

Both are read in batches (a partition's records in order): a record that is not a CloudEvent goes to its DLQ with
the reason and the rest of the batch is applied; the offsets are committed once the batch's effects are stored and
their events acknowledged."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from lienthong.auth import CITIZEN_ASSERTION_HEADER
from lienthong.contracts import CloudEvent, parse_event
from lienthong.contracts.dossier import DossierSubmitted
from lienthong.contracts.errors import summarize
from lienthong.messaging import INFRASTRUCTURE_ERRORS, SUBSCRIBER_ACK_POLICY, InFlight, dead_letter, record_context
from lienthong.topics import DOSSIER_LIFECYCLE, OUTCOMES_DLQ, OUTCOMES_PATTERN, agency_of
from routing.router import ConcurrentUpdate, Input, Outcome, Router, Submitted

log = structlog.get_logger("routing")

def build_router(router: Router, group_id: str = "routing", start_from: str = "earliest",
                 max_batch: int = 500) -> KafkaRouter:
    kafka = KafkaRouter()
    submissions_in_flight, outcomes_in_flight = InFlight(), InFlight()

    async def decode(record: ConsumerRecord, broker: KafkaBroker, dlq: str) -> CloudEvent | None:
        try:
            return parse_event(record.value or b"")
        except ValidationError as exc:
            with structlog.contextvars.bound_contextvars(**record_context(record)):
                await dead_letter(broker, record, dlq_topic=dlq, service="routing", reason=summarize(exc))
            return None

    async def apply(inputs: list[tuple[ConsumerRecord, Input]], broker: KafkaBroker, dlq: str) -> None:
        """The batch at once; if it fails for a reason of its own (not the store's or the broker's, not another
        instance's concurrent writes), each input alone, and the one that fails alone goes to the DLQ: decisions
        are deterministic, so trying it again would fail again and hold its partition."""
        try:
            await router.handle([item for _, item in inputs])
            return
        except (*INFRASTRUCTURE_ERRORS, ConcurrentUpdate):
            raise
        except Exception as exc:  # noqa: BLE001 - find the poison
            log.warning("batch_failed", error=type(exc).__name__, size=len(inputs))
        for record, item in inputs:
            with structlog.contextvars.bound_contextvars(**record_context(record)):
                try:
                    await router.handle([item])
                except (*INFRASTRUCTURE_ERRORS, ConcurrentUpdate):
                    raise
                except Exception as exc:  # noqa: BLE001 - the record's own failure, by type only
                    await dead_letter(broker, record, dlq_topic=dlq, service="routing",
                                      reason=f"routing failed: {type(exc).__name__}")

    @kafka.subscriber(
        DOSSIER_LIFECYCLE.name, group_id=group_id, auto_offset_reset=start_from, ack_policy=SUBSCRIBER_ACK_POLICY,
        batch=True, max_records=max_batch, listener=submissions_in_flight,
        description="routing starts a workflow for each dossier.submitted",
    )
    async def on_lifecycle(message: KafkaMessage, broker: KafkaBroker) -> None:
        submitted = []
        for record in message.raw_message:
            event = await decode(record, broker, DOSSIER_LIFECYCLE.dlq)
            if event is not None and isinstance(event.data, DossierSubmitted):  # routing's own events come back
                submitted.append((record, Submitted(event)))
        async with submissions_in_flight:
            await apply(submitted, broker, DOSSIER_LIFECYCLE.dlq)

    @kafka.subscriber(
        pattern=OUTCOMES_PATTERN, group_id=group_id, auto_offset_reset=start_from, ack_policy=SUBSCRIBER_ACK_POLICY,
        batch=True, max_records=max_batch, listener=outcomes_in_flight,
        description="What units did (CloudEvents: step-started/completed, supplement-requested, rejected; "
        "supplement-provided, withdrawn), one topic per agency system; `dossierseq` names the assignment answered",
    )
    async def on_outcomes(message: KafkaMessage, broker: KafkaBroker) -> None:
        outcomes = []
        for record in message.raw_message:
            event = await decode(record, broker, OUTCOMES_DLQ)
            if event is not None:
                assertion = dict(record.headers or ()).get(CITIZEN_ASSERTION_HEADER)
                outcomes.append((record, Outcome(event, agency_of(record.topic) or "?",
                                                 assertion.decode() if assertion else None, record.timestamp / 1000)))
        async with outcomes_in_flight:
            await apply(outcomes, broker, OUTCOMES_DLQ)

    return kafka
