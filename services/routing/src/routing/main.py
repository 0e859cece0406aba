"""Routing service: decides the competent unit, drives interconnected chains and owns the working-day clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pymongo import AsyncMongoClient

from lienthong.calendar import today_vn
from lienthong.catalogue import catalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import DossierAssignedEvent, OutcomeRejectedEvent
from lienthong.messaging import event_publisher, make_broker
from lienthong.service import Periodic, create_app, serve
from lienthong.settings import KafkaSettings, MongoSettings, refuse_development_secrets, shared_secrets
from lienthong.store import database, make_client, ping
from lienthong.identity import registry
from lienthong.topics import DOSSIER_LIFECYCLE, OPERATOR_ALERTS, work_topic
from routing import handlers
from routing.router import Router
from routing.settings import RoutingSettings
from routing.store import WorkflowStore

def work_sender(broker: KafkaBroker) -> Callable[[CloudEvent], Awaitable[None]]:
    """Each assignment to the agency systems acting for its unit, on their own topics. The registry is read as it
    is now: an agency added later gets its publisher on its first assignment (no restart)."""
    def publisher(agency: str) -> Callable[[CloudEvent], Awaitable[None]]:
        return event_publisher(broker, work_topic(agency).name, schema=DossierAssignedEvent,
                               description=f"Assignments for the units {agency} acts for",
                               headers_of=lambda event: {"unit": event.data.unit_code})

    topics = {agency.name: publisher(agency.name) for agency in registry().agencies}  # declared: in AsyncAPI

    async def send(event: CloudEvent) -> None:
        agencies = registry().acting_for(event.data.unit_code)
        if not agencies:  # a catalogue unit no agency system acts for: the registry test forbids it
            raise LookupError(f"no agency system acts for {event.data.unit_code}")
        for agency in agencies:
            if agency not in topics:
                topics[agency] = publisher(agency)
            await topics[agency](event)

    return send


def build(settings: RoutingSettings | None = None, kafka: KafkaSettings | None = None,
          mongo: MongoSettings | None = None, clock: Callable[[], datetime] | None = None):  # noqa: ANN201
    """Wire the service; tests build it against their own servers (and may bring their own clock)."""
    settings, kafka, mongo = settings or RoutingSettings(), kafka or KafkaSettings(), mongo or MongoSettings()
    refuse_development_secrets("routing", {**shared_secrets(kafka)})
    broker = make_broker("routing", kafka, graceful_timeout=settings.graceful_timeout_s)
    client: AsyncMongoClient = make_client(mongo)
    store = WorkflowStore(database(client, mongo))
    router = Router(
        store,
        catalogue(),
        event_publisher(broker, DOSSIER_LIFECYCLE.name, schema=CloudEvent,
                        description="Lifecycle events routing decides (assigned, resolved, ...)"),
        work_sender(broker),
        event_publisher(broker, OPERATOR_ALERTS.name, schema=OutcomeRejectedEvent,
                        description="Routing failures and refused outcomes"),
        clock=clock,
    )
    broker.include_router(handlers.build_router(router, settings.group_id, settings.start_from))
    async def tick_open_dossiers() -> None:
        today = today_vn(router.clock())
        for code in await store.open_codes():
            await router.on_tick(code, today)

    ticker = Periodic("deadline_ticker", settings.tick_interval_s, tick_open_dossiers)

    async def stop() -> None:
        await ticker.stop()
        await client.close()

    app = create_app("routing", broker, description="Decides the competent unit, drives interconnected chains and "
                     "owns the working-day clock.", readiness={"mongo": lambda: ping(client)},
                     on_startup=[ticker.start], on_shutdown=[stop])
    return app, broker, router


settings = RoutingSettings()
app, broker, _router = build(settings)
asyncapi = FastStream(broker, specification=AsyncAPI(broker, title="Liên Thông routing", version="1"))


def run() -> None:
    serve(app, settings)


if __name__ == "__main__":
    run()
