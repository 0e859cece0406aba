"""Kafka edges of notify: dossier events in, due retries in. Decode, hand to the notifier, nothing else."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from lienthong.contracts import CloudEvent, parse_event
from lienthong.contracts.errors import summarize
from lienthong.contracts.notification import NotificationRequested
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, dead_letter, record_context
from lienthong.topics import DOSSIER_LIFECYCLE, NOTIFICATION_EVENTS, NOTIFICATION_RETRY
from notify.notifier import Notifier

MAX_BATCH = 200


def not_before(headers: dict) -> datetime:
    value = headers.get("not-before")
    try:
        return datetime.fromisoformat(value) if value else datetime.now(UTC)
    except ValueError:
        return datetime.now(UTC)


def build_router(notifier: Notifier, group_id: str, start_from: str, hold_max_s: float,
                 concurrency: int = 8) -> KafkaRouter:
    kafka = KafkaRouter()
    slots = asyncio.Semaphore(concurrency)  # FerretDB's single writer (and any store) gets a bounded load

    async def decode(record, broker, dlq: str) -> CloudEvent | None:  # noqa: ANN001
        try:
            return parse_event(record.value or b"")
        except ValidationError as exc:
            with structlog.contextvars.bound_contextvars(**record_context(record)):
                await dead_letter(broker, record, dlq_topic=dlq, service="notify", reason=summarize(exc))
            return None

    @kafka.subscriber(
        DOSSIER_LIFECYCLE.name, group_id=group_id, auto_offset_reset=start_from, batch=True, max_records=MAX_BATCH,
        ack_policy=SUBSCRIBER_ACK_POLICY,
        description="Every dossier event: citizens, units and subscribed agency systems are told per the rules",
    )
    async def on_lifecycle(message: KafkaMessage, broker: KafkaBroker) -> None:
        # Dossiers in parallel, each dossier's events in order; the offsets are committed once all are done.
        by_dossier: dict[str, list] = defaultdict(list)
        for record in message.raw_message:
            if (event := await decode(record, broker, DOSSIER_LIFECYCLE.dlq)) is not None:
                by_dossier[event.subject].append((record, event))

        async def one_dossier(items: list) -> None:
            async with slots:
                for record, event in items:
                    with structlog.contextvars.bound_contextvars(**record_context(record), event_id=event.id,
                                                                 dossier_code=event.subject):
                        await notifier.on_event(event)

        await _all(one_dossier(items) for items in by_dossier.values())

    @kafka.subscriber(
        NOTIFICATION_RETRY.name, group_id=group_id, auto_offset_reset="earliest", batch=True, max_records=MAX_BATCH,
        ack_policy=SUBSCRIBER_ACK_POLICY,
        description="Notifications to attempt again once their `not-before` header has passed",
    )
    async def on_retry(message: KafkaMessage, broker: KafkaBroker) -> None:
        async def one(record) -> None:  # noqa: ANN001
            request = await decode(record, broker, NOTIFICATION_EVENTS.dlq)
            if request is None:
                return
            if not isinstance(request.data, NotificationRequested):
                await dead_letter(broker, record, dlq_topic=NOTIFICATION_EVENTS.dlq, service="notify",
                                  reason="not a notification request")
                return
            headers = {k: v.decode() for k, v in record.headers}
            wait = (not_before(headers) - datetime.now(UTC)).total_seconds()
            # A batch waits a few seconds at most; a record not due by then goes back to the end of the topic,
            # so one long Retry-After does not hold up the retries behind it.
            await asyncio.sleep(min(max(0.0, wait), hold_max_s))
            if wait > hold_max_s:
                await broker.publish(record.value, NOTIFICATION_RETRY.name, key=record.key, headers=headers)
                return
            async with slots:
                with structlog.contextvars.bound_contextvars(**record_context(record), event_id=request.id,
                                                             dossier_code=request.subject):
                    await notifier.on_retry(request)

        await _all(one(record) for record in message.raw_message)

    return kafka


async def _all(jobs) -> None:  # noqa: ANN001
    """Run every job; if any failed, raise after all finished so nothing is left half-done in the background
    (the batch is then redelivered and the ledger makes the repeat harmless)."""
    results = await asyncio.gather(*jobs, return_exceptions=True)
    if errors := [r for r in results if isinstance(r, BaseException)]:
        raise errors[0]
