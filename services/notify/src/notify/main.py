"""Notify service: Tells citizens, units and subscribed agency systems what happened, once, on the right channel."""

from __future__ import annotations

from faststream import FastStream
from faststream.specification import AsyncAPI

from lienthong.messaging import make_broker
from lienthong.service import create_app, serve
from lienthong.settings import KafkaSettings
from notify.settings import NotifySettings

settings = NotifySettings()
broker = make_broker("notify", KafkaSettings(), graceful_timeout=settings.graceful_timeout_s)
app = create_app("notify", broker, description="Tells citizens, units and subscribed agency systems what happened, once, on the right channel.")
asyncapi = FastStream(broker, specification=AsyncAPI(broker, title="Liên Thông notify", version="1"))


def run() -> None:
    serve(app, settings)


if __name__ == "__main__":
    run()
