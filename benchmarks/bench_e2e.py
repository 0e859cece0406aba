"""End to end on the real servers: dossiers filed over HTTP at a fixed rate for a while, every assignment answered as
agencies would, and the time until stats has each one — measured exactly, from the offsets stats reports as in its
figures (`lienthong_stats_visible_offset`: their rows written) and, apart, from its committed offsets (everything
stored, its dossier documents too, which stats may write a few seconds behind).

    uv run python benchmarks/bench_e2e.py            # E2E_RATE (20/s) for E2E_SECONDS (60 s)

Prints filings/s achieved, and p50/p99 of: filed -> counted as received in stats; the last agency answer ->
counted as resolved in stats; filed -> resolved in stats (the whole chain: three units, eight lifecycle events).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).parent))
# Servers of its own, with empty topics, wiped at the start: stats would first replay what the other benchmarks
# left on the lifecycle (millions of events), and the figures would measure its catch-up, not the steady stream.
os.environ["BENCH_ENV"] = "bench-e2e"
from bench_intake import body  # noqa: E402
from common import (TOKEN, CpuMeter, environment, kafka_as, our_processes, percentile, service, store_commands,  # noqa: E402
                    store_table)

from lienthong.contracts import parse_event, to_json  # noqa: E402
from lienthong.contracts.dossier import StepCompleted  # noqa: E402
from lienthong.contracts.envelope import new_event  # noqa: E402
from lienthong.identity import registry  # noqa: E402
from lienthong.messaging import consumer_lag  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE, outcomes_topic, work_topic  # noqa: E402

RATE = float(os.environ.get("E2E_RATE", "20"))
SECONDS = float(os.environ.get("E2E_SECONDS", "60"))
E2E_WAIT_S = float(os.environ.get("E2E_WAIT_S", "120"))  # after the last filing, for stats to count the rest
# Filings in flight at most, as a portal's connection pool would hold.
E2E_CONNECTIONS = int(os.environ.get("E2E_CONNECTIONS", "64"))
CHAIN = "LT-KS-TT-BHYT"
SLICE_S = 10


class Run:
    def __init__(self, stats_group: str, stats_base: str) -> None:
        self.stats_group, self.stats_base = stats_group, stats_base
        self.filed: dict[str, float] = {}  # code -> when the POST was sent
        self.answered: dict[str, float] = {}  # code -> when the last step was answered
        self.visible: dict[tuple[str, str], float] = {}  # (code, kind) -> when stats' figures had it
        self.committed: dict[tuple[str, str], float] = {}  # (code, kind) -> when stats had committed past it
        self.answered_201: dict[str, float] = {}  # code -> when intake's 201 came back
        self.logged: dict[tuple[str, str], float] = {}  # (code, kind) -> when the observer read it on the topic
        self.done = asyncio.Event()
        self.failed: list[str] = []  # filings not accepted (timeouts, 503), by what went wrong
        self.filing_done = False

    async def file(self) -> None:
        # aiohttp, not httpx: the load generator shares the two cores with the services it measures, and httpx's
        # client took 52% of this process's CPU at 200/s (py-spy), the process ~1.9 ms of CPU a dossier in all.
        async with aiohttp.ClientSession("http://127.0.0.1:38081", headers=TOKEN,
                                         connector=aiohttp.TCPConnector(limit=E2E_CONNECTIONS),
                                         timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def one(i: int) -> None:
                sent = time.perf_counter()  # waiting for a connection counts as latency
                payload = orjson.dumps(body("HACTHANH") | {"procedure_code": CHAIN})
                try:
                    async with session.post("/v1/dossiers", data=payload,
                                            headers={"content-type": "application/json"}) as resp:
                        status, answer = resp.status, await resp.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.failed.append(type(exc).__name__)
                    return
                if status != 201:
                    self.failed.append(str(status))
                    return
                code = orjson.loads(answer)["dossier_code"]
                self.filed[code], self.answered_201[code] = sent, time.perf_counter()

            start, tasks = time.perf_counter(), []
            for i in range(int(RATE * SECONDS)):
                await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
            self.filing_seconds = time.perf_counter() - start
            self.filing_done = True

    async def agencies(self) -> None:
        reg = registry()
        consumer = AIOKafkaConsumer(*(work_topic(a.name).name for a in reg.agencies), **kafka_as().client_options(),
                                    group_id=None, auto_offset_reset="latest")
        producer = AIOKafkaProducer(**kafka_as().client_options(), acks="all", enable_idempotence=True, linger_ms=2)
        await consumer.start()
        await consumer.seek_to_end()
        await producer.start()
        answered_ids: set[str] = set()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for record in records:
                        assigned = parse_event(record.value)
                        if not assigned.type.endswith("assigned.v1") or assigned.id in answered_ids:
                            continue
                        answered_ids.add(assigned.id)
                        data = assigned.data
                        outcome = new_event(StepCompleted(unit_code=data.unit_code, step=data.step),
                                            subject=assigned.subject, source="/bench", seq=assigned.dossierseq)
                        [agency] = reg.acting_for(data.unit_code)
                        await producer.send(outcomes_topic(agency).name, to_json(outcome), key=record.key)
                        self.answered[assigned.subject] = time.perf_counter()
        finally:
            await producer.stop()
            await consumer.stop()

    async def observe(self) -> None:
        """Where each dossier's submitted and resolved events sit, and when stats' figures and its committed offsets
        pass them (asked every 50 ms)."""
        consumer = AIOKafkaConsumer(DOSSIER_LIFECYCLE.name, **kafka_as().client_options(), group_id=None,
                                    auto_offset_reset="latest")
        admin = AIOKafkaAdminClient(**kafka_as().client_options())
        await consumer.start()
        await consumer.seek_to_end()
        await admin.start()
        pending: dict[tuple[str, str], tuple[int, int]] = {}  # (code, kind) -> where it sits, until stats passes it
        asked = 0.0
        try:
            async with aiohttp.ClientSession(self.stats_base, headers=TOKEN) as http:
                while True:
                    for records in (await consumer.getmany(timeout_ms=50)).values():
                        for record in records:
                            kind = orjson.loads(record.value)["type"].split(".")[3]  # the type alone: no validation
                            if kind in ("submitted", "resolved"):
                                pending[(record.key.decode(), kind)] = (record.partition, record.offset)
                                self.logged[(record.key.decode(), kind)] = time.perf_counter()
                    # every 50 ms, not after every fetch: at 200/s fetches come back at once, and each question
                    # costs the stats process (its /metrics) and Kafka CPU they would measure as their own
                    await asyncio.sleep(max(0.0, asked + 0.05 - time.perf_counter()))
                    asked = time.perf_counter()
                    async with http.get("/metrics") as resp:
                        visible = visible_offsets(await resp.text())
                    committed = {tp.partition: meta.offset for tp, meta in
                                 (await admin.list_consumer_group_offsets(self.stats_group)).items()}
                    now = time.perf_counter()
                    for key, (partition, offset) in list(pending.items()):
                        if key not in self.visible and visible.get(partition, -1) > offset:
                            self.visible[key] = now
                        if committed.get(partition, -1) > offset:
                            self.committed[key] = now
                            self.visible.setdefault(key, now)
                            del pending[key]
                    if self.filing_done and all((code, "resolved") in self.committed for code in self.filed):
                        self.done.set()
        finally:
            await admin.close()
            await consumer.stop()


def visible_offsets(metrics: str) -> dict[int, int]:
    """`lienthong_stats_visible_offset{partition="3"} 1234.0` lines: partition -> the next offset not in the figures."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith("lienthong_stats_visible_offset{"):
            out[int(line.split('"')[1])] = int(float(line.rsplit(" ", 1)[1]))
    return out


async def measure(stats_group: str, cpu: CpuMeter, bases: dict[str, str]) -> dict[str, Any]:
    for _ in range(600):  # stats first replays what the bench topics already hold
        if sum((await consumer_lag(kafka_as(), stats_group, [DOSSIER_LIFECYCLE.name])).values()) == 0:
            break
        await asyncio.sleep(0.5)
    run = Run(stats_group, bases["stats"])
    background = [asyncio.create_task(run.agencies()), asyncio.create_task(run.observe())]
    await asyncio.sleep(2)  # both readers positioned at the end
    cpu.start()
    commands = {name: store_commands(base) for name, base in bases.items()}
    await run.file()
    try:
        await asyncio.wait_for(run.done.wait(), timeout=SECONDS + E2E_WAIT_S)
    except TimeoutError:
        pass  # reported below: the dossiers stats had not counted as resolved by then
    cpu.stop()
    commands = {"before": commands, "after": {name: store_commands(base) for name, base in bases.items()}}
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    codes = [c for c in run.filed if (c, "resolved") in run.committed and c in run.answered]
    received = [run.visible[(c, "submitted")] - run.filed[c] for c in codes]
    resolved = [run.visible[(c, "resolved")] - run.answered[c] for c in codes]
    chain = [run.visible[(c, "resolved")] - run.filed[c] for c in codes]
    stored = [run.committed[(c, "submitted")] - run.filed[c] for c in codes]
    accepted = [run.answered_201[c] - run.filed[c] for c in codes]
    logged = [run.logged[(c, "submitted")] - run.filed[c] for c in codes]
    first = min(run.filed.values(), default=0.0)
    slices: dict[int, list[float]] = {}  # filed -> counted as received, by the 10 s of the run it was filed in
    for code, latency in zip(codes, received, strict=True):
        slices.setdefault(int((run.filed[code] - first) // SLICE_S), []).append(latency)
    return {"commands": commands, "rate": len(run.filed) / run.filing_seconds, "n": len(run.filed), "failed": len(run.failed),
            "slices": {n: (percentile(v, 0.5) * 1000, percentile(v, 0.99) * 1000) for n, v in sorted(slices.items())},
            "failures": dict(Counter(run.failed)),
            "unseen": len(run.filed) - len(codes),
            **{f"{name}_{q}": percentile(values, p) * 1000 if values else float("nan") for name, values in
               (("received", received), ("resolved", resolved), ("chain", chain), ("stored", stored),
                ("accepted", accepted), ("logged", logged))
               for q, p in (("p50", 0.5), ("p99", 0.99))}}


def main() -> None:
    from common import _environment

    env = _environment()
    env.down()
    shutil.rmtree(env.kafka.state, ignore_errors=True)
    database, suffix = f"bench_e2e_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:6]
    stats_group = f"stats-e2e-{suffix}"
    with environment() as servers, ExitStack() as services:
        intake = services.enter_context(service("intake", 38081, database, INTAKE_RATE_BURST="100000",
                                                INTAKE_RATE_PER_UNIT_PER_S="100000"))
        routing = services.enter_context(service("routing", 38082, database, ROUTING_START_FROM="latest",
                                                 ROUTING_GROUP_ID=f"routing-e2e-{suffix}"))
        stats = services.enter_context(service("stats", 38084, database, STATS_GROUP_ID=stats_group,
                                               STATS_LOG_LEVEL=os.environ.get("E2E_STATS_LOG_LEVEL", "WARNING")))
        cpu = CpuMeter(our_processes(servers))
        figures = asyncio.run(measure(stats_group, cpu, {"intake": intake, "routing": routing, "stats": stats}))
        metrics = httpx.get(f"{stats}/metrics", headers=TOKEN).text
    print(f"| end to end (one run): {figures['n']} dossiers of {CHAIN} filed at {RATE:g}/s offered "
          f"({figures['rate']:.1f}/s accepted, {figures['failed']} not accepted {figures['failures'] or ''}, "
          f"{figures['unseen']} not resolved in "
          f"stats {E2E_WAIT_S:g} s after the last filing), every step answered at once "
          "| p50 | p99 |")
    print("|---|---|---|")
    print(f"| filed -> intake's 201 | {figures['accepted_p50']:.0f} ms | {figures['accepted_p99']:.0f} ms |")
    print(f"| filed -> its `submitted` event read from the lifecycle topic | {figures['logged_p50']:.0f} ms | "
          f"{figures['logged_p99']:.0f} ms |")
    print(f"| filed -> counted as received in stats | {figures['received_p50']:.0f} ms | "
          f"{figures['received_p99']:.0f} ms |")
    print(f"| last answer -> counted as resolved in stats | {figures['resolved_p50']:.0f} ms | "
          f"{figures['resolved_p99']:.0f} ms |")
    print(f"| filed -> resolved in stats (three units, eight events) | {figures['chain_p50']:.0f} ms | "
          f"{figures['chain_p99']:.0f} ms |")
    print(f"| filed -> stored in full in stats (its offset committed: the dossier document written too) | "
          f"{figures['stored_p50']:.0f} ms | {figures['stored_p99']:.0f} ms |")
    print("\nfiled -> counted as received in stats, by when in the run it was filed (p50 / p99, ms): " + ", ".join(
        f"{n * SLICE_S}-{(n + 1) * SLICE_S} s {p50:.0f} / {p99:.0f}" for n, (p50, p99) in figures["slices"].items()))
    print(f"\nstats' batches over the whole run (its catch-up included): {phases(metrics)}")
    print(f"\nWhere the CPU goes, from the first filing until the last is counted in stats (this machine has "
          f"{os.cpu_count()} cores: {os.cpu_count() * 1000 / RATE:.0f} ms of CPU per dossier at {RATE:g}/s):\n")
    print(cpu.table(figures["n"], "dossier"))
    print("\nStore commands over the same time, by the store's time (as each service measured it):\n")
    print(store_table(figures["commands"]["before"], figures["commands"]["after"], figures["n"], "dossier"))


def phases(metrics: str) -> str:
    sums, count = {}, 0.0
    for line in metrics.splitlines():
        if line.startswith("lienthong_stats_batch_phase_seconds_sum"):
            sums[line.split('phase="')[1].split('"')[0]] = float(line.split()[-1])
        elif line.startswith("lienthong_stats_batch_phase_seconds_count") and 'phase="fold"' in line:
            count = float(line.split()[-1])
    return ", ".join(f"{k} {v:.1f} s" for k, v in sums.items()) + f" in {count:.0f} batches"


if __name__ == "__main__":
    main()
