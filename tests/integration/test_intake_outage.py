"""Kafka down during a submit: 503, and once it is back the dossier is published exactly once."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from asgi_lifespan import LifespanManager

from intake.main import bootstrap
from intake.settings import IntakeSettings
from lienthong.topics import DOSSIER_LIFECYCLE
from tests.integration.kafka_reader import read_records
from tests.integration.test_intake import submission
from tests.tokens import EVERYTHING

pytestmark = pytest.mark.integration


async def test_kafka_down_gives_503_and_nothing_is_lost_or_duplicated(infra):
    settings = IntakeSettings(publish_timeout_s=2.0, outbox_interval_s=0.5, outbox_grace_s=3.0)
    app = bootstrap(settings, infra.kafka, infra.mongo).app
    req = submission(receiving_unit="NGHISON")
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60), httpx.AsyncClient(headers=EVERYTHING, 
        transport=httpx.ASGITransport(app), base_url="http://intake", timeout=60
    ) as http:
        async with infra.kafka_outage():
            await asyncio.sleep(1)
            down = await http.post("/v1/dossiers", json=req)
            assert down.status_code == 503, down.text
            assert down.json()["detail"][0]["type"] == "kafka_unavailable"
            assert down.headers["Retry-After"]
        code = down.json()["detail"][0]["message"].split()[1]
        records = await read_records(
            infra.kafka, DOSSIER_LIFECYCLE.name,
            lambda r: json.loads(r.value)["data"].get("external_ref") == req["external_ref"],
            expected=1, timeout=90, settle=5,
        )
        again = await http.post("/v1/dossiers", json=req)
    assert len(records) == 1
    assert records[0].key.decode() == code
    assert again.status_code == 200 and again.json()["dossier_code"] == code
