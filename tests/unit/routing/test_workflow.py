"""Routing's workflow rules, pure: the three chains, pauses, lateness, foreign and stale outcomes."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tests.personal import stand_in
from lienthong.calendar import VN_TZ, due_date
from lienthong.catalogue import catalogue
from lienthong.contracts.dossier import (
    Applicant,
    DossierAssigned,
    DossierOverdue,
    DossierResolved,
    DossierSubmitted,
    DossierTransferred,
    FeePaid,
    SatisfactionRated,
    StepCompleted,
    StepStarted,
    SupplementRequested,
)
from routing.workflow import RoutingError, apply_outcome, fee_paid, rate, start, supplement_provided, tick

RECEIVED = datetime(2025, 12, 1, 9, 0, tzinfo=VN_TZ)  # Monday


def submitted(procedure: str, unit: str = "HACTHANH", residence: str = "HACTHANH", parcel: str | None = None):
    days = catalogue().procedures[procedure].processing_days
    return DossierSubmitted(
        procedure_code=procedure, channel="direct", receiving_unit=unit, external_ref="R-1", received_at=RECEIVED,
        due_date=due_date(RECEIVED, days), processing_days=days,
        applicant=stand_in(Applicant(citizen_id="038099001122", full_name="A", address="B", residence_unit=residence)),
        land_parcel=parcel,
    )


def run_chain(procedure: str, *, complete_on: list[date], **kw):
    decision = start("HACTHANH-251201-0001", submitted(procedure, **kw), catalogue())
    wf, emitted = decision.workflow, list(decision.events)
    for day in complete_on:
        d = apply_outcome(wf, StepCompleted(unit_code=wf.unit, step=wf.step), wf.assignment_seq, day,
                          datetime.combine(day, datetime.min.time(), VN_TZ).replace(hour=10))
        assert d.rejected_reason is None, d.rejected_reason
        wf, emitted = d.workflow, emitted + list(d.events)
    return wf, emitted


def assigned_units(emitted):
    return [e.unit_code for _, e in emitted if isinstance(e, DossierAssigned)]


def test_birth_chain_commune_police_social_insurance_on_time():
    wf, emitted = run_chain("LT-KS-TT-BHYT", complete_on=[date(2025, 12, 1), date(2025, 12, 3), date(2025, 12, 5)])
    assert assigned_units(emitted) == ["HACTHANH", "CATINH", "BHXH"]
    assert wf.status == "resolved"
    resolved = [e for _, e in emitted if isinstance(e, DossierResolved)]
    assert len(resolved) == 1 and resolved[0].on_time
    seqs = [s for s, _ in emitted]
    assert seqs == list(range(2, 2 + len(emitted)))  # submitted is 1; routing numbers the rest without gaps


def test_death_chain_returns_to_the_commune():
    wf, emitted = run_chain("LT-KT-XTT-MT", complete_on=[date(2025, 12, 1), date(2025, 12, 2), date(2025, 12, 4)])
    assert assigned_units(emitted) == ["HACTHANH", "CATINH", "HACTHANH"]
    assert wf.status == "resolved"


def test_land_transfer_chain_goes_through_the_parcel_branch_and_tax():
    _, emitted = run_chain("DD-CNQSDD", parcel="HOANGSON-12-345",
                           complete_on=[date(2025, 12, d) for d in (2, 3, 4, 5, 8)])
    branch = catalogue().units["HOANGSON"].land_branch
    assert assigned_units(emitted) == [branch, "THUE", "HACTHANH", branch, "HACTHANH"]
    transferred = [e for _, e in emitted if isinstance(e, DossierTransferred)]
    assert transferred and transferred[0].to_unit == branch  # received at the commune, competent: the branch


def test_non_boundary_filing_transfers_to_the_residence_commune():
    decision = start("BATMOT-251201-0001", submitted("HT-XNHN", unit="BATMOT", residence="HAMRONG"), catalogue())
    [(_, transferred), (_, assigned)] = decision.events
    assert (transferred.from_unit, transferred.to_unit) == ("BATMOT", "HAMRONG")
    assert assigned.unit_code == "HAMRONG"
    assert decision.workflow.receiving_unit == "BATMOT"  # both units stay on record


def test_supplement_pause_moves_due_date_by_the_paused_working_days():
    wf = start("HACTHANH-251201-0001", submitted("HT-KH"), catalogue()).workflow
    original_due = wf.due_date
    d = apply_outcome(wf, SupplementRequested(unit_code="HACTHANH", step=0, missing_documents=("to-khai",)),
                      wf.assignment_seq, date(2025, 12, 2), datetime(2025, 12, 2, 10, tzinfo=VN_TZ))
    assert d.workflow.status == "paused"
    assert tick(d.workflow, date(2025, 12, 31)).events == ()  # a paused clock raises no alarms
    resumed = supplement_provided(d.workflow, date(2025, 12, 5))  # Wed..Fri: 3 working days consumed
    assert resumed.workflow.paused_days == 3
    assert resumed.workflow.due_date == date(2025, 12, 11) and original_due == date(2025, 12, 8)


def test_late_step_resolves_late_with_one_overdue_event():
    wf = start("HACTHANH-251201-0001", submitted("HT-KS"), catalogue()).workflow  # 1 day: due Tue 2 Dec
    overdue = []
    for day in (date(2025, 12, 3), date(2025, 12, 4), date(2025, 12, 5)):
        d = tick(wf, day)
        wf = d.workflow
        overdue += [e for _, e in d.events if isinstance(e, DossierOverdue)]
    assert [(e.step, e.due_date) for e in overdue] == [(0, date(2025, 12, 2)), (None, date(2025, 12, 2))]
    d = apply_outcome(wf, StepCompleted(unit_code="HACTHANH", step=0), wf.assignment_seq, date(2025, 12, 5),
                      datetime(2025, 12, 5, 9, tzinfo=VN_TZ))
    [resolved] = [e for _, e in d.events if isinstance(e, DossierResolved)]
    assert not resolved.on_time


def test_foreign_and_stale_outcomes_are_refused():
    wf = start("HACTHANH-251201-0001", submitted("LT-KS-TT-BHYT"), catalogue()).workflow
    now = datetime(2025, 12, 1, 10, tzinfo=VN_TZ)
    foreign = apply_outcome(wf, StepStarted(unit_code="CATINH", step=0), wf.assignment_seq, now.date(), now)
    assert foreign.rejected_reason and "does not hold" in foreign.rejected_reason and foreign.events == ()
    stale = apply_outcome(wf, StepStarted(unit_code="HACTHANH", step=0), wf.assignment_seq - 1, now.date(), now)
    assert stale.rejected_reason.startswith("stale")


def test_unknown_procedure_is_a_routing_failure():
    bad = submitted("HT-KS").model_copy(update={"procedure_code": "XX-GONE"})
    with pytest.raises(RoutingError):
        start("HACTHANH-251201-0001", bad, catalogue())


def test_extension_moves_due_dates_and_is_recorded_with_its_reason():
    from lienthong.contracts.dossier import DeadlineExtended

    wf = start("HACTHANH-251201-0001", submitted("HT-KH"), catalogue()).workflow  # due Mon 8 Dec
    now = datetime(2025, 12, 3, 10, tzinfo=VN_TZ)
    d = apply_outcome(wf, DeadlineExtended(unit_code="HACTHANH", working_days=3, reason="cần xác minh thêm"),
                      wf.assignment_seq, now.date(), now)
    [(_, recorded)] = d.events
    assert recorded.new_due_date == d.workflow.due_date == date(2025, 12, 11)
    assert recorded.reason == "cần xác minh thêm"


def test_unit_pause_and_resume_and_result_returned():
    from lienthong.contracts.dossier import DossierPaused, DossierResumed, ResultReturned

    wf = start("HACTHANH-251201-0001", submitted("HT-KS"), catalogue()).workflow
    t = datetime(2025, 12, 1, 10, tzinfo=VN_TZ)
    wf = apply_outcome(wf, DossierPaused(unit_code="HACTHANH", reason="chờ xác minh"), wf.assignment_seq,
                       t.date(), t).workflow
    assert wf.status == "paused"
    d = apply_outcome(wf, DossierResumed(unit_code="HACTHANH", paused_working_days=0, new_due_date=date(2025, 12, 2)),
                      wf.assignment_seq, date(2025, 12, 3), t)
    assert d.workflow.paused_days == 2 and d.workflow.due_date == date(2025, 12, 4)  # routing computed it
    wf = apply_outcome(d.workflow, StepCompleted(unit_code="HACTHANH", step=0), wf.assignment_seq,
                       date(2025, 12, 3), t).workflow
    early = ResultReturned(unit_code="CATINH", method="counter", returned_at=t)
    assert "receiving unit" in apply_outcome(wf, early, wf.assignment_seq, t.date(), t).rejected_reason
    done = apply_outcome(wf, ResultReturned(unit_code="HACTHANH", method="counter", returned_at=t),
                         wf.assignment_seq, t.date(), t)
    assert done.workflow.status == "returned" and len(done.events) == 1


def _with_fee(fee_vnd: int, exempt: bool = False):
    data = submitted("HT-KS").model_copy(update={"fee_vnd": fee_vnd, "fee_exempt": exempt})
    return start("HACTHANH-251201-0002", data, catalogue()).workflow


def test_a_fee_is_paid_once_only_where_one_is_due_and_by_a_unit_of_the_dossier():
    paid = FeePaid(unit_code="HACTHANH", method="online", amount_vnd=50_000, paid_at=RECEIVED)
    assert fee_paid(_with_fee(0), paid).rejected_reason == "no fee is due for this dossier"
    assert fee_paid(_with_fee(50_000, exempt=True), paid).rejected_reason == "no fee is due for this dossier"
    wf = _with_fee(50_000)
    foreign = paid.model_copy(update={"unit_code": "BIMSON"})
    assert "neither received nor holds" in fee_paid(wf, foreign).rejected_reason
    once = fee_paid(wf, paid)
    assert once.rejected_reason is None and [e for _, e in once.events] == [paid] and once.workflow.fee_paid
    assert fee_paid(once.workflow, paid).rejected_reason == "the fee is already paid"


def test_a_rating_comes_after_the_outcome_may_change_within_the_window_and_counts_once():
    wf, _ = run_chain("HT-KS", complete_on=[date(2025, 12, 1)])
    assert wf.closed_on == date(2025, 12, 1)
    fresh = start("HACTHANH-251201-0003", submitted("HT-KS"), catalogue()).workflow
    assert "nothing to rate yet" in rate(fresh, SatisfactionRated(rating="satisfied"), date(2025, 12, 1)).rejected_reason
    first = rate(wf, SatisfactionRated(rating="satisfied"), date(2025, 12, 2))
    assert first.rejected_reason is None and len(first.events) == 1
    same = rate(first.workflow, SatisfactionRated(rating="satisfied"), date(2025, 12, 3))
    assert same.rejected_reason is None and same.events == () and same.workflow == first.workflow
    changed = rate(first.workflow, SatisfactionRated(rating="unsatisfied"), date(2025, 12, 31))
    assert changed.workflow.rating == "unsatisfied" and len(changed.events) == 1
    late = rate(first.workflow, SatisfactionRated(rating="unsatisfied"), date(2026, 1, 1))
    assert "rating window closed" in late.rejected_reason


def test_an_electronic_result_is_carried_to_the_resolution():
    wf = start("HACTHANH-251201-0004", submitted("HT-KS"), catalogue()).workflow
    done = apply_outcome(wf, StepCompleted(unit_code=wf.unit, step=0, result_electronic=True), wf.assignment_seq,
                         date(2025, 12, 1), RECEIVED)
    [resolved] = [e for _, e in done.events if isinstance(e, DossierResolved)]
    assert resolved.result_electronic and done.workflow.closed_on == date(2025, 12, 1)
