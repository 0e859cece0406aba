"""Beyond one process and one broker, under fire: a three-node Kafka cluster (replication 3, min.insync.replicas 2)
and two instances each of intake, routing and stats in their consumer groups. While dossiers are filed through
both intakes and agencies answer every assignment, one instance of each service is SIGKILLed and started again,
and one Kafka node is SIGKILLed and started again. Afterwards every dossier's log is exact — one event per
`dossierseq` from 1 to resolved, no gap, no two events claiming one number — and the figures equal the count.

The log may hold a second copy of an event (same id, same content) that an instance published and was killed
before recording it: delivery is at least once, every consumer recognises the copy by its id, and the test counts
the copies it saw (its output) without calling them a fault.

LIENTHONG_SCALE_DOSSIERS sets the volume (default 120; `make soak` runs more).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import defaultdict
from datetime import datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from lienthong.calendar import VN_TZ
from lienthong.contracts import CloudEvent, parse_event, to_json
from lienthong.contracts.dossier import StepCompleted
from lienthong.contracts.envelope import new_event
from lienthong.identity import registry
from lienthong_tools.infra.environment import Environment
from lienthong_tools.infra.servers import LocalKafka
from lienthong.topics import DOSSIER_LIFECYCLE, outcomes_topic, work_topic
from lienthong_testkit.servers import free_ports
from tests.integration.test_intake import submission
from tests.processes import ARTIFACTS, Instance
from tests.tokens import EVERYTHING

pytestmark = pytest.mark.integration

DOSSIERS = int(os.environ.get("LIENTHONG_SCALE_DOSSIERS", "120"))
FILING_RPS = 12
CHAIN = "LT-KS-TT-BHYT"  # three units: commune, police, social insurance -> eight events per dossier
EVENTS_PER_DOSSIER = 8
# When, as a share of the filing time, what is SIGKILLed (a service's second instance is started again at once).
FAULTS = [(0.15, "routing"), (0.3, "kafka-node"), (0.45, "intake"), (0.6, "stats"), (0.75, "kafka-node-back")]


@pytest.fixture
def cluster(infra, tmp_path_factory):
    """Three Kafka nodes of our own beside the session's FerretDB."""
    if infra.local is None:
        pytest.fail(f"a three-node cluster is staged on deploy/local servers only, not on {infra.provider}")
    state = tmp_path_factory.mktemp("three-nodes")
    base = free_ports(6)  # three nodes, each a client and a controller port
    nodes = [LocalKafka("kafka" if i == 1 else f"kafka-{i}", "127.0.0.1", base + 2 * (i - 1), state, i, 3)
             for i in (1, 2, 3)]
    env = Environment(kafka=nodes[0], mongo=infra.local.mongo, more_brokers=tuple(nodes[1:]))
    try:
        env.up()
    except Exception as exc:  # noqa: BLE001 - the reason must surface as a failure, never a skip
        for node in nodes:
            node.stop()
        pytest.fail(f"could not start a three-node Kafka cluster: {exc}", pytrace=False)
    try:
        yield env
    finally:
        for node in nodes:
            node.stop()


async def describe(env: Environment) -> tuple[int, set[int]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**env.kafka.admin_settings().client_options())
    await admin.start()
    try:
        [topic] = await admin.describe_topics([DOSSIER_LIFECYCLE.name])
        nodes = {b["node_id"] for b in (await admin.describe_cluster())["brokers"]}
        return len(topic["partitions"][0]["replicas"]), nodes
    finally:
        await admin.close()


