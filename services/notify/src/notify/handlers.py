"""Kafka edges of notify: dossier events in, due retries in. Decode, hand to the notifier, nothing else."""
# No `from __future__ import annotations` here: FastStream resolves the handler annotations (context injection).

import asyncio
from datetime import UTC, datetime

import structlog
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker, KafkaMessage
from pydantic import ValidationError

from lienthong.contracts import parse_event
from lienthong.contracts.errors import summarize
from lienthong.contracts.notification import NotificationRequested
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, dead_letter
from lienthong.topics import DOSSIER_LIFECYCLE, NOTIFICATION_EVENTS, NOTIFICATION_RETRY
from notify.notifier import Notifier


def not_before(headers: dict) -> datetime:
    value = headers.get("not-before")
    try:
        return datetime.fromisoformat(value) if value else datetime.now(UTC)
    except ValueError:
        return datetime.now(UTC)


def build_router(notifier: Notifier, group_id: str, start_from: str, hold_max_s: float) -> KafkaRouter:
    kafka = KafkaRouter()

    @kafka.subscriber(
        DOSSIER_LIFECYCLE.name, group_id=group_id, auto_offset_reset=start_from, ack_policy=SUBSCRIBER_ACK_POLICY,
        description="Every dossier event: citizens, units and subscribed agency systems are told per the rules",
    )
    async def on_lifecycle(message: KafkaMessage, broker: KafkaBroker) -> None:
        try:
            event = parse_event(message.body)
        except ValidationError as exc:
            # routing and stats park the same record; notify only has to not stop on it
            await dead_letter(broker, message.raw_message, dlq_topic=DOSSIER_LIFECYCLE.dlq, service="notify",
                              reason=summarize(exc))
            return
        with structlog.contextvars.bound_contextvars(event_id=event.id, dossier_code=event.subject):
            await notifier.on_event(event)

    @kafka.subscriber(
        NOTIFICATION_RETRY.name, group_id=group_id, auto_offset_reset="earliest", ack_policy=SUBSCRIBER_ACK_POLICY,
        description="Notifications to attempt again once their `not-before` header has passed",
    )
    async def on_retry(message: KafkaMessage, broker: KafkaBroker) -> None:
        try:
            request = parse_event(message.body)
            if not isinstance(request.data, NotificationRequested):
                raise TypeError(request.type)
        except (ValidationError, TypeError) as exc:
            reason = summarize(exc) if isinstance(exc, ValidationError) else "not a notification request"
            await dead_letter(broker, message.raw_message, dlq_topic=NOTIFICATION_EVENTS.dlq, service="notify",
                              reason=reason)
            return
        wait = (not_before(message.headers) - datetime.now(UTC)).total_seconds()
        # Hold a partition for a few seconds at most; a record not due by then goes back to the end of the topic,
        # so one long Retry-After does not hold up the retries behind it.
        await asyncio.sleep(min(max(0.0, wait), hold_max_s))
        if wait > hold_max_s:
            await broker.publish(message.body, NOTIFICATION_RETRY.name, key=message.raw_message.key,
                                 headers=message.headers)
            return
        with structlog.contextvars.bound_contextvars(event_id=request.id, dossier_code=request.subject):
            await notifier.on_retry(request)

    return kafka
