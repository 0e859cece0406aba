"""Where a stats batch's time goes, on the real store, without Kafka: the five months at BENCH_SCALE (default 1/20)
folded by the stats projector in batches of BENCH_BATCH events (default 100,000, the service's largest) straight
into a fresh database; then events per second, the seconds spent per phase (`lienthong_stats_batch_phase_seconds`:
load, fold, rows, write_rows, write_dossiers), and how long the readers take on what was written (a province
summary's rows, one unit's, the ranking's; the median of five). Both document layouts in one run, each into a
fresh database: `packed` (the store's: a row's counters and a dossier's lists as one compressed binary field
each) and `nested` (every counter and list element a field of its own, as stored before).

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
from stats.projector import PHASE_SECONDS, Positioned, Projector  # noqa: E402
from stats.rollups import PROVINCE  # noqa: E402
from stats.store import ProjectionStore  # noqa: E402
from stats.store import _expanded  # noqa: E402

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


class NestedStore(ProjectionStore):
    """The layout before packing: FerretDB pays for every field of a document it writes or reads."""

    def encode_row(self, row):
        return _expanded(super().encode_row(row))

    def encode_dossier(self, doc):
        return doc


LAYOUTS = {"packed": ProjectionStore, "nested": NestedStore}


def phase_totals() -> dict[str, float]:
    return {s.labels["phase"]: s.value for m in PHASE_SECONDS.collect() for s in m.samples
            if s.name.endswith("_sum")}


async def measure(items: list[Positioned], layout: type[ProjectionStore]) -> tuple[float, dict[str, float]]:
    mongo = MongoSettings(uri=MONGO, database=f"bench_phases_{uuid.uuid4().hex[:6]}")
    client = make_client(mongo)
    try:
        store = layout(database(client, mongo))
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
            before = phase_totals()
            rate, reads = asyncio.run(measure(items, layout))
            results[name] = rate, reads, {k: v - before.get(k, 0.0) for k, v in phase_totals().items()}
    for name, (rate, reads, totals) in results.items():
        whole = sum(totals.values())
        print(f"{name}: {len(items):,} events in batches of {BATCH:,}: {rate:,.0f} events/s")
        for phase, seconds in totals.items():
            print(f"  {phase:15} {seconds:7.1f} s  {seconds / whole:6.1%}")
        for read, ms in reads.items():
            print(f"  read {read:22} {ms:7.0f} ms")
    (packed, packed_reads, _), (nested, nested_reads, _) = results["packed"], results["nested"]
    print(f"packed / nested, same run: projection {packed / nested:.2f}x; reads "
          + ", ".join(f"{read} {nested_reads[read] / packed_reads[read]:.2f}x faster" for read in packed_reads))


if __name__ == "__main__":
    main()
