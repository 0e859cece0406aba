"""What SQLite's commit fsync costs FerretDB: the same inserts and guarded replaces (the projector's and routing's
write shapes: bulks of 50 `ReplaceOne({_id, seq})`) on two fresh local FerretDB servers, one as `infra up` runs it
(WAL, synchronous=NORMAL: no fsync per commit) and one with SQLite's default (synchronous=FULL), alternating, in
one run.

    uv run python benchmarks/bench_ferretdb_sync.py      (BENCH_SYNC_DOCS, default 3,000; BENCH_SYNC_ROUNDS, 2)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pymongo import AsyncMongoClient, ReplaceOne

sys.path.insert(0, str(Path(__file__).parent))
from lienthong_tools.infra.servers import LocalFerretDB  # noqa: E402
from lienthong_testkit.servers import free_ports  # noqa: E402

DOCS = int(os.environ.get("BENCH_SYNC_DOCS", "3000"))
ROUNDS = int(os.environ.get("BENCH_SYNC_ROUNDS", "2"))


def dossier(i: int, seq: int) -> dict:
    return {"_id": f"HACTHANH-251127-{i:05d}", "procedure": "HT-KS", "channel": "online", "receiving_unit": "HACTHANH",
            "competent_unit": "HACTHANH", "status": "in_progress", "received_day": "2025-11-27",
            "due_date": "2025-12-01", "closed_day": None, "on_time": None, "paused_days": 0, "seq": seq,
            "current_unit": "HACTHANH", "step": 0, "packed": b"x" * 300}


async def measure(port: int) -> tuple[float, float]:
    client: AsyncMongoClient = AsyncMongoClient(f"mongodb://127.0.0.1:{port}/")
    try:
        docs = client["bench"]["dossiers"]
        started = time.perf_counter()
        await docs.insert_many([dossier(i, 1) for i in range(DOCS)], ordered=False)
        inserts = DOCS / (time.perf_counter() - started)
        started = time.perf_counter()
        for first in range(0, DOCS, 50):
            result = await docs.bulk_write([ReplaceOne({"_id": dossier(i, 1)["_id"], "seq": 1}, dossier(i, 2))
                                            for i in range(first, min(first + 50, DOCS))], ordered=False)
            assert result.matched_count == min(50, DOCS - first)
        return inserts, DOCS / (time.perf_counter() - started)
    finally:
        await client.close()


def main() -> None:
    ways = {"synchronous=NORMAL (infra up)": LocalFerretDB.sqlite_params, "synchronous=FULL (SQLite's default)": ""}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    for _ in range(ROUNDS):
        for name, params in ways.items():
            state = Path(tempfile.mkdtemp(prefix="bench-sync-"))
            server = LocalFerretDB("ferretdb", "127.0.0.1", free_ports(), state)
            server.sqlite_params = params
            server.launch()
            server.settle()
            try:
                results[name].append(asyncio.run(measure(server.port)))
            finally:
                server.stop()
                shutil.rmtree(state, ignore_errors=True)
    print(f"| FerretDB, {DOCS:,} dossier documents, best of {ROUNDS} alternating rounds | inserts/s | guarded replaces/s |")
    print("|---|---|---|")
    best = {name: (max(i for i, _ in runs), max(r for _, r in runs)) for name, runs in results.items()}
    for name, (inserts, replaces) in best.items():
        print(f"| {name} | {inserts:,.0f} | {replaces:,.0f} |")
    (normal_i, normal_r), (full_i, full_r) = best.values()
    print(f"| NORMAL / FULL, same run | {normal_i / full_i:.2f}x | {normal_r / full_r:.2f}x |")


if __name__ == "__main__":
    main()
