"""Kafka edge of stats: every dossier lifecycle event, in batches, into the projections."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage

from lienthong.messaging import InFlight, batch_subscription, park_record, records_of
from lienthong.topics import DOSSIER_LIFECYCLE, payload_of
from stats.projector import Positioned, Projector

# Large batches: the store's cost is per round trip, and a batch is a handful of them whatever its size. The fetch
# waits at most BATCH_WAIT_MS for a batch to fill, so a quiet stream is still projected within that.
MAX_BATCH = 100_000
BATCH_WAIT_MS = 200
LifecycleEvent = payload_of(DOSSIER_LIFECYCLE)
log = structlog.get_logger("stats")


def build_router(projector: Projector, group_id: str = "stats") -> KafkaRouter:
    router = KafkaRouter()
    in_flight = InFlight()

    @router.subscriber(
        DOSSIER_LIFECYCLE.name, **batch_subscription(
            group_id=group_id, auto_offset_reset="earliest", max_records=MAX_BATCH, batch_timeout_ms=BATCH_WAIT_MS,
            max_partition_fetch_bytes=16 * 1024 * 1024, listener=in_flight),
        description="Every dossier lifecycle event, projected per dossier and per rollup row (one write each per "
                    "batch)",
    )
    async def on_lifecycle(events: list[LifecycleEvent], message: KafkaMessage, broker: KafkaBroker) -> None:
        records = records_of(message)
        async with in_flight:
            poison = await projector.project([Positioned(event, record.partition, record.offset)
                                              for event, record in zip(events, records, strict=True)])
        by_position = {(r.partition, r.offset): r for r in records}
        for item in poison:  # validated, but cannot be folded: parked rather than stalling the partition
            await park_record(broker, by_position[(item.item.partition, item.item.offset)], "stats", item.reason)
        log.debug("batch_projected", records=len(message.raw_message))

    return router
