"""Notify's rules and templates, pure: each rule's recipients, channels, Vietnamese text and masking."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest

from tests.personal import stand_in
from lienthong.calendar import VN_TZ
from lienthong.catalogue import Catalogue, Procedure, Step, catalogue
from lienthong.catalogue.versions import LiveCatalogue
from lienthong.contracts.dossier import (
    Applicant,
    DossierAssigned,
    DossierDueSoon,
    DossierOverdue,
    DossierRejected,
    DossierResolved,
    DossierSubmitted,
    StepStarted,
    SupplementRequested,
)
from lienthong.contracts.envelope import new_event
from notify.channels import signature
from notify.compose import ComposeError, Composer
from notify.domain import DossierFacts, Subscription, load_rules, plan

CODE = "HACTHANH-251201-0001"
CITIZEN_ID = "038099001122"
NAME = "Lê Thị Hồng Nhung"
RULES = load_rules()
CITIZEN = Applicant(citizen_id=CITIZEN_ID, full_name=NAME, phone="0912345678", email="nhung@example.vn",
                    address="12 Lê Lợi", residence_unit="HACTHANH")
FACTS = DossierFacts(code=CODE, procedure_code="HT-KH", receiving_unit="HACTHANH", due_date=date(2025, 12, 4),
                     applicant=stand_in(CITIZEN), step_due_date=date(2025, 12, 4))
TODAY = date(2025, 12, 8)  # Monday after the due date
composer = Composer(catalogue(), tracking_url="https://dvc.example/{code}", unit_email="{code}@thanhhoa.gov.vn",
                    apology_working_days=3, today=lambda: TODAY)


def event(data, seq=2):
    return new_event(data, subject=CODE, source="/test", seq=seq)


SUBMITTED = DossierSubmitted(
    procedure_code="HT-KH", channel="online", receiving_unit="HACTHANH", external_ref="P-1",
    received_at=datetime(2025, 12, 1, 9, tzinfo=VN_TZ), due_date=date(2025, 12, 4), processing_days=3,
    applicant=stand_in(CITIZEN))

CASES = {
    "received": (SUBMITTED, ["Đã tiếp nhận hồ sơ", "04/12/2025"]),
    "supplement": (SupplementRequested(unit_code="HACTHANH", step=0, missing_documents=("Tờ khai kết hôn",)),
                   ["cần bổ sung", "Tờ khai kết hôn"]),
    "resolved": (DossierResolved(unit_code="HACTHANH", resolved_at=datetime(2025, 12, 3, 10, tzinfo=VN_TZ),
                                 due_date=date(2025, 12, 4), on_time=True), ["đã có kết quả", "03/12/2025"]),
    "rejected": (DossierRejected(unit_code="HACTHANH", reason="Hồ sơ không đủ điều kiện <b>theo luật</b>"),
                 ["không được giải quyết", "Lý do: Hồ sơ không đủ điều kiện"]),
    "apology": (DossierOverdue(unit_code="HACTHANH", step=None, due_date=date(2025, 12, 4)),
                ["xin lỗi", "04/12/2025", "11/12/2025"]),  # 3 working days after Monday 8/12
}


@pytest.mark.parametrize("template", CASES)
def test_citizen_rule_sends_email_and_sms_with_vietnamese_text_and_masking(template):
    data, phrases = CASES[template]
    ev = event(data, seq=1 if template == "received" else 2)
    deliveries = plan(ev, RULES, FACTS, [], citizen=CITIZEN)
    assert {(d.recipient_kind, d.channel, d.template) for d in deliveries} == {
        ("citizen", "email", template), ("citizen", "sms", template)}
    email = composer.compose(next(d for d in deliveries if d.channel == "email"), ev, FACTS, CITIZEN)
    sms = composer.compose(next(d for d in deliveries if d.channel == "sms"), ev, FACTS, CITIZEN)
    assert email.to == "nhung@example.vn" and sms.to == "0912345678"
    assert CODE in email.subject and CODE in sms.body
    for phrase in phrases:
        assert phrase in email.body + email.subject and phrase.split(" <")[0] in sms.body + email.body
    assert NAME in email.body  # e-mail is private: the full name
    assert NAME not in sms.body and "L* T** H*** N****" in sms.body or template == "apology"
    assert CITIZEN_ID not in email.body + sms.body  # never the full citizen ID, on any channel
    assert "<b>" not in email.body  # HTML e-mail is autoescaped


def test_received_email_shows_only_the_masked_citizen_id():
    ev = event(SUBMITTED, seq=1)
    [email, _] = plan(ev, RULES, FACTS, [], citizen=CITIZEN)
    assert "*********122" in composer.compose(email, ev, FACTS, CITIZEN).body


@pytest.mark.parametrize(("data", "template"), [
    (DossierAssigned(unit_code="CATINH", step=1, step_name="Đăng ký thường trú", step_due_date=date(2025, 12, 5)),
     "assigned"),
    (DossierDueSoon(unit_code="CATINH", step=1, due_date=date(2025, 12, 5)), "due-soon"),
    (DossierOverdue(unit_code="CATINH", step=1, due_date=date(2025, 12, 5)), "overdue"),
])
def test_unit_rules_send_email_to_the_unit_mailbox(data, template):
    ev = event(data)
    [delivery] = plan(ev, RULES, FACTS, [], citizen=CITIZEN)
    assert (delivery.recipient_kind, delivery.recipient_ref, delivery.template) == ("unit", "CATINH", template)
    mail = composer.compose(delivery, ev, FACTS, CITIZEN)
    assert mail.to == "catinh@thanhhoa.gov.vn" and "05/12/2025" in mail.body + mail.subject
    assert "Công an tỉnh" in mail.body and NAME not in mail.body


def test_dossier_level_overdue_apologises_to_the_citizen_and_step_level_warns_the_unit():
    dossier_level = plan(event(DossierOverdue(unit_code="HACTHANH", step=None, due_date=date(2025, 12, 4))),
                         RULES, FACTS, [], citizen=CITIZEN)
    step_level = plan(event(DossierOverdue(unit_code="HACTHANH", step=0, due_date=date(2025, 12, 4))),
                      RULES, FACTS, [], citizen=CITIZEN)
    assert {d.recipient_kind for d in dossier_level} == {"citizen"}
    assert {d.recipient_kind for d in step_level} == {"unit"}


def test_citizen_reached_only_on_given_channels_not_opted_out_and_never_unopened():
    ev = event(SUBMITTED, seq=1)
    no_phone = CITIZEN.model_copy(update={"phone": None})
    assert [d.channel for d in plan(ev, RULES, FACTS, [], citizen=no_phone)] == ["email"]
    assert [d.channel for d in plan(ev, RULES, FACTS, [], frozenset({"sms"}), CITIZEN)] == ["email"]
    assert plan(event(DossierRejected(unit_code="HACTHANH", reason="x")), RULES, None, []) == []
    assert plan(ev, RULES, FACTS, [], citizen=None) == []  # erased (or never opened): nobody to tell


def test_events_without_a_rule_notify_nobody():
    assert plan(event(StepStarted(unit_code="HACTHANH", step=0)), RULES, FACTS, []) == []


def test_subscription_filters_by_type_unit_and_procedure():
    ev = event(DossierAssigned(unit_code="CATINH", step=1, step_name="x", step_due_date=date(2025, 12, 5)))
    subs = [
        Subscription("all", "https://a"),
        Subscription("police", "https://b", unit_codes=("CATINH",)),
        Subscription("receiving", "https://b", unit_codes=("HACTHANH",)),  # the dossier's receiving unit
        Subscription("land", "https://c", procedure_codes=("DD-CNQSDD",)),
        Subscription("resolved-only", "https://d", event_types=("vn.gov.dossier.resolved.v1",)),
    ]
    chosen = {d.recipient_ref for d in plan(ev, RULES, FACTS, subs) if d.channel == "webhook"}
    assert chosen == {"all", "police", "receiving"}


def test_each_delivery_has_its_own_key_per_recipient_and_channel():
    ev = event(SUBMITTED, seq=1)
    keys = [d.key for d in plan(ev, RULES, FACTS, [Subscription("s1", "https://a")], citizen=CITIZEN)]
    assert len(set(keys)) == 3 and all(k.startswith(ev.id) for k in keys)


def test_a_missing_template_is_a_compose_error_not_a_crash():
    ev = event(SUBMITTED, seq=1)
    [email, _] = plan(ev, RULES, FACTS, [], citizen=CITIZEN)
    broken = email.__class__(**{**email.__dict__, "template": "no-such-template"})
    with pytest.raises(ComposeError, match="no-such-template.email: TemplateNotFound"):
        composer.compose(broken, ev, FACTS, CITIZEN)


def test_rules_file_is_validated():
    with pytest.raises(ValueError):
        load_rules('[[rule]]\nevent = "vn.gov.dossier.submitted.v1"\nrecipient = "mayor"\nchannels = ["email"]\n'
                   'template = "x"\n')


def test_signature_is_hmac_sha256_over_timestamp_and_body():
    import hashlib
    import hmac

    expected = hmac.new(b"s" * 32, b"1700000000." + b'{"a":1}', hashlib.sha256).hexdigest()
    assert signature("s" * 32, "1700000000", b'{"a":1}') == "sha256=" + expected


def test_a_procedure_of_an_imported_catalogue_version_is_named_in_the_message():
    """Procedures come from the catalogue the province imported (`LiveCatalogue.current`), not only the release's."""
    imported = Procedure(code="9.000001", name="Cấp giấy xác nhận thử nghiệm", level="commune", field="Hộ tịch",
                         online="full", channels=("online",), required_documents=("to-khai",),
                         steps=(Step(name="Xác nhận", unit="competent_commune", days=2),))
    live = LiveCatalogue()
    live.current = Catalogue(units=live.base.units, procedures={imported.code: imported})
    follows = Composer(live, tracking_url="https://dvc.example/{code}", unit_email="{code}@thanhhoa.gov.vn",
                       apology_working_days=3, today=lambda: TODAY)
    facts = replace(FACTS, procedure_code=imported.code)
    ev = event(SUBMITTED.model_copy(update={"procedure_code": imported.code}), seq=1)
    email = follows.compose(next(d for d in plan(ev, RULES, facts, [], citizen=CITIZEN) if d.channel == "email"),
                            ev, facts, CITIZEN)
    assert imported.name in email.body
    assert follows.context(event(SUBMITTED, seq=1), FACTS, private=True)["procedure"] \
        == catalogue().procedures["HT-KH"].name  # a procedure the import left out keeps its built-in name
