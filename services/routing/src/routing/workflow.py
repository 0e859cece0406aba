"""Routing's domain, pure: who must act on a dossier next, and the working-day clock.

A dossier's workflow is the procedure's chain of steps (catalogue data), each resolved to a unit. Routing is the
only writer of a dossier's lifecycle events after `submitted`, so it numbers them (`dossierseq`). Unit outcomes
name the assignment they answer by its sequence number; an outcome for an older assignment is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Literal

from lienthong.calendar import add_working_days, start_day, working_days_between
from lienthong.catalogue import Catalogue, Procedure
from lienthong.contracts.dossier import (
    DeadlineExtended,
    DossierAssigned,
    DossierDueSoon,
    DossierOverdue,
    DossierPaused,
    DossierRejected,
    DossierResolved,
    DossierResumed,
    DossierSubmitted,
    DossierTransferred,
    DossierWithdrawn,
    FeePaid,
    ResultReturned,
    RoutingFailed,
    StepCompleted,
    SatisfactionRated,
    StepStarted,
    SupplementRequested,
)
from lienthong.contracts.envelope import EventData

# `returned`: resolved, and the result handed to the citizen at the receiving centre (or sent).
Status = Literal["in_progress", "paused", "resolved", "rejected", "withdrawn", "returned"]
RATING_WINDOW_DAYS = 30  # a citizen may rate, and change the rating, this many days after the outcome
RATED = ("resolved", "returned", "rejected")  # the outcomes a citizen rates


class RoutingError(Exception):
    """The dossier cannot be routed (unknown procedure/unit, broken chain data)."""


@dataclass(frozen=True)
class Workflow:
    code: str
    procedure_code: str
    receiving_unit: str
    step_units: tuple[str, ...]
    step_names: tuple[str, ...]
    step_days: tuple[int, ...]
    due_date: date
    step: int = 0
    step_due: date | None = None
    status: Status = "in_progress"
    assignment_seq: int = 0
    seq: int = 1
    paused_on: date | None = None
    paused_days: int = 0
    warned: frozenset[str] = field(default_factory=frozenset)
    applicant: str = ""  # the citizen's pseudonym: only the portal's assertion naming them may act as the citizen
    fee_vnd: int = 0
    fee_exempt: bool = False
    fee_paid: bool = False
    closed_on: date | None = None  # the day of the outcome: the rating window opens
    rating: str | None = None

    @property
    def unit(self) -> str:
        return self.step_units[self.step]

    @property
    def open(self) -> bool:
        return self.status in {"in_progress", "paused"}


@dataclass(frozen=True)
class Decision:
    workflow: Workflow
    events: tuple[tuple[int, EventData], ...] = ()  # (dossierseq, payload)
    rejected_reason: str | None = None  # outcome refused: goes to the operator topic


def resolve_units(proc: Procedure, submitted: DossierSubmitted, cat: Catalogue) -> tuple[str, ...]:
    units = []
    for step in proc.steps:
        if step.unit in {"receiving", "competent_commune"}:
            unit = submitted.receiving_unit
            if step.unit == "competent_commune" and cat.units[unit].level != "commune":
                unit = submitted.applicant.residence_unit
        elif step.unit == "residence_commune":
            unit = submitted.applicant.residence_unit
        elif step.unit == "parcel_branch":
            if submitted.land_parcel is None:
                raise RoutingError(f"procedure {proc.code} needs a land parcel")
            commune = cat.units.get(submitted.land_parcel.split("-", 1)[0])
            if commune is None or commune.land_branch is None:
                raise RoutingError("the land parcel's commune has no land-registry branch")
            unit = commune.land_branch
        else:
            unit = step.unit
        if unit not in cat.units:
            raise RoutingError(f"procedure {proc.code}: step {step.name!r} resolves to unknown unit {unit}")
        units.append(unit)
    return tuple(units)


def start(code: str, submitted: DossierSubmitted, cat: Catalogue) -> Decision:
    proc = cat.procedures.get(submitted.procedure_code)
    if proc is None:
        raise RoutingError(f"unknown procedure {submitted.procedure_code}")
    units = resolve_units(proc, submitted, cat)
    wf = Workflow(
        code=code,
        procedure_code=proc.code,
        receiving_unit=submitted.receiving_unit,
        step_units=units,
        step_names=tuple(s.name for s in proc.steps),
        step_days=tuple(s.days for s in proc.steps),
        due_date=submitted.due_date,
        applicant=submitted.applicant.subject,
        fee_vnd=submitted.fee_vnd,
        fee_exempt=submitted.fee_exempt,
    )
    events: list[EventData] = []
    if units[0] != submitted.receiving_unit:
        events.append(DossierTransferred(from_unit=submitted.receiving_unit, to_unit=units[0],
                                         reason="competent unit differs from receiving unit"))
    return _assign(wf, 0, start_day(submitted.received_at), events)


def _assign(wf: Workflow, step: int, from_day: date, events: list[EventData]) -> Decision:
    step_due = add_working_days(from_day, wf.step_days[step])
    seq = wf.seq + len(events) + 1
    events.append(DossierAssigned(unit_code=wf.step_units[step], step=step, step_name=wf.step_names[step],
                                  step_due_date=step_due))
    wf = replace(wf, step=step, step_due=step_due, assignment_seq=seq)
    return _numbered(wf, events)


def _numbered(wf: Workflow, events: list[EventData], rejected: str | None = None) -> Decision:
    numbered = tuple((wf.seq + i + 1, e) for i, e in enumerate(events))
    return Decision(replace(wf, seq=wf.seq + len(events)), numbered, rejected)


def apply_outcome(wf: Workflow, outcome: EventData, answers_seq: int, today: date, now: datetime) -> Decision:
    """An outcome a unit published about the assignment numbered `answers_seq`."""
    unit = getattr(outcome, "unit_code", None)
    if isinstance(outcome, ResultReturned):
        return result_returned(wf, outcome)
    if isinstance(outcome, FeePaid):
        return fee_paid(wf, outcome)
    if not wf.open:
        return Decision(wf, rejected_reason=f"dossier is {wf.status}")
    if answers_seq < wf.assignment_seq:
        return Decision(wf, rejected_reason="stale: answers an earlier assignment")
    if answers_seq > wf.assignment_seq:
        return Decision(wf, rejected_reason="answers an assignment that does not exist")
    if unit is not None and unit != wf.unit:
        return Decision(wf, rejected_reason=f"unit {unit} does not hold this dossier")
    step = getattr(outcome, "step", wf.step)
    if step != wf.step:
        return Decision(wf, rejected_reason="wrong step")
    match outcome:
        case StepStarted():
            return _numbered(wf, [outcome])
        case StepCompleted():
            if wf.status == "paused":
                return Decision(wf, rejected_reason="dossier is paused")
            if wf.step + 1 < len(wf.step_units):
                return _assign(wf, wf.step + 1, today, [outcome])
            on_time = today <= wf.due_date
            resolved = DossierResolved(unit_code=wf.unit, resolved_at=now, due_date=wf.due_date, on_time=on_time,
                                       result_ref=outcome.result_ref, result_electronic=outcome.result_electronic)
            return _numbered(replace(wf, status="resolved", closed_on=today), [outcome, resolved])
        case SupplementRequested():
            if wf.status == "paused":
                return Decision(wf, rejected_reason="dossier is already paused")
            paused = DossierPaused(unit_code=wf.unit, reason="supplement requested")
            return _numbered(replace(wf, status="paused", paused_on=today), [outcome, paused])
        case DossierRejected():
            return _numbered(replace(wf, status="rejected", closed_on=today), [outcome])
        case DossierPaused():  # the unit stops the clock for a reason of its own
            if wf.status == "paused":
                return Decision(wf, rejected_reason="dossier is already paused")
            return _numbered(replace(wf, status="paused", paused_on=today), [outcome])
        case DossierResumed():  # routing, not the unit, computes the paused days and the new due date
            return supplement_provided(wf, today)
        case DeadlineExtended():
            due = add_working_days(wf.due_date, outcome.working_days)
            step_due = add_working_days(wf.step_due, outcome.working_days) if wf.step_due else None
            recorded = outcome.model_copy(update={"new_due_date": due})
            return _numbered(replace(wf, due_date=due, step_due=step_due), [recorded])
        case _:
            return Decision(wf, rejected_reason=f"unsupported outcome {outcome.EVENT_TYPE}")


def supplement_provided(wf: Workflow, today: date) -> Decision:
    """The citizen provided the papers: the clock resumes and every due date moves by the paused working days."""
    if wf.status != "paused" or wf.paused_on is None:
        return Decision(wf, rejected_reason="dossier is not paused")
    paused = working_days_between(wf.paused_on, today)
    due = add_working_days(wf.due_date, paused)
    step_due = add_working_days(wf.step_due, paused) if wf.step_due else None
    resumed = DossierResumed(unit_code=wf.unit, paused_working_days=paused, new_due_date=due)
    wf = replace(wf, status="in_progress", paused_on=None, paused_days=wf.paused_days + paused, due_date=due,
                 step_due=step_due)
    return _numbered(wf, [resumed])


def result_returned(wf: Workflow, outcome: ResultReturned) -> Decision:
    """The result was handed to the citizen at the receiving centre (or sent): recorded once, after resolution."""
    if wf.status != "resolved":
        return Decision(wf, rejected_reason=f"dossier is {wf.status}, not resolved")
    if outcome.unit_code != wf.receiving_unit:
        return Decision(wf, rejected_reason=f"results are returned by the receiving unit {wf.receiving_unit}")
    return _numbered(replace(wf, status="returned"), [outcome])


def fee_paid(wf: Workflow, outcome: FeePaid) -> Decision:
    """Fees paid, recorded once: only when the catalogue made a fee due and did not waive it, by the receiving unit
    or the one holding the dossier, before the dossier was refused or withdrawn."""
    if wf.fee_vnd == 0 or wf.fee_exempt:
        return Decision(wf, rejected_reason="no fee is due for this dossier")
    if wf.fee_paid:
        return Decision(wf, rejected_reason="the fee is already paid")
    if wf.status in ("rejected", "withdrawn"):
        return Decision(wf, rejected_reason=f"dossier is {wf.status}")
    if outcome.unit_code not in (wf.receiving_unit, wf.unit):
        return Decision(wf, rejected_reason=f"unit {outcome.unit_code} neither received nor holds this dossier")
    return _numbered(replace(wf, fee_paid=True), [outcome])


def rate(wf: Workflow, outcome: SatisfactionRated, today: date) -> Decision:
    """The citizen's rating once the dossier has an outcome, changeable for RATING_WINDOW_DAYS; the same rating
    again changes nothing."""
    if wf.status not in RATED or wf.closed_on is None:
        return Decision(wf, rejected_reason=f"dossier is {wf.status}: nothing to rate yet")
    if (today - wf.closed_on).days > RATING_WINDOW_DAYS:
        return Decision(wf, rejected_reason=f"the rating window closed {RATING_WINDOW_DAYS} days after the outcome")
    if outcome.rating == wf.rating:
        return Decision(wf)
    return _numbered(replace(wf, rating=outcome.rating), [outcome])


def withdraw(wf: Workflow, reason: str | None) -> Decision:
    if not wf.open:
        return Decision(wf, rejected_reason=f"dossier is {wf.status}")
    return _numbered(replace(wf, status="withdrawn"), [DossierWithdrawn(reason=reason)])


def tick(wf: Workflow, today: date, warn_days: int = 1) -> Decision:
    """Due-soon and overdue, once per step and once for the dossier; a paused clock does not run."""
    if wf.status != "in_progress":
        return Decision(wf)
    events: list[EventData] = []
    warned = set(wf.warned)
    for key, due, step in ((f"step:{wf.step}", wf.step_due, wf.step), ("dossier", wf.due_date, None)):
        if due is None or f"overdue:{key}" in warned:
            continue  # once overdue, nothing more to say (a clock run late, or out of order, warns no "due soon")
        if today > due:
            warned.add(f"overdue:{key}")
            events.append(DossierOverdue(unit_code=wf.unit, step=step, due_date=due))
        elif today <= due and add_working_days(today, warn_days) >= due and f"soon:{key}" not in warned:
            warned.add(f"soon:{key}")
            events.append(DossierDueSoon(unit_code=wf.unit, step=step, due_date=due))
    return _numbered(replace(wf, warned=frozenset(warned)), events)


def next_tick_day(wf: Workflow, warn_days: int = 1) -> date | None:
    """The first day on which `tick` may emit something for this workflow as it stands (None: never, its clock
    does not run). A ticker that looks only at workflows whose day has come misses nothing."""
    if wf.status != "in_progress":
        return None
    days = []
    for key, due in ((f"step:{wf.step}", wf.step_due), ("dossier", wf.due_date)):
        if due is None or f"overdue:{key}" in wf.warned:
            continue
        days.append(due + timedelta(days=1))
        if f"soon:{key}" not in wf.warned:
            first = due
            while add_working_days(first - timedelta(days=1), warn_days) >= due:
                first -= timedelta(days=1)
            days.append(first)
    return min(days, default=None)


def failure(reason: str) -> RoutingFailed:
    return RoutingFailed(reason=reason)
