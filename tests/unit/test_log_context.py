"""Every log line written while a message is handled carries topic, partition, offset and key, and no personal
data (handler unit test: FastStream's in-memory TestKafkaBroker is fine here, never in integration tests)."""

from __future__ import annotations

import io
import json
import logging

import structlog
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import CollectorRegistry

from lienthong.logging import redact_processor
from lienthong.messaging import SUBSCRIBER_ACK_POLICY, make_broker


async def test_handler_logs_are_bound_to_the_record_and_redacted():
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, redact_processor, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )
    try:
        broker = make_broker("unit-test", registry=CollectorRegistry())

        @broker.subscriber("dossier.lifecycle", group_id="g", ack_policy=SUBSCRIBER_ACK_POLICY)
        async def handle(message: KafkaMessage) -> None:
            with structlog.contextvars.bound_contextvars(event_id="e-1", dossier_code=message.raw_message.key.decode()):
                structlog.get_logger().info("handled", detail="citizen 038099001122 phoned 0987654321")

        async with TestKafkaBroker(broker) as test_broker:
            await test_broker.publish(b"{}", "dossier.lifecycle", key=b"HACTHANH-251201-0001")
    finally:
        structlog.reset_defaults()
    [line] = [json.loads(x) for x in out.getvalue().splitlines() if '"handled"' in x]
    assert line["topic"] == "dossier.lifecycle"
    assert isinstance(line["partition"], int) and isinstance(line["offset"], int)
    assert line["key"] == line["dossier_code"] == "HACTHANH-251201-0001"
    assert line["event_id"] == "e-1"
    assert "038099001122" not in out.getvalue() and "0987654321" not in out.getvalue()
    structlog.contextvars.clear_contextvars()
