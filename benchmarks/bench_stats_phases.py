"""Where a stats batch's time goes, on the real store, without Kafka: the five months at BENCH_SCALE (default 1/20)
folded by the stats projector in batches of BENCH_BATCH events (default 100,000, the service's largest) straight
into a fresh database; then events per second, the seconds spent per phase (`lienthong_stats_batch_phase_seconds`:
load, fold, rows, write_rows, write_dossiers), and how long the readers take on what was written (a province
summary's rows, one unit's, the ranking's; the median of five). Two row layouts in one run, each into a fresh
database: `grouped` (the store's: the slots of a month and partition share 14 rows, `projector.row_group`) and
`per slot` (a row for every month x slot x partition, as before v3). Rows and dossiers are packed in both.

    uv run python benchmarks/bench_stats_phases.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import volume  # noqa: E402
from common import MONGO, environment  # noqa: E402

from lienthong.contracts import parse_event  # noqa: E402
from lienthong.settings import MongoSettings  # noqa: E402
from lienthong.store import database, make_client  # noqa: E402
from lienthong.topics import DOSSIER_LIFECYCLE  # noqa: E402
import stats.projector  # noqa: E402
import stats.store  # noqa: E402
from lienthong.catalogue import catalogue  # noqa: E402
from stats.projector import PHASE_SECONDS, Positioned, Projector, row_group, unit_groups  # noqa: E402
from stats.rollups import PROVINCE  # noqa: E402
from stats.store import ProjectionStore  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "0.05"))
BATCH = int(os.environ.get("BENCH_BATCH", "100000"))


def positioned() -> list[Positioned]:
    """The plan's events as the lifecycle topic would hold them: partitioned by dossier code, in order."""
    offsets: dict[int, int] = {}
    out = []
    for _, _, code, value in volume.plan(scale=SCALE):
        partition = zlib.crc32(code.encode()) % DOSSIER_LIFECYCLE.partitions
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        out.append(Positioned(parse_event(value), partition, offset))
    return out


LAYOUTS = {"grouped": (row_group, unit_groups), "per slot": (lambda slot: slot, lambda: sorted(catalogue().units))}


def use_layout(group_of, units) -> None:  # noqa: ANN001
    """The projector and the store's readers name a slot's row through `row_group` (and the ranking the rows of
    every unit through `unit_groups`): swap them for both."""
    stats.projector.row_group = stats.store.row_group = group_of
    stats.store.unit_groups = units


def phase_totals() -> dict[str, float]:
    return {s.labels["phase"]: s.value for m in PHASE_SECONDS.collect() for s in m.samples
            if s.name.endswith("_sum")}


async def measure(items: list[Positioned]) -> tuple[float, dict[str, float]]:
    mongo = MongoSettings(uri=MONGO, database=f"bench_phases_{uuid.uuid4().hex[:6]}")
    client = make_client(mongo)
    try:
        store = ProjectionStore(database(client, mongo))
        projector = Projector(store)
        started = time.perf_counter()
        for i in range(0, len(items), BATCH):
            await projector.project(items[i:i + BATCH])
        rate = len(items) / (time.perf_counter() - started)
        reads = {}
        for name, read in (("province summary rows", lambda: store.slot_rows(volume.LAST.isoformat(), PROVINCE)),
                           ("one unit's rows", lambda: store.slot_rows(volume.LAST.isoformat(), "HACTHANH")),
                           ("ranking rows", lambda: store.ranking_rows(volume.FIRST, volume.LAST))):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                await read()
                times.append(time.perf_counter() - t)
            reads[name] = sorted(times)[2] * 1000
        return rate, reads
    finally:
        await client.close()


def main() -> None:
    items = positioned()
    results = {}
    with environment():
        for name, layout in LAYOUTS.items():
            use_layout(*layout)
            before = phase_totals()
            rate, reads = asyncio.run(measure(items))
            results[name] = rate, reads, {k: v - before.get(k, 0.0) for k, v in phase_totals().items()}
    for name, (rate, reads, totals) in results.items():
        whole = sum(totals.values())
        print(f"{name}: {len(items):,} events in batches of {BATCH:,}: {rate:,.0f} events/s")
        for phase, seconds in totals.items():
            print(f"  {phase:15} {seconds:7.1f} s  {seconds / whole:6.1%}")
        for read, ms in reads.items():
            print(f"  read {read:22} {ms:7.0f} ms")
    (new, new_reads, _), (old, old_reads, _) = results["grouped"], results["per slot"]
    print(f"grouped / per slot, same run: projection {new / old:.2f}x; reads "
          + ", ".join(f"{read} {old_reads[read] / new_reads[read]:.2f}x faster" for read in new_reads))


if __name__ == "__main__":
    main()
