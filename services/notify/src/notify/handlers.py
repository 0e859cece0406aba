"""Kafka edges of notify: dossier events in, due retries in. Decode, hand to the notifier, nothing else."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

import structlog
from faststream.kafka import KafkaBroker, KafkaRouter

from lienthong.messaging import batch_subscription, current_message, record_context, records_of
from lienthong.topics import DOSSIER_LIFECYCLE, NOTIFICATION_RETRY, payload_of
from notify.notifier import Notifier

MAX_BATCH = 200
LifecycleEvent = payload_of(DOSSIER_LIFECYCLE)
RetryEvent = payload_of(NOTIFICATION_RETRY)


def not_before(headers: dict) -> datetime:
    value = headers.get("not-before")
    value = value.decode() if isinstance(value, bytes) else value
    try:
        return datetime.fromisoformat(value) if value else datetime.now(UTC)
    except ValueError:
        return datetime.now(UTC)


def build_router(broker: KafkaBroker, notifier: Notifier, group_id: str, start_from: str, hold_max_s: float,
                 concurrency: int = 8) -> KafkaRouter:
    kafka = KafkaRouter()
    slots = asyncio.Semaphore(concurrency)  # FerretDB's single writer (and any store) gets a bounded load

    @kafka.subscriber(
        DOSSIER_LIFECYCLE.name, **batch_subscription(group_id=group_id, auto_offset_reset=start_from,
                                                     max_records=MAX_BATCH),
        description="Every dossier event: citizens, units and subscribed agency systems are told per the rules",
    )
    async def on_lifecycle(events: list[LifecycleEvent]) -> None:
        # Dossiers in parallel, each dossier's events in order; the offsets are committed once all are done.
        by_dossier: dict[str, list] = defaultdict(list)
        for event, record in zip(events, records_of(current_message(broker)), strict=True):
            by_dossier[event.subject].append((record, event))

        async def one_dossier(items: list) -> None:
            async with slots:
                for record, event in items:
                    with structlog.contextvars.bound_contextvars(**record_context(record), event_id=event.id,
                                                                 dossier_code=event.subject):
                        await notifier.on_event(event)

        await _all(one_dossier(items) for items in by_dossier.values())

    @kafka.subscriber(
        NOTIFICATION_RETRY.name, **batch_subscription(group_id=group_id, auto_offset_reset="earliest",
                                                      max_records=MAX_BATCH),
        description="Notifications to attempt again once their `not-before` header has passed",
    )
    async def on_retry(requests: list[RetryEvent]) -> None:
        async def one(request, record) -> None:  # noqa: ANN001
            if not await notifier.hold_until_due(request, not_before(dict(record.headers)), hold_max_s):
                return  # not due within the hold: back at the end of the topic
            async with slots:
                with structlog.contextvars.bound_contextvars(**record_context(record), event_id=request.id,
                                                             dossier_code=request.subject):
                    await notifier.on_retry(request)

        await _all(one(request, record)
                   for request, record in zip(requests, records_of(current_message(broker)), strict=True))

    return kafka


async def _all(jobs) -> None:  # noqa: ANN001
    """Run every job; if any failed, raise after all finished so nothing is left half-done in the background
    (the batch is then redelivered and the ledger makes the repeat harmless)."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    if errors := [r for r in results if isinstance(r, BaseException)]:
        raise errors[0]
