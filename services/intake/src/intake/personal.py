"""The authorized ways to personal data: read an applicant (logged), erase a citizen, read the access log.

Events and webhooks never carry the applicant in clear; an agency system entitled to it (scope
`personaldata:read` for the dossier's receiving unit) reads it here, saying why. Unknown code, a unit the caller
does not act for, and an erased applicant all answer 404 alike: nothing tells what exists.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from intake.store import DossierStore
from lienthong.auth import AUDIT_READ, ERASE, PERSONAL_READ, Caller, require
from lienthong.contracts.dossier import Applicant
from lienthong.contracts.types import CitizenId, Contract, ShortText
from lienthong.personaldata import Access, Vault


class Erasure(Contract):
    citizen_id: CitizenId = Field(description="12-digit citizen identity number (CCCD) of the person to forget")


class AccessRecord(BaseModel):
    at: datetime
    reader: str = Field(description="Client that read the data")
    dossier: str
    subject: str = Field(description="Pseudonym of the citizen")
    purpose: str


NOT_FOUND = JSONResponse({"detail": [{"field": "code", "type": "not_found", "message": "no such dossier"}]},
                         status_code=404)


def build_router(repo: DossierStore, vault: Vault) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["personal data"])

    @router.get("/dossiers/{code}/applicant", response_model=Applicant,
                summary="The applicant of a dossier, for a client acting for its receiving unit (every read logged)")
    async def applicant(code: str, purpose: ShortText = Query(min_length=3, description="Why: goes to the log"),
                        caller: Caller = require(PERSONAL_READ)) -> JSONResponse:
        stored = await repo.find_by_code(code)
        if stored is None or not caller.may_act_for(stored.event.data.receiving_unit):
            return NOT_FOUND
        person = await vault.open(stored.event.data.applicant, Access(caller.client, code, purpose))
        if person is None:
            return NOT_FOUND
        return JSONResponse(person.model_dump(mode="json"), headers={"Cache-Control": "no-store"})

    @router.post("/citizens/erasure", summary="Erase a citizen: every copy of their data becomes unreadable")
    async def erase(request: Erasure, caller: Caller = require(ERASE)) -> dict[str, str]:
        had_key = await vault.erase(request.citizen_id, by=caller.client)
        return {"status": "erased" if had_key else "nothing to erase (unknown or already erased)"}

    @router.get("/personal-data/access", response_model=list[AccessRecord],
                summary="The access log, newest first, by dossier or reader")
    async def accesses(dossier: str | None = None, reader: str | None = None,
                       limit: int = Query(200, ge=1, le=1000), _: Caller = require(AUDIT_READ)) -> list[dict]:
        return await vault.accesses(dossier=dossier, reader=reader, limit=limit)

    return router
