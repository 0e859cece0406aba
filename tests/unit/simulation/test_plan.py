"""The simulator's plan: the same seed gives the same filings and outcomes; the mix is the province's."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from lienthong.calendar import VN_TZ
from lienthong.contracts.intake import DossierSubmission
from lienthong_tools.simulation.plan import actions, add_office_time, filings, in_office

START = datetime(2026, 11, 25, 8, 0, tzinfo=VN_TZ)  # a Wednesday


def plan(seed: int) -> list:
    filed = list(filings(seed, rate=20, duration_s=120, start=START, speedup=30))
    outcomes = [actions(seed, f.body["external_ref"], step, 2) for f in filed for step in range(3)]
    return [(f.at, f.via, f.body) for f in filed], outcomes


def test_same_seed_same_sequence_other_seed_another():
    assert plan(7) == plan(7)
    assert plan(7) != plan(8)


def test_filings_are_valid_submissions_with_the_provinces_mix():
    filed = list(filings(3, rate=20, duration_s=300, start=START, speedup=30))
    assert len(filed) > 3000
    for f in filed:
        DossierSubmission.model_validate(f.body)  # what intake accepts, field by field
    channels = Counter(f.body["channel"] for f in filed)
    assert 0.95 <= channels["online"] / len(filed) <= 0.98
    assert channels["postal"] > 0 and channels["direct"] > 0
    assert {f.via for f in filed} == {"http", "kafka"}
    procedures = Counter(f.body["procedure_code"] for f in filed)
    assert procedures["LT-KS-TT-BHYT"] and procedures["DD-CNQSDD"] and procedures["LT-KT-XTT-MT"]  # chains
    assert sum(f.body["receiving_unit"] != f.body["applicant"]["residence_unit"] for f in filed) > 0.05 * len(filed)
    kinds = Counter(a.kind for f in filed[:2000] for a in actions(3, f.body["external_ref"], 0, 3))
    assert kinds["completed"] and kinds["supplement-requested"] and kinds["rejected"] and kinds["withdrawn"]


def test_counters_and_post_offices_keep_office_hours_the_portal_does_not():
    night = datetime(2026, 11, 28, 20, 0, tzinfo=VN_TZ)  # a Saturday evening
    filed = list(filings(5, rate=20, duration_s=120, start=night, speedup=60))
    assert filed and all(f.body["channel"] == "online" for f in filed)
    assert not in_office(night)
    # Agencies act in office hours: 10 office hours from Wednesday 16:00 are 1 h on Wednesday, 7.5 h on Thursday
    # (7:30-11:30, 13:30-17:00) and 1.5 h on Friday morning.
    assert add_office_time(datetime(2026, 11, 25, 16, 0, tzinfo=VN_TZ), timedelta(hours=10)) == \
        datetime(2026, 11, 27, 9, 0, tzinfo=VN_TZ)
