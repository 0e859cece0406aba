"""Routing's service layer with an in-memory store and publisher: batches, redelivery, another instance's writes,
a crash between the write and the publication, the deadline ticker's reads. Milliseconds, no servers."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta

import pytest
from hypothesis import example, given, settings, strategies as st
from pydantic import ValidationError

from lienthong.calendar import VN_TZ, add_working_days
from lienthong.catalogue import catalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import StepCompleted
from lienthong.contracts.envelope import new_event
from lienthong.identity import registry
from routing.router import Outcome, Router, Submitted
from routing.settings import RoutingSettings
from routing.store import Record
from routing.workflow import next_tick_day, start, tick
from tests.unit.routing.test_workflow import RECEIVED, submitted

NOW = datetime(2025, 12, 1, 10, 0, tzinfo=VN_TZ)


class MemoryStore:
    """WorkflowStore's contract: compare-and-set on `version`; `lose` names codes another writer changes first."""

    def __init__(self) -> None:
        self.docs: dict[str, Record] = {}
        self.lose: set[str] = set()
        self.reads: list[list[str]] = []

    async def load_many(self, codes):
        codes = list(codes)
        self.reads.append(codes)
        return {c: copy.deepcopy(self.docs[c]) for c in codes if c in self.docs}

    async def load(self, code):
        return (await self.load_many([code])).get(code)

    async def save_many(self, records):
        lost = set()
        for r in records:
            stored = self.docs.get(r.workflow.code)
            if r.workflow.code in self.lose or (stored.version if stored else 0) != r.version:
                lost.add(r.workflow.code)
                continue
            r.version += 1
            self.docs[r.workflow.code] = copy.deepcopy(r)
        self.lose -= lost
        return lost

    async def write_behind(self, published, today):
        for code, version in published.items():
            if self.docs[code].version == version:
                self.docs[code].outbox = []

    async def due(self, today):
        return [c for c, r in self.docs.items() if (d := next_tick_day(r.workflow)) is not None and d <= today]


class Published:
    def __init__(self) -> None:
        self.lifecycle: list[CloudEvent] = []
        self.work: list[CloudEvent] = []
        self.alerts: list[CloudEvent] = []
        self.fail = False

    async def _ack(self) -> None:
        return None

    async def on_lifecycle(self, event, no_confirm=False):
        if self.fail:
            raise RuntimeError("broker went away")
        self.lifecycle.append(event)
        return self._ack()

    async def on_work(self, event):
        self.work.append(event)
        return [self._ack()]

    async def on_alert(self, event, no_confirm=False):
        self.alerts.append(event)
        return self._ack()


def routing() -> tuple[Router, MemoryStore, Published]:
    store, out = MemoryStore(), Published()
    router = Router(store, catalogue(), out.on_lifecycle, out.on_work, out.on_alert, clock=lambda: NOW,
                    cached_dossiers=10_000)  # as the service runs (the store's versions outlive the cache)
    return router, store, out


def submission(code: str, procedure: str = "LT-KS-TT-BHYT") -> Submitted:
    return Submitted(new_event(submitted(procedure), subject=code, source="/test", seq=1))


def completion(assigned: CloudEvent) -> Outcome:
    data = assigned.data
    event = new_event(StepCompleted(unit_code=data.unit_code, step=data.step), subject=assigned.subject,
                      source="/test", seq=assigned.dossierseq)
    [agency] = registry().acting_for(data.unit_code)
    return Outcome(event, agency)


def assignments(out: Published, code: str) -> list[CloudEvent]:
    return [e for e in out.work if e.subject == code]


async def test_a_batch_is_read_at_once_and_each_dossier_routed_once_despite_redelivery():
    router, store, out = routing()
    batch = [submission(f"HACTHANH-251201-{i:04d}") for i in range(1, 21)]
    await router.handle(batch + batch[:5])  # a redelivered tail in the same batch
    assert store.reads == [sorted({s.event.subject for s in batch})]
    assert {e.subject for e in out.work} == {s.event.subject for s in batch} and len(out.work) == 20
    await router.handle(batch)  # and in a later batch
    assert len(out.work) == 20
    assert all(r.outbox for r in store.docs.values()), "clearing the outboxes is written behind"
    await router.write_behind()
    assert not any(r.outbox for r in store.docs.values()) and router.published == {}


async def test_outcomes_for_one_dossier_in_one_batch_apply_in_order():
    router, store, out = routing()
    code = "HACTHANH-251201-0001"
    await router.handle([submission(code)])
    done = completion(assignments(out, code)[0])
    await router.handle([done])
    second = assignments(out, code)[1]
    # The next step's completion and a redelivery of the first, in one batch: the redelivery changes nothing.
    await router.handle([completion(second), done])
    units = [e.data.unit_code for e in assignments(out, code)]
    assert units == ["HACTHANH", "CATINH", "BHXH"]
    seqs = [e.dossierseq for e in out.lifecycle if e.subject == code]
    assert seqs == list(range(2, 2 + len(seqs)))
    assert out.alerts == []


async def test_a_dossier_another_instance_changed_first_is_decided_again_on_a_fresh_read():
    router, store, out = routing()
    codes = [f"HACTHANH-251201-{i:04d}" for i in (1, 2)]
    await router.handle([submission(c) for c in codes])
    first = {c: assignments(out, c)[0] for c in codes}
    store.lose = {codes[0]}  # its write loses once: nothing of it may be published from that round
    await router.handle([completion(first[c]) for c in codes])
    assert store.reads[1:] == [[codes[0]]]  # the batch came from memory; the lost dossier is read afresh
    for code in codes:
        assert [e.data.unit_code for e in assignments(out, code)] == ["HACTHANH", "CATINH"]


