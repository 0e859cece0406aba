"""Routing throughput and step-to-step delay on the real broker and store.

    uv run python benchmarks/bench_routing.py

Prints, for routing in batches and routing one record at a time (ROUTING_MAX_BATCH=1), measured in one run:
dossier.submitted routed per second (first assignment published), step-completed answered per second (next
assignment published), both for dossiers filed or answered at once, and the delay between a unit publishing
step-completed and routing publishing the next assignment (p50/p99) at a fixed offered rate.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).resolve().parent.parent)]  # common; tests.personal
from common import TOKEN, kafka_as, environment, percentile, service  # noqa: E402

from lienthong.calendar import VN_TZ, due_date  # noqa: E402
from lienthong.contracts import parse_event, to_json  # noqa: E402
from lienthong.contracts.dossier import Applicant, DossierSubmitted, StepCompleted  # noqa: E402
from lienthong.contracts.envelope import new_event  # noqa: E402
from lienthong.identity import registry  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE, outcomes_topic, work_topic  # noqa: E402
from tests.personal import stand_in  # noqa: E402

BATCHED, ONE_AT_A_TIME = 3000, 300  # dossiers per design (the slow one gets fewer: rates are what we compare)
STEP_RPS, STEPS = 50, 300  # step-completed -> next assignment at a fixed offered rate
SETTLE_S = 5.0


def submitted_event(code: str):
    now = datetime.now(VN_TZ)
    data = DossierSubmitted(
        procedure_code="LT-KS-TT-BHYT", channel="online", receiving_unit="HACTHANH", external_ref=code,
        received_at=now, due_date=due_date(now, 5), processing_days=5,
        applicant=stand_in(Applicant(citizen_id="038099001122", full_name="Bench", address="X",
                                     residence_unit="HACTHANH")),  # routing reads only the unit of residence
    )
    return new_event(data, subject=code, source="/bench", seq=1)


async def measure(dossiers: int, steps: int) -> dict[str, float]:
    """Routes `dossiers` filed at once to their first assignment, answers them all at once (-> the second
    assignment), then answers `steps` of the second assignments at STEP_RPS and times each next assignment."""
    run = uuid.uuid4().hex[:4].upper()
    codes = [f"B{run}-261123-{i:04d}" for i in range(1, dossiers + 1)]
    reg = registry()
    work = AIOKafkaConsumer(*(work_topic(a.name).name for a in reg.agencies), **kafka_as().client_options(),
                            group_id=None, auto_offset_reset="latest", max_partition_fetch_bytes=8 << 20)
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
                        event = parse_event(r.value)
                        if event.type.endswith("assigned.v1"):
                            assignments.setdefault(code, []).append((time.perf_counter(), event))

    def answer(code: str):
        assigned = assignments[code][-1][1]
        outcome = new_event(StepCompleted(unit_code=assigned.data.unit_code, step=assigned.data.step), subject=code,
                            source="/bench", seq=assigned.dossierseq)
        [agency] = reg.acting_for(assigned.data.unit_code)  # its outcome goes on that agency's own topic
        return producer.send(outcomes_topic(agency).name, to_json(outcome), key=code.encode())

    def reached(n: int, among: list[str]):
        return lambda: all(len(assignments.get(c, ())) >= n for c in among)

    start = time.perf_counter()
    for code in codes:
        await producer.send(DOSSIER_LIFECYCLE.name, to_json(submitted_event(code)), key=code.encode())
    await producer.flush()
    await read_until(reached(1, codes))
    routed = dossiers / (time.perf_counter() - start)

    start = time.perf_counter()
    for code in codes:
        await answer(code)
    await producer.flush()
    await read_until(reached(2, codes))
    stepped = dossiers / (time.perf_counter() - start)

    # The timed steps measure a steady stream, not the tail of the burst before (whatever the service still writes
    # behind for it).
    await asyncio.sleep(SETTLE_S)
    sent_at: dict[str, float] = {}
    timed = codes[:steps]
    reader = asyncio.create_task(read_until(reached(3, timed)))  # arrivals are timed while the answers go out
    start = time.perf_counter()
    for i, code in enumerate(timed):
        await asyncio.sleep(max(0.0, start + i / STEP_RPS - time.perf_counter()))
        await (await answer(code))
        sent_at[code] = time.perf_counter()
    await reader
    delays = [assignments[c][2][0] - sent_at[c] for c in timed]
    await producer.stop()
    await work.stop()
    return {"routed": routed, "stepped": stepped, "p50": percentile(delays, 0.5) * 1000,
            "p99": percentile(delays, 0.99) * 1000}


def run_design(max_batch: int, dossiers: int, steps: int) -> dict[str, float]:
    with service("routing", 38082, f"bench_{uuid.uuid4().hex[:6]}", ROUTING_START_FROM="latest",
                 ROUTING_GROUP_ID=f"routing-bench-{uuid.uuid4().hex[:6]}", ROUTING_MAX_BATCH=str(max_batch)) as base:
        time.sleep(3)  # the consumer group gets its partitions
        figures = asyncio.run(measure(dossiers, steps))
        figures["phases"] = phases(httpx.get(f"{base}/metrics", headers=TOKEN).text)
        return figures


def phases(metrics: str) -> str:
    """Seconds per phase over the whole run and the mean batch, from the service's own metrics."""
    sums = {}
    for line in metrics.splitlines():
        if line.startswith("lienthong_routing_batch_phase_seconds_sum"):
            sums[line.split('phase="')[1].split('"')[0]] = float(line.split()[-1])
        elif line.startswith(("lienthong_routing_batch_size_sum", "lienthong_routing_batch_size_count")):
            sums[line.split()[0].rsplit("_", 1)[1]] = float(line.split()[-1])
    batches = sums.pop("count", 0) or 1
    mean = sums.pop("sum", 0) / batches
    return ", ".join(f"{k} {v:.1f} s" for k, v in sums.items()) + f"; {batches:.0f} batches of {mean:.1f} on average"


def main() -> None:
    with environment():
        one = run_design(1, ONE_AT_A_TIME, min(STEPS, ONE_AT_A_TIME))
        batched = run_design(500, BATCHED, STEPS)
    print("| routing benchmark (one run) | one at a time | batches of up to 500 | ratio |")
    print("|---|---|---|---|")
    print(f"| `dossier.submitted` -> first assignment, filed at once ({ONE_AT_A_TIME} / {BATCHED} dossiers) "
          f"| {one['routed']:.0f}/s | {batched['routed']:.0f}/s | {batched['routed'] / one['routed']:.1f}x |")
    print(f"| `step-completed` -> next assignment, answered at once "
          f"| {one['stepped']:.0f}/s | {batched['stepped']:.0f}/s | {batched['stepped'] / one['stepped']:.1f}x |")
    print(f"| `step-completed` -> next assignment at {STEP_RPS}/s offered, p50 / p99 "
          f"| {one['p50']:.0f} / {one['p99']:.0f} ms | {batched['p50']:.0f} / {batched['p99']:.0f} ms | |")
    print(f"\nwhere the time went (one at a time): {one['phases']}")
    print(f"where the time went (batches): {batched['phases']}")


if __name__ == "__main__":
    main()
