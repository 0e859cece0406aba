"""`lienthong conformance`: what an agency system sent, judged as routing would judge it now, changing nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from lienthong.contracts import to_json
from lienthong.contracts.dossier import DossierResolved, StepCompleted, StepStarted
from lienthong.contracts.envelope import new_event
from lienthong.topics import DOSSIER_LIFECYCLE, outcomes_topic
from tests.integration.test_routing import UNIT_WORK, events_of, file, system  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
AGENCY = "commune-one-stop"


def conformance(infra, *args: str) -> tuple[int, dict[str, dict]]:
    done = subprocess.run(
        [sys.executable, "-m", "lienthong_tools.cli", "conformance", "--agency", AGENCY, "--json", *args],
        env={**__import__("os").environ, **infra.kafka.as_env(), "MONGODB_URI": infra.mongo.uri,
             "MONGODB_DATABASE": infra.mongo.database}, capture_output=True, text=True, timeout=120)
    verdicts = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, {v["event_id"] or v["where"]: v for v in verdicts}


async def test_each_kind_of_bad_record_is_flagged_with_its_rule_and_nothing_changes(infra, system, tmp_path):
    http, producer, _, _ = system
    code = (await file(http, procedure_code="HT-KS"))["dossier_code"]
    [assignment], _ = await events_of(infra, UNIT_WORK, code, 1, timeout=60, settle=0.3)
    seq, unit = assignment.dossierseq, assignment.data.unit_code

    def outcome(data, subject=code, at=seq):
        return new_event(data, subject=subject, source="/agencies/commune-one-stop", seq=at)

    good = outcome(StepStarted(unit_code=unit, step=0))
    bad = {
        "type": outcome(DossierResolved(unit_code=unit, resolved_at=assignment.time, due_date=assignment.time.date(),
                                        on_time=True)),
        "sender": outcome(StepCompleted(unit_code="THUE", step=0)),
        "stale": outcome(StepStarted(unit_code=unit, step=0), at=seq - 1),
        "future": outcome(StepStarted(unit_code=unit, step=0), at=seq + 5),
        "dossier": outcome(StepStarted(unit_code=unit, step=0), subject="HACTHANH-991231-9999"),
    }
    broken = orjson.loads(to_json(good))
    broken["data"]["step"] = -1
    lines = [to_json(good).decode(), *(to_json(e).decode() for e in bad.values()), orjson.dumps(broken).decode(),
             "{not json"]
    records = tmp_path / "sent.jsonl"
    records.write_text("\n".join(lines) + "\n")

    status, verdicts = conformance(infra, "--file", str(records))
    assert status == 1
    assert verdicts[good.id]["accepted"] is True and "step-started" in verdicts[good.id]["reason"]
    expected = {"type": ("type", "is not an outcome a unit sends"),
                "sender": ("sender", "commune-one-stop does not act for THUE"),
                "stale": ("assignment", "stale: answers an earlier assignment"),
                "future": ("assignment", "answers an assignment that does not exist"),
                "dossier": ("dossier", "unknown dossier")}
    for kind, event in bad.items():
        check, reason = expected[kind]
        assert (verdicts[event.id]["accepted"], verdicts[event.id]["check"]) == (False, check), kind
        assert reason in verdicts[event.id]["reason"], kind
    assert verdicts["line 7"]["check"] == "schema" and "data.step" in verdicts["line 7"]["reason"]
    assert verdicts["line 8"]["check"] == "schema"
    lifecycle, _ = await events_of(infra, DOSSIER_LIFECYCLE.name, code, 2, settle=1)
    assert [e.type.split(".")[3] for e in lifecycle] == ["submitted", "assigned"]  # judged, not applied

    # The same judgement on what the agency actually put on its topic (routing applies the good one meanwhile).
    for event in (good, bad["stale"], bad["sender"]):
        await producer.publish(to_json(event), outcomes_topic(AGENCY).name, key=event.subject.encode())
    await events_of(infra, DOSSIER_LIFECYCLE.name, code, 3, timeout=60, settle=1)  # + step-started
    status, verdicts = conformance(infra)
    assert status == 1
    assert verdicts[good.id]["accepted"] is True and "applied when it came" in verdicts[good.id]["reason"]
    assert verdicts[bad["stale"].id]["check"] == "assignment" and verdicts[bad["sender"].id]["check"] == "sender"
    assert verdicts[good.id]["where"].startswith(outcomes_topic(AGENCY).name + "/")
