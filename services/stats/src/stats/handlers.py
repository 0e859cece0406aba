"""Kafka edge of stats: every dossier lifecycle event, in batches, into the projections."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from lienthong.contracts import parse_event
from lienthong.contracts.errors import summarize
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, InFlight, dead_letter, record_context
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.projector import Positioned, Projector

# Large batches: the store's cost is per round trip, and a batch is a handful of them whatever its size. The fetch
# waits at most BATCH_WAIT_MS for a batch to fill, so a quiet stream is still projected within that.
MAX_BATCH = 100_000
BATCH_WAIT_MS = 200
log = structlog.get_logger("stats")


def build_router(projector: Projector, group_id: str = "stats") -> KafkaRouter:
    router = KafkaRouter()
    in_flight = InFlight()

    @router.subscriber(
        DOSSIER_LIFECYCLE.name, group_id=group_id, auto_offset_reset="earliest", batch=True, max_records=MAX_BATCH,
        batch_timeout_ms=BATCH_WAIT_MS, max_partition_fetch_bytes=16 * 1024 * 1024, ack_policy=SUBSCRIBER_ACK_POLICY,
        listener=in_flight,
        description="Every dossier lifecycle event, projected per dossier and per rollup row (one write each per "
                    "batch)",
    )
    async def on_lifecycle(message: KafkaMessage, broker: KafkaBroker) -> None:
        async with in_flight:
            events = []
            for record in message.raw_message:
                try:
                    events.append(Positioned(parse_event(record.value or b""), record.partition, record.offset))
                except ValidationError as exc:
                    await _park(broker, record, summarize(exc))
            by_position = {(r.partition, r.offset): r for r in message.raw_message}
            for poison in await projector.project(events):
                await _park(broker, by_position[(poison.item.partition, poison.item.offset)], poison.reason)
        log.debug("batch_projected", records=len(message.raw_message))

    return router


async def _park(broker, record, reason: str) -> None:  # noqa: ANN001
    with structlog.contextvars.bound_contextvars(**record_context(record)):
        await dead_letter(broker, record, dlq_topic=DOSSIER_LIFECYCLE.dlq, service="stats", reason=reason)
