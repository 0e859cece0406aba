"""Kafka edge of stats: every dossier lifecycle event, in batches, into the projections."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from lienthong.contracts import parse_event
from lienthong.contracts.errors import summarize
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, dead_letter, record_context
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.store import Positioned, ProjectionStore

MAX_BATCH = 500
log = structlog.get_logger("stats")


def build_router(store: ProjectionStore, group_id: str = "stats") -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(
        DOSSIER_LIFECYCLE.name, group_id=group_id, auto_offset_reset="earliest", batch=True, max_records=MAX_BATCH,
        ack_policy=SUBSCRIBER_ACK_POLICY,
        description="Every dossier lifecycle event, projected per dossier (one write per dossier per batch)",
    )
    async def on_lifecycle(message: KafkaMessage, broker: KafkaBroker) -> None:
        events = []
        for record in message.raw_message:
            try:
                events.append(Positioned(parse_event(record.value or b""), record.partition, record.offset))
            except ValidationError as exc:
                with structlog.contextvars.bound_contextvars(**record_context(record)):
                    await dead_letter(broker, record, dlq_topic=DOSSIER_LIFECYCLE.dlq, service="stats",
                                      reason=summarize(exc))
        changed = await store.project(events)
        log.debug("batch_projected", records=len(message.raw_message), dossiers_changed=changed)

    return router
