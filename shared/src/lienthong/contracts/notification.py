"""Payloads of notification events (topic `notification.events`, key = dossier code)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lienthong.contracts.envelope import EventData, envelope_for
from lienthong.contracts.types import ShortText

NotifyChannel = Literal["email", "sms", "webhook"]
RecipientKind = Literal["citizen", "unit", "subscriber"]


class NotificationRequested(EventData):
    """A notification is due for a recipient on a channel (recipient by reference, never by address).

    Notify publishes it to `notification.retry` (header `not-before`) when an attempt must be repeated later."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.notification.requested.v1"
    cause_event_id: str = Field(min_length=1, max_length=64, description="Id of the dossier event that caused it")
    recipient_kind: RecipientKind
    recipient_ref: ShortText = Field(description="Unit code, subscription id, or 'applicant'")
    channel: NotifyChannel
    template: ShortText


class NotificationSent(EventData):
    """A notification was delivered (accepted by the channel)."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.notification.sent.v1"
    cause_event_id: str = Field(min_length=1, max_length=64)
    recipient_kind: RecipientKind
    recipient_ref: ShortText
    channel: NotifyChannel
    attempts: int = Field(ge=1, le=100)


class NotificationFailed(EventData):
    """A notification could not be delivered after all attempts."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.notification.failed.v1"
    cause_event_id: str = Field(min_length=1, max_length=64)
    recipient_kind: RecipientKind
    recipient_ref: ShortText
    channel: NotifyChannel
    attempts: int = Field(ge=1, le=100)
    reason: ShortText = Field(description="Why it failed, with no personal data")


class SubscriberDisabled(EventData):
    """An agency webhook subscription was switched off after repeated failed deliveries; an operator must act.

    The subject is the dossier whose notification failed last (topic `operator.alerts`)."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.notification.subscriber-disabled.v1"
    subscription_id: ShortText = Field(description="Id of the disabled subscription")
    consecutive_failures: int = Field(ge=1, le=1000, description="Deliveries that failed in a row")
    reason: ShortText = Field(description="The last failure, with no personal data")


NotificationRequestedEvent = envelope_for(NotificationRequested)
NotificationSentEvent = envelope_for(NotificationSent)
NotificationFailedEvent = envelope_for(NotificationFailed)
SubscriberDisabledEvent = envelope_for(SubscriberDisabled)
