"""Routing service: Decides the competent unit, drives interconnected chains and owns the working-day clock."""

from __future__ import annotations

from faststream import FastStream
from faststream.specification import AsyncAPI

from lienthong.messaging import make_broker
from lienthong.service import create_app, serve
from lienthong.settings import KafkaSettings
from routing.settings import RoutingSettings

settings = RoutingSettings()
broker = make_broker("routing", KafkaSettings(), graceful_timeout=settings.graceful_timeout_s)
app = create_app("routing", broker, description="Decides the competent unit, drives interconnected chains and owns the working-day clock.")
asyncapi = FastStream(broker, specification=AsyncAPI(broker, title="Liên Thông routing", version="1"))


def run() -> None:
    serve(app, settings)


if __name__ == "__main__":
    run()
