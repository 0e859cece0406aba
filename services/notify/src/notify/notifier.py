"""The notifier: plans the deliveries of each dossier event and carries each one out exactly once in effect.

One delivery = (cause event id, recipient, channel), a document in the ledger:

    claim (status sending, attempts+1, lease)  ->  send  ->  publish notification.sent  ->  status sent
                                                     \\-> transient error: status retrying, a NotificationRequested
                                                         on `notification.retry` with header `not-before`
                                                     \\-> permanent error or attempts used up: notification.failed,
                                                         the request parked on the DLQ, status failed

A redelivered event finds the delivery done (nothing happens) or held by a live lease (it schedules a look after
the lease instead of sending). Only a crash after the channel accepted the message and before the ledger says
`sent` can send it twice; the channel gets the same delivery id both times (Message-ID, `reference`,
`X-Delivery-Id`) so the receiving side can fold the duplicate.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from prometheus_client import Counter

from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import Applicant
from lienthong.contracts.envelope import deterministic_id, new_event
from lienthong.contracts.notification import NotificationFailed, NotificationRequested, NotificationSent, SubscriberDisabled
from lienthong.personaldata import Access, Vault
from notify.channels import Channel, DeliveryError, delivery_id
from notify.compose import ComposeError, Composer, Message
from notify.domain import Delivery, DossierFacts, Rule, plan
from notify.settings import NotifySettings
from notify.store import NotifyStore
from notify.subscriptions import Subscriptions

log = structlog.get_logger("notify")
SOURCE = "/services/notify"
READER = "notify"  # in the personal-data access log

ATTEMPTS = Counter("lienthong_notify_attempts", "Delivery attempts", ["channel", "outcome"])
SENT = Counter("lienthong_notify_sent", "Notifications delivered", ["channel"])
FAILED = Counter("lienthong_notify_failed", "Notifications given up after all attempts", ["channel"])

Publish = Callable[[CloudEvent, dict[str, str] | None], Awaitable[None]]


class Notifier:
    def __init__(
        self,
        store: NotifyStore,
        vault: Vault,
        subscriptions: Subscriptions,
        composer: Composer,
        channels: dict[str, Channel],
        rules: tuple[Rule, ...],
        settings: NotifySettings,
        *,
        publish_outcome: Publish,
        publish_retry: Publish,
        publish_dead_letter: Callable[[CloudEvent, str], Awaitable[None]],
        publish_alert: Publish,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.vault, self.subscriptions = store, vault, subscriptions
        self.composer, self.channels = composer, channels
        self.rules, self.settings, self.clock = rules, settings, clock
        self.publish_outcome, self.publish_retry = publish_outcome, publish_retry
        self.publish_dead_letter, self.publish_alert = publish_dead_letter, publish_alert

    async def on_event(self, event: CloudEvent) -> None:
        rules = tuple(r for r in self.rules if r.matches(event))
        subscriptions = await self.subscriptions.active()
        # Most events (step started, transferred, paused, ...) concern nobody: no store round trip for them.
        dossier = await self.store.remember(event, read=bool(rules or subscriptions))
        citizen, opted_out = None, frozenset[str]()
        if dossier is not None and any(r.recipient == "citizen" for r in rules):
            # The one place notify reads personal data: logged in the vault's access log. None: erased.
            citizen = await self.vault.open(dossier.applicant, Access(READER, dossier.code, f"notify {event.type}"))
            opted_out = await self.store.opted_out(dossier.applicant.subject)
        deliveries = plan(event, rules, dossier, subscriptions, opted_out, citizen)
        # One event's deliveries are independent: one slow channel does not hold up the others.
        await asyncio.gather(*(self._first_attempt(d, event, dossier, citizen) for d in deliveries))

    async def hold_until_due(self, request: CloudEvent, not_before: datetime, hold_max_s: float) -> bool:
        """Wait for a retry that is due within `hold_max_s` (True: attempt it now). One due later goes back to the
        end of the retry topic (False), so one long Retry-After does not hold up the retries behind it."""
        wait = (not_before - self.clock()).total_seconds()
        await asyncio.sleep(min(max(0.0, wait), hold_max_s))
        if wait > hold_max_s:
            await self.publish_retry(request, {"not-before": not_before.isoformat()})
            return False
        return True

    async def on_retry(self, request: CloudEvent) -> None:
        data: NotificationRequested = request.data  # type: ignore[assignment]
        delivery = Delivery(data.cause_event_id, request.subject, request.dossierseq, data.recipient_kind,
                            data.recipient_ref, data.channel, data.template)
        await self._attempt(delivery, None)

    async def _first_attempt(self, delivery: Delivery, event: CloudEvent, dossier: DossierFacts | None,
                             citizen: Applicant | None) -> None:
        with structlog.contextvars.bound_contextvars(channel=delivery.channel, recipient=delivery.recipient_kind):
            try:
                message = self.composer.compose(delivery, event, dossier,
                                                citizen if delivery.recipient_kind == "citizen" else None)
            except ComposeError as exc:  # nothing to send, ever: record the failure once
                claimed = await self._claim(delivery, {"message": None})
                if claimed is not None:
                    await self._give_up(delivery, claimed["attempts"], str(exc))
                return
            subject = dossier.applicant.subject if dossier is not None and delivery.recipient_kind == "citizen" else None
            await self._attempt(delivery, await self._at_rest(message, subject))

    async def _at_rest(self, message: Message, subject: str | None) -> dict[str, Any] | None:
        """The message as the ledger keeps it until sent: a citizen's sealed under their key (so an erasure
        reaches a retry still waiting); None if they were erased meanwhile."""
        if subject is None:
            return asdict(message)
        sealed = await self.vault.seal_for(subject, orjson.dumps(asdict(message)))
        return None if sealed is None else {"sealed_for": subject, "sealed": sealed}

    async def _readable(self, stored: dict[str, Any] | None) -> Message | None:
        if stored is None or "sealed_for" not in stored:
            return None if stored is None else Message(**stored)
        plain = await self.vault.open_for(stored["sealed_for"], stored["sealed"])
        return None if plain is None else Message(**orjson.loads(plain))

    async def _claim(self, delivery: Delivery, message: dict[str, Any] | None) -> dict[str, Any] | None:
        now = self.clock()
        fresh = None if message is None else {**asdict(delivery), **message, "created_at": now}
        return await self.store.claim(delivery.key, fresh, now, now + timedelta(seconds=self.settings.lease_s))

    async def _attempt(self, delivery: Delivery, at_rest: dict[str, Any] | None) -> None:
        """`at_rest`: the message of a first attempt (None for a retry, which reads it from the ledger)."""
        claimed = await self._claim(delivery, None if at_rest is None else {"message": at_rest})
        if claimed is None:
            await self._not_claimed(delivery)
            return
        attempts = claimed["attempts"]
        message = await self._readable(claimed.get("message"))
        if message is None:
            await self._give_up(delivery, attempts, "message missing from the ledger (or its citizen erased)")
            return
        try:
            await self.channels[delivery.channel].send(message, delivery_id(delivery.key))
        except DeliveryError as exc:
            ATTEMPTS.labels(delivery.channel, "transient" if exc.transient else "permanent").inc()
            if exc.transient and attempts < self.settings.max_attempts:
                await self._retry_later(delivery, attempts, exc)
            else:
                await self._give_up(delivery, attempts, exc.reason)
            return
        ATTEMPTS.labels(delivery.channel, "sent").inc()
        await self.publish_outcome(self._outcome(delivery, NotificationSent, attempts), None)
        await self.store.finish(delivery.key, attempts, "sent", self.clock())
        SENT.labels(delivery.channel).inc()
        if delivery.recipient_kind == "subscriber":
            await self.subscriptions.succeeded(delivery.recipient_ref)
        log.info("notification_sent", attempts=attempts)

    async def _not_claimed(self, delivery: Delivery) -> None:
        state = await self.store.delivery(delivery.key)
        if state is None or state["status"] in ("sent", "failed"):
            return  # done already (a redelivery or a replay): nothing to do
        # Held by another attempt, or by one whose process died: look again when its lease runs out.
        await self._schedule(delivery, state["lease_until"].astimezone(UTC))

    async def _retry_later(self, delivery: Delivery, attempts: int, exc: DeliveryError) -> None:
        backoff = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempts - 1))
        delay = backoff * random.uniform(0.5, 1.0)  # jitter: a recovering receiver is not hit by a wave
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.settings.retry_after_max_s))
        not_before = self.clock() + timedelta(seconds=delay)
        await self.store.retry_later(delivery.key, attempts, not_before, self.clock(), exc.reason)
        await self._schedule(delivery, not_before)
        log.info("notification_retry_scheduled", attempts=attempts, reason=exc.reason, delay_s=round(delay, 2))

    async def _schedule(self, delivery: Delivery, not_before: datetime) -> None:
        request = new_event(
            NotificationRequested(cause_event_id=delivery.cause_event_id, recipient_kind=delivery.recipient_kind,
                                  recipient_ref=delivery.recipient_ref, channel=delivery.channel,
                                  template=delivery.template),
            subject=delivery.dossier_code, source=SOURCE, seq=delivery.dossierseq)
        await self.publish_retry(request, {"not-before": not_before.isoformat()})

    async def _give_up(self, delivery: Delivery, attempts: int, reason: str) -> None:
        failed = self._outcome(delivery, NotificationFailed, attempts, reason=reason)
        await self.publish_outcome(failed, None)
        await self.publish_dead_letter(failed, reason)
        await self.store.finish(delivery.key, attempts, "failed", self.clock(), reason)
        FAILED.labels(delivery.channel).inc()
        log.warning("notification_failed", attempts=attempts, reason=reason)
        if delivery.recipient_kind == "subscriber":
            await self._subscriber_failed(delivery, reason)

    async def _subscriber_failed(self, delivery: Delivery, reason: str) -> None:
        failures = await self.store.subscriber_failed(delivery.recipient_ref)
        if failures < self.settings.disable_after_failures:
            return
        if await self.store.disable_subscription(delivery.recipient_ref):
            self.subscriptions.invalidate()
            alert = new_event(
                SubscriberDisabled(subscription_id=delivery.recipient_ref, consecutive_failures=failures,
                                   reason=reason),
                subject=delivery.dossier_code, source=SOURCE, seq=delivery.dossierseq,
                event_id=deterministic_id(delivery.recipient_ref, "disabled", delivery.key))
            await self.publish_alert(alert, None)
            log.warning("subscriber_disabled", subscription_id=delivery.recipient_ref, failures=failures)

    def _outcome(self, delivery: Delivery, kind: type, attempts: int, **extra: Any) -> CloudEvent:
        data = kind(cause_event_id=delivery.cause_event_id, recipient_kind=delivery.recipient_kind,
                    recipient_ref=delivery.recipient_ref, channel=delivery.channel, attempts=attempts, **extra)
        # Deterministic id: re-published after a crash, it is the same event and consumers fold it.
        return new_event(data, subject=delivery.dossier_code, source=SOURCE, seq=delivery.dossierseq,
                         event_id=deterministic_id(delivery.key, kind.__name__))
