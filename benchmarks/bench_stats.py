"""Stats on the real broker and store (a fresh private environment), every figure from one run:

1. catch-up: a fresh lifecycle log of the seeds' five months at 1/20 scale (~129k events); a bare aiokafka consumer
   that reads and JSON-decodes it (the physical ceiling), then the stats service (its own process) from offset 0
   until its figures are exact; the ratio of the two rates; the CPU an event cost each process in both (so the
   most events a second the machine's cores could complete at that cost); the longest its /healthz took meanwhile;
2. burst: with stats caught up, ~26k events of two days' filings at once; seconds from the last one written until the stats
   group has no lag (its offsets are committed only after the effects are stored);
3. rebuild: the full five-month volume (522,706 dossiers, ~2.58M events) added to the log, then `lienthong stats
   rebuild` (fold in memory, bulk load) of everything the log holds, with one worker process and with one per core;
   each one's figures checked against the plans.

    uv run python benchmarks/bench_stats.py        (BENCH_STATS_SCALE=0.2 for a shorter rebuild,
                                                    BENCH_STATS_REBUILD=0 for the catch-up and burst only,
                                                    BENCH_STATS_CATCH_UP_SCALE=0.2 for a catch-up log 4x longer)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).parent))
import volume  # noqa: E402
from common import (ISSUER, TOKEN, MONGO, CpuMeter, at_most_per_s, cpu_seconds, environment, kafka_as,  # noqa: E402
                    our_processes, service_pids, services)

from lienthong_tools.infra.paths import state_dir  # noqa: E402
from lienthong.messaging import partitions_of  # noqa: E402
from lienthong.settings import MongoSettings  # noqa: E402
from lienthong.store import database, make_client  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE  # noqa: E402
from stats import rollups  # noqa: E402
from stats.rebuild import rebuild  # noqa: E402
from stats.store import ProjectionStore  # noqa: E402

MONTH = {"from": "2025-10-01", "to": "2025-10-31"}
INSTANCES = int(os.environ.get("BENCH_STATS_INSTANCES", "1"))
CATCH_UP_SCALE = float(os.environ.get("BENCH_STATS_CATCH_UP_SCALE", "0.05"))  # of the five months: ~129k events
PERIOD = {"from": volume.FIRST.isoformat(), "to": volume.LAST.isoformat()}
FIGURES = ("received", "received_online", "received_direct", "received_postal", "resolved", "resolved_on_time",
           "resolved_late", "in_progress", "overdue")


def progress(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


async def bare_consumer(total: int) -> float:
    """Events per second that aiokafka alone reads and JSON-decodes from the lifecycle topic."""
    consumer = AIOKafkaConsumer(DOSSIER_LIFECYCLE.name, **kafka_as().client_options(), group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    done, started = 0, time.perf_counter()
    try:
        while done < total:
            for records in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                for record in records:
                    orjson.loads(record.value)
                done += len(records)
    finally:
        elapsed = time.perf_counter() - started
        await consumer.stop()
    return total / elapsed


@contextmanager
def health_waits(base: str) -> Iterator[list[float]]:
    """Seconds each /healthz took, polled every 50 ms while the block runs: how long the service's event loop is
    held (its consumer's heartbeats wait as long)."""
    waits: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            asked = time.perf_counter()
            httpx.get(f"{base}/healthz", timeout=60)
            waits.append(time.perf_counter() - asked)
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield waits
    finally:
        done.set()
        poller.join()


async def until_no_lag(group: str, timeout: float, started: float, every_s: float = 0.05) -> float:
    """Seconds from `started` until the group has committed (so stored) everything on the topic, asked every
    `every_s` (each asking costs the broker ~5 ms of CPU: 0.1 core at 20 a second, measured)."""
    admin = AIOKafkaAdminClient(**kafka_as().client_options())
    consumer = AIOKafkaConsumer(**kafka_as().client_options(), group_id=None)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(DOSSIER_LIFECYCLE.name, p)
                      for p in await partitions_of(kafka_as(), DOSSIER_LIFECYCLE.name)]
        ends = await consumer.end_offsets(partitions)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions):
                return time.perf_counter() - started
            await asyncio.sleep(every_s)
        raise RuntimeError(f"stats still lagging after {timeout} s")
    finally:
        await consumer.stop()
        await admin.close()


