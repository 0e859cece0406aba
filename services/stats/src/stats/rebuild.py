"""`lienthong stats rebuild` (or `python -m stats.rebuild`): fold the whole dossier log in memory, bulk-load it into
fresh collections, switch readers and writers over in one write, then top up with what arrived meanwhile.

The fold is the live projector's own (`Projector` over the in-memory store), so a rebuild computes exactly what the
live service would; only the writes differ: one bulk insert of every dossier and row instead of a write per batch.
State is partitioned like the log, so worker processes (`STATS_REBUILD_WORKERS`, default one per core) each fold
and load their own partitions, up to the end offsets read before they start; the top-up continues from there.
The live projector keeps running throughout: after the switch it writes the new collections, and anything it had
applied to the old ones after the replay's end mark is applied again by the top-up; each document's tracking
position makes that harmless.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import secrets
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from lienthong.contracts import parse_event
from lienthong.messaging import partitions_of
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong.store import database, make_client
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.memory import MemoryStore
from stats.projector import Positioned, Projector
from stats.store import ProjectionStore

FETCH = 100_000


async def replay(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], until: dict[TopicPartition, int],
                 projector: Projector) -> int:
    """Project every record up to `until` (end offsets); returns how many events were read."""
    events = 0
    while any([await consumer.position(tp) < until[tp] for tp in partitions]):
        batch = await consumer.getmany(timeout_ms=500, max_records=FETCH)
        parsed = []
        for tp, records in batch.items():
            for record in records:
                if record.offset >= until[tp]:
                    continue  # past the snapshot: the top-up's, in order after it
                try:
                    parsed.append(Positioned(parse_event(record.value or b""), record.partition, record.offset))
                except ValueError:
                    continue  # the live consumer parked it in the DLQ already
        await projector.project(parsed)  # events that cannot be folded were parked by the live consumer too
        events += len(parsed)
    return events


def _consumer(kafka: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False,
                            max_partition_fetch_bytes=16 * 1024 * 1024)


async def load_partitions(kafka: KafkaSettings, mongo: MongoSettings, target: str,
                          until: dict[int, int]) -> tuple[int, float]:
    """One worker: fold these partitions from offset 0 up to `until` in memory, then bulk-load them into `target`.
    Returns the events read and the seconds the fold took."""
    started = time.perf_counter()
    consumer = _consumer(kafka)
    await consumer.start()
    client = make_client(mongo)
    try:
        partitions = [TopicPartition(DOSSIER_LIFECYCLE.name, p) for p in until]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        memory = MemoryStore(isolated=False)  # the only writer of these partitions: no copies, no checks
        gc.disable()  # millions of live objects and no cycles among them: collections would only rescan them
        try:
            events = await replay(consumer, partitions, {tp: until[tp.partition] for tp in partitions},
                                  Projector(memory, cached_rows_per_partition=0, cached_dossiers_per_partition=0))
        finally:
            gc.enable()
        folded = time.perf_counter() - started
        fresh = ProjectionStore(database(client, mongo), collection=target)
        await fresh.prepare()
        await fresh.insert_all(list(memory.dossiers.values()), list(memory.rows.values()), memory.firsts,
                                memory.marks)
        return events, folded
    finally:
        await consumer.stop()
        await client.close()


def _load_partitions(kafka: KafkaSettings, mongo: MongoSettings, target: str,
                     until: dict[int, int]) -> tuple[int, float]:
    return asyncio.run(load_partitions(kafka, mongo, target, until))


async def rebuild(kafka: KafkaSettings | None = None, mongo: MongoSettings | None = None,
                  workers: int | None = None) -> dict[str, object]:
    kafka, mongo = kafka or KafkaSettings(), mongo or MongoSettings()
    workers = workers or int(os.environ.get("STATS_REBUILD_WORKERS", 0)) or os.cpu_count() or 1
    client = make_client(mongo)
    db = database(client, mongo)
    live = ProjectionStore(db)
    # Unique even for two rebuilds in one second: a reused name would bulk-load into the other's documents.
    target = f"stats_v5_dossiers_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"
    fresh = ProjectionStore(db, collection=target)
    consumer = _consumer(kafka)
    await consumer.start()
    started = time.perf_counter()
    try:
        partitions = [TopicPartition(DOSSIER_LIFECYCLE.name, p)
                      for p in await partitions_of(kafka, DOSSIER_LIFECYCLE.name)]
        ends = await consumer.end_offsets(partitions)
        shares = [{tp.partition: ends[tp] for tp in partitions[i::workers]} for i in range(workers)]
        # Spawned, not forked: a fork would copy this process's event loop and open connections.
        with ProcessPoolExecutor(len(shares), mp_context=multiprocessing.get_context("spawn")) as pool:
            done = await asyncio.gather(*(asyncio.wrap_future(pool.submit(_load_partitions, kafka, mongo, target,
                                                                          share)) for share in shares if share))
        replayed, folded = sum(n for n, _ in done), max((f for _, f in done), default=0.0)
        await fresh.create_indexes()  # after the bulk load: building an index once beats updating it per insert
        previous = await live.switch_to(target)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, ends[tp])
        topped_up = await replay(consumer, partitions, await consumer.end_offsets(partitions), Projector(fresh))
        if previous != target:
            await live.drop(previous)
    finally:
        await consumer.stop()
        await client.close()
    return {"collection": target, "replaced": previous, "events": replayed + topped_up, "workers": len(shares),
            "fold_seconds": round(folded, 1), "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    result = asyncio.run(rebuild())
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
