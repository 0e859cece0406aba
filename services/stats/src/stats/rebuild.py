"""`lienthong stats rebuild` (or `python -m stats.rebuild`): replay every dossier topic from offset 0 into a fresh
collection, switch readers and writers over in one write, then top up with what arrived meanwhile.

The live projector keeps running throughout: anything it applied to the old collection after the replay's end
mark is applied again to the new one by the top-up, and the per-dossier tracking position makes that harmless.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from lienthong.contracts import parse_event
from lienthong.messaging import partitions_of
from lienthong.settings import KafkaSettings, MongoSettings
from lienthong.store import database, make_client
from lienthong.topics import DOSSIER_LIFECYCLE
from stats.store import Positioned, ProjectionStore


async def _replay(consumer: AIOKafkaConsumer, partitions: list[TopicPartition], until: dict, store: ProjectionStore,
                  ) -> int:
    events = 0

    async def behind() -> bool:
        return any([await consumer.position(tp) < until[tp] for tp in partitions])

    while await behind():
        batch = await consumer.getmany(timeout_ms=500, max_records=1000)
        parsed = []
        for records in batch.values():
            for record in records:
                try:
                    parsed.append(Positioned(parse_event(record.value or b""), record.partition, record.offset))
                except ValueError:
                    continue  # the live consumer parked it in the DLQ already
        await store.project(parsed)
        events += len(parsed)
    return events


async def rebuild(kafka: KafkaSettings | None = None, mongo: MongoSettings | None = None) -> dict[str, object]:
    kafka, mongo = kafka or KafkaSettings(), mongo or MongoSettings()
    client = make_client(mongo)
    db = database(client, mongo)
    live = ProjectionStore(db)
    target = f"stats_dossiers_{datetime.now(UTC):%Y%m%d%H%M%S}"
    fresh = ProjectionStore(db, collection=target)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    started = time.perf_counter()
    try:
        partitions = [TopicPartition(DOSSIER_LIFECYCLE.name, p)
                      for p in await partitions_of(kafka.servers, DOSSIER_LIFECYCLE.name)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        replayed = await _replay(consumer, partitions, await consumer.end_offsets(partitions), fresh)
        previous = await live.switch_to(target)
        topped_up = await _replay(consumer, partitions, await consumer.end_offsets(partitions), fresh)
        if previous != target:
            await db.drop_collection(previous)
            await db.drop_collection(previous + "_rollups")
    finally:
        await consumer.stop()
        await client.close()
    return {"collection": target, "replaced": previous, "events": replayed + topped_up,
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    result = asyncio.run(rebuild())
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
