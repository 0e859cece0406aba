"""The procedure catalogue as data the province maintains, on the real servers: `lienthong catalogue import` stores
a file whole or not at all; intake files under a new version without a restart and says which; routing resolves a
dossier's chain with the version it was filed under, whatever was imported since."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from faststream.kafka import KafkaBroker

from intake.main import bootstrap as bootstrap_intake
from intake.settings import IntakeSettings
from lienthong.catalogue import Procedure, Step, catalogue
from lienthong.catalogue.table import write_file
from lienthong.catalogue.versions import CatalogueVersions
from lienthong.contracts import parse_event, to_json
from lienthong.contracts.envelope import new_event
from lienthong.store import database, make_client
from lienthong.topics import DOSSIER_LIFECYCLE
from lienthong_tools.catalogue_gen import generate
from notify.main import bootstrap as bootstrap_notify
from notify.settings import NotifySettings
from routing.main import bootstrap as bootstrap_routing
from routing.settings import RoutingSettings
from tests.integration.kafka_reader import read_records
from tests.integration.test_intake import submission
from tests.tokens import EVERYTHING

pytestmark = pytest.mark.integration

NEW = "9.000001"  # a procedure the release does not know
# This test's intake keeps its own database, so its dossier codes (unit-day counters) restart at 0001 while other
# tests' codes share the same topics: it files at a commune no other test files at, or a code would name two
# dossiers on the topics (the conformance test then read two assignments for its one).
UNIT = "CAMTAN"


def new_procedure(step_name: str) -> Procedure:
    return Procedure(code=NEW, name="Cấp giấy xác nhận thử nghiệm", level="commune", field="Hộ tịch", online="full",
                     channels=("online", "direct", "postal"), required_documents=("to-khai",),
                     steps=(Step(name=step_name, unit="competent_commune", days=2),))


def import_file(path, mongo, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MONGODB_URI": mongo.uri, "MONGODB_DATABASE": mongo.database}
    return subprocess.run([sys.executable, "-m", "lienthong_tools.cli", "catalogue", "import", str(path), *args],
                          env=env, capture_output=True, text=True, timeout=120)


async def assignment_of(infra, code: str):
    records = await read_records(infra.kafka, DOSSIER_LIFECYCLE.name, lambda r: r.key == code.encode(), expected=2,
                                 timeout=60, settle=0.5)
    events = [parse_event(r.value) for r in records]
    return events[0], next(e for e in events if e.type.endswith("assigned.v1"))


async def test_import_is_whole_and_versions_are_filed_and_routed_without_a_restart(infra, tmp_path):
    mongo = infra.mongo.model_copy(update={"database": f"catalogue_{uuid.uuid4().hex[:8]}"})
    client = make_client(mongo)
    versions = CatalogueVersions(database(client, mongo))

    # The province-sized file, generated, imported in one command; a second import of it adds no version.
    province = tmp_path / "thu-tuc-2223.xlsx"
    write_file(generate().values(), province)
    first = import_file(province, mongo)
    assert first.returncode == 0 and first.stdout.startswith("version 1: 2223 procedures"), first.stdout + first.stderr
    again = import_file(province, mongo)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout + again.stderr

    # A malformed file is refused with row and column, and nothing of it is stored.
    bad = tmp_path / "bad.csv"
    write_file([*catalogue().procedures.values(), new_procedure("Xác nhận")], bad)
    bad.write_text(bad.read_text(encoding="utf-8").replace("competent_commune | 2", "NOWHERE | 2"), encoding="utf-8")
    refused = import_file(bad, mongo)
    assert refused.returncode == 2 and "row 14, column 'Các bước (liên thông)': step 1: unknown unit 'NOWHERE'" \
        in refused.stderr, refused.stdout + refused.stderr
    assert [v["_id"] for v in await versions.history()] == [1]

    intake_app = bootstrap_intake(IntakeSettings(rate_burst=1000, catalogue_refresh_s=0.3), infra.kafka, mongo).app
    notify_app = bootstrap_notify(NotifySettings(group_id=f"notify-cat-{uuid.uuid4().hex[:6]}", start_from="latest",
                                                 catalogue_refresh_s=0.3), infra.kafka, mongo).app
    routing_app = bootstrap_routing(RoutingSettings(group_id=f"routing-cat-{uuid.uuid4().hex[:6]}",
                                                    start_from="latest", tick_interval_s=3600), infra.kafka, mongo).app
    body = {"procedure_code": NEW, "receiving_unit": UNIT,
            "documents": [{"kind": "to-khai", "name": "t.pdf", "sha256": "a" * 64}]}
    try:
        async with LifespanManager(intake_app, startup_timeout=60), LifespanManager(routing_app, startup_timeout=60), \
                LifespanManager(notify_app, startup_timeout=60), \
                httpx.AsyncClient(headers=EVERYTHING, transport=httpx.ASGITransport(intake_app),
                                  base_url="http://intake") as http, \
                httpx.AsyncClient(headers=EVERYTHING, transport=httpx.ASGITransport(notify_app),
                                  base_url="http://notify") as notify:
            await asyncio.sleep(3)  # routing's new group gets its partitions
            refused_body = await http.post("/v1/dossiers", json=submission(**body))
            assert refused_body.status_code == 422, refused_body.text
            subscription = {"url": "https://agency.example/hooks", "unit_codes": [UNIT], "procedure_codes": [NEW]}
            unknown = await notify.post("/v1/subscriptions", json=subscription)
            assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "procedure_codes"

            # Version 2 brings the new procedure: intake takes it within its refresh, no restart.
            v2 = tmp_path / "v2.csv"
            write_file([*catalogue().procedures.values(), new_procedure("Xác nhận (phiên bản 2)")], v2)
            assert import_file(v2, mongo).returncode == 0
            for _ in range(50):
                filed = await http.post("/v1/dossiers", json=submission(**body))
                if filed.status_code == 201:
                    break
                await asyncio.sleep(0.2)
            assert filed.status_code == 201, filed.text
            for _ in range(50):  # notify follows the catalogue too: an agency may subscribe to the new procedure
                subscribed = await notify.post("/v1/subscriptions", json=subscription)
                if subscribed.status_code == 201:
                    break
                await asyncio.sleep(0.2)
            assert subscribed.status_code == 201, subscribed.text
            submitted, assigned = await assignment_of(infra, filed.json()["dossier_code"])
            assert submitted.data.catalogue_version == 2
            assert assigned.data.step_name == "Xác nhận (phiên bản 2)" and assigned.data.unit_code == UNIT

            # Version 3 renames the step. A dossier filed under version 2 that reaches routing only now is still
            # routed with version 2; one filed now, with version 3.
            v3 = tmp_path / "v3.csv"
            write_file([*catalogue().procedures.values(), new_procedure("Xác nhận (phiên bản 3)")], v3)
            assert import_file(v3, mongo).returncode == 0
            late = new_event(submitted.data, subject=f"{UNIT}-991231-{uuid.uuid4().int % 10**6:06d}",
                             source=submitted.source, seq=1)
            async with KafkaBroker(infra.kafka.servers, security=infra.kafka.security()) as producer:
                await producer.publish(to_json(late), DOSSIER_LIFECYCLE.name, key=late.subject.encode())
            _, late_assigned = await assignment_of(infra, late.subject)
            assert late_assigned.data.step_name == "Xác nhận (phiên bản 2)"
            for _ in range(50):
                now = await http.post("/v1/dossiers", json=submission(**body))
                submitted_now, assigned_now = await assignment_of(infra, now.json()["dossier_code"])
                if submitted_now.data.catalogue_version == 3:
                    break
            assert assigned_now.data.step_name == "Xác nhận (phiên bản 3)"
            listed = {p["code"] for p in (await http.get("/v1/procedures")).json()}
            assert NEW in listed
    finally:
        await client.close()
