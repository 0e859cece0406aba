"""Stats' domain, pure: fold a dossier's lifecycle events into its projection document, and compute the
province's figures from work items (a dossier, or one step of it). Figures follow the province's reporting:

- received: items received in the period (by channel); online rate = received online / received;
- resolved: items resolved in the period, on time or late; on-time rate = resolved on time / resolved;
- rejected, withdrawn: closed that way in the period;
- in progress as of the period's end, or today if that is earlier (nothing is overdue in the future yet): received
  by then and not closed by then; overdue: of those, past due.

`summarize` counts items one by one: the definition, and the oracle the rollups are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from lienthong.calendar import VN_TZ, add_working_days
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import (
    DeadlineExtended,
    DossierAssigned,
    DossierRejected,
    DossierResolved,
    DossierResumed,
    DossierSubmitted,
    DossierWithdrawn,
    FeePaid,
    SatisfactionRated,
    StepCompleted,
)

CLOSED = {"resolved", "rejected", "withdrawn"}
# The service index's facts (`stats.index`), counted per dossier like the figures.
FACTS = ("digitised", "fee_due", "fee_exempt", "paid_online", "paid_counter", "result_electronic",
         "rated_very_satisfied", "rated_satisfied", "rated_unsatisfied")


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
            "closed_day": None,
            "on_time": None,
            "paused_days": 0,
            "steps": [],
            "timeline": [],
            # the service index's facts (Decision 766): digitised at reception, the fee, an electronic result,
            # the citizen's latest rating
            "digitised": data.documents_digitised,
            "fee": "exempt" if data.fee_exempt and data.fee_vnd else "due" if data.fee_vnd else "none",
        }
    doc = {**doc, "seq": event.dossierseq, "timeline": [*doc["timeline"], _entry(event, day)],
           "steps": doc.get("steps", [])}  # documents projected before steps were kept have none
    match data:
        case DossierAssigned():
            first = doc["status"] == "received"
            doc.update(status="in_progress", current_unit=data.unit_code, step=data.step)
            if first:
                doc["competent_unit"] = data.unit_code
            if data.unit_code not in doc["units"]:
                doc["units"] = [*doc["units"], data.unit_code]
            step = {"step": data.step, "unit": data.unit_code, "received_day": day,
                    "due_date": data.step_due_date.isoformat(), "closed_day": None, "status": "in_progress",
                    "on_time": None}  # a step assigned again (transfer) replaces its earlier holder
            doc["steps"] = [*(s for s in doc["steps"] if s["step"] != data.step or s["closed_day"]), step]
        case StepCompleted():
            doc["steps"] = [_close(s, "resolved", day) if _is_open(s, data.step, data.unit_code) else s
                            for s in doc["steps"]]
        case DossierResumed():
            doc.update(due_date=data.new_due_date.isoformat(),
                       paused_days=doc["paused_days"] + data.paused_working_days)
            doc["steps"] = _move_open_step_due(doc["steps"], data.paused_working_days)
        case DeadlineExtended() if data.new_due_date is not None:
            doc.update(due_date=data.new_due_date.isoformat())
            doc["steps"] = _move_open_step_due(doc["steps"], data.working_days)
        case DossierResolved():
            doc.update(status="resolved", closed_day=day, on_time=data.on_time,
                       result_electronic=data.result_electronic)
        case FeePaid():
            doc.update(paid=data.method, paid_day=data.paid_at.astimezone(VN_TZ).date().isoformat())
        case SatisfactionRated():
            doc.update(rating=data.rating, rated_day=day)
        case DossierRejected():
            doc.update(status="rejected", closed_day=day)
        case DossierWithdrawn():
            doc.update(status="withdrawn", closed_day=day)
    if doc["closed_day"]:  # steps still open when the dossier closes close with it
        doc["steps"] = [_close(s, doc["status"], day) if not s["closed_day"] else s for s in doc["steps"]]
    return doc


def _is_open(step: dict[str, Any], index: int, unit: str) -> bool:
    return step["step"] == index and step["unit"] == unit and not step["closed_day"]


def _close(step: dict[str, Any], status: str, day: str) -> dict[str, Any]:
    on_time = day <= step["due_date"] if status == "resolved" else None
    return {**step, "status": status, "closed_day": day, "on_time": on_time}


def _move_open_step_due(steps: list[dict[str, Any]], working_days: int) -> list[dict[str, Any]]:
    """Routing moves the open step's due date by the same working days as the dossier's."""
    return [{**s, "due_date": add_working_days(date.fromisoformat(s["due_date"]), working_days).isoformat()}
            if not s["closed_day"] else s for s in steps]


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


def count_facts(items: Iterable[dict[str, Any]], start: date, end: date) -> dict[str, int]:
    """The service index's facts over work items, one by one: the definition `rollups.facts` is tested against."""
    lo, hi = start.isoformat(), end.isoformat()
    counts = dict.fromkeys(FACTS, 0)
    for item in items:
        if lo <= item["received_day"] <= hi:
            counts["digitised"] += bool(item.get("digitised"))
            if item.get("fee") in ("due", "exempt"):
                counts[f"fee_{item['fee']}"] += 1
        if item.get("paid") and lo <= item["paid_day"] <= hi:
            counts[f"paid_{item['paid']}"] += 1
        if item["status"] == "resolved" and item.get("result_electronic") and lo <= item["closed_day"] <= hi:
            counts["result_electronic"] += 1
        if item.get("rating") and lo <= item["rated_day"] <= hi:
            counts[f"rated_{item['rating']}"] += 1
    return counts


def summarize(items: Iterable[dict[str, Any]], start: date, end: date, today: date | None = None) -> Summary:
    """Figures over work items, each with received_day, channel, closed_day, status, on_time and due_date.
    In progress and overdue are as of `end`, or `today` when that is earlier."""
    counts: dict[str, int] = {k: 0 for k in Summary.__dataclass_fields__}
    lo, hi = start.isoformat(), end.isoformat()
    asof = min(end, today).isoformat() if today else hi
    for item in items:
        if lo <= item["received_day"] <= hi:
            counts["received"] += 1
            counts[f"received_{item['channel']}"] += 1
        closed = item["closed_day"]
        if closed is not None and lo <= closed <= hi:
            counts[item["status"]] += 1
            if item["status"] == "resolved":
                counts["resolved_on_time" if item["on_time"] else "resolved_late"] += 1
        if item["received_day"] <= asof and (closed is None or closed > asof):
            counts["in_progress"] += 1
            if item["due_date"] < asof:
                counts["overdue"] += 1
    return Summary(**counts)
