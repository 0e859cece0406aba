"""A rebalance waits for the batch being handled: the partition's next owner never writes beside its last one."""

from __future__ import annotations

import asyncio

from lienthong.messaging import InFlight


async def test_revocation_waits_until_the_batch_being_handled_is_done():
    in_flight, order = InFlight(), []

    async def handle() -> None:
        async with in_flight:
            await asyncio.sleep(0.05)
            order.append("batch stored")

    batch = asyncio.create_task(handle())
    await asyncio.sleep(0)  # the batch has begun
    await in_flight.on_partitions_revoked(set())
    order.append("partitions given up")
    await batch
    assert order == ["batch stored", "partitions given up"]


async def test_revocation_with_nothing_in_flight_does_not_wait():
    in_flight = InFlight()
    async with in_flight:
        pass
    await asyncio.wait_for(in_flight.on_partitions_revoked(set()), timeout=0.1)
