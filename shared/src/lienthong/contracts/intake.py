"""The submission body: what a portal, a counter application or an agency system sends to intake
(`POST /v1/dossiers`, or a record on the `intake.submissions` topic). Not an event: intake turns it into one."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from lienthong.contracts.dossier import Applicant, DocumentRef
from lienthong.contracts.types import Channel, Contract, ProcedureCode, Sealed, UnitCode

ExternalRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/\-]{0,63}$")]
LandParcel = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]{1,15}-\d{1,4}-\d{1,5}$")]


Base64Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]


class SealedForIntake(Contract):
    """The applicant sealed to intake's public key (`GET /v1/submission-key`), bound to the submission's
    `external_ref`: what agency systems file over Kafka, so the broker never keeps a citizen's data in clear."""

    alg: str = Field(pattern=r"^X25519-HKDF-SHA256-A256GCM$", description="X25519-HKDF-SHA256-A256GCM")
    epk: Base64Key = Field(description="The sender's ephemeral X25519 public key, base64")
    sealed: Sealed = Field(description="12-byte nonce + AES-256-GCM of the Applicant JSON, base64")


class DossierSubmission(Contract):
    """A dossier as filed through one of the three channels."""

    procedure_code: ProcedureCode = Field(description="Procedure catalogue code (GET /v1/procedures)")
    channel: Channel = Field(description="online (national portal), direct (counter) or postal")
    receiving_unit: UnitCode = Field(description="Unit whose centre receives the dossier (GET /v1/units)")
    external_ref: ExternalRef = Field(
        description="The portal's dossier number or the counter receipt number; resubmitting it is idempotent"
    )
    applicant: Applicant | None = Field(None, description="In clear: over HTTPS only")
    applicant_sealed: SealedForIntake | None = Field(
        None, description="Sealed to intake's key: required on the intake.submissions topic")
    land_parcel: LandParcel | None = Field(
        None, description="Land parcel `<COMMUNE>-<map sheet>-<parcel>`; required by land procedures"
    )
    documents: tuple[DocumentRef, ...] = Field(default=(), max_length=50, description="Attached documents (metadata)")
    documents_digitised: bool = Field(False, description="The counter scanned the papers into electronic copies at "
                                      "reception (online filings are electronic whatever this says)")

    @model_validator(mode="after")
    def _one_applicant(self) -> DossierSubmission:
        if (self.applicant is None) == (self.applicant_sealed is None):
            raise ValueError("give exactly one of applicant, applicant_sealed")
        return self
