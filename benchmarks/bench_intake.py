"""Intake throughput and latency on the real broker and store.

    uv run python benchmarks/bench_intake.py

Prints: closed-loop HTTP submissions/s, p50/p99 latency of POST /v1/dossiers at a fixed offered load, and Kafka
ingestion submissions/s (from intake.submissions to dossier.submitted on dossier.lifecycle).
"""

from __future__ import annotations

import asyncio
import os
import json
import random
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parent))
from common import (TOKEN, CpuMeter, KAFKA, at_most_per_s, environment, kafka_as, our_processes,  # noqa: E402
                    percentile, service)

from lienthong.catalogue import catalogue  # noqa: E402
from lienthong.contracts.dossier import Applicant  # noqa: E402
from lienthong.personaldata import SubmissionKey, seal_for_intake  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE, INTAKE_SUBMISSIONS  # noqa: E402

CLOSED_LOOP_S = 10
CONCURRENCY = 32
OFFERED_RPS = 40
OFFERED_S = 10
KAFKA_BATCH = int(os.environ.get("BENCH_KAFKA_RECORDS", "3000"))


def body(unit: str) -> dict:
    return {
        "procedure_code": "HT-KS",
        "channel": "online",
        "receiving_unit": unit,
        "external_ref": f"B-{uuid.uuid4().hex[:16]}",
        # Each filing a different citizen, as in real traffic: each needs a data key of their own.
        "applicant": {"citizen_id": f"038{random.randrange(10**9):09d}", "full_name": "Nguyễn Văn Bench",
                      "address": "Hạc Thành", "residence_unit": "HACTHANH"},
        "documents": [{"kind": "to-khai", "name": "t.pdf", "sha256": "a" * 64},
                      {"kind": "giay-chung-sinh", "name": "g.pdf", "sha256": "b" * 64}],
    }


async def closed_loop(base: str, units: list[str]) -> float:
    done = 0
    stop = time.perf_counter() + CLOSED_LOOP_S

    async def worker(i: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=TOKEN) as http:
            while time.perf_counter() < stop:
                resp = await http.post("/v1/dossiers", json=body(units[(i + done) % len(units)]))
                if resp.status_code != 201:
                    raise RuntimeError(f"unexpected {resp.status_code}: {resp.text}")
                done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return done / (time.perf_counter() - start)


async def offered_load(base: str, units: list[str]) -> tuple[float, float, int, int]:
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=TOKEN, limits=httpx.Limits(max_connections=200)) as http:

        async def one(i: int) -> None:
            nonlocal failures
            t0 = time.perf_counter()
            resp = await http.post("/v1/dossiers", json=body(units[i % len(units)]))
            latencies.append(time.perf_counter() - t0)
            failures += resp.status_code != 201

        tasks = []
        start = time.perf_counter()
        for i in range(OFFERED_RPS * OFFERED_S):
            await asyncio.sleep(max(0.0, start + i / OFFERED_RPS - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000, len(latencies), failures


async def kafka_ingestion(units: list[str], cpu: CpuMeter) -> float:
    refs = set()
    consumer = AIOKafkaConsumer(DOSSIER_LIFECYCLE.name, **kafka_as().client_options(), group_id=None,
                                auto_offset_reset="latest")
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(**kafka_as().client_options(), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    public_key = SubmissionKey().public  # the service runs with the local environment's key
    payloads = []
    for i in range(KAFKA_BATCH):  # as agency systems file over Kafka: the applicant sealed to intake's key
        payload = body(units[i % len(units)])
        payload["applicant_sealed"] = seal_for_intake(public_key, Applicant.model_validate(payload.pop("applicant")),
                                                      payload["external_ref"]).model_dump()
        payloads.append(payload)
    cpu.start()
    start = time.perf_counter()
    for payload in payloads:
        refs.add(payload["external_ref"])
        await producer.send(INTAKE_SUBMISSIONS.name, json.dumps(payload).encode(), key=payload["external_ref"].encode())
    await producer.flush()
    seen = 0
    while seen < KAFKA_BATCH:
        for records in (await consumer.getmany(timeout_ms=500)).values():
            seen += sum(1 for r in records if json.loads(r.value)["data"]["external_ref"] in refs)
    elapsed = time.perf_counter() - start
    cpu.stop()
    await producer.stop()
    await consumer.stop()
    return KAFKA_BATCH / elapsed


async def measure(base: str, units: list[str], cpu: CpuMeter) -> tuple:
    rps = await closed_loop(base, units)
    print(f"closed loop: {rps:.0f}/s", flush=True)
    p50, p99, n, failures = await offered_load(base, units)
    print(f"offered load: p50 {p50:.1f} ms p99 {p99:.1f} ms, {failures} non-201 of {n}", flush=True)
    return rps, p50, p99, n, failures, await kafka_ingestion(units, cpu)


def edge_budget(cpu: CpuMeter, records: int) -> str:
    """The CPU a record on the Kafka edge cost each process, and what the machine's cores allow at those costs."""
    each = cpu.ms_each(records)
    system = sum(ms for name, ms in each.items() if name != "benchmark")
    servers = each.get("kafka", 0.0) + each.get("ferretdb", 0.0)
    return (f"{cpu.listed(each)}. Without the load generator {system:.2f} ms a record: {os.cpu_count()} cores take "
            f"at most {at_most_per_s(system):,.0f} records/s; Kafka and FerretDB alone {servers:.2f} ms, at most "
            f"{at_most_per_s(servers):,.0f}/s were intake free")


WAYS = (("each filing on its own (INTAKE_MAX_GROUP=1)", "1"), ("group commit (INTAKE_MAX_GROUP=256, default)", "256"))


def main() -> None:
    units = [u.code for u in catalogue().communes()]
    results, budgets = [], []
    with environment() as servers:
        for label, group in WAYS:  # the same broker and store, a fresh intake and database each
            with service("intake", 38081, f"bench_{uuid.uuid4().hex[:6]}", INTAKE_RATE_BURST="100000",
                         INTAKE_RATE_PER_UNIT_PER_S="100000", INTAKE_MAX_GROUP=group) as base:
                print(label, flush=True)
                cpu = CpuMeter(our_processes(servers))
                results.append((label, *asyncio.run(measure(base, units, cpu))))
                budgets.append((label, edge_budget(cpu, KAFKA_BATCH)))
    print("| intake benchmark (one run) | HTTP closed loop, " f"{CONCURRENCY} clients, {CLOSED_LOOP_S}s | POST latency at "
          f"{OFFERED_RPS} req/s offered | Kafka ingestion, {KAFKA_BATCH} records |")
    print("|---|---|---|---|")
    for label, rps, p50, p99, n, failures, kafka_rps in results:
        print(f"| {label} | {rps:.0f}/s | p50 {p50:.1f} ms, p99 {p99:.1f} ms ({failures} of {n} not 201) | "
              f"{kafka_rps:.0f}/s |")
    print(f"| ratio (group / each on its own) | {results[1][1] / results[0][1]:.2f} | | "
          f"{results[1][6] / results[0][6]:.2f} |")
    print()
    for label, line in budgets:
        print(f"CPU per record on the Kafka edge, {label}: {line}.")


if __name__ == "__main__":
    main()
