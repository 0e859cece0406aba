"""Stats' domain, pure: fold a dossier's lifecycle events into its projection document, and compute the
province's figures from projections. Figures follow the province's reporting:

- received: dossiers received in the period (by channel); online rate = received online / received;
- resolved: dossiers resolved in the period, on time or late; on-time rate = resolved on time / resolved;
- rejected, withdrawn: closed that way in the period;
- in progress as of the period's end: received by then and not closed by then; overdue: of those, past due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from lienthong.calendar import VN_TZ
from lienthong.masking import mask_name
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import (
    DossierAssigned,
    DossierRejected,
    DossierResolved,
    DossierResumed,
    DossierSubmitted,
    DossierWithdrawn,
)

CLOSED = {"resolved", "rejected", "withdrawn"}


def apply(doc: dict[str, Any] | None, event: CloudEvent) -> dict[str, Any] | None:
    """The projection after `event`, or None when the event is not the next one (replay, duplicate, gap)."""
    seq = 0 if doc is None else doc["seq"]
    if event.dossierseq != seq + 1:
        return None
    data = event.data
    day = event.time.astimezone(VN_TZ).date().isoformat()
    if doc is None:
        if not isinstance(data, DossierSubmitted):
            return None
        doc = {
            "_id": event.subject,
            "procedure": data.procedure_code,
            "channel": data.channel,
            "receiving_unit": data.receiving_unit,
            "competent_unit": data.receiving_unit,
            "units": [data.receiving_unit],
            "status": "received",
            "received_day": data.received_at.astimezone(VN_TZ).date().isoformat(),
            "due_date": data.due_date.isoformat(),
            "applicant": mask_name(data.applicant.full_name),
            "closed_day": None,
            "on_time": None,
            "paused_days": 0,
            "timeline": [],
        }
    doc = {**doc, "seq": event.dossierseq, "timeline": [*doc["timeline"], _entry(event, day)]}
    match data:
        case DossierAssigned():
            first = doc["status"] == "received"
            doc.update(status="in_progress", current_unit=data.unit_code, step=data.step)
            if first:
                doc["competent_unit"] = data.unit_code
            if data.unit_code not in doc["units"]:
                doc["units"] = [*doc["units"], data.unit_code]
        case DossierResumed():
            doc.update(due_date=data.new_due_date.isoformat(), paused_days=doc["paused_days"] + data.paused_working_days)
        case DossierResolved():
            doc.update(status="resolved", closed_day=day, on_time=data.on_time)
        case DossierRejected():
            doc.update(status="rejected", closed_day=day)
        case DossierWithdrawn():
            doc.update(status="withdrawn", closed_day=day)
    return doc


def _entry(event: CloudEvent, day: str) -> dict[str, Any]:
    unit = getattr(event.data, "unit_code", None) or getattr(event.data, "receiving_unit", None)
    return {"seq": event.dossierseq, "event": event.type.split(".")[3], "time": event.time.isoformat(), "unit": unit,
            "day": day}


@dataclass(frozen=True)
class Summary:
    received: int = 0
    received_online: int = 0
    received_direct: int = 0
    received_postal: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    resolved_late: int = 0
    in_progress: int = 0
    overdue: int = 0
    rejected: int = 0
    withdrawn: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return round(self.resolved_on_time / self.resolved, 4) if self.resolved else None

    @property
    def online_rate(self) -> float | None:
        return round(self.received_online / self.received, 4) if self.received else None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "on_time_rate": self.on_time_rate, "online_rate": self.online_rate}


def summarize(docs: list[dict[str, Any]], start: date, end: date) -> Summary:
    counts: dict[str, int] = {k: 0 for k in Summary.__dataclass_fields__}
    lo, hi = start.isoformat(), end.isoformat()
    for doc in docs:
        if lo <= doc["received_day"] <= hi:
            counts["received"] += 1
            counts[f"received_{doc['channel']}"] += 1
        closed = doc["closed_day"]
        if closed is not None and lo <= closed <= hi:
            counts[doc["status"]] += 1
            if doc["status"] == "resolved":
                counts["resolved_on_time" if doc["on_time"] else "resolved_late"] += 1
        if doc["received_day"] <= hi and (closed is None or closed > hi):
            counts["in_progress"] += 1
            if doc["due_date"] < hi:
                counts["overdue"] += 1
    return Summary(**counts)
