"""The land registry's adapter against the real backbone, through lienthong-testkit's public API only: the kit starts
Kafka, the store, intake and routing; the portal client files and acts for the citizen; the adapter answers."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from contextlib import asynccontextmanager

from agency_adapter.adapter import LandRegistryAdapter
from agency_adapter.decide import AskForPapers, Complete, decide
from lienthong.contracts.dossier import DocumentRef
from lienthong_testkit import dossier_log, resolved

AGENCY = "land-registry"


def paper(kind: str) -> dict:
    return {"kind": kind, "name": f"{kind}.pdf", "sha256": hashlib.sha256(kind.encode()).hexdigest()}


def re_issue(parcel: str = "HOANGSON-12-345") -> dict:
    """A certificate re-issue (DD-CDGCN): one step, at the land registry's branch office for the parcel."""
    return {"procedure_code": "DD-CDGCN", "channel": "direct", "receiving_unit": "HOANGSON",
            "external_ref": f"QUAY-{uuid.uuid4().hex[:10]}", "land_parcel": parcel,
            "applicant": {"citizen_id": "038095001234", "full_name": "Nguyễn Thị Mẫu", "address": "Thôn 1",
                          "residence_unit": "HOANGSON", "phone": "0912000111"},
            "documents": [paper("don-de-nghi"), paper("giay-chung-nhan")]}


@asynccontextmanager
async def adapter_running(servers, papers: dict[str, set[str]]):
    adapter = LandRegistryAdapter(AGENCY, servers.client(AGENCY), lambda code: papers.get(code, set()))
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(stop))
    try:
        yield adapter
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_the_rule_completes_with_every_paper_and_asks_for_the_missing_ones():
    assert decide("D-1", {"don-de-nghi", "giay-chung-nhan"}, ("don-de-nghi", "giay-chung-nhan")) == Complete("GCN-D-1")
    assert decide("D-1", {"don-de-nghi"}, ("don-de-nghi", "giay-chung-nhan")) == AskForPapers(("giay-chung-nhan",))


async def test_a_complete_dossier_is_started_completed_and_resolved(lienthong_servers, portal_client):
    papers: dict[str, set[str]] = {}
    async with portal_client as portal, adapter_running(lienthong_servers, papers):
        receipt = await portal.file(re_issue())
        papers[receipt.dossier_code] = {"don-de-nghi", "giay-chung-nhan"}
        log = await dossier_log(lienthong_servers.kafka, receipt.dossier_code, until=resolved)
        tracking = None
        for _ in range(60):  # what the citizen sees, once stats has projected it
            tracking = await portal.track(receipt)
            if tracking and tracking["status"] == "resolved":
                break
            await asyncio.sleep(0.5)
    assert tracking is not None and tracking["status"] == "resolved" and tracking["code"] == receipt.dossier_code
    kinds = [e.type.split(".")[3] for e in log]
    assert kinds[0] == "submitted" and kinds[-1] == "resolved" and log[-1].data.on_time is True
    assert kinds.index("assigned") < kinds.index("step-started") < kinds.index("resolved"), kinds
    assert "supplement-requested" not in kinds


async def test_missing_papers_are_asked_for_and_the_dossier_resolves_once_the_citizen_provides_them(
        lienthong_servers, portal_client):
    papers: dict[str, set[str]] = {}
    async with portal_client as portal, adapter_running(lienthong_servers, papers):
        receipt = await portal.file(re_issue())
        papers[receipt.dossier_code] = {"don-de-nghi"}
        await dossier_log(lienthong_servers.kafka, receipt.dossier_code,
                          until=lambda events: any(e.type.endswith("paused.v1") for e in events))
        papers[receipt.dossier_code].add("giay-chung-nhan")  # the citizen brought it; the portal says so
        await portal.provide_supplement(receipt, [DocumentRef(**paper("giay-chung-nhan"))])
        log = await dossier_log(lienthong_servers.kafka, receipt.dossier_code, until=resolved)
    kinds = [e.type.split(".")[3] for e in log]
    asked, paused, resumed = kinds.index("supplement-requested"), kinds.index("paused"), kinds.index("resumed")
    assert kinds.index("assigned") < asked < paused < resumed < kinds.index("resolved") == len(kinds) - 1, kinds


async def test_an_outcome_for_a_unit_the_agency_does_not_act_for_is_refused_and_the_agency_is_told(
        lienthong_servers, portal_client, agency_client):
    """What the adapter must never do, shown with the kit's agency client: answer for a unit it does not act for."""
    async with portal_client as portal, agency_client("tax") as tax:
        receipt = await portal.file(re_issue())
        async with agency_client(AGENCY) as registry_office:
            assignment = await registry_office.next_assignment(receipt.dossier_code)
        forged = await tax.complete(assignment)
        refusal = await tax.next_refusal(receipt.dossier_code)
    assert (refusal.outcome_id, refusal.reason) == (forged.id, f"tax does not act for {assignment.unit_code}")
