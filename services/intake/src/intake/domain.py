"""Intake's rules, pure: a submission is checked against the catalogues (`check`) and, if acceptable, becomes the
`dossier.submitted` event (`submitted_event`). No I/O here: `submit.Intake` calls both for either edge, the
repository assigns the code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lienthong.calendar import VN_TZ, due_date
from lienthong.catalogue import Catalogue
from lienthong.contracts.dossier import DossierSubmitted, SealedApplicant
from lienthong.contracts.envelope import CloudEvent, deterministic_id, new_event
from lienthong.contracts.intake import DossierSubmission


@dataclass(frozen=True)
class RuleError:
    field: str
    type: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "type": self.type, "message": self.message}


class Rejected(Exception):
    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.type}" for e in errors))
        self.errors = errors


def check(submission: DossierSubmission, cat: Catalogue) -> list[RuleError]:
    """Every rule the catalogues impose; an empty list means acceptable."""
    errors: list[RuleError] = []
    proc = cat.procedures.get(submission.procedure_code)
    unit = cat.units.get(submission.receiving_unit)
    if proc is None:
        errors.append(RuleError("procedure_code", "unknown_procedure", "no such procedure in the catalogue"))
    elif submission.channel not in proc.channels:
        errors.append(
            RuleError("channel", "channel_not_offered", f"this procedure accepts: {', '.join(proc.channels)}")
        )
    if unit is None:
        errors.append(RuleError("receiving_unit", "unknown_unit", "no such unit in the province"))
    elif not unit.receives:
        errors.append(RuleError("receiving_unit", "unit_does_not_receive", "this unit has no reception centre"))
    elif proc is not None and proc.level == "commune" and unit.level != "commune":
        errors.append(
            RuleError("receiving_unit", "wrong_level", "commune-level procedures are received at a commune centre")
        )
    residence = cat.units.get(submission.applicant.residence_unit)
    if residence is None or residence.level != "commune":
        errors.append(
            RuleError("applicant.residence_unit", "unknown_unit", "residence must be a commune-level unit of the province")
        )
    if proc is not None:
        provided = {doc.kind for doc in submission.documents}
        missing = [kind for kind in proc.required_documents if kind not in provided]
        if missing:
            errors.append(RuleError("documents", "missing_document", f"required: {', '.join(missing)}"))
        if proc.needs_land_parcel:
            if submission.land_parcel is None:
                errors.append(RuleError("land_parcel", "missing", "this procedure needs the land parcel reference"))
            elif cat.units.get(submission.land_parcel.split("-", 1)[0]) is None:
                errors.append(RuleError("land_parcel", "unknown_unit", "the parcel's commune is not in the province"))
    return errors


def dossier_day(received_at: datetime) -> str:
    """The yyMMdd part of the dossier code: the local (Vietnam) reception date."""
    return received_at.astimezone(VN_TZ).strftime("%y%m%d")


def dossier_code(unit: str, day: str, seq: int) -> str:
    return f"{unit}-{day}-{seq:04d}"


def submitted_event(
    submission: DossierSubmission, cat: Catalogue, *, code: str, received_at: datetime, applicant: SealedApplicant,
    catalogue_version: int = 0,
) -> CloudEvent:
    """The `dossier.submitted` event, with the applicant as sealed by the vault; its id is derived from the code so
    a re-publish is the same event."""
    proc = cat.procedures[submission.procedure_code]
    data = DossierSubmitted(
        procedure_code=submission.procedure_code,
        channel=submission.channel,
        receiving_unit=submission.receiving_unit,
        external_ref=submission.external_ref,
        received_at=received_at,
        due_date=due_date(received_at, proc.processing_days),
        processing_days=proc.processing_days,
        applicant=applicant,
        land_parcel=submission.land_parcel,
        documents=submission.documents,
        catalogue_version=catalogue_version,
        documents_digitised=submission.channel == "online" or submission.documents_digitised,
        fee_vnd=proc.fee_vnd,
        fee_exempt=proc.fee_exemption is not None,
    )
    return new_event(
        data,
        subject=code,
        source=f"/units/{submission.receiving_unit}/intake",
        seq=1,
        time=received_at,
        event_id=deterministic_id("dossier.submitted", code),
    )
