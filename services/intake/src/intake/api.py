"""HTTP edge of intake: translate requests to `Intake.submit` and its outcomes to status codes."""

from __future__ import annotations

from datetime import date, datetime

from lienthong.auth import SUBMIT, Caller, require
from lienthong.tracking import TrackingSettings
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field
from pymongo.errors import PyMongoError

from intake.domain import Rejected
from intake.limits import PerUnitRateLimit
from intake.store import StoredDossier
from intake.submit import Conflict, Intake, KafkaUnavailable
from lienthong.catalogue import Procedure, Unit
from lienthong.contracts.intake import DossierSubmission
from lienthong.personaldata import SUBMISSION_ALG

SUBMISSIONS = Counter(
    "lienthong_intake_submissions", "Dossier submissions by edge, channel and outcome", ["edge", "channel", "outcome"]
)


class SubmissionReceipt(BaseModel):
    dossier_code: str = Field(description="<receiving unit>-<yyMMdd>-<NNNN>")
    received_at: datetime
    due_date: date = Field(description="Statutory due date in working days")
    procedure_code: str
    receiving_unit: str
    channel: str
    tracking_secret: str = Field(description="Printed on the receipt: public tracking needs the code and this")
    applicant_subject: str = Field(description="The applicant's pseudonym: the portal names the citizen by it in "
                                   "the assertions it signs for the citizen's later actions (withdraw, supplement, "
                                   "opt-out)")


class FieldError(BaseModel):
    field: str
    type: str
    message: str


class ErrorBody(BaseModel):
    detail: list[FieldError]


def receipt(stored: StoredDossier, tracking: TrackingSettings) -> dict:
    data = stored.event.data
    return SubmissionReceipt(
        dossier_code=stored.code,
        received_at=data.received_at,
        due_date=data.due_date,
        procedure_code=data.procedure_code,
        receiving_unit=data.receiving_unit,
        channel=data.channel,
        tracking_secret=tracking.secret(stored.code),
        applicant_subject=data.applicant.subject,
    ).model_dump(mode="json")


def build_router(intake: Intake, limiter: PerUnitRateLimit, tracking: TrackingSettings | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1")
    tracking = tracking or TrackingSettings()

    @router.post(
        "/dossiers",
        status_code=201,
        response_model=SubmissionReceipt,
        responses={
            200: {"model": SubmissionReceipt, "description": "Same external_ref submitted again: the same dossier"},
            413: {"model": ErrorBody, "description": "Body over the size limit"},
            401: {"model": ErrorBody, "description": "No valid bearer token"},
            403: {"model": ErrorBody, "description": "The token does not allow filing for this receiving unit"},
            409: {"model": ErrorBody, "description": "This client used the external_ref for a different submission"},
            422: {"model": ErrorBody, "description": "Field-by-field list of what is wrong (values never echoed)"},
            429: {"model": ErrorBody, "description": "Too many submissions for this receiving unit; see Retry-After"},
            503: {"model": ErrorBody, "description": "Kafka unavailable: resubmit with the same external_ref"},
        },
        summary="Submit a dossier (idempotent on receiving_unit + external_ref)",
    )
    async def submit(submission: DossierSubmission, caller: Caller = require(SUBMIT)) -> JSONResponse:
        channel = submission.channel
        if not caller.may_act_for(submission.receiving_unit):
            return _errors(403, [{"field": "receiving_unit", "type": "forbidden",
                                  "message": "this client does not file for that unit"}])
        if submission.receiving_unit in intake.catalogue.units:
            wait = limiter.retry_after(submission.receiving_unit)
            if wait:
                SUBMISSIONS.labels("http", channel, "rate_limited").inc()
                return _errors(429, [{"field": "receiving_unit", "type": "rate_limited",
                                      "message": f"retry after {wait}s"}], headers={"Retry-After": str(wait)})
        try:
            stored, created = await intake.submit(submission, caller.client)
        except Conflict:
            SUBMISSIONS.labels("http", channel, "conflict").inc()
            return _errors(409, [{"field": "external_ref", "type": "conflict",
                                  "message": "this reference was already used for a different submission"}])
        except Rejected as exc:
            SUBMISSIONS.labels("http", channel, "invalid").inc()
            return _errors(422, [e.as_dict() for e in exc.errors])
        except PyMongoError as exc:
            SUBMISSIONS.labels("http", channel, "unavailable").inc()
            return _unavailable("store_unavailable", f"the dossier store did not answer ({type(exc).__name__}); "
                                "resubmit with the same external_ref", retry_after_s=2)
        except KafkaUnavailable as exc:
            SUBMISSIONS.labels("http", channel, "unavailable").inc()
            return _unavailable("kafka_unavailable", f"dossier {exc.code} is stored and will be published; "
                                "resubmit with the same external_ref to get its receipt", retry_after_s=5)
        SUBMISSIONS.labels("http", channel, "created" if created else "duplicate").inc()
        return JSONResponse(receipt(stored, tracking), status_code=201 if created else 200)

    @router.get("/submission-key", summary="Intake's public key: seal applicants to it before filing over Kafka",
                dependencies=[require(SUBMIT)])
    async def submission_key() -> dict[str, str]:
        return {"alg": SUBMISSION_ALG, "public_key": intake.submission_key.public}

    @router.get("/procedures", response_model=list[Procedure], summary="The procedure catalogue",
                dependencies=[require(SUBMIT)])
    async def procedures() -> list[Procedure]:
        return list(intake.catalogue.procedures.values())

    @router.get("/units", response_model=list[Unit], summary="The province's units", dependencies=[require(SUBMIT)])
    async def units() -> list[Unit]:
        return list(intake.catalogue.units.values())

    return router


def _errors(status: int, errors: list[dict], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=status, headers=headers)


def _unavailable(kind: str, message: str, retry_after_s: int) -> JSONResponse:
    return _errors(503, [{"field": "(service)", "type": kind, "message": message}],
                   headers={"Retry-After": str(retry_after_s)})
