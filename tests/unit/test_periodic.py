"""Background jobs: a failed round is logged and the next one comes; `immediately` runs a first round at start
without holding the start up (a store still away at start-up does not stop the service)."""

from __future__ import annotations

import asyncio

from lienthong.service import Periodic


async def test_a_job_run_immediately_fails_without_stopping_and_runs_again():
    rounds: list[float] = []

    async def job() -> None:
        rounds.append(asyncio.get_running_loop().time())
        if len(rounds) == 1:
            raise ConnectionError("store away")

    periodic = Periodic("test", 0.05, job, immediately=True)
    started = asyncio.get_running_loop().time()
    await periodic.start()
    await asyncio.sleep(0.01)
    assert len(rounds) == 1 and rounds[0] - started < 0.01  # the first round at start, before any interval
    await asyncio.sleep(0.12)
    await periodic.stop()
    assert len(rounds) >= 2  # the failed round did not end the job


async def test_a_job_waits_an_interval_by_default():
    rounds: list[int] = []

    async def job() -> None:
        rounds.append(1)

    periodic = Periodic("test", 0.2, job)
    await periodic.start()
    await asyncio.sleep(0.05)
    await periodic.stop()
    assert rounds == []
