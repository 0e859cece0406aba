"""Notify service: tells citizens, units and subscribed agency systems what happened, once, on the right channel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from prometheus_client import Gauge
from pymongo import AsyncMongoClient

from lienthong.auth import CitizenAssertionSettings, Verifier
from lienthong.calendar import today_vn
from lienthong.catalogue.versions import CatalogueVersions, LiveCatalogue
from lienthong.contracts import CloudEvent
from lienthong.contracts.notification import SubscriberDisabled
from lienthong.personaldata import PersonalDataSettings, Vault
from lienthong.messaging import consumer_lag, dead_letter_event, event_publisher, make_broker
from lienthong.service import Service, Periodic, create_app, serve
from notify.sealing import DEV_KEY, SecretBox
from lienthong.settings import KafkaSettings, MongoSettings, refuse_development_secrets, shared_secrets
from lienthong.store import database, make_client, ping
from lienthong.topics import NOTIFICATION_EVENTS, NOTIFICATION_RETRY, OPERATOR_ALERTS, payload_of
from notify import api, handlers
from notify.channels import EmailChannel, SmsChannel, WebhookChannel
from notify.compose import Composer
from notify.domain import load_rules
from notify.notifier import Notifier
from notify.settings import NotifySettings
from notify.store import NotifyStore
from notify.subscriptions import Subscriptions

RETRY_BACKLOG = Gauge("lienthong_notify_retry_backlog", "Retry requests not yet consumed (notification.retry lag)")


def bootstrap(settings: NotifySettings | None = None, kafka: KafkaSettings | None = None,
              mongo: MongoSettings | None = None, clock: Callable[[], datetime] | None = None) -> Service[Notifier]:
    """Wire the service; tests build it against their own servers (SMTP, SMS gateway, webhooks)."""
    settings, kafka, mongo = settings or NotifySettings(), kafka or KafkaSettings(), mongo or MongoSettings()
    personal_data = PersonalDataSettings()
    refuse_development_secrets("notify", {
        **shared_secrets(kafka), **personal_data.development(),
        "NOTIFY_SECRETS_KEY": settings.secrets_key.get_secret_value() == DEV_KEY})
    broker = make_broker("notify", kafka, graceful_timeout=settings.graceful_timeout_s)
    client: AsyncMongoClient = make_client(mongo)
    db = database(client, mongo)
    store = NotifyStore(db, SecretBox(settings.secrets_key.get_secret_value()))
    vault = Vault(db, personal_data)
    subscriptions = Subscriptions(store, settings.subscriptions_refresh_s)
    http = httpx.AsyncClient(timeout=settings.send_timeout_s, follow_redirects=False)
    channels = {
        "email": EmailChannel(host=settings.smtp_host, port=settings.smtp_port, sender=settings.mail_from,
                              timeout=settings.send_timeout_s, username=settings.smtp_username,
                              password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                              starttls=settings.smtp_starttls),
        "sms": SmsChannel(http, url=settings.sms_gateway_url, token=settings.sms_gateway_token.get_secret_value()),
        "webhook": WebhookChannel(http, subscriptions.target, allow_private=settings.allow_private_webhooks),
    }
    now = clock or (lambda: datetime.now(UTC))
    live = LiveCatalogue(CatalogueVersions(db))  # procedures' names in messages, and in subscriptions' filters
    composer = Composer(live, tracking_url=settings.tracking_url, unit_email=settings.unit_email,
                        apology_working_days=settings.apology_working_days, today=lambda: today_vn(now()),
                        templates_dir=settings.templates_dir)

    async def park(event: CloudEvent, reason: str) -> None:
        await dead_letter_event(broker, event, dlq_topic=NOTIFICATION_EVENTS.dlq, service="notify", reason=reason)

    notifier = Notifier(
        store, vault, subscriptions, composer, channels, load_rules(), settings,
        publish_outcome=event_publisher(broker, NOTIFICATION_EVENTS.name, schema=payload_of(NOTIFICATION_EVENTS),
                                        description="notification.sent / notification.failed"),
        publish_retry=event_publisher(broker, NOTIFICATION_RETRY.name, schema=payload_of(NOTIFICATION_RETRY),
                                      description="Attempts to repeat; header `not-before`"),
        publish_dead_letter=park,
        publish_alert=event_publisher(broker, OPERATOR_ALERTS.name, schema=payload_of(OPERATOR_ALERTS, SubscriberDisabled),
                                      description="Webhook subscriptions switched off"),
        clock=now,
    )
    broker.include_router(handlers.build_router(broker, notifier, settings.group_id, settings.start_from,
                                                settings.retry_hold_max_s, settings.concurrency))

    async def measure_backlog() -> None:
        lag = await consumer_lag(kafka, settings.group_id, [NOTIFICATION_RETRY.name])
        RETRY_BACKLOG.set(lag[NOTIFICATION_RETRY.name])

    backlog = Periodic("retry_backlog", 15.0, measure_backlog)
    catalogue_refresh = Periodic("catalogue_refresh", settings.catalogue_refresh_s, live.refresh, immediately=True)

    async def start() -> None:
        await backlog.start()
        await catalogue_refresh.start()

    async def stop() -> None:
        await catalogue_refresh.stop()
        await backlog.stop()
        await http.aclose()
        await client.close()

    app = create_app("notify", broker, description="Tells citizens, units and subscribed agency systems what "
                     "happened, once, on the right channel.", readiness={"mongo": lambda: ping(client)},
                     on_startup=[start], on_shutdown=[stop])
    app.include_router(api.build_router(store, subscriptions, settings.allow_http_webhooks,
                                    Verifier(CitizenAssertionSettings()), live))
    return Service("notify", app, broker, notifier)



def run() -> None:
    settings = NotifySettings()
    serve(bootstrap(settings).app, settings)


if __name__ == "__main__":
    run()
