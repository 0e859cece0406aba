"""Stats under fire, on the real broker and store: two stats processes in one consumer group, SIGKILLed at random
moments from outside (while starting, fetching, folding or writing) and restarted at least 20 times while the
dossier log grows, every kill a rebalance for the survivor; and SIGKILLing themselves through failpoints at the two
worst moments (rows stored but not the dossiers; everything stored but the offset not committed). After the last
event the figures equal the ground truth, for the province, per unit and per step."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import date

import httpx
import pytest

from tests.integration.kafka_reader import start_group_at_end, wait_caught_up
from tests.integration.test_stats import as_steps, expected, generate, publish_all
from lienthong.topics import DOSSIER_LIFECYCLE
from tests.processes import Instance
from tests.tokens import EVERYTHING

pytestmark = pytest.mark.integration

# Open dossiers count as in progress in every later period. This one is after the other stats tests' periods (its
# dossiers count in none of theirs) and, with the group reading from the topic's end, theirs count in none of its:
# the tests pass in any order. (A past period: in progress is counted as of today at the latest.)
PERIOD = (date(2020, 3, 2), date(2020, 3, 13))
KILLS = 24


async def test_kill_9_and_rebalances_mid_stream_leave_the_figures_exact(infra):
    truths, events = generate(2000, seed=21, period=PERIOD)
    group = f"stats-faults-{uuid.uuid4().hex[:6]}"
    env = {**infra.kafka.as_env(), "MONGODB_URI": infra.mongo.uri,
           "MONGODB_DATABASE": f"{infra.mongo.database}_faults", "STATS_GROUP_ID": group,
           "STATS_GRACEFUL_TIMEOUT_S": "2", "STATS_LOG_LEVEL": "WARNING"}
    # "a" kills itself at the worst moments of a flush; "b" is killed from outside at random moments. Each death
    # is a rebalance for the other.
    failpoints = {"LIENTHONG_FAILPOINTS": "stats.after_rows=0.6,stats.after_dossiers=0.4"}
    processes = [Instance("stats", "stats-faults-a", {**env, **failpoints}), Instance("stats", "stats-faults-b", env)]
    rng = random.Random(5)
    # In time order, as routing publishes: a dossier's events spread over several chunks, so kills and replays
    # fall between them and inside batches that fold part of a dossier.
    events = sorted(events, key=lambda e: (e.time, e.dossierseq))
    size = -(-len(events) // KILLS)
    chunks = [events[i:i + size] for i in range(0, len(events), size)]
    kills = self_kills = 0
    await start_group_at_end(infra.kafka, group, DOSSIER_LIFECYCLE.name)
    try:
        # First "a" alone, certain to die at its first flush with the rows stored and not the dossiers (a busy
        # machine may otherwise leave "a" in rebalances while "b" restarts, so that no failpoint is ever reached);
        # then both, "a" with the probabilities above.
        processes[0].env = {**env, "LIENTHONG_FAILPOINTS": "stats.after_rows=1"}
        processes[0].start()
        await publish_all(infra, chunks[0])
        for _ in range(240):
            if processes[0].died_by_failpoint():
                self_kills += 1
                break
            await asyncio.sleep(0.25)
        processes[0].env = {**env, **failpoints}
        for p in processes:
            p.start()
        for chunk in chunks[1:]:
            await publish_all(infra, chunk)
            await asyncio.sleep(rng.uniform(0.3, 2.5))  # starting, fetching, folding or flushing
            for p in processes:
                if p.died_by_failpoint():
                    self_kills += 1
                    p.start()
            victim = processes[1]  # "b" dies from outside at random moments; "a" lives long enough to flush
            victim.kill()
            kills += 1
            victim.start()
        while True:  # until a whole catch-up passes without a failpoint firing
            try:
                await wait_caught_up(infra.kafka, group, DOSSIER_LIFECYCLE.name, timeout=20)
                if all(p.alive() for p in processes):
                    break
            except AssertionError:
                pass
            for p in processes:
                if p.died_by_failpoint():
                    self_kills += 1
                    p.start()
        await wait_caught_up(infra.kafka, group, DOSSIER_LIFECYCLE.name, timeout=240)
        base = processes[0].url
        async with httpx.AsyncClient(headers=EVERYTHING, base_url=base, timeout=60) as http:
            for _ in range(120):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)

            async def figures(unit=None, **extra):
                params = {"from": PERIOD[0].isoformat(), "to": PERIOD[1].isoformat(),
                          **({"unit": unit} if unit else {}), **extra}
                body = (await http.get("/v1/stats/summary", params=params)).raise_for_status().json()
                return {k: v for k, v in body.items() if k not in ("from", "to", "unit", "level", "basis")}

            assert kills >= 20 and self_kills >= 1, (kills, self_kills)
            assert await figures() == expected(truths, *PERIOD)
            for unit in ("HACTHANH", "HOANGSON", "BIMSON"):
                assert await figures(unit) == expected(truths, *PERIOD, unit=unit), unit
                assert await figures(unit, basis="steps") == expected(as_steps(truths), *PERIOD, unit=unit), unit
    finally:
        for p in processes:
            p.stop()
