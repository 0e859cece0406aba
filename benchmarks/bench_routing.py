"""Routing throughput and step-to-step delay on the real broker and store.

    uv run python benchmarks/bench_routing.py

Prints: dossier.submitted events routed per second (first assignment published), and the delay between a unit
publishing step-completed and routing publishing the next assignment (p50/p99) at a fixed offered rate.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).resolve().parent.parent)]  # common; tests.personal
from common import kafka_as, KAFKA, environment, percentile, service  # noqa: E402

from lienthong.calendar import VN_TZ, due_date  # noqa: E402
from lienthong.contracts import parse_event, to_json  # noqa: E402
from lienthong.contracts.dossier import Applicant, DossierSubmitted, StepCompleted  # noqa: E402
from lienthong.contracts.envelope import new_event  # noqa: E402
from lienthong.identity import registry  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE, outcomes_topic, work_topic  # noqa: E402
from tests.personal import stand_in  # noqa: E402

DOSSIERS = 400
COMPLETION_RPS = 4
COMPLETIONS = 100


def submitted_event(code: str):
    now = datetime.now(VN_TZ)
    data = DossierSubmitted(
        procedure_code="LT-KS-TT-BHYT", channel="online", receiving_unit="HACTHANH", external_ref=code,
        received_at=now, due_date=due_date(now, 5), processing_days=5,
        applicant=stand_in(Applicant(citizen_id="038099001122", full_name="Bench", address="X",
                                     residence_unit="HACTHANH")),  # routing reads only the unit of residence
    )
    return new_event(data, subject=code, source="/bench", seq=1)


async def measure() -> tuple[float, float, float]:
    run = uuid.uuid4().hex[:4].upper()
    codes = [f"B{run}-261123-{i:04d}" for i in range(1, DOSSIERS + 1)]
    reg = registry()
    work = AIOKafkaConsumer(*(work_topic(a.name).name for a in reg.agencies), **kafka_as().client_options(),
                            group_id=None, auto_offset_reset="latest")
    await work.start()
    await work.seek_to_end()
    producer = AIOKafkaProducer(**kafka_as().client_options(), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    wanted = set(codes)
    assignments: dict[str, list] = {}

    async def read_until(predicate) -> None:
        while not predicate():
            for records in (await work.getmany(timeout_ms=200)).values():
                for r in records:
                    code = r.key.decode()
                    if code in wanted:
                        assignments.setdefault(code, []).append((time.perf_counter(), parse_event(r.value)))

    start = time.perf_counter()
    for code in codes:
        await producer.send(DOSSIER_LIFECYCLE.name, to_json(submitted_event(code)), key=code.encode())
    await producer.flush()
    await read_until(lambda: sum(1 for c in codes if c in assignments) == DOSSIERS)
    routed_per_s = DOSSIERS / (time.perf_counter() - start)

    sent_at: dict[str, float] = {}
    # Arrival times are taken by a reader running while the completions go out, not after.
    reader = asyncio.create_task(read_until(lambda: all(len(assignments[c]) >= 2 for c in codes[:COMPLETIONS])))
    for i, code in enumerate(codes[:COMPLETIONS]):
        await asyncio.sleep(max(0.0, start + i / COMPLETION_RPS - time.perf_counter()) if i else 0)
        first = assignments[code][0][1]
        outcome = new_event(StepCompleted(unit_code=first.data.unit_code, step=0), subject=code, source="/bench",
                            seq=first.dossierseq)
        [agency] = reg.acting_for(first.data.unit_code)  # its outcome goes on that agency's own topic
        await producer.send_and_wait(outcomes_topic(agency).name, to_json(outcome), key=code.encode())
        sent_at[code] = time.perf_counter()
        if i == 0:
            start = time.perf_counter()
    await reader
    delays = [assignments[c][1][0] - sent_at[c] for c in codes[:COMPLETIONS]]
    await producer.stop()
    await work.stop()
    return routed_per_s, percentile(delays, 0.5) * 1000, percentile(delays, 0.99) * 1000


def main() -> None:
    with environment(), service("routing", 38082, f"bench_{uuid.uuid4().hex[:6]}", ROUTING_START_FROM="latest",
                                ROUTING_GROUP_ID=f"routing-bench-{uuid.uuid4().hex[:6]}"):
        time.sleep(3)  # the consumer group gets its partitions
        routed, p50, p99 = asyncio.run(measure())
    print("| routing benchmark | figure |")
    print("|---|---|")
    print(f"| dossier.submitted routed to a first assignment, {DOSSIERS} dossiers | {routed:.0f}/s |")
    print(f"| step-completed -> next assignment at {COMPLETION_RPS}/s offered ({COMPLETIONS} steps) "
          f"| p50 {p50:.0f} ms, p99 {p99:.0f} ms |")


if __name__ == "__main__":
    main()
