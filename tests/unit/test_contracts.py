from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from tests.personal import stand_in
from lienthong.contracts import EVENT_TYPES, parse_event, to_json
from lienthong.contracts.dossier import Applicant, DossierSubmitted, DossierSubmittedEvent
from lienthong.contracts.envelope import deterministic_id, new_event
from lienthong.contracts.errors import field_errors, summarize

CANARY_ID = "079912345678"
CANARY_PHONE = "0912345678"
CANARY_EMAIL = "canary.citizen@example.vn"


def applicant(**overrides) -> dict:
    return {
        "citizen_id": CANARY_ID,
        "full_name": "Ngô Thị Trang",
        "phone": CANARY_PHONE,
        "email": CANARY_EMAIL,
        "address": "phố Trương Hán Siêu, phường Hạc Thành",
        "residence_unit": "HACTHANH",
        **overrides,
    }


def submitted(**overrides):
    data = DossierSubmitted(
        procedure_code="HT-KS",
        channel="online",
        receiving_unit="HACTHANH",
        external_ref="G22.99-251201-0001",
        received_at=datetime(2025, 12, 1, 9, 0, tzinfo=UTC),
        due_date=date(2025, 12, 2),
        processing_days=1,
        applicant=stand_in(Applicant(**applicant())),
        **overrides,
    )
    return new_event(data, subject="HACTHANH-251201-0001", source="/units/HACTHANH/intake", seq=1)


def test_every_event_type_is_versioned_and_registered():
    assert len(EVENT_TYPES) >= 19
    for event_type, model in EVENT_TYPES.items():
        assert event_type.startswith("vn.gov.") and event_type.rsplit(".", 1)[-1].startswith("v")
        assert model.model_fields["type"].annotation.__args__ == (event_type,)


def test_envelope_round_trips_as_structured_cloudevent():
    event = submitted()
    raw = to_json(event)
    body = json.loads(raw)
    assert body["specversion"] == "1.0"
    assert body["type"] == "vn.gov.dossier.submitted.v2"
    assert body["subject"] == "HACTHANH-251201-0001"
    assert body["datacontenttype"] == "application/json"
    assert body["dossierseq"] == 1
    parsed = parse_event(raw)
    assert isinstance(parsed, DossierSubmittedEvent)
    assert parsed == event


def test_events_are_frozen():
    event = submitted()
    with pytest.raises(ValidationError):
        event.subject = "OTHER-251201-0002"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["data"]["applicant"].update(citizen_id="12345"), "data.applicant.citizen_id"),
        (lambda b: b["data"]["applicant"].update(phone="12"), "data.applicant.phone"),
        (lambda b: b["data"]["applicant"].update(email="not-an-email"), "data.applicant.email"),
        (lambda b: b["data"].update(surprise=1), "data.surprise"),
        (lambda b: b.update(subject="nope"), "subject"),
        (lambda b: b["data"].update(channel="fax"), "data.channel"),
        (lambda b: b["data"].update(documents=[{"kind": "x", "name": "y", "sha256": "0" * 64}] * 51), "data.documents"),
        (lambda b: b.update(dossierseq=0), "dossierseq"),
    ],
)
def test_invalid_events_are_rejected_with_field_detail(mutate, field):
    body = json.loads(to_json(submitted()))
    mutate(body)
    with pytest.raises(ValidationError) as info:
        parse_event(json.dumps(body))
    fields = [e["field"] for e in field_errors(info.value)]
    assert any(f.endswith(field) for f in fields), fields


def test_validation_errors_never_echo_personal_data():
    body = json.loads(to_json(submitted()))
    body["data"]["applicant"]["citizen_id"] = "0799123456789"  # 13 digits: invalid, contains the canary
    body["data"]["applicant"]["phone"] = CANARY_PHONE + "9"
    body["data"]["applicant"]["email"] = CANARY_EMAIL + " "
    body["data"][CANARY_ID] = "key named after an ID"
    with pytest.raises(ValidationError) as info:
        parse_event(json.dumps(body))
    ours = json.dumps(field_errors(info.value)) + summarize(info.value)  # what we put in responses, logs, DLQ
    for canary in (CANARY_ID, CANARY_PHONE, CANARY_EMAIL, "0799123456789"):
        assert canary not in ours
    # pydantic's own text (never logged by us) still hides the rejected values themselves.
    for value in (CANARY_PHONE + "9", "0799123456789", "key named after an ID"):
        assert value not in str(info.value)


def test_unknown_event_type_is_rejected():
    body = json.loads(to_json(submitted()))
    body["type"] = "vn.gov.dossier.teleported.v1"
    with pytest.raises(ValidationError) as info:
        parse_event(json.dumps(body))
    assert field_errors(info.value)[0]["type"] == "union_tag_invalid"


def test_deterministic_ids_are_stable_and_distinct():
    assert deterministic_id("a", 1) == deterministic_id("a", 1)
    assert deterministic_id("a", 1) != deterministic_id("a", 2)
