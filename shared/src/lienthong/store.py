"""MongoDB access through PyMongo's async API (`AsyncMongoClient`, the successor of the deprecated Motor)."""

from __future__ import annotations

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
