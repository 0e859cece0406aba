"""Notify's state in MongoDB: what it knows of each dossier, the delivery ledger, subscriptions and opt-outs.

Every hot-path access is by `_id` (FerretDB pushes only those down; MongoDB is fast either way).
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import (
    DeadlineExtended,
    DossierAssigned,
    DossierResumed,
    DossierSubmitted,
    SealedApplicant,
)
from notify.sealing import DEV_KEY, SecretBox
from notify.domain import DossierFacts, Subscription

IN_FLIGHT = ["sending", "retrying"]



class NotifyStore:
    def __init__(self, db: AsyncDatabase, box: SecretBox | None = None) -> None:
        self.box = box or SecretBox(DEV_KEY)
        self.dossiers = db["notify_dossiers"]
        self.deliveries = db["notify_deliveries"]
        self.subscriptions = db["notify_subscriptions"]
        self.opt_outs = db["notify_opt_outs"]

    # -- what notify knows of a dossier ------------------------------------------------------------------------

    async def remember(self, event: CloudEvent, *, read: bool = True) -> DossierFacts | None:
        """Record what later messages need from this event and return the dossier's facts (None: never saw its
        `submitted`, or `read` is false and the event changes nothing). Due dates only move later, so `$max`
        makes every update idempotent and order-free."""
        data = event.data
        code = event.subject
        if isinstance(data, DossierSubmitted):
            doc = {
                "procedure_code": data.procedure_code, "receiving_unit": data.receiving_unit,
                "due_date": data.due_date.isoformat(), "applicant": data.applicant.model_dump(),
            }
            found = await self.dossiers.find_one_and_update(
                {"_id": code}, {"$setOnInsert": doc}, upsert=True, return_document=ReturnDocument.AFTER)
        elif isinstance(data, DossierAssigned):
            found = await self._later(code, "step_due_date", data.step_due_date)
        elif isinstance(data, DossierResumed):
            found = await self._later(code, "due_date", data.new_due_date)
        elif isinstance(data, DeadlineExtended) and data.new_due_date:
            found = await self._later(code, "due_date", data.new_due_date)
        elif read:
            found = await self.dossiers.find_one({"_id": code})
        else:
            return None
        return _facts(found)

    async def _later(self, code: str, field: str, day: date) -> dict[str, Any] | None:
        return await self.dossiers.find_one_and_update(
            {"_id": code}, {"$max": {field: day.isoformat()}}, return_document=ReturnDocument.AFTER)

    # -- citizens' opt-outs --------------------------------------------------------------------------------------

    async def opted_out(self, subject: str) -> frozenset[str]:
        doc = await self.opt_outs.find_one({"_id": subject})
        return frozenset(doc["channels"]) if doc else frozenset()

    async def set_opt_out(self, subject: str, channel: str, opted_out: bool) -> frozenset[str]:
        """By the citizen's pseudonym: the number itself is never stored."""
        change = {"$addToSet" if opted_out else "$pull": {"channels": channel}}
        doc = await self.opt_outs.find_one_and_update(
            {"_id": subject}, change, upsert=True, return_document=ReturnDocument.AFTER)
        return frozenset(doc["channels"])

    # -- the delivery ledger -------------------------------------------------------------------------------------

    async def claim(self, key: str, fresh: dict[str, Any] | None, now: datetime, lease_until: datetime
                    ) -> dict[str, Any] | None:
        """Take the delivery for one attempt: created on first sight (with `fresh`), or in flight with its lease
        run out (a retry that is due, or an attempt whose process died). None: done, or someone else holds it."""
        try:
            return await self.deliveries.find_one_and_update(
                {"_id": key, "status": {"$in": IN_FLIGHT}, "lease_until": {"$lte": now}},
                {"$set": {"status": "sending", "lease_until": lease_until, "updated_at": now},
                 "$inc": {"attempts": 1}, **({"$setOnInsert": fresh} if fresh else {})},
                upsert=fresh is not None, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # it exists and is not claimable
            return None

    async def delivery(self, key: str) -> dict[str, Any] | None:
        return await self.deliveries.find_one({"_id": key}, {"message": 0})

    async def finish(self, key: str, attempts: int, status: str, now: datetime, reason: str | None = None) -> None:
        """sent or failed; the message (personal data) is dropped once it cannot be sent again."""
        await self.deliveries.update_one(
            {"_id": key, "attempts": attempts},
            {"$set": {"status": status, "updated_at": now, "reason": reason}, "$unset": {"message": ""}})

    async def retry_later(self, key: str, attempts: int, not_before: datetime, now: datetime, reason: str) -> None:
        await self.deliveries.update_one(
            {"_id": key, "attempts": attempts},
            {"$set": {"status": "retrying", "lease_until": not_before, "updated_at": now, "reason": reason}})

    # -- agency webhook subscriptions ----------------------------------------------------------------------------

    async def add_subscription(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Stores the secret sealed; returns the document with it in clear (shown to the caller once)."""
        doc = {"_id": "sub-" + secrets.token_hex(8), "active": True, "consecutive_failures": 0, **doc}
        await self.subscriptions.insert_one({**doc, "secret": self.box.seal(doc["secret"], doc["_id"])})
        return doc

    async def subscription(self, sub_id: str) -> dict[str, Any] | None:
        doc = await self.subscriptions.find_one({"_id": sub_id})
        return doc and {**doc, "secret": self.box.open(doc["secret"], doc["_id"])}

    async def all_subscriptions(self) -> list[dict[str, Any]]:
        return await self.subscriptions.find({}).to_list()

    async def delete_subscription(self, sub_id: str, owner: str) -> bool:
        return (await self.subscriptions.delete_one({"_id": sub_id, "owner": owner})).deleted_count == 1

    async def subscriber_failed(self, sub_id: str) -> int:
        doc = await self.subscriptions.find_one_and_update(
            {"_id": sub_id}, {"$inc": {"consecutive_failures": 1}}, return_document=ReturnDocument.AFTER)
        return doc["consecutive_failures"] if doc else 0

    async def subscriber_succeeded(self, sub_id: str) -> None:
        await self.subscriptions.update_one({"_id": sub_id, "consecutive_failures": {"$gt": 0}},
                                            {"$set": {"consecutive_failures": 0}})

    async def disable_subscription(self, sub_id: str) -> bool:
        """True for the one caller that switched it off (the one that reports it)."""
        result = await self.subscriptions.update_one({"_id": sub_id, "active": True}, {"$set": {"active": False}})
        return result.modified_count == 1


def _facts(doc: dict[str, Any] | None) -> DossierFacts | None:
    if doc is None or "procedure_code" not in doc:
        return None  # an update for a dossier whose `submitted` notify never saw
    step_due = doc.get("step_due_date")
    return DossierFacts(
        code=doc["_id"], procedure_code=doc["procedure_code"], receiving_unit=doc["receiving_unit"],
        due_date=date.fromisoformat(doc["due_date"]), applicant=SealedApplicant.model_validate(doc["applicant"]),
        step_due_date=date.fromisoformat(step_due) if step_due else None,
    )


def subscription_of(doc: dict[str, Any]) -> Subscription:
    return Subscription(id=doc["_id"], url=doc["url"], event_types=tuple(doc.get("event_types", ())),
                        unit_codes=tuple(doc.get("unit_codes", ())),
                        procedure_codes=tuple(doc.get("procedure_codes", ())))
