"""Who is told what: pure functions from a dossier event (and what notify knows of the dossier) to deliveries.

No broker, store or network here; the notifier feeds these functions and carries out their answer.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from importlib.resources import files
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import Applicant, SealedApplicant
from lienthong.contracts.notification import NotifyChannel, RecipientKind

APPLICANT = "applicant"  # recipient_ref of the citizen: their address is sealed in the event, never in clear


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(pattern=r"^vn\.gov\.dossier\.[a-z-]+\.v\d+$")
    recipient: Literal["citizen", "unit"]
    channels: tuple[Literal["email", "sms"], ...] = Field(min_length=1)
    template: str = Field(pattern=r"^[a-z-]+$")
    deadline: Literal["dossier", "step"] | None = None

    def matches(self, event: CloudEvent) -> bool:
        if event.type != self.event:
            return False
        if self.deadline is None:
            return True
        step = getattr(event.data, "step", None)
        return (step is None) == (self.deadline == "dossier")


class Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: tuple[Rule, ...]


def load_rules(text: str | None = None) -> tuple[Rule, ...]:
    text = text if text is not None else files("notify").joinpath("data/rules.toml").read_text(encoding="utf-8")
    return Rules.model_validate(tomllib.loads(text)).rule


@dataclass(frozen=True)
class Subscription:
    """An agency system's webhook: every dossier event matching the filter (an empty list matches anything)."""

    id: str
    url: str
    event_types: tuple[str, ...] = ()
    unit_codes: tuple[str, ...] = ()
    procedure_codes: tuple[str, ...] = ()

    def matches(self, event: CloudEvent, dossier: DossierFacts | None) -> bool:
        units = {u for u in (getattr(event.data, "unit_code", None), dossier and dossier.receiving_unit) if u}
        procedure = dossier.procedure_code if dossier else getattr(event.data, "procedure_code", None)
        return (
            (not self.event_types or event.type in self.event_types)
            and (not self.unit_codes or bool(units & set(self.unit_codes)))
            and (not self.procedure_codes or procedure in self.procedure_codes)
        )


@dataclass(frozen=True)
class DossierFacts:
    """What notify keeps of a dossier from its `submitted` event (and later due dates). The applicant stays sealed:
    the notifier opens it, through the vault, only for a message to the citizen."""

    code: str
    procedure_code: str
    receiving_unit: str
    due_date: date
    applicant: SealedApplicant
    step_due_date: date | None = None


def address(citizen: Applicant, channel: str) -> str | None:
    return {"email": citizen.email, "sms": citizen.phone}.get(channel)


@dataclass(frozen=True)
class Delivery:
    """One message to one recipient on one channel because of one event: the unit of exactly-once."""

    cause_event_id: str
    dossier_code: str
    dossierseq: int
    recipient_kind: RecipientKind
    recipient_ref: str
    channel: NotifyChannel
    template: str

    @property
    def key(self) -> str:
        return f"{self.cause_event_id}/{self.recipient_kind}:{self.recipient_ref}/{self.channel}"


def plan(
    event: CloudEvent,
    rules: tuple[Rule, ...],
    dossier: DossierFacts | None,
    subscriptions: list[Subscription],
    opted_out: frozenset[str] = frozenset(),
    citizen: Applicant | None = None,
) -> list[Delivery]:
    """Every delivery `event` calls for. The citizen (opened from the dossier's facts; None: unknown or erased) is
    reached only on channels they gave and did not opt out of."""

    def delivery(kind: RecipientKind, ref: str, channel: NotifyChannel, template: str) -> Delivery:
        return Delivery(event.id, event.subject, event.dossierseq, kind, ref, channel, template)

    out: list[Delivery] = []
    for rule in rules:
        if not rule.matches(event):
            continue
        if rule.recipient == "unit":
            out += [delivery("unit", event.data.unit_code, ch, rule.template) for ch in rule.channels]
        elif citizen is not None:
            out += [
                delivery("citizen", APPLICANT, ch, rule.template)
                for ch in rule.channels
                if address(citizen, ch) and ch not in opted_out
            ]
    out += [delivery("subscriber", s.id, "webhook", "cloudevent") for s in subscriptions if s.matches(event, dossier)]
    return out
