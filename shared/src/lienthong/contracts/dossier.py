"""Payloads of the dossier lifecycle events (topic `dossier.lifecycle`, key = dossier code).

Intake publishes `submitted` (dossierseq 1); routing is the only publisher of every later event of a dossier,
so the per-dossier sequence has one writer.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lienthong.contracts.envelope import EventData, envelope_for
from lienthong.contracts.types import (
    Channel,
    CitizenId,
    Contract,
    Day,
    Email,
    Instant,
    LongText,
    Phone,
    ProcedureCode,
    Sealed,
    Sha256,
    ShortText,
    Subject,
    UnitCode,
)


class Applicant(Contract):
    """Personal data: carried only by `dossier.submitted`; never logged."""

    citizen_id: CitizenId = Field(description="12-digit citizen identity number (CCCD)")
    full_name: ShortText = Field(description="Applicant's full name")
    phone: Phone | None = Field(None, description="Vietnamese mobile number, 0xxxxxxxxx or +84xxxxxxxxx")
    email: Email | None = Field(None, description="E-mail address for notifications")
    address: ShortText = Field(description="Postal address")
    residence_unit: UnitCode = Field(description="Code of the commune-level unit of residence")


class SealedApplicant(Contract):
    """The applicant as events carry them: sealed under the citizen's own data key (crypto-shredding: erasing the
    key makes every copy unreadable, in topics, DLQs and backups alike). Only holders of the personal-data vault
    open it; everything else reads the pseudonym and the unit of residence."""

    subject: Subject = Field(description="Pseudonym of the citizen: a keyed hash of the CCCD, never reversible")
    residence_unit: UnitCode = Field(description="Code of the commune-level unit of residence (routing needs it)")
    sealed: Sealed = Field(description="AES-256-GCM of the Applicant JSON under the citizen's data key, base64")


class DocumentRef(Contract):
    """A document attached to the dossier: metadata and hash only, never the file body."""

    kind: ShortText = Field(description="Document type code from the procedure's required list")
    name: ShortText = Field(description="File name as submitted")
    sha256: Sha256 = Field(description="SHA-256 of the file, hex")


class DossierSubmitted(EventData):
    """A dossier was received through one of the three channels and validated. v2: the applicant is sealed
    (v1 carried them in clear and is no longer produced or read)."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.submitted.v2"
    procedure_code: ProcedureCode = Field(description="Procedure catalogue code")
    channel: Channel = Field(description="online (national portal), direct (counter) or postal")
    receiving_unit: UnitCode = Field(description="Unit whose centre received the dossier")
    external_ref: ShortText = Field(description="Portal dossier number or counter receipt number (idempotency key)")
    received_at: Instant = Field(description="Reception time")
    due_date: Day = Field(description="Statutory due date (working days from the shared calendar)")
    processing_days: int = Field(ge=0, le=365, description="Statutory processing time in working days")
    applicant: SealedApplicant
    land_parcel: ShortText | None = Field(None, description="Land parcel reference (map sheet/parcel), land procedures")
    documents: tuple[DocumentRef, ...] = Field(default=(), max_length=50, description="Attached documents")
    catalogue_version: int = Field(0, ge=0, description="The procedure catalogue version it was filed under (0: the "
                                   "one built into the release); routing resolves its chain with that version")
    documents_digitised: bool = Field(False, description="The dossier's papers are electronic copies from reception "
                                      "(filed online, or scanned at the counter)")
    fee_vnd: int = Field(0, ge=0, le=1_000_000_000, description="Fees and charges due under the catalogue, in đồng")
    fee_exempt: bool = Field(False, description="The fee is waived (an exemption in the catalogue)")


class DossierAssigned(EventData):
    """A step of the dossier was assigned to a unit, which must act on it by `step_due_date`."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.assigned.v1"
    unit_code: UnitCode
    step: int = Field(ge=0, le=50, description="Index of the step in the procedure's chain")
    step_name: ShortText
    step_due_date: Day


class StepStarted(EventData):
    """The unit holding a step started work on it."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.step-started.v1"
    unit_code: UnitCode
    step: int = Field(ge=0, le=50)


class StepCompleted(EventData):
    """The unit holding a step completed it."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.step-completed.v1"
    unit_code: UnitCode
    step: int = Field(ge=0, le=50)
    result_ref: ShortText | None = Field(None, description="Reference of the step's result document")
    result_electronic: bool = Field(False, description="The result was issued as an electronic document (signed "
                                    "digitally), not only on paper")


class SupplementRequested(EventData):
    """The unit asked the citizen for missing papers; the clock pauses."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.supplement-requested.v1"
    unit_code: UnitCode
    step: int = Field(ge=0, le=50)
    missing_documents: tuple[ShortText, ...] = Field(min_length=1, max_length=30)
    note: LongText | None = None


class SupplementProvided(EventData):
    """The citizen provided the missing papers; the clock resumes."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.supplement-provided.v1"
    documents: tuple[DocumentRef, ...] = Field(default=(), max_length=50)


class DossierTransferred(EventData):
    """The dossier moved from the receiving unit to the competent one (non-boundary filing) or between steps."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.transferred.v1"
    from_unit: UnitCode
    to_unit: UnitCode
    reason: ShortText


