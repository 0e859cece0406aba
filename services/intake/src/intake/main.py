"""Intake service: receives dossiers from every channel, validates and deduplicates them, publishes
`dossier.submitted`."""

from __future__ import annotations

import contextlib
from functools import partial

from pymongo import AsyncMongoClient

from intake import api, handlers, personal
from intake.limits import BodySizeLimit, PerUnitRateLimit
from intake.store import DossierStore
from intake.settings import IntakeSettings
from intake.submit import Intake
from lienthong.catalogue.versions import CatalogueVersions, LiveCatalogue
from lienthong.contracts.dossier import DossierSubmitted
from lienthong.personaldata import PersonalDataSettings, SubmissionKey, Vault
from lienthong.messaging import event_publisher, make_broker, purge_consumed
from lienthong.service import Service, Periodic, create_app, serve
from lienthong.settings import KafkaSettings, MongoSettings, refuse_development_secrets, shared_secrets
from lienthong.store import database, make_client, ping
from lienthong.topics import DOSSIER_LIFECYCLE, INTAKE_SUBMISSIONS, payload_of


def bootstrap(
    settings: IntakeSettings | None = None,
    kafka: KafkaSettings | None = None,
    mongo: MongoSettings | None = None,
) -> Service[Intake]:
    """Wire the service; tests build it against their own servers."""
    settings, kafka, mongo = settings or IntakeSettings(), kafka or KafkaSettings(), mongo or MongoSettings()
    personal_data = PersonalDataSettings()
    refuse_development_secrets("intake", {**shared_secrets(kafka), **personal_data.development(submissions=True)})
    broker = make_broker("intake", kafka, graceful_timeout=settings.graceful_timeout_s)
    client: AsyncMongoClient = make_client(mongo)
    db = database(client, mongo)
    store = DossierStore(db)
    vault = Vault(db, personal_data)
    send = event_publisher(broker, DOSSIER_LIFECYCLE.name, schema=payload_of(DOSSIER_LIFECYCLE, DossierSubmitted),
                           description="dossier.submitted CloudEvents, structured mode (key: dossier code)")
    live = LiveCatalogue(CatalogueVersions(db))
    intake = Intake(store, partial(send, no_confirm=True), live, vault, SubmissionKey(personal_data),
                    publish_timeout_s=settings.publish_timeout_s, max_group=settings.max_group)
    broker.include_router(handlers.build_router(broker, intake, settings.group_id))
    relay = Periodic("outbox_relay", settings.outbox_interval_s, lambda: intake.relay_once(settings.outbox_grace_s))
    catalogue_refresh = Periodic("catalogue_refresh", settings.catalogue_refresh_s, live.refresh)
    code_hints = Periodic("code_hints", 1.0, store.flush_hints)
    purge = Periodic("submissions_purge", settings.purge_interval_s,
                     lambda: purge_consumed(kafka, settings.group_id, INTAKE_SUBMISSIONS.name))

    async def start() -> None:
        await store.setup()
        await live.refresh()  # file under the newest version from the first dossier
        await intake.recover()
        await catalogue_refresh.start()
        await code_hints.start()
        await relay.start()
        await purge.start()

    async def stop() -> None:
        await purge.stop()
        await catalogue_refresh.stop()
        await relay.stop()
        await intake.drain()
        await code_hints.stop()
        with contextlib.suppress(Exception):  # hints only: the next process then retries from an older one
            await store.flush_hints()
        await client.close()

    app = create_app(
        "intake",
        broker,
        description="Receives dossiers from every channel, validates and deduplicates them, publishes dossier.submitted.",
        readiness={"mongo": lambda: ping(client)},
        on_startup=[start],
        on_shutdown=[stop],
    )
    app.include_router(api.build_router(intake, PerUnitRateLimit(settings.rate_per_unit_per_s, settings.rate_burst)))
    app.include_router(personal.build_router(store, vault))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return Service("intake", app, broker, intake)



def run() -> None:
    settings = IntakeSettings()
    serve(bootstrap(settings).app, settings)


if __name__ == "__main__":
    run()
