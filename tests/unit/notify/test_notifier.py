"""Notify's service layer (`notify.notifier.Notifier`) with an in-memory ledger, vault and channels: a redelivered
event sends nothing twice, a transient failure becomes a retry (sent once when it comes), a permanent one a failure
with a dead letter, a delivery held by a live lease is looked at again after it, an erased citizen gets nothing.
Milliseconds, no servers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from lienthong.calendar import VN_TZ, today_vn
from lienthong.catalogue import catalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import Applicant, DossierResolved, DossierSubmitted, SealedApplicant
from lienthong.contracts.notification import NotificationRequested
from lienthong.contracts.envelope import new_event
from lienthong.personaldata import Access
from notify.channels import DeliveryError
from notify.compose import Composer, Message
from notify.domain import DossierFacts, load_rules
from notify.notifier import Notifier
from notify.settings import NotifySettings
from tests.personal import stand_in

NOW = datetime(2025, 12, 1, 9, 0, tzinfo=VN_TZ)
CODE = "HACTHANH-251201-0001"
CITIZEN = Applicant(citizen_id="038099001122", full_name="Ngô Thị Trang", phone="0912345678",
                    email="trang@example.vn", address="Số 1", residence_unit="HACTHANH")


class MemoryStore:
    """NotifyStore's contract for the notifier: dossier facts, the delivery ledger with leases, opt-outs."""

    def __init__(self) -> None:
        self.facts: dict[str, DossierFacts] = {}
        self.ledger: dict[str, dict[str, Any]] = {}

    async def remember(self, event: CloudEvent, *, read: bool = True) -> DossierFacts | None:
        if isinstance(event.data, DossierSubmitted):
            self.facts.setdefault(event.subject, DossierFacts(
                code=event.subject, procedure_code=event.data.procedure_code,
                receiving_unit=event.data.receiving_unit, due_date=event.data.due_date,
                applicant=event.data.applicant, step_due_date=None))
        return self.facts.get(event.subject) if read else None

    async def opted_out(self, subject: str) -> frozenset[str]:
        return frozenset()

    async def claim(self, key: str, fresh: dict[str, Any] | None, now: datetime, lease_until: datetime
                    ) -> dict[str, Any] | None:
        doc = self.ledger.get(key)
        if doc is None:
            if fresh is None:
                return None
            doc = self.ledger[key] = {**fresh, "attempts": 0, "status": "sending", "lease_until": now}
        elif doc["status"] not in ("sending", "retrying") or doc["lease_until"] > now:
            return None
        doc.update(status="sending", lease_until=lease_until, attempts=doc["attempts"] + 1)
        return dict(doc)

    async def delivery(self, key: str) -> dict[str, Any] | None:
        return self.ledger.get(key)

    async def finish(self, key: str, attempts: int, status: str, now: datetime, reason: str | None = None) -> None:
        if self.ledger[key]["attempts"] == attempts:
            self.ledger[key].update(status=status, reason=reason)
            self.ledger[key].pop("message", None)  # personal data, dropped once it cannot be sent again

    async def retry_later(self, key: str, attempts: int, not_before: datetime, now: datetime, reason: str) -> None:
        if self.ledger[key]["attempts"] == attempts:
            self.ledger[key].update(status="retrying", lease_until=not_before, reason=reason)


class MemoryVault:
    def __init__(self) -> None:
        self.erased: set[str] = set()
        self.opened: list[Access] = []

    async def open(self, sealed: SealedApplicant, access: Access) -> Applicant | None:
        self.opened.append(access)
        return None if sealed.subject in self.erased else CITIZEN

    async def seal_for(self, subject: str, plain: bytes) -> str | None:
        return None if subject in self.erased else plain.decode()

    async def open_for(self, subject: str, sealed: str) -> bytes | None:
        return None if subject in self.erased else sealed.encode()


class NoSubscriptions:
    async def active(self) -> list:
        return []


