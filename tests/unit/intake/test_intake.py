"""Intake's service layer (`intake.submit.Intake`) with an in-memory repository, vault and producer: a resubmission,
a reference reused for another filing, Kafka down (503, then the relay publishes it exactly once), concurrent
filings sharing a group commit with consecutive codes. Milliseconds, no servers."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from intake.domain import Rejected, dossier_code, dossier_day
from intake.store import NewDossier, StoredDossier
from intake.submit import Conflict, Intake, KafkaUnavailable
from lienthong.calendar import VN_TZ
from lienthong.catalogue import catalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import Applicant, SealedApplicant
from lienthong.locks import KeyedLocks
from lienthong.personaldata import PersonalDataSettings, SubmissionKey
from tests.personal import stand_in
from tests.unit.intake.test_domain import make

NOW = datetime(2025, 12, 1, 9, 30, tzinfo=VN_TZ)


class MemoryStore:
    """DossierStore's contract: one dossier per idempotency key, codes consecutive per unit and day."""

    def __init__(self) -> None:
        self.docs: dict[str, StoredDossier] = {}
        self.counters: dict[str, int] = {}
        self.lock = KeyedLocks()
        self.inserts = 0
        self.outbox: set[str] = set()

    async def find_many(self, keys: list[str]) -> dict[str, StoredDossier]:
        return {k: self.docs[k] for k in keys if k in self.docs}

    async def find_by_key(self, key: str) -> StoredDossier | None:
        return self.docs.get(key)

    async def enter_outbox(self, keys: list[str]) -> None:
        self.outbox |= set(keys)

    async def create_many(self, new: list[NewDossier], *, entered: bool = False) -> list[tuple[StoredDossier, bool]]:
        assert entered, "intake enters new dossiers in the outbox itself, beside sealing their applicants"
        assert {n.key for n in new} <= self.outbox, "a dossier is stored only once it is in the outbox"
        self.inserts += 1
        out = []
        for n in new:
            if n.key in self.docs:
                out.append((self.docs[n.key], False))
                continue
            counter = f"{n.unit}-{dossier_day(n.received_at)}"
            self.counters[counter] = seq = self.counters.get(counter, 0) + 1
            code = dossier_code(n.unit, dossier_day(n.received_at), seq)
            self.docs[n.key] = StoredDossier(n.key, code, n.build_event(code), published=False,
                                             fingerprint=n.fingerprint)
            out.append((self.docs[n.key], True))
        return out

    async def mark_published_many(self, keys: list[str]) -> None:
        for key in keys:
            stored = self.docs[key]
            self.docs[key] = StoredDossier(stored.key, stored.code, stored.event, True, stored.fingerprint)

    async def unpublished(self, limit: int = 1000) -> list[StoredDossier]:
        return [d for d in self.docs.values() if not d.published][:limit]


class MemoryVault:
    settings = PersonalDataSettings()

    async def seal_many(self, applicants: list[Applicant]) -> list[SealedApplicant]:
        return [stand_in(a) for a in applicants]


class Producer:
    """Appends events and acknowledges them at once, unless `down`."""

    def __init__(self) -> None:
        self.sent: list[CloudEvent] = []
        self.down = False

    async def send(self, event: CloudEvent) -> asyncio.Future[object]:
        if self.down:
            raise ConnectionError("kafka away")
        self.sent.append(event)
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack


def intake(repo: MemoryStore | None = None, producer: Producer | None = None) -> Intake:
    return Intake(repo or MemoryStore(), (producer or Producer()).send, catalogue(), MemoryVault(),  # type: ignore[arg-type]
                  SubmissionKey(PersonalDataSettings()), publish_timeout_s=0.5, clock=lambda: NOW)


async def settle() -> None:
    for _ in range(5):  # the publication marks are written behind the acknowledgement
        await asyncio.sleep(0)


async def test_a_resubmission_gets_the_same_code_and_publishes_nothing_more():
    producer = Producer()
    service = intake(producer=producer)
    first, created = await service.submit(make(), "portal")
    await settle()
    again, created_again = await service.submit(make(), "portal")
    assert created and not created_again and again.code == first.code
    assert [e.subject for e in producer.sent] == [first.code]
    assert first.event.data.applicant.subject == stand_in(make().applicant).subject  # only sealed, never in clear


async def test_a_reference_reused_for_another_filing_is_a_conflict_and_another_client_has_its_own():
    service = intake()
    await service.submit(make(), "portal")
    with pytest.raises(Conflict):
        await service.submit(make(documents=[{"kind": "to-khai", "name": "t.pdf", "sha256": "b" * 64}]), "portal")
    _, created = await service.submit(make(), "commune-one-stop")  # references belong to their client
    assert created


async def test_a_filing_breaking_a_rule_is_refused_and_nothing_is_stored():
    repo = MemoryStore()
    with pytest.raises(Rejected):
        await intake(repo).submit(make(procedure_code="NO-SUCH"), "portal")
    assert repo.docs == {}


async def test_kafka_down_stores_the_dossier_and_the_relay_publishes_it_once_kafka_is_back():
    repo, producer = MemoryStore(), Producer()
    service = intake(repo, producer)
    producer.down = True
    with pytest.raises(KafkaUnavailable) as unavailable:
        await service.submit(make(), "portal")
    [stored] = repo.docs.values()
    assert unavailable.value.code == stored.code and not stored.published
    assert await service.relay_once(grace_s=0) == 0  # still down: tried, nothing sent
    producer.down = False
    assert await service.relay_once(grace_s=0) == 1
    await settle()
    assert await service.relay_once(grace_s=0) == 0  # published and marked: never again
    assert [e.subject for e in producer.sent] == [stored.code] and repo.docs[stored.key].published
    again, created = await service.submit(make(), "portal")  # the citizen retries: same code, no new event
    assert not created and again.code == stored.code and len(producer.sent) == 1


async def test_a_restarted_intake_relays_what_the_previous_process_left_unpublished():
    repo, producer = MemoryStore(), Producer()
    producer.down = True
    with pytest.raises(KafkaUnavailable):
        await intake(repo, producer).submit(make(), "portal")
    producer.down = False
    restarted = intake(repo, producer)
    await restarted.recover()
    assert await restarted.relay_once(grace_s=0) == 1 and len(producer.sent) == 1


async def test_concurrent_filings_share_group_commits_and_get_consecutive_codes():
    repo, producer = MemoryStore(), Producer()
    service = intake(repo, producer)
    results = await asyncio.gather(*(service.submit(make(external_ref=f"G22.99-{i:06d}"), "portal")
                                     for i in range(40)))
    codes = sorted(stored.code for stored, _ in results)
    assert codes == [dossier_code("PVHCCTINH", dossier_day(NOW), seq) for seq in range(1, 41)]
    assert repo.inserts < 40  # filings that came while the store was busy shared a flush
    assert sorted(e.subject for e in producer.sent) == codes
