"""Messages from templates: Vietnamese text per template and channel, personal data masked where the channel is
not private (an SMS can be read over a shoulder or on a shared phone: masked name, never the citizen ID)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from pathlib import Path

import orjson
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined, select_autoescape

from lienthong.tracking import TrackingSettings
from lienthong.calendar import add_working_days
from lienthong.catalogue import Catalogue
from lienthong.catalogue.versions import LiveCatalogue
from lienthong.contracts import CloudEvent, to_json
from lienthong.masking import mask_citizen_id, mask_name
from lienthong.contracts.dossier import Applicant
from notify.domain import Delivery, DossierFacts, address

PRIVATE_CHANNELS = frozenset({"email"})


@dataclass(frozen=True)
class Message:
    """What a channel sends. `to` is an address (e-mail, phone) or a subscription id (webhook)."""

    to: str
    body: str
    subject: str | None = None


# Personal data never leaves in a webhook: an agency system entitled to it reads it where it is kept.
PERSONAL_FIELDS = ("applicant",)


def webhook_body(event: CloudEvent) -> str:
    """The CloudEvent without its personal fields; the extension `personaldata: withheld` says some were removed
    (so the body no longer validates as the full event type: agencies read it as this redacted view)."""
    doc = orjson.loads(to_json(event))
    withheld = [name for name in PERSONAL_FIELDS if doc["data"].pop(name, None) is not None]
    if withheld:
        doc["personaldata"] = "withheld"
    return orjson.dumps(doc).decode()


class ComposeError(Exception):
    """The message cannot be built (missing template, missing data): retrying would not help."""


def vn_date(day: date | None) -> str:
    return day.strftime("%d/%m/%Y") if day else ""


class Composer:
    def __init__(
        self,
        catalogue: Catalogue | LiveCatalogue,
        *,
        tracking_url: str,
        unit_email: str,
        apology_working_days: int,
        today: Callable[[], date],
        templates_dir: Path | None = None,
    ) -> None:
        # the newest version the province imported, for procedures' names (units are the same in every version)
        self.catalogue = catalogue if isinstance(catalogue, LiveCatalogue) else LiveCatalogue(base=catalogue)
        self.tracking_url = tracking_url
        self.tracking = TrackingSettings()
        self.unit_email = unit_email
        self.apology_working_days = apology_working_days
        self.today = today
        # HTML e-mail is autoescaped (a reason typed by an official cannot inject markup); SMS text is plain text,
        # where escaping would show "&amp;" to the citizen.
        self.env = Environment(
            loader=ChoiceLoader([*([FileSystemLoader(templates_dir)] if templates_dir else []),
                                 PackageLoader("notify", "templates")]),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,  # a missing variable is a bug, not an empty line in a letter
            keep_trailing_newline=False,
        )

    def compose(self, delivery: Delivery, event: CloudEvent, dossier: DossierFacts | None,
                citizen: Applicant | None = None) -> Message:
        """`citizen`: the opened applicant, for a message to them (None for a unit or a subscriber)."""
        if delivery.channel == "webhook":
            return Message(to=delivery.recipient_ref, body=webhook_body(event))
        try:
            return self._render(delivery, event, dossier, citizen)
        except Exception as exc:  # any template or data problem: a permanent failure of this one message
            raise ComposeError(f"template {delivery.template}.{delivery.channel}: {type(exc).__name__}") from exc

    def _render(self, delivery: Delivery, event: CloudEvent, dossier: DossierFacts | None,
                citizen: Applicant | None) -> Message:
        if delivery.recipient_kind == "unit":
            to = self.unit_email.format(code=delivery.recipient_ref.lower())
            citizen = None  # a unit's message names nobody
        elif citizen is None or not address(citizen, delivery.channel):
            raise ComposeError("no address for the applicant")
        else:
            to = address(citizen, delivery.channel) or ""
        context = self.context(event, dossier, citizen, private=delivery.channel in PRIVATE_CHANNELS)
        if delivery.channel == "email":
            template = self.env.get_template(f"{delivery.template}.email.html")
            subject = "".join(template.blocks["subject"](template.new_context(context))).strip()
            return Message(to=to, subject=subject, body=template.render(context))
        body = self.env.get_template(f"{delivery.template}.sms.txt").render(context)
        return Message(to=to, body=" ".join(body.split()))

    def context(self, event: CloudEvent, dossier: DossierFacts | None, citizen: Applicant | None = None, *,
                private: bool) -> dict[str, Any]:
        data = event.data
        units = self.catalogue.base.units
        unit_code = getattr(data, "unit_code", None) or (dossier.receiving_unit if dossier else None)
        procedure = self.catalogue.procedure(dossier.procedure_code) if dossier else None
        due = getattr(data, "due_date", None) or (dossier.due_date if dossier else None)
        return {
            "code": event.subject,
            "procedure": procedure.name if procedure else "",
            "tracking_url": self.tracking_url.format(code=event.subject, secret=self.tracking.secret(event.subject)),
            "name": (citizen.full_name if private else mask_name(citizen.full_name)) if citizen else "",
            "citizen_id_masked": mask_citizen_id(citizen.citizen_id) if citizen and private else "",
            "receiving_unit": units[dossier.receiving_unit].name if dossier else "",
            "unit": units[unit_code].name if unit_code in units else unit_code or "",
            "due_date": vn_date(due),
            "step_name": getattr(data, "step_name", ""),
            "step_due_date": vn_date(getattr(data, "step_due_date", None)),
            "missing_documents": getattr(data, "missing_documents", ()),
            "note": getattr(data, "note", None) or "",
            "reason": getattr(data, "reason", None) or "",
            "resolved_on": vn_date(data.resolved_at.date()) if hasattr(data, "resolved_at") else "",
            "on_time": getattr(data, "on_time", True),
            "new_expected_date": vn_date(self.new_expected_date(dossier)),
        }

    def new_expected_date(self, dossier: DossierFacts | None) -> date:
        """For an apology letter: the latest date already promised by a unit if still ahead, otherwise a few
        working days from today."""
        today = self.today()
        promised = [d for d in (dossier.step_due_date, dossier.due_date) if d and d > today] if dossier else []
        return max(promised) if promised else add_working_days(today, self.apology_working_days)