def phases_of(base: str) -> Counter:
    """The service's seconds per batch phase so far, and its batches (`lienthong_stats_batch_phase_seconds`)."""
    text = httpx.get(f"{base}/metrics", timeout=30, headers=TOKEN).raise_for_status().text
    out: Counter = Counter()
    for line in text.splitlines():
        if line.startswith("lienthong_stats_batch_phase_seconds_sum{"):
            out[line.split('phase="')[1].split('"')[0]] += float(line.rsplit(" ", 1)[1])
        elif line.startswith('lienthong_stats_batch_phase_seconds_count{phase="write_dossiers"}'):
            out["batches"] += float(line.rsplit(" ", 1)[1])
    return out


def figures_of(base: str) -> Counter:
    body = httpx.get(f"{base}/v1/stats/summary", params=PERIOD, timeout=60, headers=TOKEN).raise_for_status().json()
    return Counter({k: body[k] for k in FIGURES})


def check(what: str, got: Counter, want: Counter) -> None:
    want = Counter({k: want[k] for k in FIGURES})
    if got != want:
        raise SystemExit(f"{what}: figures differ from the plan: got {dict(got)}, want {dict(want)}")


async def query_latencies(db_name: str) -> dict[str, float]:
    """Each query the API serves, over the rebuilt projections (in-process ASGI, no consumer): the median of 5, or
    one run of those that read the dossier documents."""
    from fastapi import FastAPI

    from lienthong.auth import Verifier
    from stats import api
    from stats.index import dossiers_behind

    settings = MongoSettings(uri=MONGO, database=db_name)
    client = make_client(settings)
    app = FastAPI()
    app.state.verifier = Verifier(ISSUER.settings())
    app.include_router(api.build_router(ProjectionStore(database(client, settings))))
    queries = {
        "summary, province, 5 months": ("/v1/stats/summary", PERIOD),
        "summary, one unit": ("/v1/stats/summary", {**PERIOD, "unit": "HACTHANH"}),
        "summary, per step": ("/v1/stats/summary", {**PERIOD, "basis": "steps"}),
        "ranking of all units, whole months": ("/v1/stats/units", PERIOD),
        "ranking, 15 Aug - 20 Nov (two cut months)": ("/v1/stats/units", {"from": "2025-08-15", "to": "2025-11-20"}),
        "timeseries by month": ("/v1/stats/timeseries", {**PERIOD, "interval": "month"}),
        "service index, province, one month": ("/v1/stats/index", MONTH),
        # the dossiers short of a component (the default listing): from the `~short` rows
        "dossiers short of online filing, province, one month": ("/v1/stats/index/dossiers",
                                                                 {**MONTH, "component": "online_filing"}),
        "dossiers short of online filing, one unit, one month": ("/v1/stats/index/dossiers",
                                                                 {**MONTH, "component": "online_filing",
                                                                  "unit": "HACTHANH"}),
        # every dossier behind it: the dossier documents themselves (a scan on FerretDB), once
        "all dossiers behind online filing, province, one month": ("/v1/stats/index/dossiers",
                                                                   {**MONTH, "component": "online_filing",
                                                                    "which": "all", "limit": 1}),
    }
    out = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://stats", timeout=600,
                                     headers=TOKEN) as http:
            for name, (path, params) in queries.items():
                times = []
                for _ in range(1 if params.get("which") == "all" else 5):  # a scan of every dossier: once
                    started = time.perf_counter()
                    (await http.get(path, params=params)).raise_for_status()
                    times.append(time.perf_counter() - started)
                out[f"{name} ({'median of 5' if len(times) == 5 else 'one run'})"] = sorted(times)[len(times) // 2]
            # The overdue list the dashboard shows, as of the day after the volume ends: from the `~open` rows
            # (median of 5), and as it was read before this layout, by a search of the dossier documents (one run: a
            # scan on FerretDB)
            store, today = ProjectionStore(database(client, settings)), (volume.LAST + timedelta(days=1)).isoformat()
            dossiers = await store.collection()
            times = []
            for _ in range(5):
                started = time.perf_counter()
                from_rows = await store.overdue(today, None, 50)
                times.append(time.perf_counter() - started)
            out["overdue list, first 50, from the ~open rows (median of 5)"] = sorted(times)[2]
            started = time.perf_counter()
            searched = await dossiers.find({"closed_day": None, "due_date": {"$lt": today}}).sort(
                [("due_date", 1), ("_id", 1)]).limit(50).to_list(None)
            out["overdue list, first 50, searching the dossier documents as before (one run)"] = (
                time.perf_counter() - started)
            assert [d["code"] for d in from_rows] == [d["_id"] for d in searched], "the two overdue lists differ"
            # The listing short of online filing for the province and a month, as it was read before this layout
            # (one run): every dossier received in the month searched, then each judged; the same as from the rows
            started = time.perf_counter()
            behind = dossiers_behind(await store.dossiers_between("received_day", MONTH["from"], MONTH["to"], None),
                                     "online_filing", "recv", lambda unit: True, date.fromisoformat(MONTH["from"]),
                                     date.fromisoformat(MONTH["to"]))
            out["dossiers short of online filing, province, one month, searching the dossier documents as before "
                "(one run)"] = time.perf_counter() - started
            listed = (await http.get("/v1/stats/index/dossiers", params={**MONTH, "component": "online_filing",
                                                                         "limit": 1000})).json()
            assert listed["count"] == sum(not meets for _, meets in behind), "the two listings differ"
            assert {d["code"] for d in listed["dossiers"]} <= {doc["_id"] for doc, meets in behind if not meets}
    finally:
        await client.close()
    return out


async def rebuilt_figures(db_name: str) -> Counter:
    settings = MongoSettings(uri=MONGO, database=db_name)
    client = make_client(settings)
    try:
        store = ProjectionStore(database(client, settings))
        rows = await store.slot_rows(volume.LAST.isoformat(), rollups.PROVINCE)
        summary = rollups.figures(rows, "recv", volume.FIRST, volume.LAST).as_dict()
        return Counter({k: summary[k] for k in FIGURES})
    finally:
        await client.close()


def main() -> None:
    scale = float(os.environ.get("BENCH_STATS_SCALE", "1"))
    shutil.rmtree(state_dir("bench"), ignore_errors=True)  # a fresh log: every figure is about this run's events
    state_dir("bench").mkdir(parents=True, exist_ok=True)
    db_name = f"bench_stats_{uuid.uuid4().hex[:6]}"
    with environment() as env:
        first = volume.plan(CATCH_UP_SCALE, seed=1, batch=1)
        progress(f"catch-up log: {len(first):,} events")
        asyncio.run(volume.produce(kafka_as(), DOSSIER_LIFECYCLE.name, first))
        servers = {name: pid for name, pid in our_processes(env).items() if name in ("kafka", "ferretdb")}
        bare_cpu = CpuMeter({**servers, "bare consumer": os.getpid()})
        bare_cpu.start()
        bare = asyncio.run(bare_consumer(len(first)))
        bare_cpu.stop()
        catch_up_cpu = CpuMeter(servers)
        group = f"stats-bench-{uuid.uuid4().hex[:6]}"
        progress("stats service catching up")
        catch_up_cpu.start()
        started = time.perf_counter()
        # BENCH_STATS_INSTANCES processes in one consumer group, started together (the partitions shared out among
        # them); the first one's figures and phases are read
        with services("stats", [18084 + 10 * i for i in range(INSTANCES)], db_name, STATS_GROUP_ID=group) as bases:
            base = bases[0]
            ready = time.perf_counter() - started  # the processes started, their consumers may be reading already
            with health_waits(base) as waits:
                caught_up = asyncio.run(until_no_lag(group, 1800, started, every_s=0.25))
            catch_up_cpu.stop()  # the stats processes' CPU is all they used since their launch (imports included)
            catch_up_cpu.used["stats"] = sum(cpu_seconds(pid) for pid in service_pids("stats"))
            catch_up_phases = phases_of(base)
            check("catch-up", figures_of(base), volume.expected(first))
            # The portal re-sending a backlog: two days' filings at once (the rows of one month x slot x partition)
            burst = volume.plan(0.01, seed=2, batch=2, first=date(2025, 11, 27), last=date(2025, 11, 28))
            progress(f"burst of {len(burst):,} events")
            before = phases_of(base)
            producing = time.perf_counter()
            asyncio.run(volume.produce(kafka_as(), DOSSIER_LIFECYCLE.name, burst))
            produced = time.perf_counter() - producing
            settled = asyncio.run(until_no_lag(group, 600, time.perf_counter()))
            burst_phases = phases_of(base)
            burst_phases.subtract(before)
            check("burst", figures_of(base), volume.expected(first) + volume.expected(burst))
        rebuilds, latencies = {}, {}
        if os.environ.get("BENCH_STATS_REBUILD", "1") == "0":
            scale = 0
        full = volume.plan(scale, seed=3, batch=3) if scale else []
        full_events, full_expected = len(full), volume.expected(full)
        progress(f"full volume: {full_events:,} events")
        asyncio.run(volume.produce(kafka_as(), DOSSIER_LIFECYCLE.name, full))
        del full  # ~7 GB of rendered events: the rebuild needs the room
        # One worker process, then one per core (the default), each from the whole log into fresh collections.
        for workers in (1, os.cpu_count() or 1) if scale else ():
            progress(f"rebuild, {workers} worker(s)")
            rebuilds[workers] = asyncio.run(rebuild(kafka_as("stats"), MongoSettings(uri=MONGO, database=db_name),
                                                    workers=workers))
            check(f"rebuild ({workers} workers)", asyncio.run(rebuilt_figures(db_name)),
                  volume.expected(first) + volume.expected(burst) + full_expected)
        if scale:
            progress("queries over the rebuilt projections")
            latencies = asyncio.run(query_latencies(db_name))
    rate = len(first) / caught_up
    print("| stats benchmark | figure |")
    print("|---|---|")
    print(f"| bare aiokafka consumer, read + JSON-decode {len(first):,} lifecycle events | {bare:,.0f} events/s |")
    print(f"| stats service ({INSTANCES} process(es) in one group) from offset 0 to exact figures, same log | "
          f"{rate:,.0f} events/s ({caught_up:.1f} s) |")
    print(f"| ratio stats / bare consumer (target >= 20%) | {100 * rate / bare:.1f}% |")
    if INSTANCES == 1:  # with more, the last one is ready only once a rebalance let it in, well into the catch-up
        from_ready = len(first) / (caught_up - ready)
        print(f"| the same from the service's readiness ({ready:.1f} s after its launch; the bare consumer's time "
              f"excludes its start too) | {from_ready:,.0f} events/s = {100 * from_ready / bare:.1f}% |")
    for what, cpu in (("the bare consumer", bare_cpu), ("stats' catch-up, from its launch", catch_up_cpu)):
        each = cpu.ms_each(len(first))
        ceiling = at_most_per_s(sum(each.values()))
        print(f"| CPU an event costs each process, {what} | {CpuMeter.listed(each, 'us')}; "
              f"{1000 * sum(each.values()):.1f} us in all: the cores complete at most {ceiling:,.0f} events/s"
              f" = {100 * ceiling / bare:.0f}% of the bare consumer |")
    print(f"| longest /healthz answer during the catch-up, polled every 50 ms once ready (the event loop held) | "
          f"{max(waits):.2f} s |")
    print(f"| the catch-up's {catch_up_phases.pop('batches'):.0f} windows, seconds per phase | "
          + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in catch_up_phases.items()) + " |")
    print(f"| burst of {len(burst):,} events: last written -> stats lag 0 | {settled:.2f} s |")
    print(f"| the burst's producer, from its start (connecting) to the last acknowledgement | {produced:.2f} s |")
    print(f"| the burst's {burst_phases.pop('batches'):.0f} windows, seconds per phase | "
          + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in burst_phases.items()) + " |")
    for workers, rebuilt in rebuilds.items():
        print(f"| rebuild of {rebuilt['events']:,} events ({full_events:,} of them the {scale:g}x five-month volume), "
              f"{workers} worker process(es), exact figures | {rebuilt['seconds']} s (fold {rebuilt['fold_seconds']} s) |")
    if rebuilds:
        one, many = rebuilds[1]["seconds"], rebuilds[max(rebuilds)]["seconds"]
        print(f"| rebuild, {max(rebuilds)} workers vs 1, same run | {one / many:.2f}x faster |")
    for name, seconds in latencies.items():
        print(f"| {name}, over the rebuilt projections | {seconds * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
