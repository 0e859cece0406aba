"""Routing service: decides the competent unit, drives interconnected chains and owns the working-day clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from faststream.kafka import KafkaBroker
import structlog
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from lienthong.calendar import today_vn
from lienthong.catalogue.versions import CatalogueVersions, LiveCatalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.dossier import DossierSubmitted, OutcomeRejected, RoutingFailed
from lienthong.messaging import event_publisher, make_broker
from lienthong.service import Service, Periodic, create_app, serve
from lienthong.settings import KafkaSettings, MongoSettings, refuse_development_secrets, shared_secrets
from lienthong.store import database, make_client, ping
from lienthong.identity import registry
from lienthong.topics import DOSSIER_LIFECYCLE, OPERATOR_ALERTS, payload_of, work_topic
from routing import handlers
from routing.router import Router
from routing.settings import RoutingSettings
from routing.store import WorkflowStore

log = structlog.get_logger("routing")
ROUTING_DECIDES = tuple(k for k in DOSSIER_LIFECYCLE.carries if k is not DossierSubmitted)  # intake writes that one


class AgencyTopics:
    """Each agency system's own `unit.work.<agency>`: the assignments of the units it acts for (and their dossiers'
    resumption once the citizen provided the papers), and the refusals of the outcomes it sent. The registry is read as it is now: an agency added later gets its publisher on first use
    (no restart)."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker
        self.publishers = {agency.name: self._publisher(agency.name) for agency in registry().agencies}  # AsyncAPI

    def _publisher(self, agency: str) -> Callable[[CloudEvent], Awaitable[None]]:
        topic = work_topic(agency)
        return event_publisher(self.broker, topic.name, schema=payload_of(topic),
                               description=f"Assignments for the units {agency} acts for, their dossiers' resumption "
                               "(resumed), and refusals of the outcomes it sent (outcome-rejected)",
                               headers_of=lambda event: {"unit": getattr(event.data, "unit_code", "")})

    async def send(self, agency: str, event: CloudEvent) -> Awaitable[Any]:
        """Hands the event to the producer; returns its acknowledgement to await."""
        if agency not in self.publishers:
            self.publishers[agency] = self._publisher(agency)
        return await self.publishers[agency](event, no_confirm=True)

    async def for_unit(self, event: CloudEvent) -> list[Awaitable[Any]]:
        agencies = registry().acting_for(event.data.unit_code)
        if not agencies:  # a catalogue unit no agency system acts for: the registry test forbids it
            raise LookupError(f"no agency system acts for {event.data.unit_code}")
        return [await self.send(agency, event) for agency in agencies]

    async def refusal(self, sender: str, event: CloudEvent) -> Awaitable[Any] | None:
        if any(agency.name == sender for agency in registry().agencies):  # not a forger's guess of a topic
            return await self.send(sender, event)
        return None


def bootstrap(settings: RoutingSettings | None = None, kafka: KafkaSettings | None = None,
              mongo: MongoSettings | None = None, clock: Callable[[], datetime] | None = None) -> Service[Router]:
    """Wire the service; tests build it against their own servers (and may bring their own clock)."""
    settings, kafka, mongo = settings or RoutingSettings(), kafka or KafkaSettings(), mongo or MongoSettings()
    refuse_development_secrets("routing", {**shared_secrets(kafka)})
    broker = make_broker("routing", kafka, graceful_timeout=settings.graceful_timeout_s)
    client: AsyncMongoClient = make_client(mongo)
    store = WorkflowStore(database(client, mongo), keep_superseded_s=settings.keep_superseded_s)
    agencies = AgencyTopics(broker)
    router = Router(
        store,
        LiveCatalogue(CatalogueVersions(database(client, mongo))),
        event_publisher(broker, DOSSIER_LIFECYCLE.name, schema=payload_of(DOSSIER_LIFECYCLE, *ROUTING_DECIDES),
                        description="Lifecycle events routing decides (assigned, resolved, ...)"),
        agencies.for_unit,
        event_publisher(broker, OPERATOR_ALERTS.name, schema=payload_of(OPERATOR_ALERTS, RoutingFailed, OutcomeRejected),
                        description="Routing failures and refused outcomes"),
        clock=clock,
        tell_sender=agencies.refusal,
        cached_dossiers=settings.cached_dossiers,
        cache_ttl_s=settings.cache_ttl_s,
    )
    broker.include_router(handlers.build_router(broker, router, settings.group_id, settings.start_from,
                                                settings.max_batch))
    ticker = Periodic("deadline_ticker", settings.tick_interval_s, lambda: router.tick_due(today_vn(router.clock())))
    clearer = Periodic("write_behind", settings.outbox_clear_interval_s, router.write_behind)

    async def stop() -> None:
        await ticker.stop()
        await clearer.stop()
        try:
            await router.write_behind()  # the broker has stopped: nothing more gets published
        except PyMongoError as exc:  # the store is away: loads find the versions, and publish their outboxes again
            log.warning("write_behind_failed", error=type(exc).__name__)
        await client.close()

    app = create_app("routing", broker, description="Decides the competent unit, drives interconnected chains and "
                     "owns the working-day clock.", readiness={"mongo": lambda: ping(client)},
                     on_startup=[store.drop_retired_indexes, ticker.start, clearer.start], on_shutdown=[stop])
    return Service("routing", app, broker, router)



def run() -> None:
    settings = RoutingSettings()
    serve(bootstrap(settings).app, settings)


if __name__ == "__main__":
    run()
