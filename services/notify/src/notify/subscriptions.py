"""Agency webhook subscriptions: read from the store every few seconds (not once per event) and on every change
made through this process's API."""

from __future__ import annotations

import time

from notify.channels import WebhookTarget
from notify.domain import Subscription
from notify.store import NotifyStore, subscription_of


class Subscriptions:
    def __init__(self, store: NotifyStore, refresh_s: float) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._active: list[Subscription] = []
        self._read_at = float("-inf")
        self._failures: dict[str, int] = {}  # as read just before each webhook send

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    async def active(self) -> list[Subscription]:
        if time.monotonic() - self._read_at > self.refresh_s:
            docs = await self.store.all_subscriptions()
            self._active = [subscription_of(d) for d in docs if d.get("active")]
            self._read_at = time.monotonic()
        return self._active

    async def target(self, sub_id: str) -> WebhookTarget | None:
        """Read at send time: a URL changed or a subscription switched off since the event was planned counts."""
        doc = await self.store.subscription(sub_id)
        if doc is None:
            return None
        self._failures[sub_id] = doc.get("consecutive_failures", 0)
        return WebhookTarget(doc["url"], doc["secret"], doc["active"])

    async def succeeded(self, sub_id: str) -> None:
        """Reset the failure count, with no write when the send's own read showed none to reset."""
        if self._failures.pop(sub_id, 1):
            await self.store.subscriber_succeeded(sub_id)
