"""Stats projector: events per second from the real broker into the store, batch vs one at a time, in one run.

    uv run python benchmarks/bench_stats.py

Both modes read the same records from Kafka (a private topic) and project them into separate fresh databases;
the batch mode folds each fetched batch per dossier (one read and one write per dossier), the other mode applies
every event on its own (one read and one write per event). Figures are compared as a ratio.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import date, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parent))
from common import KAFKA, MONGO, environment  # noqa: E402

from lienthong.calendar import VN_TZ  # noqa: E402
from lienthong.contracts import parse_event, to_json  # noqa: E402
from lienthong.contracts.dossier import Applicant, DossierAssigned, DossierResolved, DossierSubmitted  # noqa: E402
from lienthong.contracts.envelope import new_event  # noqa: E402
from lienthong.messaging import ensure_topics  # noqa: E402
from lienthong.settings import MongoSettings  # noqa: E402
from lienthong.store import database, make_client  # noqa: E402
from lienthong.topics import Topic  # noqa: E402
from stats.store import ProjectionStore  # noqa: E402

DOSSIERS = 500  # x 4 events each


def events_for(code: str) -> list:
    now = datetime(2025, 12, 1, 9, tzinfo=VN_TZ)
    sub = DossierSubmitted(procedure_code="LT-KS-TT-BHYT", channel="online", receiving_unit="HACTHANH",
                           external_ref=code, received_at=now, due_date=date(2025, 12, 8), processing_days=5,
                           applicant=Applicant(citizen_id="038099001122", full_name="Bench", address="X",
                                               residence_unit="HACTHANH"))
    data = [sub, *(DossierAssigned(unit_code=u, step=i, step_name="x", step_due_date=date(2025, 12, 8))
                   for i, u in enumerate(("HACTHANH", "CATINH"))),
            DossierResolved(unit_code="CATINH", resolved_at=now, due_date=date(2025, 12, 8), on_time=True)]
    return [new_event(d, subject=code, source="/bench", seq=i + 1, time=now) for i, d in enumerate(data)]


async def project(topic: str, batch: bool, total: int) -> float:
    settings = MongoSettings(uri=MONGO, database=f"bench_stats_{uuid.uuid4().hex[:6]}")
    client = make_client(settings)
    store = ProjectionStore(database(client, settings))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest",
                                max_poll_records=500)
    await consumer.start()
    done = 0
    start = time.perf_counter()
    while done < total:
        for records in (await consumer.getmany(timeout_ms=500, max_records=500)).values():
            events = [parse_event(r.value) for r in records]
            if batch:
                await store.project(events)
            else:
                for event in events:
                    await store.project([event])
            done += len(events)
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await client.close()
    return total / elapsed


async def measure() -> tuple[float, float, int]:
    topic = Topic(f"bench.stats.{uuid.uuid4().hex[:6]}", 6, 3_600_000, "stats benchmark")
    await ensure_topics([KAFKA], [topic])
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    total = 0
    for i in range(DOSSIERS):
        code = f"BENCH-251201-{i + 1:04d}"
        for event in events_for(code):
            await producer.send(topic.name, to_json(event), key=code.encode())
            total += 1
    await producer.flush()
    await producer.stop()
    batch = await project(topic.name, batch=True, total=total)
    single = await project(topic.name, batch=False, total=total)
    return batch, single, total


def main() -> None:
    with environment():
        batch, single, total = asyncio.run(measure())
    print("| stats benchmark | figure |")
    print("|---|---|")
    print(f"| batch projector ({total} events, {DOSSIERS} dossiers) | {batch:.0f} events/s |")
    print(f"| one-at-a-time projector, same records | {single:.0f} events/s |")
    print(f"| ratio batch / one-at-a-time | {batch / single:.1f}x |")


if __name__ == "__main__":
    main()
