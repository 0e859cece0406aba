"""Stats service: projects the dossier event stream into MongoDB and serves the province's figures."""

from __future__ import annotations

from fastapi.staticfiles import StaticFiles
from pymongo import AsyncMongoClient

from lienthong.catalogue.versions import CatalogueVersions, LiveCatalogue
from lienthong.messaging import make_broker, park_record
from lienthong.service import Service, Periodic, create_app, serve
from lienthong.settings import KafkaSettings, MongoSettings, refuse_development_secrets, shared_secrets
from lienthong.store import database, make_client, ping
from stats import api, handlers
from stats.dashboard import routes as dashboard_routes
from stats.dashboard.topics import TopicMonitor
from stats.index import scoring_table
from stats.projector import Projector
from stats.settings import StatsSettings
from stats.store import ProjectionStore
from stats.window import OffsetProbe, Window


def bootstrap(settings: StatsSettings | None = None, kafka: KafkaSettings | None = None,
              mongo: MongoSettings | None = None) -> Service[Window]:
    """Wire the service; tests build it against their own servers."""
    settings, kafka, mongo = settings or StatsSettings(), kafka or KafkaSettings(), mongo or MongoSettings()
    refuse_development_secrets("stats", {**shared_secrets(kafka)})
    broker = make_broker("stats", kafka, graceful_timeout=settings.graceful_timeout_s)
    client: AsyncMongoClient = make_client(mongo)
    db = database(client, mongo)
    store = ProjectionStore(db)
    live = LiveCatalogue(CatalogueVersions(db))  # procedures' names in the dossier lists
    probe = OffsetProbe(kafka)
    projector = Projector(store, cached_dossiers_per_partition=settings.cached_dossiers)
    window = Window(projector, lambda record, reason: park_record(broker, record, "stats", reason),
                    max_events=settings.window_max_events, fresh_s=settings.window_fresh_s,
                    bulk_events=settings.window_bulk_events, idle_s=settings.window_idle_s,
                    max_wait_s=settings.window_max_s, poll_s=handlers.FETCH_WAIT_MS / 1000,
                    settle_s=settings.window_settle_s, end_offsets=probe, dossiers_s=settings.window_dossiers_s)
    broker.include_router(handlers.build_router(broker, window, settings.group_id))
    flusher = Periodic("window_flush", settings.window_fresh_s / 4, window.flush_if_due)
    monitor = TopicMonitor(kafka)
    sampler = Periodic("topic_monitor", settings.dashboard_sample_s, monitor.sample)
    catalogue_refresh = Periodic("catalogue_refresh", settings.catalogue_refresh_s, live.refresh, immediately=True)

    async def start() -> None:
        await store.create_indexes()
        probe.connect()
        await flusher.start()
        await sampler.start()
        await catalogue_refresh.start()

    async def stop() -> None:
        await flusher.stop()  # a window not yet stored is handed back: its offsets were not committed
        await probe.close()
        await sampler.stop()
        await catalogue_refresh.stop()
        await client.close()

    app = create_app("stats", broker, description="Projects the dossier event stream into MongoDB and serves the "
                     "province's figures and the operators' dashboard.", readiness={"mongo": lambda: ping(client)},
                     on_startup=[start], on_shutdown=[stop])
    app.include_router(api.build_router(store, table=scoring_table(settings.index_table), live=live))
    app.include_router(dashboard_routes.build_router(store, monitor, live))
    app.mount("/dashboard/static", StaticFiles(directory=dashboard_routes.STATIC), name="dashboard-static")
    return Service("stats", app, broker, window)



def run() -> None:
    settings = StatsSettings()
    serve(bootstrap(settings).app, settings)


if __name__ == "__main__":
    run()
