"""MongoDB access through PyMongo's async API (`AsyncMongoClient`, the successor of the deprecated Motor)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Counter
from pymongo import AsyncMongoClient, IndexModel, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from lienthong.settings import MongoSettings


def make_client(settings: MongoSettings | None = None) -> AsyncMongoClient:
    settings = settings or MongoSettings()
    # One client per event loop (PyMongo async rule); majority writes so an acknowledged effect survives failover.
    return AsyncMongoClient(
        settings.uri,
        serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        maxPoolSize=settings.max_pool_size,
        w="majority",
        tz_aware=True,
        appname="lienthong",
        event_listeners=[COMMAND_METRICS],
    )


class CommandMetrics(monitoring.CommandListener):
    """Every command sent to the store, counted with the time it took, by command and collection (our own names:
    no value of a document is a label). The store's cost is per command, so the round trips per dossier are what
    capacity planning reads (`benchmarks/bench_e2e.py` prints them)."""

    def __init__(self) -> None:
        self.commands = Counter("lienthong_store_commands", "Commands sent to the store", ["command", "collection"])
        self.seconds = Counter("lienthong_store_command_seconds", "Seconds the store took to answer commands",
                               ["command", "collection"])
        self._labels: dict[int, tuple[str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else event.command.get("collection", "")
        self._labels[event.request_id] = (event.command_name, collection if isinstance(collection, str) else "")

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._count(event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._count(event.request_id, event.duration_micros)

    def _count(self, request_id: int, micros: int) -> None:
        labels = self._labels.pop(request_id, None)
        if labels is not None:
            self.commands.labels(*labels).inc()
            self.seconds.labels(*labels).inc(micros / 1e6)


COMMAND_METRICS = CommandMetrics()


def database(client: AsyncMongoClient, settings: MongoSettings | None = None) -> AsyncDatabase:
    return client[(settings or MongoSettings()).database]


async def ping(client: AsyncMongoClient) -> None:
    await client.admin.command("ping")


async def create_query_indexes(collection: Any, indexes: list[IndexModel]) -> bool:
    """Indexes that only make queries faster (never a uniqueness rule), created where the server uses them:
    MongoDB does; FerretDB 1.x on SQLite answers only `_id` from an index and still maintains every other one on
    each write (measured: 20,000 inserts took 1.6-1.8x as long with three such indexes, and a range query on an
    indexed field was no faster). There, the same indexes left by an earlier release are dropped. Returns whether
    they were created."""
    info = await collection.database.client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        names = {index.document["name"] for index in indexes}
        for held in await (await collection.list_indexes()).to_list(None):
            if held["name"] in names:
                await collection.drop_index(held["name"])
        return False
    await collection.create_indexes(indexes)
    return True


# Update commands of at most this many statements. FerretDB 1.24 as published hangs for good once its 100 SQLite
# connections are held by update statements' open rows (one command of ~100 statements, or a few concurrent ones);
# `lienthong infra up` builds it with that fixed (artifacts.FERRETDB_PATCHES, tests/integration/test_store_server.py).
# The chunks stay so that a FerretDB built elsewhere is safe from a single large command, and each command's
# latency stays bounded; MongoDB takes them as readily.
BULK_CHUNK = 50
MAX_UPDATES_PER_COMMAND = BULK_CHUNK


async def bulk_update(collection: Any, ops: list[Any]) -> None:
    """`bulk_write(ops, ordered=False)` in commands of at most MAX_UPDATES_PER_COMMAND statements."""
    for start in range(0, len(ops), MAX_UPDATES_PER_COMMAND):
        await collection.bulk_write(ops[start : start + MAX_UPDATES_PER_COMMAND], ordered=False)


READ_CHUNK = 1000  # ids per `$in` query (SQLite allows 32,766 bound values)


async def find_by_ids(collection: Any, ids: list[str], projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The documents of `ids`, in concurrent `$in` queries of READ_CHUNK ids; none for no ids, without asking (FerretDB
    reads the whole collection for `_id: {$in: []}`)."""
    chunks = [ids[i:i + READ_CHUNK] for i in range(0, len(ids), READ_CHUNK)]
    found = await asyncio.gather(*(collection.find({"_id": {"$in": chunk}}, projection=projection).to_list(None)
                                   for chunk in chunks))
    return [doc for docs in found for doc in docs]
