"""Kafka edges of routing: `dossier.submitted` from the lifecycle topic, outcomes from every agency's
`unit.outcomes.<agency>` (the topic names the sender: only that agency may write it).

Both are read in batches (a partition's records in order): a record that is not one of the events its topic
carries goes to its DLQ with the reason and the rest of the batch is applied; the offsets are committed once the batch's effects are stored and
their events acknowledged."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaRouter

from lienthong.auth import CITIZEN_ASSERTION_HEADER
from lienthong.contracts.dossier import DossierSubmitted
from lienthong.messaging import (INFRASTRUCTURE_ERRORS, InFlight, batch_subscription, current_message, park_record,
                                 records_of)
from lienthong.topics import DOSSIER_LIFECYCLE, OUTCOMES_PATTERN, agency_of, outcomes_topic, payload_of
from routing.router import ConcurrentUpdate, Input, Outcome, Router, Submitted

log = structlog.get_logger("routing")
LifecycleEvent = payload_of(DOSSIER_LIFECYCLE)
OutcomeEvent = payload_of(outcomes_topic("<agency>"))


def build_router(broker: KafkaBroker, router: Router, group_id: str = "routing", start_from: str = "earliest",
                 max_batch: int = 500) -> KafkaRouter:
    kafka = KafkaRouter()
    submissions_in_flight, outcomes_in_flight = InFlight(), InFlight()

    async def apply(inputs: list[tuple[ConsumerRecord, Input]]) -> None:
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
            try:
                await router.handle([item])
            except (*INFRASTRUCTURE_ERRORS, ConcurrentUpdate):
                raise
            except Exception as exc:  # noqa: BLE001 - the record's own failure, by type only
                await park_record(broker, record, "routing", f"routing failed: {type(exc).__name__}")

    @kafka.subscriber(
        DOSSIER_LIFECYCLE.name, **batch_subscription(group_id=group_id, auto_offset_reset=start_from,
                                                     max_records=max_batch, listener=submissions_in_flight),
        description="routing starts a workflow for each dossier.submitted (and skips the events it wrote itself)",
    )
    async def on_lifecycle(events: list[LifecycleEvent]) -> None:
        submitted = [(record, Submitted(event))
                     for event, record in zip(events, records_of(current_message(broker)), strict=True)
                     if isinstance(event.data, DossierSubmitted)]
        async with submissions_in_flight:
            await apply(submitted)

    @kafka.subscriber(
        pattern=OUTCOMES_PATTERN, **batch_subscription(group_id=group_id, auto_offset_reset=start_from,
                                                       max_records=max_batch, listener=outcomes_in_flight),
        description="What units did (CloudEvents: step-started/completed, supplement-requested, rejected; "
        "supplement-provided, withdrawn), one topic per agency system; `dossierseq` names the assignment answered",
    )
    async def on_outcomes(events: list[OutcomeEvent]) -> None:
        outcomes = []
        for event, record in zip(events, records_of(current_message(broker)), strict=True):
            assertion = dict(record.headers or ()).get(CITIZEN_ASSERTION_HEADER)
            outcomes.append((record, Outcome(event, agency_of(record.topic) or "?",
                                             assertion.decode() if assertion else None, record.timestamp / 1000)))
        async with outcomes_in_flight:
            await apply(outcomes)

    return kafka