class Outbox:
    """A channel: records what it delivered; `fail` makes its next sends fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[Message, str]] = []
        self.fail: list[DeliveryError] = []

    async def send(self, message: Message, delivery_id: str) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append((message, delivery_id))


class Notify:
    def __init__(self) -> None:
        self.store, self.vault = MemoryStore(), MemoryVault()
        self.email, self.sms = Outbox(), Outbox()
        self.now = NOW
        self.outcomes: list[CloudEvent] = []
        self.retries: list[tuple[CloudEvent, dict[str, str]]] = []
        self.dead: list[tuple[CloudEvent, str]] = []
        settings = NotifySettings()
        composer = Composer(catalogue(), tracking_url=settings.tracking_url, unit_email=settings.unit_email,
                            apology_working_days=settings.apology_working_days,
                            today=lambda: today_vn(self.now), templates_dir=settings.templates_dir)

        async def outcome(event: CloudEvent, headers: dict[str, str] | None) -> None:
            self.outcomes.append(event)

        async def retry(event: CloudEvent, headers: dict[str, str] | None) -> None:
            self.retries.append((event, headers or {}))

        async def dead_letter(event: CloudEvent, reason: str) -> None:
            self.dead.append((event, reason))

        self.notifier = Notifier(self.store, self.vault, NoSubscriptions(), composer,  # type: ignore[arg-type]
                                 {"email": self.email, "sms": self.sms}, load_rules(), settings,
                                 publish_outcome=outcome, publish_retry=retry, publish_dead_letter=dead_letter,
                                 publish_alert=outcome, clock=lambda: self.now.astimezone(UTC))

    def outcome_types(self) -> list[str]:
        return [e.type.split(".")[3] for e in self.outcomes]


def submitted() -> CloudEvent:
    """The same event each time (a redelivery is the same record)."""
    return new_event(DossierSubmitted(procedure_code="HT-KS", channel="online", receiving_unit="HACTHANH",
                                      external_ref="R-1", received_at=NOW, due_date=date(2025, 12, 3),
                                      processing_days=2, applicant=stand_in(CITIZEN)),
                     subject=CODE, source="/t", seq=1, time=NOW, event_id="e-submitted-1")


async def test_a_redelivered_event_sends_nothing_twice():
    notify = Notify()
    await notify.notifier.on_event(submitted())
    await notify.notifier.on_event(submitted())  # redelivery, or a replay from offset 0
    assert len(notify.email.sent) == 1 and len(notify.sms.sent) == 1
    assert notify.outcome_types() == ["sent", "sent"]
    assert "038099001122" not in str([e.model_dump() for e in notify.outcomes])  # outcomes carry no personal data
    assert all(doc["status"] == "sent" and "message" not in doc for doc in notify.store.ledger.values())
    assert [a.dossier for a in notify.vault.opened] == [CODE, CODE]  # every opening is in the access log


async def test_a_transient_failure_becomes_a_retry_that_is_sent_once_when_it_comes():
    notify = Notify()
    notify.sms.fail.append(DeliveryError("sms gateway 503", transient=True, retry_after=30))
    await notify.notifier.on_event(submitted())
    [(request, headers)] = notify.retries
    assert datetime.fromisoformat(headers["not-before"]) >= NOW + timedelta(seconds=30)  # Retry-After respected
    assert notify.sms.sent == [] and len(notify.email.sent) == 1  # one slow channel holds up no other
    notify.now = NOW + timedelta(minutes=1)
    await notify.notifier.on_retry(request)
    await notify.notifier.on_retry(request)  # the retry redelivered
    assert len(notify.sms.sent) == 1 and notify.outcome_types().count("sent") == 2


async def test_a_permanent_failure_is_reported_and_dead_lettered_once():
    notify = Notify()
    notify.email.fail.append(DeliveryError("smtp 550 mailbox unknown", transient=False))
    await notify.notifier.on_event(submitted())
    await notify.notifier.on_event(submitted())
    assert notify.outcome_types().count("failed") == 1 and len(notify.dead) == 1
    assert notify.dead[0][1] == "smtp 550 mailbox unknown" and notify.retries == []


async def test_a_delivery_held_by_a_live_lease_is_looked_at_after_it_instead_of_sent():
    notify = Notify()
    event = submitted()
    for key in [k for k in await planned_keys(event)]:  # another process claimed them a moment ago, is sending
        notify.store.ledger[key] = {"status": "sending", "attempts": 1, "lease_until": NOW + timedelta(minutes=5)}
    await notify.notifier.on_event(event)
    assert notify.email.sent == [] and notify.sms.sent == []
    assert notify.retries and all(datetime.fromisoformat(h["not-before"]) == NOW + timedelta(minutes=5)
                                  for _, h in notify.retries)


async def planned_keys(event: CloudEvent) -> list[str]:
    """The ledger keys a first notifier writes for `event` (what another process would have claimed)."""
    other = Notify()
    await other.notifier.on_event(event)
    assert other.store.ledger
    return list(other.store.ledger)


async def test_an_erased_citizen_is_told_nothing():
    notify = Notify()
    notify.vault.erased.add(stand_in(CITIZEN).subject)
    await notify.notifier.on_event(submitted())
    resolved = new_event(DossierResolved(unit_code="HACTHANH", resolved_at=NOW, due_date=date(2025, 12, 3),
                                         on_time=True), subject=CODE, source="/t", seq=4, time=NOW)
    await notify.notifier.on_event(resolved)
    assert notify.email.sent == [] and notify.sms.sent == []


async def test_a_retry_due_after_the_hold_goes_back_to_the_topic_and_one_due_within_it_is_attempted():
    notify = Notify()
    event = submitted()
    request = new_event(NotificationRequested(cause_event_id=event.id, recipient_kind="citizen", recipient_ref="x",
                                              channel="sms", template="received"), subject=CODE, source="/t", seq=1)
    later = notify.now.astimezone(UTC) + timedelta(hours=1)
    assert await notify.notifier.hold_until_due(request, later, hold_max_s=0.01) is False
    [(requeued, headers)] = notify.retries
    assert requeued == request and datetime.fromisoformat(headers["not-before"]) == later
    assert await notify.notifier.hold_until_due(request, notify.now + timedelta(seconds=0.01), hold_max_s=1) is True
    assert len(notify.retries) == 1
