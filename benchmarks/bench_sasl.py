"""What authentication and encryption cost on the wire: the same produce (idempotent, acks=all) and consume of N
records on two local brokers started alike, one with SASL/SCRAM-SHA-512 over TLS + ACLs (the project's), one
without any (a baseline that exists only here), measured in one run and printed as ratios.

    uv run python benchmarks/bench_sasl.py      (BENCH_SASL_RECORDS, default 200,000 of 600 bytes)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parent))
from lienthong_tools.infra.paths import state_dir  # noqa: E402
from lienthong_tools.infra.servers import LocalKafka, PlaintextKafka  # noqa: E402
from lienthong.messaging import ensure_topics  # noqa: E402
from lienthong.settings import KafkaSettings  # noqa: E402
from lienthong.topics import Topic  # noqa: E402

TOPIC = Topic("bench.sasl", 6, 3_600_000, "SASL cost benchmark")
VALUE = b"x" * 600


async def produce(kafka: KafkaSettings, n: int) -> float:
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        pending = []
        for i in range(n):
            pending.append(await producer.send(TOPIC.name, VALUE, key=str(i % 1000).encode()))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def consume(kafka: KafkaSettings, n: int) -> float:
    consumer = AIOKafkaConsumer(TOPIC.name, **kafka.client_options(), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        done, started = 0, time.perf_counter()
        while done < n:
            done += sum(len(r) for r in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values())
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def main() -> None:
    n = int(os.environ.get("BENCH_SASL_RECORDS", "200000"))
    results = {}
    for kind, port in ((LocalKafka, 39192), (PlaintextKafka, 39292)):
        state = state_dir(f"bench-{kind.__name__.lower()}")
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        broker = kind("kafka", "127.0.0.1", port, state)
        broker.start()
        try:
            admin = broker.admin_settings()
            asyncio.run(ensure_topics(admin, [TOPIC]))
            results[kind.authenticate] = (asyncio.run(produce(admin, n)), asyncio.run(consume(admin, n)))
        finally:
            broker.stop()
    (sasl_p, sasl_c), (plain_p, plain_c) = results[True], results[False]
    print("| SASL + TLS cost benchmark (same run, two local brokers alike) | SASL_SSL (SCRAM) + ACLs | plaintext | "
          "ratio |")
    print("|---|---|---|---|")
    print(f"| produce {n:,} x 600 B, idempotent, acks=all | {sasl_p:,.0f}/s | {plain_p:,.0f}/s | "
          f"{sasl_p / plain_p:.2f} |")
    print(f"| consume the same | {sasl_c:,.0f}/s | {plain_c:,.0f}/s | {sasl_c / plain_c:.2f} |")


if __name__ == "__main__":
    main()
