"""One logging path, on the real broker: an exception whose message holds a citizen ID, a phone number and an
e-mail, raised inside a real handler, reaches the output (FastStream's own log lines included) without any of
them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.integration

CCCD, PHONE, EMAIL = "038099001122", "0912345678", "nguyen.van.an@example.vn"

SCRIPT = textwrap.dedent('''
    import asyncio, sys
    from lienthong.logging import configure_logging
    from lienthong.messaging import MAX_ATTEMPTS, make_broker
    from lienthong.settings import KafkaSettings
    from lienthong.topics import outcomes_topic

    configure_logging("INFO", json=True)
    key = sys.argv[1]
    broker = make_broker("redaction-test", KafkaSettings())
    calls = []
    done = asyncio.Event()

    @broker.subscriber(outcomes_topic("police").name, group_id="redaction-" + key, auto_offset_reset="earliest")
    async def handle(body: bytes) -> None:
        if body != key.encode():
            return
        calls.append(1)
        if len(calls) >= MAX_ATTEMPTS:
            asyncio.get_running_loop().call_later(1, done.set)
        raise ValueError("citizen %s phone %s email %s refused")

    async def main() -> None:
        async with broker:
            await broker.start()
            await broker.publish(key.encode(), outcomes_topic("police").name, key=key.encode())
            await asyncio.wait_for(done.wait(), 60)

    asyncio.run(main())
''' % (CCCD, PHONE, EMAIL))


def test_an_exception_with_personal_data_in_a_real_handler_leaves_none_in_the_logs(infra):
    key = f"REDACT{uuid.uuid4().hex[:6].upper()}-251201-0001"
    done = subprocess.run([sys.executable, "-c", SCRIPT, key], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **infra.kafka.as_env()})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "ValueError" in output and "handler_failed" in output
    assert "Traceback" in output or "exception" in output  # FastStream logged the exception itself
    for secret in (CCCD, PHONE, EMAIL):
        assert secret not in output
    assert "\\x1b[" not in output  # no coloured lines of FastStream's own handler: one format
