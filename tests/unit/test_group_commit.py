"""Intake's group commit (Coalescer), without a store: who shares a flush, and who hears of a failure."""

from __future__ import annotations

import asyncio

import pytest

from intake.group import Coalescer


async def test_callers_arriving_during_a_flush_share_the_next_one():
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(items)
        await asyncio.sleep(0.01)  # a store round trip
        return [i * 10 for i in items]

    group = Coalescer(flush, max_batch=50)
    results = await asyncio.gather(*(group(i) for i in range(120)))
    assert results == [i * 10 for i in range(120)]
    assert [len(f) for f in flushes] == [50, 50, 20]  # everyone who came while the store was busy, at most 50
    assert await group(7) == 70 and flushes[-1] == [7]  # idle again: a lone caller waits for nobody


async def test_a_failed_item_fails_its_caller_only_and_a_failed_flush_its_batch_only():
    calls = 0

    async def flush(items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 2:
            raise ConnectionError("store away")
        return [ValueError(f"bad {i}") if i == 3 else i for i in items]

    group = Coalescer(flush)
    first = await asyncio.gather(*(group(i) for i in range(5)), return_exceptions=True)
    assert first[:3] == [0, 1, 2] and isinstance(first[3], ValueError) and first[4] == 4  # item 3's caller only
    second = await asyncio.gather(*(group(i) for i in (5, 6)), return_exceptions=True)
    assert [type(r) for r in second] == [ConnectionError, ConnectionError]  # the whole flush failed: all of it
    assert await group(8) == 8  # and the next flush goes on


async def test_a_caller_that_goes_away_does_not_cancel_the_others():
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        await release.wait()
        return items

    group = Coalescer(flush)
    leaving = asyncio.create_task(group(1))
    staying = asyncio.create_task(group(2))
    await asyncio.sleep(0)
    leaving.cancel()
    release.set()
    assert await staying == 2
    with pytest.raises(asyncio.CancelledError):
        await leaving
