"""MongoDB access through PyMongo's async API (`AsyncMongoClient`, the successor of the deprecated Motor)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
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
    )


def database(client: AsyncMongoClient, settings: MongoSettings | None = None) -> AsyncDatabase:
    return client[(settings or MongoSettings()).database]


async def ping(client: AsyncMongoClient) -> None:
    await client.admin.command("ping")


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