class DossierPaused(EventData):
    """The working-day clock stopped."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.paused.v1"
    unit_code: UnitCode
    reason: ShortText


class DossierResumed(EventData):
    """The working-day clock restarted; due dates moved by the paused working days."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.resumed.v1"
    unit_code: UnitCode
    paused_working_days: int = Field(ge=0, le=365)
    new_due_date: Day


class DeadlineExtended(EventData):
    """The competent unit extended the deadline, with a reason (recorded; the due date moves)."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.deadline-extended.v1"
    unit_code: UnitCode
    working_days: int = Field(ge=1, le=60, description="Working days added to the dossier's and the step's due date")
    reason: ShortText
    new_due_date: Day | None = Field(None, description="Set by routing; agencies leave it empty")


class DossierResolved(EventData):
    """The dossier was resolved (all steps done); on time or late against its statutory due date."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.resolved.v1"
    unit_code: UnitCode = Field(description="Unit that completed the last step")
    resolved_at: Instant
    due_date: Day
    on_time: bool
    result_ref: ShortText | None = None
    result_electronic: bool = Field(False, description="The result was issued electronically (the last step's)")


class DossierRejected(EventData):
    """The competent unit refused the dossier, with a reason for the citizen."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.rejected.v1"
    unit_code: UnitCode
    reason: LongText


class DossierWithdrawn(EventData):
    """The citizen withdrew the dossier."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.withdrawn.v1"
    reason: LongText | None = None


class ResultReturned(EventData):
    """The result was handed to the citizen."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.result-returned.v1"
    unit_code: UnitCode
    method: Literal["counter", "postal", "online"]
    returned_at: Instant


class FeePaid(EventData):
    """The dossier's fees were paid: online (the national payment platform, confirmed by the unit) or at the counter.
    Once per dossier, only when a fee is due and not waived."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.fee-paid.v1"
    unit_code: UnitCode = Field(description="The unit confirming it: the receiving unit or the one holding the dossier")
    method: Literal["online", "counter"]
    amount_vnd: int = Field(ge=1, le=1_000_000_000)
    paid_at: Instant


class SatisfactionRated(EventData):
    """The citizen's rating of how the dossier was handled, through the portal with their credential, once the
    dossier has an outcome; a later rating within the window replaces it (the index counts the latest)."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.satisfaction-rated.v1"
    rating: Literal["very_satisfied", "satisfied", "unsatisfied"] = Field(
        description="rất hài lòng, hài lòng, không hài lòng")


class DossierDueSoon(EventData):
    """A step (or the dossier) is due within the warning window."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.due-soon.v1"
    unit_code: UnitCode
    step: int | None = Field(None, ge=0, le=50, description="None: the dossier's statutory deadline")
    due_date: Day


class DossierOverdue(EventData):
    """A step (or the dossier) passed its due date; emitted once per step and once per dossier."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.overdue.v1"
    unit_code: UnitCode
    step: int | None = Field(None, ge=0, le=50, description="None: the dossier's statutory deadline")
    due_date: Day


class RoutingFailed(EventData):
    """Routing could not place the dossier (unknown procedure/unit, broken chain data); an operator must act."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.routing-failed.v1"
    reason: LongText


class OutcomeRejected(EventData):
    """A unit's outcome was refused (foreign unit, stale or unknown assignment, closed dossier); for operators."""

    EVENT_TYPE: ClassVar[str] = "vn.gov.dossier.outcome-rejected.v1"
    outcome_id: str = Field(min_length=1, max_length=64, description="Id of the refused outcome event")
    outcome_type: ShortText
    reason: ShortText


DossierSubmittedEvent = envelope_for(DossierSubmitted)
DossierAssignedEvent = envelope_for(DossierAssigned)
StepStartedEvent = envelope_for(StepStarted)
StepCompletedEvent = envelope_for(StepCompleted)
SupplementRequestedEvent = envelope_for(SupplementRequested)
SupplementProvidedEvent = envelope_for(SupplementProvided)
DossierTransferredEvent = envelope_for(DossierTransferred)
DossierPausedEvent = envelope_for(DossierPaused)
DossierResumedEvent = envelope_for(DossierResumed)
DossierResolvedEvent = envelope_for(DossierResolved)
DeadlineExtendedEvent = envelope_for(DeadlineExtended)
DossierRejectedEvent = envelope_for(DossierRejected)
DossierWithdrawnEvent = envelope_for(DossierWithdrawn)
ResultReturnedEvent = envelope_for(ResultReturned)
FeePaidEvent = envelope_for(FeePaid)
SatisfactionRatedEvent = envelope_for(SatisfactionRated)
DossierDueSoonEvent = envelope_for(DossierDueSoon)
DossierOverdueEvent = envelope_for(DossierOverdue)
RoutingFailedEvent = envelope_for(RoutingFailed)
OutcomeRejectedEvent = envelope_for(OutcomeRejected)