class Agencies:
    """Every agency system at once (as the super user, for brevity): each assignment answered with step-completed
    on the topic of the agency acting for the unit."""

    def __init__(self, env: Environment) -> None:
        options = env.kafka.admin_settings().client_options()
        self.consumer = AIOKafkaConsumer(*(work_topic(a.name).name for a in registry().agencies), **options,
                                         group_id=f"agencies-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                                         enable_auto_commit=False)
        self.producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
        self.answered: set[str] = set()

    async def run(self) -> None:
        await self.consumer.start()
        await self.producer.start()
        try:
            while True:
                for records in (await self.consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        await self.answer(parse_event(record.value))
                await self.consumer.commit()
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    async def answer(self, assigned: CloudEvent) -> None:
        if not assigned.type.endswith("assigned.v1") or assigned.id in self.answered:
            return  # a copy of an assignment already answered
        self.answered.add(assigned.id)
        data = assigned.data
        outcome = new_event(StepCompleted(unit_code=data.unit_code, step=data.step), subject=assigned.subject,
                            source=f"/units/{data.unit_code}", seq=assigned.dossierseq)
        [agency] = registry().acting_for(data.unit_code)
        await self.producer.send_and_wait(outcomes_topic(agency).name, to_json(outcome),
                                          key=assigned.subject.encode())


async def read_log(env: Environment, codes: set[str], *, timeout: float) -> dict[str, list[CloudEvent]]:
    """Every lifecycle event of `codes`, until each dossier is resolved (or the time is up)."""
    consumer = AIOKafkaConsumer(DOSSIER_LIFECYCLE.name, **env.kafka.admin_settings().client_options(),
                                group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    log: dict[str, list[CloudEvent]] = defaultdict(list)
    resolved: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while resolved != codes and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    code = record.key.decode()
                    if code in codes:
                        event = parse_event(record.value)
                        log[code].append(event)
                        if event.type.endswith("resolved.v1"):
                            resolved.add(code)
    finally:
        await consumer.stop()
    return log


async def file_all(intakes: list[Instance], count: int) -> list[str]:
    """File `count` dossiers at FILING_RPS, alternating between the intakes; a filing whose intake is dead (or
    dies while answering) is sent again, with the same external reference, to the other."""
    codes: list[str] = []
    async with httpx.AsyncClient(headers=EVERYTHING, timeout=10) as http:
        start = time.monotonic()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / FILING_RPS - time.monotonic()))
            body = submission(procedure_code=CHAIN, external_ref=f"SCALE-{uuid.uuid4().hex[:12]}")
            for attempt in range(40):
                intake = intakes[(i + attempt) % len(intakes)]
                try:
                    resp = await http.post(f"{intake.url}/v1/dossiers", json=body)
                except httpx.HTTPError:
                    await asyncio.sleep(0.25)
                    continue
                if resp.status_code in (200, 201):
                    codes.append(resp.json()["dossier_code"])
                    break
                assert resp.status_code == 503, resp.text  # Kafka not answering in time: try again
                await asyncio.sleep(0.25)
            else:
                raise AssertionError(f"filing {i} was accepted by no intake")
    return codes


async def wait_ready(instances: list[Instance], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        for instance in instances:
            while True:
                try:
                    if (await http.get(f"{instance.url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert instance.alive(), f"{instance.name} exited: see {instance.log.name}"
                assert time.monotonic() < deadline, f"{instance.name} not ready: see {instance.log.name}"
                await asyncio.sleep(0.5)


async def test_two_instances_each_and_three_brokers_survive_kill_9_of_one_of_each(infra, cluster):
    env: Environment = cluster
    replicas, nodes = await describe(env)
    assert (replicas, nodes) == (3, {1, 2, 3})

    database = f"{infra.mongo.database}_scale_{uuid.uuid4().hex[:4]}"
    common = {"MONGODB_URI": infra.mongo.uri, "MONGODB_DATABASE": database}
    instances: dict[str, list[Instance]] = {}
    for service in ("intake", "routing", "stats"):
        kafka = env.kafka.client_settings(service).as_env()
        extra = {"INTAKE_RATE_BURST": "1000"} if service == "intake" else {}
        instances[service] = [Instance(service, f"scale-{service}-{n}", {**common, **kafka, **extra,
                                                                         f"{service.upper()}_LOG_LEVEL": "WARNING"})
                              for n in ("a", "b")]
    everyone = [i for group in instances.values() for i in group]
    agencies = Agencies(env)
    answering = None
    try:
        for instance in everyone:
            instance.start()
        await wait_ready(everyone)
        answering = asyncio.create_task(agencies.run())
        filing = asyncio.create_task(file_all(instances["intake"], DOSSIERS))
        # Faults while dossiers are filed and answered: one instance of each service, and one Kafka node.
        spread, started = DOSSIERS / FILING_RPS, time.monotonic()
        victim_node = env.brokers[1]
        for at, act in FAULTS:
            await asyncio.sleep(max(0.0, started + at * spread - time.monotonic()))
            if act == "kafka-node":
                victim_node.kill()
            elif act == "kafka-node-back":
                await asyncio.to_thread(victim_node.start)
            else:
                victim = instances[act][1]
                victim.kill()
                victim.start()
        codes = await filing
        assert len(set(codes)) == DOSSIERS, "a filing sent again to the other intake got another code"
        log = await read_log(env, set(codes), timeout=240)
        copies = exact_logs(log, set(codes))
        print(f"{DOSSIERS} dossiers exact; {copies} copies of already-published events seen in the log")

        stats = instances["stats"][0]
        today = datetime.now(VN_TZ).date().isoformat()
        async with httpx.AsyncClient(headers=EVERYTHING, base_url=stats.url, timeout=30) as http:
            figures: dict = {}
            for _ in range(120):  # stats catches up after its own kill
                figures = (await http.get("/v1/stats/summary", params={"from": today, "to": today})).json()
                if figures.get("resolved") == DOSSIERS:
                    break
                await asyncio.sleep(1)
        assert {k: figures.get(k) for k in ("received", "received_online", "resolved", "resolved_on_time",
                                            "in_progress", "rejected", "withdrawn")} == {
            "received": DOSSIERS, "received_online": DOSSIERS, "resolved": DOSSIERS, "resolved_on_time": DOSSIERS,
            "in_progress": 0, "rejected": 0, "withdrawn": 0}
    finally:
        if answering is not None:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
        for instance in everyone:
            instance.stop()
        (ARTIFACTS / "scale-out-cluster.txt").write_text("\n".join(
            f"{node.name}: {node.log_file}" for node in env.brokers))


def exact_logs(log: dict[str, list[CloudEvent]], codes: set[str]) -> int:
    """Asserts every dossier's log is exact; returns how many copies of an event (same id) it held."""
    copies = 0
    for code in sorted(codes):
        events = log.get(code, [])
        by_id = {e.id: e for e in events}
        copies += len(events) - len(by_id)
        seqs = sorted(e.dossierseq for e in by_id.values())
        assert seqs == list(range(1, EVENTS_PER_DOSSIER + 1)), (code, [(e.dossierseq, e.type) for e in events])
        last = max(by_id.values(), key=lambda e: e.dossierseq)
        assert last.type.endswith("resolved.v1"), (code, last.type)
    return copies
