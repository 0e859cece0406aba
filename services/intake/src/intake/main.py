"""Intake service: Receives dossiers from every channel, validates and deduplicates them, publishes dossier.submitted."""

from __future__ import annotations

from faststream import FastStream
from faststream.specification import AsyncAPI

from lienthong.messaging import make_broker
from lienthong.service import create_app, serve
from lienthong.settings import KafkaSettings
from intake.settings import IntakeSettings

settings = IntakeSettings()
broker = make_broker("intake", KafkaSettings(), graceful_timeout=settings.graceful_timeout_s)
app = create_app("intake", broker, description="Receives dossiers from every channel, validates and deduplicates them, publishes dossier.submitted.")
asyncapi = FastStream(broker, specification=AsyncAPI(broker, title="Liên Thông intake", version="1"))


def run() -> None:
    serve(app, settings)


if __name__ == "__main__":
    run()
