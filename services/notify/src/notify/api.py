"""HTTP API of notify: agency webhook subscriptions and citizens' channel opt-outs.

Every endpoint needs a bearer token with its scope. An opt-out comes from the portal (scope `citizens:opt-out`) with
its signed assertion naming the citizen (header `Citizen-Assertion`): who opts out is never taken from the body.
"""

from __future__ import annotations

import secrets
from typing import Literal

import jwt
from fastapi import APIRouter, Header, HTTPException, Response

from lienthong.auth import CITIZEN_ASSERTION_HEADER, OPT_OUT, SUBSCRIBE, Caller, Verifier, require
from pydantic import AnyHttpUrl, Field, ValidationInfo, field_validator

from lienthong.catalogue import catalogue
from lienthong.catalogue.versions import LiveCatalogue
from lienthong.contracts import EVENT_TYPES
from lienthong.contracts.types import Contract
from notify.store import NotifyStore
from notify.subscriptions import Subscriptions

DOSSIER_EVENT_TYPES = sorted(t for t in EVENT_TYPES if t.startswith("vn.gov.dossier."))


class SubscriptionRequest(Contract):
    url: AnyHttpUrl = Field(description="Where the CloudEvents are POSTed (https)")
    event_types: tuple[str, ...] = Field((), max_length=50, description="Dossier event types; empty = all")
    unit_codes: tuple[str, ...] = Field((), max_length=500, description="Units (event's or receiving); empty = all")
    procedure_codes: tuple[str, ...] = Field((), max_length=200, description="Procedures (of the catalogue in use); "
                                             "empty = all")
    secret: str | None = Field(None, min_length=32, max_length=128,
                               description="HMAC key for X-Signature; generated when omitted")

    @field_validator("event_types", "unit_codes")
    @classmethod
    def _known(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        known = {"event_types": DOSSIER_EVENT_TYPES, "unit_codes": catalogue().units}[info.field_name]
        if unknown := [v for v in value if v not in known]:
            raise ValueError(f"unknown {info.field_name.replace('_', ' ')}: {', '.join(unknown)}")
        return value


class OptOutRequest(Contract):
    channel: Literal["email", "sms"]
    opted_out: bool = Field(description="true: stop messages on this channel; false: receive them again")


def public(doc: dict) -> dict:
    """A subscription as shown to callers: never the secret."""
    return {"id": doc["_id"], **{k: v for k, v in doc.items() if k not in ("_id", "secret")}}


def build_router(store: NotifyStore, subscriptions: Subscriptions, allow_http: bool,
                 assertions: Verifier, live: LiveCatalogue | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notify"])
    live = live or LiveCatalogue()

    @router.post("/subscriptions", status_code=201, summary="Subscribe an agency system to dossier events")
    async def subscribe(request: SubscriptionRequest, caller: Caller = require(SUBSCRIBE)) -> dict:
        if not request.unit_codes and "*" not in caller.units or not all(map(caller.may_act_for, request.unit_codes)):
            raise HTTPException(403, detail=[{"field": "unit_codes", "type": "forbidden",
                                              "message": "subscribe only to the units this client acts for"}])
        if unknown := [c for c in request.procedure_codes if live.procedure(c) is None]:
            raise HTTPException(422, detail=[{"field": "procedure_codes", "type": "unknown_procedure",
                                              "message": f"unknown procedure codes: {', '.join(unknown)}"}])
        if request.url.scheme != "https" and not allow_http:
            raise HTTPException(422, detail=[{"field": "url", "type": "https_required",
                                              "message": "webhook URLs must use https"}])
        doc = await store.add_subscription({
            "url": str(request.url), "event_types": list(request.event_types), "unit_codes": list(request.unit_codes),
            "procedure_codes": list(request.procedure_codes), "secret": request.secret or secrets.token_hex(32),
            "owner": caller.client,
        })
        subscriptions.invalidate()
        return {**public(doc), "secret": doc["secret"]}  # the only time the secret is shown

    @router.get("/subscriptions", summary="List subscriptions")
    async def list_subscriptions(caller: Caller = require(SUBSCRIBE)) -> list[dict]:
        return [public(d) for d in await store.all_subscriptions() if d.get("owner") == caller.client]

    @router.get("/subscriptions/{sub_id}", summary="One subscription")
    async def get_subscription(sub_id: str, caller: Caller = require(SUBSCRIBE)) -> dict:
        doc = await store.subscription(sub_id)
        if doc is None or doc.get("owner") != caller.client:  # another client's looks like none
            raise HTTPException(404, detail="no such subscription")
        return public(doc)

    @router.delete("/subscriptions/{sub_id}", status_code=204, summary="Unsubscribe")
    async def unsubscribe(sub_id: str, caller: Caller = require(SUBSCRIBE)) -> Response:
        if not await store.delete_subscription(sub_id, owner=caller.client):  # another client's: as if none
            raise HTTPException(404, detail="no such subscription")
        subscriptions.invalidate()
        return Response(status_code=204)

    @router.put("/opt-outs", summary="A citizen stops (or resumes) messages on one channel",
                dependencies=[require(OPT_OUT)])
    async def opt_out(request: OptOutRequest,
                      assertion: str | None = Header(None, alias=CITIZEN_ASSERTION_HEADER,
                                                     description="The portal's signed assertion naming the citizen "
                                                     "(act: opt-out)")) -> dict:
        try:
            claims = assertions.claims(assertion or "")
        except (jwt.PyJWTError, ValueError):
            claims = {}
        if claims.get("act") != "opt-out":
            raise HTTPException(401, detail=[{"field": CITIZEN_ASSERTION_HEADER, "type": "unauthorized",
                                              "message": "the portal's valid assertion of the citizen is required"}])
        channels = await store.set_opt_out(claims["sub"], request.channel, request.opted_out)
        return {"opted_out_channels": sorted(channels)}

    return router
