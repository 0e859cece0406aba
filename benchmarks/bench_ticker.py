"""Routing's deadline ticker on the real store: how long a round takes to find the dossiers due, over many heads
of which few are due (the five months leave ~522,000 dossiers, ~11,000 of them open). Both designs in one run, on
the same heads: a query on the heads' `tick_on` (the ticker before the tick buckets; FerretDB answers it by reading
every head) and `WorkflowStore.due` (the tick buckets, then the due heads by `_id`).

    uv run python benchmarks/bench_ticker.py        (BENCH_TICKER_HEADS, default 100,000; 2% due)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import MONGO, environment  # noqa: E402

from lienthong.settings import MongoSettings  # noqa: E402
from lienthong.store import database, make_client  # noqa: E402
from routing.store import NEVER, WorkflowStore  # noqa: E402

HEADS = int(os.environ.get("BENCH_TICKER_HEADS", "100000"))
TODAY = date(2025, 12, 1)
ROUNDS = 5


def heads() -> list[dict]:
    """Small heads as routing writes them: one in fifty open and due within the week, the others closed."""
    return [{"_id": f"U{i % 166:03d}-251201-{i:06d}", "version": 5, "status": "closed" if i % 50 else "in_progress",
             "tick_on": NEVER if i % 50 else (TODAY - timedelta(days=i % 7)).isoformat(),
             "updated_at": "2025-12-01T00:00:00Z", "published": 5} for i in range(HEADS)]


async def timed(round_) -> tuple[float, int]:  # noqa: ANN001
    times, found = [], 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        found = len(await round_())
        times.append(time.perf_counter() - started)
    return statistics.median(times), found


async def main() -> None:
    settings = MongoSettings(uri=MONGO, database=f"bench_ticker_{uuid.uuid4().hex[:6]}")
    client = make_client(settings)
    try:
        store = WorkflowStore(database(client, settings))
        docs = heads()
        for start in range(0, len(docs), 20_000):
            await store.docs.insert_many(docs[start:start + 20_000])
        started = time.perf_counter()
        await store.due(TODAY)  # the first round sweeps every head into the buckets (then once a day)
        sweep = time.perf_counter() - started
        scan, by_scan = await timed(lambda: store.docs.find({"tick_on": {"$lte": TODAY.isoformat()}},
                                                            projection={"_id": 1}).to_list(None))
        buckets, by_buckets = await timed(lambda: store.due(TODAY))
        if by_scan != by_buckets:
            raise SystemExit(f"the designs disagree: {by_scan} due by the scan, {by_buckets} by the buckets")
    finally:
        await client.drop_database(settings.database)
        await client.close()
    print(f"| routing's ticker, {HEADS:,} heads, {by_scan:,} due (median of {ROUNDS} rounds) | seconds |")
    print("|---|---|")
    print(f"| a query on the heads' `tick_on` (the ticker before the buckets) | {scan:.3f} |")
    print(f"| tick buckets, then the due heads by `_id` (`WorkflowStore.due`) | {buckets:.3f} |")
    print(f"| ratio | {scan / buckets:.1f}x |")
    print(f"| the sweep of every head into the buckets (first round after start-up, then daily) | {sweep:.3f} |")


if __name__ == "__main__":
    with environment():
        asyncio.run(main())
