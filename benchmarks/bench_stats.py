"""Stats, three figures from one run on the real broker and store:

1. the projector: events per second from Kafka (a private topic) into fresh databases, batch vs one at a time
   (the batch mode folds each fetched batch per dossier, one bulk write for the rows and one for the dossiers; the
   other applies every event on its own), compared as a ratio;
2. summary latency over BENCH_STATS_DOSSIERS (default 1,000,000) dossiers: their rollup rows, built by the same
   pure fold the projector uses, are loaded into the store and the running stats service answers over HTTP;
   for comparison, the earlier design (every dossier document read and counted) over BENCH_STATS_SCAN_DOSSIERS;
3. the time `lienthong stats rebuild` takes to replay the lifecycle topic into fresh collections.

    uv run python benchmarks/bench_stats.py
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parent))
from common import KAFKA, MONGO, environment, service  # noqa: E402

from lienthong.calendar import VN_TZ  # noqa: E402
from lienthong.contracts import parse_event, to_json  # noqa: E402
from lienthong.contracts.dossier import Applicant, DossierAssigned, DossierResolved, DossierSubmitted  # noqa: E402
from lienthong.contracts.envelope import new_event  # noqa: E402
from lienthong.messaging import ensure_topics  # noqa: E402
from lienthong.catalogue import catalogue  # noqa: E402
from lienthong.settings import KafkaSettings, MongoSettings  # noqa: E402
from lienthong.store import database, make_client  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE, Topic  # noqa: E402
from stats import rollups  # noqa: E402
from stats.projection import summarize  # noqa: E402
from stats.rebuild import rebuild  # noqa: E402
from stats.store import Positioned, ProjectionStore, add_to_rows, path_of, row_of  # noqa: E402

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
            events = [Positioned(parse_event(r.value), r.partition, r.offset) for r in records]
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
    await ensure_topics([KAFKA], [topic, DOSSIER_LIFECYCLE])
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    total = 0
    run = uuid.uuid4().hex[:4].upper()
    for i in range(DOSSIERS):
        code = f"B{run}-251201-{i + 1:04d}"
        for event in events_for(code):
            await producer.send(topic.name, to_json(event), key=code.encode())
            await producer.send(DOSSIER_LIFECYCLE.name, to_json(event), key=code.encode())  # for the rebuild
            total += 1
    await producer.flush()
    await producer.stop()
    batch = await project(topic.name, batch=True, total=total)
    single = await project(topic.name, batch=False, total=total)
    return batch, single, total


PERIOD_START = date(2025, 7, 1)
DAYS = 184  # 1 July - 31 December 2025


def synthetic_dossiers(n: int, seed: int = 1) -> Iterator[dict]:
    """Projection documents as `projection.apply` leaves them (only the fields figures read), a mix like the
    province's: 96.6% online, a few postal; 1-3 steps; 2% late, 1% rejected, 0.5% withdrawn, 3% still open."""
    rng = random.Random(seed)
    units = list(catalogue().units)
    procedures = list(catalogue().procedures)
    for _ in range(n):
        received = PERIOD_START + timedelta(days=rng.randrange(DAYS))
        due = received + timedelta(days=rng.randrange(1, 20))
        fate = rng.random()
        closed = None if fate < 0.03 else received + timedelta(days=rng.randrange(0, 25 if fate < 0.05 else 19))
        status = "in_progress" if closed is None else "rejected" if fate < 0.04 else "withdrawn" if fate < 0.045 \
            else "resolved"
        receiving = rng.choice(units)
        step_units = [rng.choice(units) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        doc = {"receiving_unit": receiving, "competent_unit": step_units[0], "procedure": rng.choice(procedures),
               "channel": rng.choices(["online", "direct", "postal"], [966, 30, 4])[0],
               "received_day": received.isoformat(), "due_date": due.isoformat(),
               "closed_day": closed and closed.isoformat(), "status": status,
               "on_time": (closed <= due) if status == "resolved" else None}
        doc["steps"] = [{"unit": u, "received_day": doc["received_day"], "due_date": doc["due_date"],
                         "closed_day": doc["closed_day"], "status": status, "on_time": doc["on_time"]}
                        for u in step_units]
        yield doc


async def load_rows(db_name: str, n: int) -> tuple[int, float]:
    """The rows of n dossiers, written through the projector's own row writer (as one batch at offset 0)."""
    cells: Counter = Counter()
    for doc in synthetic_dossiers(n):
        cells.update(rollups.contributions(doc))
    per_row: dict = defaultdict(dict)
    for (day, slot, field), k in cells.items():
        path = path_of(day, slot, field)
        per_row[row_of(day, slot)][path] = per_row[row_of(day, slot)].get(path, 0) + k
    # FerretDB's $inc costs O(n^2) in its fields: a full month row goes in pieces of at most 300 fields, each
    # as if from another partition (each piece is applied once, like a partition's records).
    deltas: dict = {}
    for row, paths in per_row.items():
        items = sorted(paths.items())
        for piece, start in enumerate(range(0, len(items), 300)):
            deltas[(row, piece)] = [(0, path, k) for path, k in items[start:start + 300]]
    settings = MongoSettings(uri=MONGO, database=db_name)
    client = make_client(settings)
    started = time.perf_counter()
    await add_to_rows(database(client, settings)["stats_dossiers_rollups"], deltas)
    loaded = time.perf_counter() - started
    await client.close()
    return len(per_row), loaded


async def scan_baseline(n: int) -> float:
    """The earlier design: read every dossier document received by the period's end and count (seconds)."""
    settings = MongoSettings(uri=MONGO, database=f"bench_scan_{uuid.uuid4().hex[:6]}")
    client = make_client(settings)
    dossiers = database(client, settings)["dossiers"]
    docs = [{**d, "_id": f"SCAN-{i}"} for i, d in enumerate(synthetic_dossiers(n))]
    for start in range(0, len(docs), 10_000):
        await dossiers.insert_many(docs[start:start + 10_000])
    hi = (PERIOD_START + timedelta(days=DAYS - 1)).isoformat()
    fields = {"received_day": 1, "channel": 1, "closed_day": 1, "status": 1, "on_time": 1, "due_date": 1}
    started = time.perf_counter()
    found = await dossiers.find({"received_day": {"$lte": hi}}, projection=fields).to_list(None)
    summarize(found, PERIOD_START, date.fromisoformat(hi))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def timed_get(base: str, path: str, params: dict, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        httpx.get(f"{base}{path}", params=params, timeout=600).raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def progress(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def main() -> None:
    n = int(os.environ.get("BENCH_STATS_DOSSIERS", "1000000"))
    scan_n = int(os.environ.get("BENCH_STATS_SCAN_DOSSIERS", "100000"))
    period = {"from": PERIOD_START.isoformat(), "to": (PERIOD_START + timedelta(days=DAYS - 1)).isoformat()}
    with environment():
        progress("projector: batch vs one at a time")
        batch, single, total = asyncio.run(measure())
        progress(f"rollup rows of {n:,} dossiers")
        db_name = f"bench_summary_{uuid.uuid4().hex[:6]}"
        rows, loaded = asyncio.run(load_rows(db_name, n))
        progress("queries through the stats service")
        with service("stats", 18084, db_name) as base:
            latencies = {
                "summary, province, 6 months": timed_get(base, "/v1/stats/summary", period),
                "summary, one unit": timed_get(base, "/v1/stats/summary", {**period, "unit": "HACTHANH"}),
                "summary, per step": timed_get(base, "/v1/stats/summary", {**period, "basis": "steps"}),
                "ranking of all units": timed_get(base, "/v1/stats/units", period),
                "ranking, 15 Aug - 20 Nov (cuts two months: their unit rows are read)":
                    timed_get(base, "/v1/stats/units", {"from": "2025-08-15", "to": "2025-11-20"}),
                "timeseries by month": timed_get(base, "/v1/stats/timeseries", {**period, "interval": "month"}),
            }
        progress(f"earlier design over {scan_n:,} dossier documents")
        scan = asyncio.run(scan_baseline(scan_n))
        progress("rebuild")
        rebuilt = asyncio.run(rebuild(KafkaSettings(bootstrap_servers=KAFKA), MongoSettings(uri=MONGO)))
    print("| stats benchmark | figure |")
    print("|---|---|")
    print(f"| batch projector ({total} events, {DOSSIERS} dossiers) | {batch:.0f} events/s |")
    print(f"| one-at-a-time projector, same records | {single:.0f} events/s |")
    print(f"| ratio batch / one-at-a-time | {batch / single:.1f}x |")
    print(f"| rollup rows (month x slot) for {n:,} dossiers, written in {loaded:.1f} s | {rows:,} rows |")
    for name, seconds in latencies.items():
        print(f"| {name}, {n:,} dossiers (median of 5, HTTP) | {seconds * 1000:.0f} ms |")
    print(f"| earlier design: read and count {scan_n:,} dossier documents | {scan * 1000:.0f} ms |")
    print(f"| rebuild: replay {rebuilt['events']:,} lifecycle events into fresh collections | "
          f"{rebuilt['seconds']} s ({rebuilt['events'] / max(rebuilt['seconds'], 0.1):.0f} events/s) |")


if __name__ == "__main__":
    main()
