"""Intake's pure rules: no broker, no store."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from intake.domain import check, dossier_code, dossier_day, submitted_event
from lienthong.calendar import VN_TZ
from tests.personal import stand_in
from lienthong.catalogue import catalogue
from lienthong.contracts.intake import DossierSubmission


def make(**overrides) -> DossierSubmission:
    body = {
        "procedure_code": "TP-LLTP",
        "channel": "online",
        "receiving_unit": "PVHCCTINH",
        "external_ref": "G22.99-000001",
        "applicant": {
            "citizen_id": "038099001122",
            "full_name": "Lê Văn A",
            "address": "Hạc Thành",
            "residence_unit": "HACTHANH",
        },
        "documents": [{"kind": "to-khai", "name": "t.pdf", "sha256": "a" * 64}],
    }
    body.update(overrides)
    return DossierSubmission.model_validate(body)


def test_provincial_procedure_accepted_at_provincial_centre_and_any_commune():
    assert check(make(), catalogue()) == []
    assert check(make(receiving_unit="BATMOT"), catalogue()) == []  # non-boundary: any commune receives it


@pytest.mark.parametrize(
    ("received", "expected_due"),
    [
        # TP-LLTP: 10 working days. Fri 13 Feb 2026 09:00; Tết closes 16-20 Feb -> 23 Feb is day 1 -> 6 Mar.
        (datetime(2026, 2, 13, 9, 0, tzinfo=VN_TZ), date(2026, 3, 6)),
        # Received Fri 25 Apr 2025 18:00: counts from the make-up Saturday 26 Apr; 28, 29 Apr are days 1-2,
        # 30 Apr and 1-2 May are off, 5-9 May days 3-7, 12-14 May days 8-10.
        (datetime(2025, 4, 25, 18, 0, tzinfo=VN_TZ), date(2025, 5, 14)),
    ],
)
def test_due_date_in_the_event_uses_the_working_day_calendar(received, expected_due):
    event = submitted_event(make(), catalogue(), applicant=stand_in(make().applicant), code="PVHCCTINH-260213-0001", received_at=received)
    assert event.data.due_date == expected_due
    assert event.data.processing_days == 10


def test_code_uses_the_local_reception_day():
    received = datetime(2025, 12, 31, 23, 30, tzinfo=VN_TZ)
    assert dossier_code("HACTHANH", dossier_day(received), 7) == "HACTHANH-251231-0007"


def test_event_id_is_stable_for_a_code():
    a = submitted_event(make(), catalogue(), applicant=stand_in(make().applicant), code="PVHCCTINH-260213-0001", received_at=datetime.now(VN_TZ))
    b = submitted_event(make(), catalogue(), applicant=stand_in(make().applicant), code="PVHCCTINH-260213-0001", received_at=datetime.now(VN_TZ))
    assert a.id == b.id
