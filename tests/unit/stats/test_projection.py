"""Stats' pure projection: each event applies once, in order; figures by the province's definitions."""

from __future__ import annotations

from datetime import date, datetime

from tests.personal import stand_in
from lienthong.calendar import VN_TZ
from lienthong.contracts.dossier import Applicant, DossierAssigned, DossierResolved, DossierSubmitted
from lienthong.contracts.envelope import new_event
from stats.projection import apply, summarize

T = datetime(2025, 12, 1, 9, tzinfo=VN_TZ)


def events(code="HACTHANH-251201-0001", on_time=True):
    sub = DossierSubmitted(procedure_code="HT-KS", channel="postal", receiving_unit="HACTHANH", external_ref="x",
                           received_at=T, due_date=date(2025, 12, 2), processing_days=1,
                           applicant=stand_in(Applicant(citizen_id="038099001122", full_name="Ngô Thị Trang", address="a",
                                               residence_unit="HACTHANH")))
    return [
        new_event(sub, subject=code, source="/t", seq=1, time=T),
        new_event(DossierAssigned(unit_code="CATINH", step=0, step_name="s", step_due_date=date(2025, 12, 2)),
                  subject=code, source="/t", seq=2, time=T),
        new_event(DossierResolved(unit_code="CATINH", resolved_at=T, due_date=date(2025, 12, 2), on_time=on_time),
                  subject=code, source="/t", seq=3, time=datetime(2025, 12, 3, 10, tzinfo=VN_TZ)),
    ]


def fold(evs):
    doc = None
    for e in evs:
        doc = apply(doc, e) or doc
    return doc


def test_each_event_applies_once_and_in_order():
    evs = events()
    once = fold(evs)
    assert fold(evs + evs) == once  # redelivery
    assert fold([evs[0], evs[2], evs[1], evs[2]]) == once  # a gap waits; the late event then applies
    assert once["status"] == "resolved" and once["competent_unit"] == "CATINH" and once["closed_day"] == "2025-12-03"
    assert [e["event"] for e in once["timeline"]] == ["submitted", "assigned", "resolved"]


def test_projection_keeps_no_personal_data():
    doc = fold(events())
    text = repr(doc)
    assert "038099001122" not in text and "Ngô Thị Trang" not in text
    assert "applicant" not in doc and doc["receiving_unit"] == "HACTHANH"  # tracking shows the dossier, not the person


def test_figures_by_definition():
    docs = [fold(events("HACTHANH-251201-0001")), fold(events("HACTHANH-251201-0002", on_time=False)),
            fold(events("HACTHANH-251201-0003")[:2])]
    s = summarize(docs, date(2025, 12, 1), date(2025, 12, 3))
    assert (s.received, s.received_postal, s.resolved, s.resolved_on_time, s.resolved_late) == (3, 3, 2, 1, 1)
    assert (s.in_progress, s.overdue) == (1, 1)  # due 2 Dec, still open on 3 Dec
    assert s.on_time_rate == 0.5 and s.online_rate == 0.0
    before = summarize(docs, date(2025, 12, 1), date(2025, 12, 2))
    assert (before.resolved, before.in_progress, before.overdue) == (0, 3, 0)  # due on the last day: not yet late


def test_in_progress_and_overdue_are_as_of_today_when_the_period_ends_later():
    item = {"received_day": "2025-12-01", "channel": "online", "closed_day": None, "status": "in_progress",
            "on_time": None, "due_date": "2025-12-10"}
    end = date(2026, 1, 31)
    assert summarize([item], date(2025, 12, 1), end).overdue == 1  # as of 31 January it will be
    as_of_today = summarize([item], date(2025, 12, 1), end, today=date(2025, 12, 5))
    assert (as_of_today.in_progress, as_of_today.overdue) == (1, 0)  # today it is not yet
    assert summarize([item], date(2025, 12, 1), end, today=date(2025, 12, 11)).overdue == 1
