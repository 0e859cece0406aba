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


# FerretDB v1 keeps the cursor of every update in a command open until the command ends (a `defer` in a loop), and
# its SQLite pool has 100 connections: an update command of more than ~100 statements hangs the server. Chunks of
# 50 stay well under; MongoDB takes them as readily.
BULK_CHUNK = 50


# FerretDB 1.24 (SQLite) stalled for good on one `update` command of 150 upserts of existing documents (measured
# with `$max` upserts: 100 passed in 70 ms, 150 never answered); a few commands of at most this many statements
# cost a round trip each and never stall.
MAX_UPDATES_PER_COMMAND = 50


async def bulk_update(collection: Any, ops: list[Any]) -> None:
    """`bulk_write(ops, ordered=False)` in commands of at most MAX_UPDATES_PER_COMMAND statements."""
    for start in range(0, len(ops), MAX_UPDATES_PER_COMMAND):
        await collection.bulk_write(ops[start : start + MAX_UPDATES_PER_COMMAND], ordered=False)
