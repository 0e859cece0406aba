"""Applies one input to one dossier: load, decide (pure), store state + outbox in one write, publish, clear."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import jwt
import structlog

from lienthong.calendar import today_vn
from lienthong.auth import CitizenAssertionSettings, Verifier
from lienthong.catalogue import Catalogue
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.contracts.dossier import (
    DeadlineExtended,
    DossierAssigned,
    DossierPaused,
    DossierRejected,
    DossierResumed,
    DossierSubmitted,
    DossierWithdrawn,
    OutcomeRejected,
    ResultReturned,
    RoutingFailed,
    StepCompleted,
    StepStarted,
    SupplementProvided,
    SupplementRequested,
)
from lienthong.contracts.envelope import deterministic_id, new_event
from lienthong import identity
from lienthong.identity import Registry
from routing import workflow
from routing.store import ConcurrentUpdate, Record, WorkflowStore

SOURCE = "/services/routing"
Publish = Callable[[CloudEvent], Awaitable[None]]
log = structlog.get_logger("routing")


CITIZEN_ACTIONS = (SupplementProvided, DossierWithdrawn)
AGENCY_OUTCOMES = (StepStarted, StepCompleted, SupplementRequested, DossierRejected, DossierPaused, DossierResumed,
                   DeadlineExtended, ResultReturned)
# What the agency system acting for the unit is told on its work topic: its assignments, and that the papers it
# asked for came (the clock runs again).
FOR_THE_UNIT = (DossierAssigned, DossierResumed)


@dataclass(frozen=True)
class Refused:
    """Why routing refuses an outcome; `check` names the rule: type, sender, dossier, citizen or assignment."""

    check: str
    reason: str


class Router:
    def __init__(self, store: WorkflowStore, catalogue: Catalogue, publish_lifecycle: Publish,
                 publish_work: Publish, publish_alert: Publish, *, clock: Callable[[], datetime] | None = None,
                 registry: Callable[[], Registry] = identity.registry, assertions: Verifier | None = None,
                 tell_sender: Callable[[str, CloudEvent], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.catalogue = catalogue
        self.registry = registry  # re-read when the file changes: a new agency needs no restart
        self.assertions = assertions or Verifier(CitizenAssertionSettings())
        self.tell_sender = tell_sender  # an agency learns why its outcome was refused, on its own work topic
        self.publish_lifecycle = publish_lifecycle
        self.publish_work = publish_work
        self.publish_alert = publish_alert
        self.clock = clock or (lambda: datetime.now(UTC))

    async def on_submitted(self, event: CloudEvent) -> None:
        code = event.subject
        async with self.store.lock(code):
            record = await self.store.load(code)
            if record is not None:  # redelivery or replay: already started
                await self._flush(record)
                return
            assert isinstance(event.data, DossierSubmitted)
            try:
                decision = workflow.start(code, event.data, self.catalogue)
            except workflow.RoutingError as exc:
                log.warning("routing_failed", reason=str(exc))
                await self.publish_alert(new_event(RoutingFailed(reason=str(exc)[:2000]), subject=code, source=SOURCE,
                                                   seq=1, event_id=deterministic_id(code, "routing-failed")))
                return
            record = Record(decision.workflow, version=0, applied=[event.id],
                            outbox=[to_json(e).decode() for e in self._events(code, decision)])
            await self.store.save(record, new=True)
            await self._flush(record)

    async def on_outcome(self, event: CloudEvent, sender: str, *, assertion: str | None = None,
                         written_at: float | None = None) -> None:
        """An agency's outcome (its `dossierseq` names the assignment it answers) or a citizen's action, from the
        agency system `sender` (known by the topic only it may write), applied if `judge` finds nothing against
        it; otherwise nothing changes and the operators and the sender are told why."""
        async with self.store.lock(event.subject):
            record = await self.store.load(event.subject)
            if record is not None:
                await self._flush(record)
                if record.seen(event.id):
                    return  # redelivered
            verdict = self.judge(event, sender, record, assertion=assertion, written_at=written_at)
            if isinstance(verdict, Refused):
                if verdict.check == "assignment" and record is not None:  # a redelivery alerts no one again
                    record.refused[event.id] = verdict.reason
                    await self.store.save(record)
                await self._refuse(event, record.workflow.seq if record else 1, verdict.reason, sender)
                return
            record.applied.append(event.id)
            await self._commit(record, verdict)

    def judge(self, event: CloudEvent, sender: str, record: Record | None, *, assertion: str | None = None,
              written_at: float | None = None, check_assertion: bool = True) -> Refused | workflow.Decision:
        """What routing does with an outcome, changing nothing: the decision it applies, or why it refuses it.
        Refused unless the sender acts for the unit the outcome names (a citizen's action: only the portal, with
        its `assertion` that the dossier's applicant did it, as of `written_at`, the record's time), the dossier
        exists, and the outcome answers the dossier's current assignment as the workflow allows."""
        citizens = isinstance(event.data, CITIZEN_ACTIONS)
        if not citizens and not isinstance(event.data, AGENCY_OUTCOMES):
            return Refused("type", f"{event.type} is not an outcome a unit sends")
        unit = None if citizens else str(getattr(event.data, "unit_code", ""))
        if (refusal := self.registry().refusal(sender, unit)) is not None:
            return Refused("sender", refusal)
        if record is None:
            return Refused("dossier", "unknown dossier")
        if citizens and check_assertion and (
                refusal := self._citizen_refusal(event, record.workflow, assertion, written_at)):
            return Refused("citizen", refusal)
        today = today_vn(self.clock())
        match event.data:
            case SupplementProvided():
                decision = workflow.supplement_provided(record.workflow, today)
            case DossierWithdrawn() as withdrawn:
                decision = workflow.withdraw(record.workflow, withdrawn.reason)
            case _:
                decision = workflow.apply_outcome(record.workflow, event.data, event.dossierseq, today, self.clock())
        return Refused("assignment", decision.rejected_reason) if decision.rejected_reason else decision

    def _citizen_refusal(self, event: CloudEvent, wf: workflow.Workflow, assertion: str | None,
                         written_at: float | None) -> str | None:
        """Why the portal's assertion does not prove that this dossier's applicant did this (None: it does).
        The assertion is bound to the event (`jti`), so it cannot be replayed for another action or dossier."""
        if not assertion:
            return "no citizen assertion"
        try:
            claims = self.assertions.claims(assertion, now=written_at)
        except (jwt.PyJWTError, ValueError):
            return "citizen assertion not valid"
        if (claims.get("dossier"), claims.get("act"), claims.get("jti")) != (event.subject, event.type, event.id):
            return "citizen assertion is for another action"
        return None if claims["sub"] == wf.applicant else "citizen assertion names another citizen"

    async def on_tick(self, code: str, today: date) -> None:
        async with self.store.lock(code):
            record = await self.store.load(code)
            if record is None:
                return
            decision = workflow.tick(record.workflow, today)
            if decision.events:
                await self._commit(record, decision)

    async def _commit(self, record: Record, decision: workflow.Decision) -> None:
        record.workflow = decision.workflow
        record.outbox = record.outbox + [to_json(e).decode() for e in self._events(record.workflow.code, decision)]
        await self.store.save(record)
        await self._flush(record)

    def _events(self, code: str, decision: workflow.Decision) -> list[CloudEvent]:
        now = self.clock()
        return [new_event(data, subject=code, source=SOURCE, seq=seq, time=now,
                          event_id=deterministic_id(code, seq)) for seq, data in decision.events]

    async def _flush(self, record: Record) -> None:
        """Publish the outbox in order; events carry deterministic ids, so a re-send after a crash is deduplicated."""
        if not record.outbox:
            return
        for raw in record.outbox:
            event = parse_event(raw)
            await self.publish_lifecycle(event)
            if isinstance(event.data, FOR_THE_UNIT):
                await self.publish_work(event)
        await self.store.clear_outbox(record)

    async def _refuse(self, event: CloudEvent, seq: int, reason: str, sender: str) -> None:
        log.warning("outcome_rejected", reason=reason, event_id=event.id, outcome_type=event.type)
        alert = OutcomeRejected(outcome_id=event.id, outcome_type=event.type[:200], reason=reason[:200])
        refused = new_event(alert, subject=event.subject, source=SOURCE, seq=max(1, seq),
                            event_id=deterministic_id(event.id, "rejected"))
        await self.publish_alert(refused)
        if self.tell_sender is not None:
            await self.tell_sender(sender, refused)


__all__ = ["ConcurrentUpdate", "Router"]
