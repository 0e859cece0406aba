"""Kafka edge of stats: every dossier lifecycle event, fetched in batches and projected in windows of several
fetches (`stats.window`), offsets committed explicitly once a window is stored."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter

from lienthong.messaging import batch_subscription, current_message, records_of
from lienthong.topics import DOSSIER_LIFECYCLE, payload_of
from stats.projector import Positioned
from stats.window import Window

# Large fetches: the store's cost is per round trip. A fetch waits at most FETCH_WAIT_MS for records.
MAX_FETCH = 100_000
FETCH_WAIT_MS = 200
LifecycleEvent = payload_of(DOSSIER_LIFECYCLE)


def build_router(broker: KafkaBroker, window: Window, group_id: str = "stats") -> KafkaRouter:
    router = KafkaRouter()

    @router.subscriber(
        DOSSIER_LIFECYCLE.name, **batch_subscription(
            group_id=group_id, auto_offset_reset="earliest", max_records=MAX_FETCH, batch_timeout_ms=FETCH_WAIT_MS,
            max_partition_fetch_bytes=16 * 1024 * 1024, listener=window,
            # The window commits what it stored, explicitly: FastStream's ack would commit every fetched offset.
            ack_policy=AckPolicy.MANUAL),
        description="Every dossier lifecycle event, projected per dossier and per rollup row (a window of fetches "
                    "at a time, one write per document)",
    )
    async def on_lifecycle(events: list[LifecycleEvent]) -> None:
        message = current_message(broker)
        records = records_of(message)
        await window.add([Positioned(event, record.partition, record.offset)
                          for event, record in zip(events, records, strict=True)], records, message.consumer)

    return router
