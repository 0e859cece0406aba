"""Webhook egress: every form of an internal address is refused before any connection, including a DNS name that
resolves to loopback; a refused delivery says only that, and the request goes to the address that was checked."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from notify import egress
from notify.channels import DeliveryError, WebhookChannel, WebhookTarget
from notify.compose import Message

INTERNAL = ["http://127.0.0.1/h", "http://10.0.0.1/h", "http://192.168.1.10/h", "http://172.16.0.5/h",
            "http://169.254.169.254/latest/meta-data", "http://[::1]/h", "http://0x7f000001/h", "http://2130706433/h",
            "http://[::ffff:127.0.0.1]/h", "http://224.0.0.1/h", "http://0.0.0.0/h", "http://100.64.0.1/h",
            "http://localhost:8083/v1/subscriptions", "https://[fe80::1]/h", "http://[fc00::1]/h"]


@pytest.mark.parametrize("url", INTERNAL)
async def test_internal_addresses_in_every_form_are_refused(url):
    with pytest.raises(egress.RefusedAddress):
        await egress.resolve(url)


async def test_a_public_address_goes_to_the_checked_address_under_its_own_name():
    destination = await egress.resolve("https://93.184.216.34:8443/hooks/lt?x=1")
    assert str(destination.url) == "https://93.184.216.34:8443/hooks/lt?x=1"
    named = await egress.resolve("http://localhost:9/h", allow_private=True)  # tests' local receivers only
    assert named.host == "localhost" and named.url.host in ("127.0.0.1", "::1") and named.url.path == "/h"


async def test_a_refused_webhook_never_connects_and_says_only_refused():
    hits = []

    async def handle(reader, writer):  # noqa: ANN001
        hits.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def target(_: str) -> WebhookTarget:
        return WebhookTarget(url=f"http://localhost:{port}/hook", secret="s", active=True)

    async with httpx.AsyncClient() as client, server:
        channel = WebhookChannel(client, target)
        with pytest.raises(DeliveryError) as refused:
            await channel.send(Message(to="sub-1", body="{}"), "d-1")
    assert refused.value.reason == "webhook refused address" and not refused.value.transient
    assert hits == []
