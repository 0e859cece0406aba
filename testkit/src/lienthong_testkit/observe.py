"""What a test may look at as the operator: a dossier's lifecycle, in its order."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from lienthong.contracts import CloudEvent, parse_event
from lienthong.settings import KafkaSettings
from lienthong.topics import DOSSIER_LIFECYCLE


async def dossier_log(kafka: KafkaSettings, dossier_code: str, *, until: Callable[[list[CloudEvent]], bool],
                      timeout: float = 60.0) -> list[CloudEvent]:
    """The dossier's lifecycle events from the start, in `dossierseq` order, once `until(events)` holds.
    `kafka`: the operator's settings (`Servers.kafka`); agencies may not read the lifecycle."""
    consumer = AIOKafkaConsumer(DOSSIER_LIFECYCLE.name, **kafka.client_options(), auto_offset_reset="earliest",
                                group_id=f"kit-observer-{uuid.uuid4().hex[:8]}", enable_auto_commit=False)
    await consumer.start()
    events: list[CloudEvent] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{dossier_code}: the log has {[e.type for e in events]} after {timeout:.0f}s")
            for records in (await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))).values():
                events += [parse_event(r.value) for r in records if r.key == dossier_code.encode()]
            events.sort(key=lambda e: e.dossierseq)
        return events
    finally:
        await consumer.stop()


def resolved(events: list[CloudEvent]) -> bool:
    return any(e.type.endswith((".resolved.v1", ".rejected.v1", ".withdrawn.v1")) for e in events)