async def test_events_decided_before_a_crash_are_published_by_the_next_batch_and_never_decided_twice():
    router, store, out = routing()
    code = "HACTHANH-251201-0001"
    out.fail = True
    try:
        await router.handle([submission(code)])
    except RuntimeError:
        pass
    assert store.docs[code].outbox, "the decision is stored with its outbox before anything is published"
    out.fail = False
    await router.handle([submission(code)])  # the redelivery: already started, so only the outbox goes out
    assert [e.type.split(".")[3] for e in out.lifecycle] == ["assigned"]
    await router.handle([submission(code)])  # published and known so: not again
    assert len(out.lifecycle) == 1


async def test_outboxes_published_but_not_yet_cleared_go_out_again_after_a_restart_as_copies_only():
    router, store, out = routing()
    code = "HACTHANH-251201-0001"
    await router.handle([submission(code)])
    done = completion(assignments(out, code)[0])
    restarted = Router(store, catalogue(), out.on_lifecycle, out.on_work, out.on_alert, clock=lambda: NOW)
    await restarted.handle([done])  # killed before the clearing was written: the new process republishes
    first_ids = [e.id for e in out.lifecycle]
    assert first_ids[0] == first_ids[1], "the assignment again, as a copy with the same id"
    assert len(set(first_ids)) == len(first_ids) - 1
    seqs = sorted({e.dossierseq: e.id for e in out.lifecycle})
    assert seqs == list(range(2, 2 + len(seqs)))


async def test_a_refused_outcome_alerts_once_and_changes_nothing():
    router, store, out = routing()
    code = "HACTHANH-251201-0001"
    await router.handle([submission(code)])
    first = assignments(out, code)[0]
    done = completion(first)
    await router.handle([done])
    before = copy.deepcopy(store.docs[code].workflow)
    wrong = Outcome(new_event(StepCompleted(unit_code="CATINH", step=1), subject=code, source="/test",
                              seq=first.dossierseq), "police")  # answers the first assignment: stale
    await router.handle([wrong, wrong])
    await router.handle([wrong])
    assert store.docs[code].workflow == before
    assert len(out.alerts) == 1


async def test_the_ticker_reads_only_dossiers_whose_day_has_come():
    router, store, out = routing()
    codes = [f"HACTHANH-251201-{i:04d}" for i in range(1, 4)]
    await router.handle([submission(c, "HT-KS") for c in codes])
    due = store.docs[codes[0]].workflow.due_date
    await router.tick_due(RECEIVED.date())
    assert store.reads[-1] == codes  # the submissions' read; the ticker found nothing to read
    await router.tick_due(due + timedelta(days=1))
    overdue = [e for e in out.lifecycle if e.type.endswith("overdue.v1")]
    assert len(overdue) == 2 * len(codes)  # the step's and the dossier's
    await router.tick_due(due + timedelta(days=2))
    assert len([e for e in out.lifecycle if e.type.endswith("overdue.v1")]) == 2 * len(codes)


@settings(max_examples=150, deadline=None)
@given(procedure=st.sampled_from(["HT-KS", "HT-KH", "LT-KS-TT-BHYT", "TP-LLTP"]),
       offset=st.integers(0, 40), ticks=st.lists(st.integers(0, 60), max_size=4))
@example(procedure="LT-KS-TT-BHYT", offset=0, ticks=[2])  # found by hypothesis: a "due soon" after "overdue"
def test_no_tick_before_the_next_tick_day_has_anything_to_say(procedure, offset, ticks):
    wf = start("HACTHANH-251201-0001", submitted(procedure), catalogue()).workflow
    for day in sorted(ticks):  # some earlier rounds of the clock
        wf = tick(wf, RECEIVED.date() + timedelta(days=day)).workflow
    first = next_tick_day(wf)
    if first is None:
        return
    today = RECEIVED.date() + timedelta(days=offset)
    if today < first:
        assert tick(wf, today).events == ()
    assert tick(wf, max(today, first)).events != ()


def test_next_tick_day_is_the_working_day_before_the_due_date():
    wf = start("HACTHANH-251201-0001", submitted("HT-KS"), catalogue()).workflow
    first = next_tick_day(wf)
    assert add_working_days(first, 1) >= min(wf.due_date, wf.step_due)
    assert add_working_days(first - timedelta(days=1), 1) < min(wf.due_date, wf.step_due)
    assert isinstance(first, date)


async def test_a_dossier_routed_recently_is_not_read_again_until_its_time_in_memory_is_up():
    router, store, out = routing()
    code = "HACTHANH-251201-0001"
    await router.handle([submission(code)])
    await router.handle([completion(assignments(out, code)[0])])
    assert store.reads == [[code]]  # the second input found the dossier as this process stored it
    router.cache_ttl_s = 0.0
    await router.handle([completion(assignments(out, code)[1])])
    assert store.reads == [[code], [code]]
    assert [e.data.unit_code for e in assignments(out, code)] == ["HACTHANH", "CATINH", "BHXH"]
    assert len({e.id for e in out.lifecycle}) == len(out.lifecycle)  # nothing published twice from memory


def test_routing_refuses_to_start_with_versions_deleted_sooner_than_its_dossiers_are_kept():
    assert RoutingSettings().keep_superseded_s > RoutingSettings().cache_ttl_s
    with pytest.raises(ValidationError, match="keep_superseded_s must exceed cache_ttl_s"):
        RoutingSettings(cache_ttl_s=60, keep_superseded_s=30)
    assert RoutingSettings(cached_dossiers=0, cache_ttl_s=60, keep_superseded_s=0).cached_dossiers == 0
