"""The portal side, typed: file a dossier with intake over HTTP, keep its receipt, follow its public tracking, and
act for the citizen (withdraw, provide papers) on `unit.outcomes.portal` with the portal's signed assertion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from lienthong.auth import CITIZEN_ASSERTION_HEADER, LocalIssuer
from lienthong.contracts import CloudEvent, to_json
from lienthong.contracts.dossier import DocumentRef, DossierWithdrawn, SupplementProvided
from lienthong.contracts.envelope import EventData, new_event
from lienthong.contracts.intake import DossierSubmission
from lienthong.messaging import CLOUDEVENTS_JSON
from lienthong.settings import KafkaSettings
from lienthong.topics import outcomes_topic

PORTAL = "portal"


@dataclass(frozen=True)
class Receipt:
    dossier_code: str
    received_at: datetime
    due_date: date
    procedure_code: str
    receiving_unit: str
    channel: str
    tracking_secret: str
    applicant_subject: str


class FilingRefused(Exception):
    """Intake answered 4xx/5xx: `status` and `detail` (field-level, never a value) say why."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"intake refused the filing: {status} {detail}")
        self.status, self.detail = status, detail


class PortalClient:
    """`async with PortalClient(intake_url, token, portal_key, kafka) as portal:` — `token` carries
    `dossiers:submit`; `portal_key` signs citizens' assertions; `kafka` is the portal's own credentials."""

    def __init__(self, intake_url: str, token: str, portal_key: LocalIssuer, kafka: KafkaSettings,
                 *, stats_url: str | None = None) -> None:
        self.intake_url, self.stats_url = intake_url, stats_url
        self.portal_key, self.kafka = portal_key, kafka
        self._http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> PortalClient:
        self._producer = AIOKafkaProducer(**self.kafka.client_options(), acks="all", enable_idempotence=True)
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self._http.aclose()

    async def file(self, submission: DossierSubmission | dict[str, Any]) -> Receipt:
        body = submission if isinstance(submission, dict) else submission.model_dump(mode="json", exclude_none=True)
        resp = await self._http.post(f"{self.intake_url}/v1/dossiers", json=body)
        if resp.status_code not in (200, 201):
            raise FilingRefused(resp.status_code, resp.json().get("detail") if resp.content else None)
        return Receipt(**{k: v for k, v in resp.json().items() if k in Receipt.__dataclass_fields__})

    async def track(self, receipt: Receipt) -> dict[str, Any] | None:
        """The public tracking page's data (needs the stats service), None while stats has not seen it."""
        if self.stats_url is None:
            raise RuntimeError("tracking needs the stats service: start it with the kit's services")
        resp = await self._http.get(f"{self.stats_url}/v1/dossiers/{receipt.dossier_code}",
                                    params={"secret": receipt.tracking_secret})
        return resp.json() if resp.status_code == 200 else None

    async def withdraw(self, receipt: Receipt, reason: str | None = None) -> CloudEvent:
        return await self._act(receipt, DossierWithdrawn(reason=reason))

    async def provide_supplement(self, receipt: Receipt, documents: list[DocumentRef]) -> CloudEvent:
        return await self._act(receipt, SupplementProvided(documents=tuple(documents)))

    async def _act(self, receipt: Receipt, data: EventData) -> CloudEvent:
        """A citizen's action: the assertion names the receipt's applicant and is bound to this one event."""
        event = new_event(data, subject=receipt.dossier_code, source="/portal", seq=1)
        assertion = self.portal_key.citizen_assertion(receipt.applicant_subject, event.type,
                                                      dossier=event.subject, event_id=event.id)
        assert self._producer is not None, "use `async with PortalClient(...)`"
        await self._producer.send_and_wait(outcomes_topic(PORTAL).name, to_json(event), key=event.subject.encode(),
                                           headers=[("content-type", CLOUDEVENTS_JSON.encode()),
                                                    (CITIZEN_ASSERTION_HEADER, assertion.encode())])
        return event
