"""Applies inputs to dossiers in batches: load the batch's dossiers at once, decide each input in pure code (in
order per dossier), store states + outboxes in a few writes, publish; heads and cleared outboxes are written behind."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import jwt
import structlog
from prometheus_client import Histogram

from lienthong.calendar import today_vn
from lienthong.auth import CitizenAssertionSettings, Verifier
from lienthong.catalogue import Catalogue
from lienthong.catalogue.versions import LiveCatalogue
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.contracts.dossier import (
    DossierAssigned,
    DossierResumed,
    DossierSubmitted,
    DossierWithdrawn,
    OutcomeRejected,
    RoutingFailed,
    SatisfactionRated,
    SupplementProvided,
)
from lienthong.contracts.envelope import deterministic_id, new_event
from lienthong import identity
from lienthong.identity import Registry
from lienthong.locks import KeyedLocks
from lienthong.phases import PhaseClock, phase_histogram
from lienthong.topics import AGENCY_OUTCOMES, CITIZEN_ACTIONS
from routing import workflow
from routing.store import ConcurrentUpdate, Record, WorkflowStore

SOURCE = "/services/routing"
Publish = Callable[..., Awaitable[Any]]  # (event, no_confirm=True) -> the acknowledgement to await
TICK_BATCH = 500
MAX_UNCLEARED = 5000  # published outboxes whose marks (and their heads) wait for the next write-behind
PHASE_SECONDS = phase_histogram("routing")
BATCH_SIZE = Histogram("lienthong_routing_batch_size", "Inputs per routed batch", buckets=(1, 5, 20, 50, 100, 200, 500))
log = structlog.get_logger("routing")


# What the agency system acting for the unit is told on its work topic: its assignments, and that the papers it
# asked for came (the clock runs again).
FOR_THE_UNIT = (DossierAssigned, DossierResumed)


@dataclass(frozen=True)
class Refused:
    """Why routing refuses an outcome; `check` names the rule: type, sender, dossier, citizen or assignment."""

    check: str
    reason: str


@dataclass(frozen=True)
class Submitted:
    """A `dossier.submitted` read from the lifecycle: start its workflow."""

    event: CloudEvent


@dataclass(frozen=True)
class Outcome:
    """An outcome from the agency system `sender` (known by the topic only it may write), or a citizen's action
    relayed by the portal with its `assertion`; `written_at` is the record's time (the assertion is checked as of
    then, so a backlog read hours later still passes)."""

    event: CloudEvent
    sender: str
    assertion: str | None = None
    written_at: float | None = None


@dataclass(frozen=True)
class Tick:
    """The deadline clock looks at a dossier on `today`."""

    code: str
    today: date


Input = Submitted | Outcome | Tick
MAX_CONFLICT_ROUNDS = 5


@dataclass
class _Batch:
    """What one batch decided: the records it changed, and the alerts and refusals it owes."""

    records: dict[str, Record]  # every dossier of the batch that exists, as decided so far
    changed: set[str] = field(default_factory=set)  # to be written
    alerts: list[tuple[CloudEvent, str | None]] = field(default_factory=list)  # (alert, agency to tell as well)

    def change(self, record: Record) -> None:
        self.records[record.workflow.code] = record
        self.changed.add(record.workflow.code)


def _subject(item: Input) -> str:
    return item.code if isinstance(item, Tick) else item.event.subject


class Router:
    def __init__(self, store: WorkflowStore, catalogue: Catalogue | LiveCatalogue, publish_lifecycle: Publish,
                 publish_work: Publish, publish_alert: Publish, *, clock: Callable[[], datetime] | None = None,
                 registry: Callable[[], Registry] = identity.registry, assertions: Verifier | None = None,
                 tell_sender: Callable[[str, CloudEvent], Awaitable[Any]] | None = None,
                 cached_dossiers: int = 0, cache_ttl_s: float = 30.0) -> None:
        self.store = store
        # The dossiers this process last stored and published, as stored, and when: a dossier's next input mostly
        # comes within seconds, and a load costs the store two reads (head, versions). One another instance moved
        # on meanwhile loses its version insert (the slot is taken: the store keeps superseded versions longer than
        # `cache_ttl_s`) and is read afresh. None by default: only with a store that keeps superseded versions
        # longer (`RoutingSettings` checks the pair).
        self.recent: OrderedDict[str, tuple[Record, float]] = OrderedDict()
        self.cached_dossiers, self.cache_ttl_s = cached_dossiers, cache_ttl_s
        # A dossier is routed with the catalogue version it was filed under, whatever was imported since.
        self.catalogues = catalogue if isinstance(catalogue, LiveCatalogue) else LiveCatalogue(base=catalogue)
        self.registry = registry  # re-read when the file changes: a new agency needs no restart
        self.assertions = assertions or Verifier(CitizenAssertionSettings())
        self.tell_sender = tell_sender  # an agency learns why its outcome was refused, on its own work topic
        self.publish_lifecycle = publish_lifecycle
        self.publish_work = publish_work
        self.publish_alert = publish_alert
        self.clock = clock or (lambda: datetime.now(UTC))
        self.locks = KeyedLocks()  # one batch at a time per dossier within this process
        # Dossiers whose stored outbox this process has published, not yet marked so in the store (code -> the
        # version that holds it): written behind, in bulk.
        self.published: dict[str, int] = {}

    async def handle(self, inputs: Sequence[Input]) -> None:
        """Apply a batch of inputs, in order per dossier: read the batch's dossiers at once, decide in pure code,
        store states and outboxes in a few writes, publish, clear the outboxes. Inputs whose dossier another
        instance changed meanwhile are decided again on a fresh read."""
        pending = list(inputs)
        for _ in range(MAX_CONFLICT_ROUNDS):
            if not pending:
                return  # e.g. a lifecycle batch of routing's own events
            codes = sorted({_subject(item) for item in pending})
            async with AsyncExitStack() as held:
                for code in codes:  # sorted: two batches never wait for each other in a cycle
                    await held.enter_async_context(self.locks(code))
                clock = PhaseClock(PHASE_SECONDS)
                records = await self._load(codes)
                clock.lap("load")
                try:
                    lost = await self._round(pending, records, clock)
                except BaseException:
                    for code in codes:  # what the store holds of them now is not known here
                        self.recent.pop(code, None)
                    raise
            pending = [item for item in pending if _subject(item) in lost]
        if pending:
            raise ConcurrentUpdate(", ".join(sorted({_subject(item) for item in pending})))

    async def _round(self, pending: list[Input], records: dict[str, Record], clock: PhaseClock) -> set[str]:
        for code, record in records.items():
            if record.outbox and self.published.get(code) == record.version:
                record.outbox = []  # published already; only its clearing is still to be written
        batch = _Batch(records)
        versions = {item.event.data.catalogue_version for item in pending if isinstance(item, Submitted)
                    and isinstance(item.event.data, DossierSubmitted) and item.event.subject not in records}
        catalogues = {v: await self._catalogue_at(v) for v in versions}
        for item in pending:
            match item:
                case Submitted():
                    self._start(item.event, batch, catalogues)
                case Outcome():
                    self._apply(item, batch)
                case Tick():
                    if (record := batch.records.get(item.code)) is not None:
                        self._commit(record, workflow.tick(record.workflow, item.today), batch)
        clock.lap("decide")
        lost = await self.store.save_many([batch.records[code] for code in sorted(batch.changed)])
        clock.lap("save")
        # Outboxes this batch filled, and any left by a crash before their events were acknowledged.
        outboxes = [r for code, r in batch.records.items() if r.outbox and code not in lost]
        await self._publish(outboxes, [(alert, agency) for alert, agency in batch.alerts if alert.subject not in lost])
        clock.lap("publish")
        for record in outboxes:
            self.published[record.workflow.code] = record.version
        self._remember(batch.records, lost)
        if len(self.published) >= MAX_UNCLEARED:
            await self.write_behind()
            clock.lap("clear")
        BATCH_SIZE.observe(len(pending))
        return lost

    async def _load(self, codes: list[str]) -> dict[str, Record]:
        now, records = time.monotonic(), {}
        for code in codes:
            record, at = self.recent.get(code, (None, 0.0))
            if record is not None and now - at < self.cache_ttl_s:
                records[code] = _copy(record)
        if missing := [code for code in codes if code not in records]:
            records.update(await self.store.load_many(missing))
        return records

    def _remember(self, records: dict[str, Record], lost: set[str]) -> None:
        """The batch's dossiers as now stored, their outboxes published (a lost one is read afresh next time)."""
        if not self.cached_dossiers:
            return
        now = time.monotonic()
        for code, record in records.items():
            if code in lost:
                self.recent.pop(code, None)
            else:
                self.recent[code] = (_copy(record, outbox=[]), now)
                self.recent.move_to_end(code)
        while len(self.recent) > self.cached_dossiers:
            self.recent.popitem(last=False)

    async def write_behind(self) -> None:
        """Write behind the heads of the dossiers written since the last round, and mark the outboxes published
        meanwhile, in bulk. Until then, a crash only means the next reader publishes them again; their events
        carry deterministic ids, so consumers recognise the copies."""
        snapshot = dict(self.published)
        await self.store.write_behind(snapshot, today_vn(self.clock()))
        for code, version in snapshot.items():
            if self.published.get(code) == version:
                del self.published[code]

    async def on_submitted(self, event: CloudEvent) -> None:
        await self.handle([Submitted(event)])

    async def on_outcome(self, event: CloudEvent, sender: str, *, assertion: str | None = None,
                         written_at: float | None = None) -> None:
        await self.handle([Outcome(event, sender, assertion, written_at)])

    async def on_tick(self, code: str, today: date) -> None:
        await self.handle([Tick(code, today)])

    async def tick_due(self, today: date) -> None:
        """The deadline clock's round: only the dossiers whose day for a look has come."""
        codes = await self.store.due(today)
        for start in range(0, len(codes), TICK_BATCH):
            await self.handle([Tick(code, today) for code in codes[start:start + TICK_BATCH]])

    async def _catalogue_at(self, version: int) -> Catalogue | None:
        try:
            return await self.catalogues.at(version)
        except KeyError:  # a version this store never held: the dossier is refused with a reason, not retried
            return None

    def _start(self, event: CloudEvent, batch: _Batch, catalogues: dict[int, Catalogue | None]) -> None:
        code = event.subject
        if code in batch.records:
            return  # redelivery or replay: already started
        assert isinstance(event.data, DossierSubmitted)
        try:
            cat = catalogues.get(event.data.catalogue_version)
            if cat is None:
                raise workflow.RoutingError(f"unknown catalogue version {event.data.catalogue_version}")
            decision = workflow.start(code, event.data, cat)
        except workflow.RoutingError as exc:
            log.warning("routing_failed", dossier_code=code, reason=str(exc))
            batch.alerts.append((new_event(RoutingFailed(reason=str(exc)[:2000]), subject=code, source=SOURCE, seq=1,
                                           event_id=deterministic_id(code, "routing-failed")), None))
            return
        record = Record(decision.workflow, version=0, applied=[event.id],
                        outbox=[to_json(e).decode() for e in self._events(code, decision)])
        batch.change(record)

    def _apply(self, item: Outcome, batch: _Batch) -> None:
        """Applied if `judge` finds nothing against it; otherwise nothing changes and the operators and the
        sender are told why."""
        event = item.event
        record = batch.records.get(event.subject)
        if record is not None and record.seen(event.id):
            return  # redelivered
        verdict = self.judge(event, item.sender, record, assertion=item.assertion, written_at=item.written_at)
        if isinstance(verdict, Refused):
            log.warning("outcome_rejected", reason=verdict.reason, event_id=event.id, outcome_type=event.type,
                        dossier_code=event.subject)
            if verdict.check == "assignment" and record is not None:  # a redelivery alerts no one again
                record.refused[event.id] = verdict.reason
                batch.change(record)
            alert = OutcomeRejected(outcome_id=event.id, outcome_type=event.type[:200], reason=verdict.reason[:200])
            batch.alerts.append((new_event(alert, subject=event.subject, source=SOURCE,
                                           seq=max(1, record.workflow.seq if record else 1),
                                           event_id=deterministic_id(event.id, "rejected")), item.sender))
            return
        record.applied.append(event.id)
        self._commit(record, verdict, batch)

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
            case SatisfactionRated() as rated:
                decision = workflow.rate(record.workflow, rated, today)
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

    def _commit(self, record: Record, decision: workflow.Decision, batch: _Batch) -> None:
        if not decision.events and decision.workflow == record.workflow:
            return
        record.workflow = decision.workflow
        record.outbox = record.outbox + [to_json(e).decode() for e in self._events(record.workflow.code, decision)]
        batch.change(record)

    def _events(self, code: str, decision: workflow.Decision) -> list[CloudEvent]:
        now = self.clock()
        return [new_event(data, subject=code, source=SOURCE, seq=seq, time=now,
                          event_id=deterministic_id(code, seq)) for seq, data in decision.events]

    async def _publish(self, records: list[Record], alerts: list[tuple[CloudEvent, str | None]]) -> None:
        """Hand every outbox event and alert to the producer in order (a dossier's events keep their order on its
        partition), then wait for all acknowledgements at once. Events carry deterministic ids, so a re-send after
        a crash is recognised downstream."""
        acks = []
        for record in records:
            for raw in record.outbox:
                event = parse_event(raw)
                acks.append(await self.publish_lifecycle(event, no_confirm=True))
                if isinstance(event.data, FOR_THE_UNIT):
                    acks.extend(await self.publish_work(event))
        for alert, agency in alerts:
            acks.append(await self.publish_alert(alert, no_confirm=True))
            if agency is not None and self.tell_sender is not None:
                acks.append(await self.tell_sender(agency, alert))
        await asyncio.gather(*(ack for ack in acks if ack is not None))


def _copy(record: Record, **changes: Any) -> Record:
    """A record a batch may change without touching the one it came from (the workflow is immutable)."""
    fields = {"workflow": record.workflow, "version": record.version, "applied": list(record.applied),
              "outbox": list(record.outbox), "refused": dict(record.refused)}
    return Record(**{**fields, **changes})


__all__ = ["ConcurrentUpdate", "Router"]
