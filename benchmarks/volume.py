"""The seeds' five months of dossiers as lifecycle events, written straight onto a topic.

1 July - 30 November 2025 (the seeds' figures): 522,706 dossiers received, 96.62% online, 511,236 resolved (99.33%
on time), 11,470 still in progress. A resolved dossier has five events (submitted, assigned, step completed,
resolved, result returned), an open one two: ~2.58M events. `scale` shrinks every count alike. Events are rendered
as the contracts serialise them (a sample is checked against `parse_event`) and produced in time order, keyed by
dossier code, so each dossier's events are ordered on its partition as routing would publish them.
"""

from __future__ import annotations

import base64

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

import orjson
from aiokafka import AIOKafkaProducer

from lienthong.calendar import VN_TZ, add_working_days
from lienthong.catalogue import catalogue
from lienthong.contracts import parse_event
from lienthong.settings import KafkaSettings

FIRST, LAST = date(2025, 7, 1), date(2025, 11, 30)
DOSSIERS, RESOLVED, ONLINE_RATE, ON_TIME_RATE = 522_706, 511_236, 0.9662, 0.9933


@dataclass
class Volume:
    """What was produced, counted as the province would report it for FIRST..LAST."""

    events: int = 0
    expected: Counter = field(default_factory=Counter)


@lru_cache(maxsize=None)
def _due(received: date, days: int) -> date:
    return add_working_days(received, days)


def _at(day: date, minutes: int) -> str:
    return datetime(day.year, day.month, day.day, 7 + minutes // 60, minutes % 60, tzinfo=VN_TZ).isoformat()


def plan(scale: float = 1.0, seed: int = 2025, batch: int = 1, first: date = FIRST,
         last: date = LAST) -> list[tuple[str, int, str, bytes]]:
    """(time, dossierseq, code, value) of every event, sorted by time, received between `first` and `last` (a
    burst: a few days). `batch` tells volumes apart in codes."""
    rng = random.Random(seed)
    n = round(DOSSIERS * scale)
    resolved = round(RESOLVED * scale)
    late = round(resolved * (1 - ON_TIME_RATE))
    online = round(n * ONLINE_RATE)
    units = [u for u, unit in catalogue().units.items() if unit.level == "commune"]
    procedures = [p for p in catalogue().procedures.values() if p.processing_days >= 2]
    days = (last - first).days + 1
    received_days = sorted(first + timedelta(days=rng.randrange(days)) for _ in range(n))
    # The still-open ones are among the most recent; the late ones among those resolved.
    open_ones = set(rng.sample(range(n - min(n, 4 * (n - resolved)), n), n - resolved))
    resolved_ids = [i for i in range(n) if i not in open_ones]
    late_ones = set(rng.sample(resolved_ids[: len(resolved_ids) * 9 // 10], late))
    online_ones = set(rng.sample(range(n), online))
    counters: Counter = Counter()
    events: list[tuple[str, int, str, bytes]] = []
    for i, day in enumerate(received_days):
        unit = rng.choice(units)
        procedure = rng.choice(procedures)
        counters[(unit, day)] += 1
        code = f"{unit}-{day:%y%m%d}-{batch * 1000 + counters[(unit, day)]:04d}"
        due = _due(day, procedure.processing_days)
        minute = rng.randrange(60, 600)
        channel = "online" if i in online_ones else rng.choice(["direct", "direct", "postal"])
        story = [(_at(day, minute), "submitted", {
            "procedure_code": procedure.code, "channel": channel, "receiving_unit": unit,
            "external_ref": f"V{batch}-{i}", "received_at": _at(day, minute), "due_date": due.isoformat(),
            "processing_days": procedure.processing_days,
            # Sealed as intake seals it (a pseudonym and ~200 bytes of AES-GCM): the size the consumers parse.
            "applicant": {"subject": f"p-{rng.getrandbits(128):032x}", "residence_unit": unit,
                          "sealed": base64.b64encode(rng.randbytes(200)).decode()},
            "land_parcel": None, "documents": []}),
            (_at(day, minute + 5), "assigned", {"unit_code": unit, "step": 0, "step_name": "Xử lý",
                                                "step_due_date": due.isoformat()})]
        if i not in open_ones:
            if i in late_ones and due < LAST:  # late, but resolved within the five months
                done = min(LAST, due + timedelta(days=rng.randrange(1, 10)))
            else:
                done = min(due, LAST, day + timedelta(days=rng.randrange(0, 12)))
            m = rng.randrange(60, 540) if done > day else rng.randrange(minute + 10, minute + 60)
            story += [(_at(done, m), "step-completed", {"unit_code": unit, "step": 0, "result_ref": None}),
                      (_at(done, m + 10), "resolved", {"unit_code": unit, "resolved_at": _at(done, m + 10),
                                                       "due_date": due.isoformat(), "on_time": done <= due,
                                                       "result_ref": None}),
                      (_at(done, m + 20), "result-returned", {"unit_code": unit, "method": "online",
                                                              "returned_at": _at(done, m + 20)})]
        for seq, (time, kind, data) in enumerate(story, start=1):
            value = orjson.dumps({"specversion": "1.0", "id": str(uuid.UUID(int=rng.getrandbits(128))),
                                  "source": "/bench/volume", "type": f"vn.gov.dossier.{kind}.{'v2' if kind == 'submitted' else 'v1'}", "subject": code,
                                  "time": time, "datacontenttype": "application/json", "dossierseq": seq,
                                  "data": data})
            events.append((time, seq, code, value))
    events.sort(key=lambda e: (e[0], e[1]))
    for _, _, _, value in events[:: max(1, len(events) // 2000)]:
        parse_event(value)  # the contracts accept what we render
    return events


def expected(events: list[tuple[str, int, str, bytes]]) -> Counter:
    """The province's figures for FIRST..LAST counted from the plan, dossier by dossier (not from the fold)."""
    counts: Counter = Counter()
    open_: dict[str, str] = {}
    first, last = FIRST.isoformat(), LAST.isoformat()
    for _, _, code, value in events:
        event = orjson.loads(value)
        data, kind, day = event["data"], event["type"].split(".")[3], event["time"][:10]
        if kind == "submitted" and first <= day <= last:
            counts["received"] += 1
            counts[f"received_{data['channel']}"] += 1
            open_[code] = data["due_date"]
        elif kind == "resolved" and first <= day <= last:
            counts["resolved"] += 1
            counts["resolved_on_time" if data["on_time"] else "resolved_late"] += 1
            del open_[code]
    counts["in_progress"] = len(open_)
    counts["overdue"] = sum(1 for due in open_.values() if due < last)
    return counts


async def produce(kafka: KafkaSettings, topic: str, events: list[tuple[str, int, str, bytes]]) -> None:
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", enable_idempotence=True, linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending = []
        for _, _, code, value in events:
            pending.append(await producer.send(topic, value, key=code.encode()))
            if len(pending) >= 20_000:
                for fut in pending:
                    await fut
                pending = []
        for fut in pending:
            await fut
    finally:
        await producer.stop()
