"""Topic health, sampled every few seconds from the Kafka admin API: rates in and out, consumer-group lag, DLQ
sizes and their newest reasons. Rates are differences between two samples, so the first sample shows none."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from lienthong.messaging import DLQ_REASON, DLQ_SERVICE, DLQ_TIME, stop_consumer
from lienthong.settings import KafkaSettings
from lienthong.topics import Topic, topics

HISTORY = 120  # samples kept for the lag chart (10 minutes at one sample every 5 s)
REASONS_SHOWN = 3


@dataclass(frozen=True)
class Sample:
    at: float
    ends: dict[str, int]  # topic -> messages ever written (sum of end offsets)
    sizes: dict[str, int]  # topic -> messages retained (end - beginning)
    committed: dict[str, dict[str, int]]  # group -> topic -> committed offsets summed


@dataclass
class TopicMonitor:
    kafka: KafkaSettings
    topics: tuple[Topic, ...] = field(default_factory=topics)
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=HISTORY))
    reasons: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)  # as the cluster has them (an operator may add some)

    async def sample(self) -> None:
        admin = AIOKafkaAdminClient(**self.kafka.client_options(), client_id="lienthong-dashboard")
        consumer = AIOKafkaConsumer(**self.kafka.client_options(), client_id="lienthong-dashboard",
                                    enable_auto_commit=False)
        await admin.start()
        await consumer.start()
        try:
            names = list(dict.fromkeys([t.name for t in self.topics] + [t.dlq for t in self.topics if t.has_dlq]))
            parts = [TopicPartition(d["topic"], p["partition"]) for d in await admin.describe_topics(names)
                     if not d.get("error_code") for p in d["partitions"]]
            self.partitions = {n: sum(tp.topic == n for tp in parts) for n in names}
            ends = await consumer.end_offsets(parts) if parts else {}
            starts = await consumer.beginning_offsets(parts) if parts else {}
            committed: dict[str, dict[str, int]] = {}
            for group, _protocol in await _groups(admin):
                offsets = await admin.list_consumer_group_offsets(group)
                per_topic: dict[str, int] = {}
                for tp, meta in offsets.items():
                    if tp.topic in names and meta.offset >= 0:
                        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + meta.offset
                if per_topic:
                    committed[group] = per_topic
            sample = Sample(time.time(), _sum(ends), {n: _sum(ends).get(n, 0) - _sum(starts).get(n, 0) for n in names},
                            committed)
            previous = self.samples[-1] if self.samples else None
            for topic in self.topics:
                if topic.has_dlq and (previous is None or sample.ends.get(topic.dlq) != previous.ends.get(topic.dlq)):
                    self.reasons[topic.dlq] = await _newest_reasons(consumer, [tp for tp in parts
                                                                               if tp.topic == topic.dlq], ends)
            self.samples.append(sample)
        finally:
            await stop_consumer(consumer)
            await admin.close()

    def table(self) -> list[dict[str, Any]]:
        """One row per catalogue topic, for the page."""
        if not self.samples:
            return []
        now = self.samples[-1]
        before = self.samples[-2] if len(self.samples) > 1 else None
        earlier = self.samples[-4] if len(self.samples) > 3 else before
        rows = []
        for topic in self.topics:
            name = topic.name
            lag = {g: now.ends.get(name, 0) - offsets[name] for g, offsets in now.committed.items() if name in offsets}
            row: dict[str, Any] = {
                "topic": name, "partitions": self.partitions.get(name, 0), "description": topic.description,
                "messages": now.ends.get(name, 0),
                "in_per_s": _rate(now, before, _written, name),
                "out_per_s": _rate(now, before, _consumed, name),
                "lag": dict(sorted(lag.items())),
                "lag_growing": bool(earlier) and sum(lag.values()) > 0 and sum(lag.values()) > _lag(earlier, name),
            }
            if topic.has_dlq:
                row.update(dlq=topic.dlq, dlq_size=now.sizes.get(topic.dlq, 0),
                           dlq_growing=bool(before) and now.ends.get(topic.dlq, 0) > before.ends.get(topic.dlq, 0),
                           dlq_reasons=self.reasons.get(topic.dlq, []))
            rows.append(row)
        return rows

    def lag_history(self) -> dict[str, list[tuple[float, int]]]:
        """Total lag per consumer group over the kept samples (all catalogue topics)."""
        series: dict[str, list[tuple[float, int]]] = {}
        for s in self.samples:
            for group, offsets in s.committed.items():
                lag = sum(s.ends.get(t, 0) - o for t, o in offsets.items())
                series.setdefault(group, []).append((s.at, max(lag, 0)))
        return series


def _lag(sample: Sample, topic: str) -> int:
    return sum(sample.ends.get(topic, 0) - o[topic] for o in sample.committed.values() if topic in o)


def _written(sample: Sample, topic: str) -> int:
    return sample.ends.get(topic, 0)


def _consumed(sample: Sample, topic: str) -> int:
    return sum(offsets.get(topic, 0) for offsets in sample.committed.values())


def _rate(now: Sample, before: Sample | None, count: Callable[[Sample, str], int], topic: str) -> float | None:
    if before is None or now.at <= before.at:
        return None
    return round(max(count(now, topic) - count(before, topic), 0) / (now.at - before.at), 2)


def _sum(offsets: dict[TopicPartition, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for tp, n in offsets.items():
        out[tp.topic] = out.get(tp.topic, 0) + n
    return out


async def _groups(admin: AIOKafkaAdminClient) -> list[tuple[str, str]]:
    return sorted((g[0], g[1]) for g in await admin.list_consumer_groups())


async def _newest_reasons(consumer: AIOKafkaConsumer, parts: list[TopicPartition],
                          ends: dict[TopicPartition, int]) -> list[dict[str, str]]:
    """The newest DLQ records' reasons (headers only: dead letters carry no personal data in headers)."""
    wanted = [tp for tp in parts if ends.get(tp, 0) > 0]
    if not wanted:
        return []
    consumer.assign(wanted)
    for tp in wanted:
        consumer.seek(tp, max(ends[tp] - REASONS_SHOWN, 0))
    found = []
    for records in (await consumer.getmany(*wanted, timeout_ms=2000)).values():
        for record in records:
            headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
            found.append({"time": headers.get(DLQ_TIME, ""), "service": headers.get(DLQ_SERVICE, ""),
                          "reason": headers.get(DLQ_REASON, "")[:300]})
    return sorted(found, key=lambda r: r["time"], reverse=True)[:REASONS_SHOWN]
