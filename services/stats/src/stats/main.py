"""Stats service: Projects the dossier event stream into MongoDB and serves the province's figures."""

from __future__ import annotations

from faststream import FastStream
from faststream.specification import AsyncAPI

from lienthong.messaging import make_broker
from lienthong.service import create_app, serve
from lienthong.settings import KafkaSettings
from stats.settings import StatsSettings

settings = StatsSettings()
broker = make_broker("stats", KafkaSettings(), graceful_timeout=settings.graceful_timeout_s)
app = create_app("stats", broker, description="Projects the dossier event stream into MongoDB and serves the province's figures.")
asyncapi = FastStream(broker, specification=AsyncAPI(broker, title="Liên Thông stats", version="1"))


def run() -> None:
    serve(app, settings)


if __name__ == "__main__":
    run()
