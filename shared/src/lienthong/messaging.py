"""Kafka plumbing every service shares: the broker factory, topic creation, logging context and dead letters.

Delivery policy, decided once here:
- producers are idempotent with acks=all (no duplicates from producer retries, nothing acknowledged before the
  in-sync replicas have it);
- every subscriber takes batches (`batch_subscription()`): each record is validated against what its topic carries
  (`topics.payload_of`, the type the handler's parameter declares, so the AsyncAPI documents show real payloads);
  the handler gets the valid ones, `records_of(message)` their records, and a record that does not validate is
  parked on the topic's DLQ with a value-free reason once the handler has succeeded, so one bad record never fails
  its batch nor loops. NACK_ON_ERROR: an unexpected error (store down) leaves the offsets uncommitted and the batch
  is delivered again; offsets are committed only after the handler has stored its effect;
- poison (one policy for every single-record subscriber, `PoisonPolicy`): a record whose handler keeps failing
  for a reason of its own is tried MAX_ATTEMPTS times, then parked on its topic's DLQ with the error's type as
  the reason, and the partition moves on. An infrastructure error (store or broker unreachable) is nobody's
  record's fault: it never counts, the record waits for the infrastructure. Batch subscribers apply the same rule
  per record themselves (stats: an event that cannot be folded is parked at once; the fold is deterministic).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pymongo.errors import ConnectionFailure
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, CollectorRegistry

from pydantic import TypeAdapter, ValidationError

from lienthong.contracts import CloudEvent, to_json
from lienthong.contracts.errors import summarize
from lienthong.logging import BROKER_LOGGER
from lienthong.settings import KafkaSettings
from lienthong.topics import Topic, adapter_for, dlq_of, topic_named

SUBSCRIBER_ACK_POLICY = AckPolicy.NACK_ON_ERROR
MAX_ATTEMPTS = 5
# Errors that say the infrastructure is away, not that the record is bad: retried without counting.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (ConnectionFailure, KafkaError, OSError, TimeoutError)
CLOUDEVENTS_JSON = "application/cloudevents+json; charset=UTF-8"  # structured mode, Kafka protocol binding

log = structlog.get_logger("lienthong.messaging")


class LogContextMiddleware(BaseMiddleware):
    """Binds topic, partition, offset and key (the dossier code on dossier topics) to every log line of one
    message; handlers add `event_id` and `dossier_code` once they have decoded it."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        record = msg.raw_message
        # Batch subscribers bind per record themselves (record_context).
        fields = {} if isinstance(record, tuple | list) else record_context(record)
        with structlog.contextvars.bound_contextvars(**fields):
            return await call_next(msg)


class PoisonPolicy:
    """Bounded attempts per record for single-record subscribers (see the module docstring). `middleware` goes on
    the broker; the broker is bound once it exists (it publishes the dead letters)."""

    def __init__(self, service: str, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.service, self.max_attempts = service, max_attempts
        self.broker: KafkaBroker | None = None
        self.attempts: dict[tuple[str, int, int], int] = {}  # only records that failed and were not yet parked
        policy = self

        class Middleware(BaseMiddleware):
            async def consume_scope(self, call_next: Any, msg: Any) -> Any:
                return await policy.consume(call_next, msg)

        self.middleware = Middleware

    async def consume(self, call_next: Any, msg: Any) -> Any:
        record = msg.raw_message
        if isinstance(record, tuple | list):  # batch subscribers apply the policy per record themselves
            result = await call_next(msg)
            for bad, reason in getattr(msg, "undecodable", ()):  # the handler succeeded: park, then commit
                await park_record(self._broker(), bad, self.service, reason)
            return result
        key = (record.topic, record.partition, record.offset)
        try:
            result = await call_next(msg)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("infrastructure_unavailable", error=type(exc).__name__)
            await asyncio.sleep(1.0)  # the record comes again; no hot loop while the store or broker is away
            raise
        except Exception as exc:  # noqa: BLE001 - any other failure is the record's: count it
            attempts = self.attempts[key] = self.attempts.get(key, 0) + 1
            log.warning("handler_failed", error=type(exc).__name__, attempt=attempts, max_attempts=self.max_attempts)
            if attempts < self.max_attempts or dlq_of(record.topic) is None or self.broker is None:
                raise
            del self.attempts[key]
            await park_record(self.broker, record, self.service, f"handler failed {attempts} times: "
                              f"{type(exc).__name__}")
            return None
        self.attempts.pop(key, None)
        return result

    def _broker(self) -> KafkaBroker:
        if self.broker is None:
            raise RuntimeError("PoisonPolicy.broker is bound by make_broker")
        return self.broker


def batch_subscription(**options: Any) -> dict[str, Any]:
    """The options every subscriber takes (with its topic, group and limits): batches, offsets committed only
    after the handler stored its effect, each record validated by `decode_batch`."""
    return {"batch": True, "ack_policy": SUBSCRIBER_ACK_POLICY, "decoder": decode_batch, **options}


@functools.lru_cache(maxsize=512)
def _adapter(topic: str) -> TypeAdapter[Any]:
    return adapter_for(topic_named(topic))


# A fetch this large is validated in a worker thread: stats takes up to 100,000 records at once, ~1 s of
# validation that would hold the event loop, where the consumer's heartbeats and /healthz run.
OFF_LOOP_RECORDS = 1000


async def decode_batch(msg: Any) -> list[Any]:
    """Decoder of every subscriber (FastStream's own would JSON-decode every body for a list nobody reads): the
    valid records' payloads, typed; their records and the others (with why) stay on the message."""
    records = msg.raw_message
    if len(records) < OFF_LOOP_RECORDS:
        values, msg.decoded_records, msg.undecodable = _validated(records)
    else:
        values, msg.decoded_records, msg.undecodable = await asyncio.to_thread(_validated, records)
    return values


def _validated(batch: Iterable[ConsumerRecord]
               ) -> tuple[list[Any], list[ConsumerRecord], list[tuple[ConsumerRecord, str]]]:
    values, records, undecodable = [], [], []
    for record in batch:
        try:
            values.append(_adapter(record.topic).validate_json(record.value or b""))
        except ValidationError as exc:
            undecodable.append((record, summarize(exc)))
            continue
        records.append(record)
    return values, records, undecodable


def current_message(broker: KafkaBroker) -> Any:
    """The batch being handled, from the broker's context. Handlers take only their payload: a parameter annotated
    `KafkaMessage` or `KafkaBroker` is resolved by a synchronous context lookup that fast_depends runs in a worker
    thread at every call (two of them cost ~0.4 ms of CPU a batch, against ~0.16 ms for the whole call without,
    measured on FastStream's test broker)."""
    return broker.context.get_local("message")


def records_of(message: Any) -> list[ConsumerRecord]:
    """The records of a batch handler's payloads, in the same order (those that validated)."""
    return message.decoded_records


def undecodable_of(message: Any) -> list[tuple[ConsumerRecord, str]]:
    """The records of a batch that did not validate, with why (parked once the handler has succeeded)."""
    return message.undecodable


class InFlight(ConsumerRebalanceListener):
    """A rebalance listener that lets the batch being handled finish before this member gives its partitions up:
    `async with in_flight:` around a handler's work. So a partition's next owner never writes while its previous one
    still does (FerretDB's conditional writes are not compare-and-set, see the README). Not covered: a member the
    group expelled (a process frozen past max.poll.interval.ms); routing's version inserts cover that for routing."""

    def __init__(self) -> None:
        self._handling = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __aenter__(self) -> None:
        self._handling += 1
        self._idle.clear()

    async def __aexit__(self, *exc: object) -> None:
        self._handling -= 1
        if self._handling == 0:
            self._idle.set()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if not self._idle.is_set():
            log.info("rebalance_waits_for_batch")
        await self._idle.wait()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


# Headers of a dead letter (the dashboard reads them back): a reason, never a value from the record.
DLQ_REASON, DLQ_SERVICE, DLQ_TIME = "dlq-reason", "dlq-service", "dlq-time"


def make_broker(
    service: str,
    settings: KafkaSettings | None = None,
    *,
    graceful_timeout: float = 15.0,
    registry: CollectorRegistry = REGISTRY,
) -> KafkaBroker:
    settings = settings or KafkaSettings()
    poison = PoisonPolicy(service)
    broker = KafkaBroker(
        settings.servers,
        security=settings.security(),
        logger=logging.getLogger(BROKER_LOGGER),  # one logging path: structlog's redaction, no handler of its own
        client_id=f"{settings.client_id_prefix}-{service}",
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.linger_ms,
        allow_auto_create_topics=False,  # topics come from the catalogue, with their partitions and retention
        metadata_max_age_ms=30_000,  # subscriptions by pattern see a new agency's topic within 30 s
        graceful_timeout=graceful_timeout,
        ack_policy=SUBSCRIBER_ACK_POLICY,
        middlewares=[
            LogContextMiddleware,
            KafkaPrometheusMiddleware(registry=registry, app_name=service, metrics_prefix="lienthong"),
            poison.middleware,
        ],
        description=f"Liên Thông {service} service",
    )
    poison.broker = broker
    _declare_dead_letters(broker, service)
    return broker


DEAD_LETTER_DOC = ("The record as it came (its value withheld where the topic says it may hold personal data), "
                   "parked so its partition moves on. Headers: `dlq-reason` (field names and error types, never "
                   "values), `dlq-service`, `dlq-time`, `dlq-source-topic`, `dlq-source-partition`, "
                   "`dlq-source-offset`, `dlq-value: withheld` when the bytes were not kept; an event given up on "
                   "instead has `dlq-event-id`.")


def _declare_dead_letters(broker: KafkaBroker, service: str) -> None:
    """The DLQs the registry lets `service` write, in its AsyncAPI document (dead letters go out through
    `dead_letter`)."""
    from lienthong.identity import registry
    from lienthong.topics import dead_letter_topics

    try:
        produces = set(registry().get(service).produces)
    except KeyError:  # a test's or tool's broker
        return
    for dlq in dead_letter_topics():
        if dlq.name in produces:
            broker.publisher(dlq.name, description=f"{dlq.description}. {DEAD_LETTER_DOC}", schema=bytes)


async def ensure_topics(kafka: KafkaSettings, topics: Iterable[Topic]) -> list[str]:
    """Create the missing topics (idempotent; an operator's credentials). Returns the names it created."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="lienthong-topics")
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        brokers = max(1, len(cluster.get("brokers", [])))
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t.name not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                t.name,
                t.partitions,
                min(t.replication, brokers),
                topic_configs={**t.kafka_config(), "min.insync.replicas": str(min(2, t.replication, brokers))},
            )
            for t in wanted
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:  # a concurrent creator won the race: fine
            pass
        # Creation is asynchronous on the controller: wait until every topic is visible.
        for _ in range(50):
            if {t.name for t in wanted} <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.2)
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def partitions_of(kafka: KafkaSettings, topic: str) -> list[int]:
    """The partition numbers a topic has on the cluster (not the catalogue's: an operator may have added some)."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="lienthong-describe")
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in description["partitions"])
    finally:
        await admin.close()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, for a consumer that never subscribed (offset lookups): aiokafka 0.14 cancels its
    coordinator's routine before it ever ran and re-raises that CancelledError from stop(), which would end the
    periodic job calling it. Our own cancellation still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def consumer_lag(kafka: KafkaSettings, group_id: str, topics: Iterable[str]) -> dict[str, int]:
    """Records not yet consumed by `group_id`, per topic (end offset minus committed offset, summed over
    partitions; a partition the group never committed counts from its start)."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="lienthong-lag")
    consumer = AIOKafkaConsumer(**kafka.client_options(), client_id="lienthong-lag", enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not partitions:
            return {t: 0 for t in topics}
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        lag = dict.fromkeys(topics, 0)
        for tp in partitions:
            position = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else starts[tp]
            lag[tp.topic] += max(0, ends[tp] - position)
        return lag
    finally:
        await stop_consumer(consumer)
        await admin.close()


async def purge_consumed(kafka: KafkaSettings, group_id: str, topic: str) -> dict[int, int]:
    """Delete from `topic` every record `group_id` has committed past (Kafka's DeleteRecords: the log start moves,
    and the segments behind it leave the disk at the next retention check once they have rolled). For a topic
    whose records are worth nothing once consumed and must not linger (personal data in clear). Returns each
    partition's new start offset."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="lienthong-purge")
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        # Deleting up to an offset already deleted is a no-op: no need to read the current start first.
        consumed = {tp: RecordsToDelete(c.offset) for tp, c in committed.items() if c.offset > 0}
        if not consumed:
            return {}
        starts = await admin.delete_records(consumed, timeout_ms=10_000)
        return {tp.partition: offset for tp, offset in starts.items()}
    finally:
        await admin.close()


async def publish_event(
    publisher: Any, event: CloudEvent, *, headers: dict[str, str] | None = None, no_confirm: bool = False
) -> Any:
    """Publish a CloudEvent in structured mode, keyed by its subject (the dossier code) so a dossier stays ordered.
    With `no_confirm` it returns the future of the broker's acknowledgement instead of awaiting it."""
    return await publisher.publish(
        to_json(event),
        key=event.subject.encode(),
        headers={"content-type": CLOUDEVENTS_JSON, **(headers or {})},
        no_confirm=no_confirm,
    )


def event_publisher(
    broker: KafkaBroker,
    topic: str,
    *,
    description: str,
    schema: Any,
    headers_of: Callable[[CloudEvent], dict[str, str]] | None = None,
) -> Callable[..., Awaitable[None]]:
    """`send(event, headers=None, no_confirm=False)` for one topic, declared on the broker (so it is in the AsyncAPI
    document); `headers_of` adds headers derived from each event (e.g. the unit that must act). With `no_confirm`,
    `send` returns once the producer has the record, with the acknowledgement to await: records handed over in
    order keep their order on a partition, and many acknowledgements can be awaited at once."""
    publisher = broker.publisher(topic, description=description, schema=schema)

    async def send(event: CloudEvent, headers: dict[str, str] | None = None, *, no_confirm: bool = False) -> Any:
        return await publish_event(publisher, event, no_confirm=no_confirm,
                                   headers={**(headers_of(event) if headers_of else {}), **(headers or {})})

    return send


def record_context(record: ConsumerRecord) -> dict[str, Any]:
    """Log fields of one record (batch handlers bind them per record)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
    }


async def dead_letter(
    broker: KafkaBroker,
    record: ConsumerRecord,
    *,
    dlq_topic: str,
    service: str,
    reason: str,
    withhold_value: bool = False,
) -> None:
    """Park a record we cannot process, byte for byte, with why and where it came from in the headers; with
    `withhold_value`, without its bytes (they may hold personal data in clear; header `dlq-value: withheld`).

    `reason` must carry no personal data: build it from field names and error types (contracts.errors).
    """
    source = {
        "dlq-source-topic": record.topic,
        "dlq-source-partition": str(record.partition),
        "dlq-source-offset": str(record.offset),
        **({"dlq-value": "withheld"} if withhold_value else {}),
    }
    await _park(broker, b"" if withhold_value else record.value or b"", record.key, dlq_topic, service, reason,
                source)


async def park_record(broker: KafkaBroker, record: ConsumerRecord, service: str, reason: str) -> None:
    """Park a record on its topic's DLQ, keeping its bytes unless the topic says they may hold personal data."""
    topic = topic_named(record.topic)
    with structlog.contextvars.bound_contextvars(**record_context(record)):
        await dead_letter(broker, record, dlq_topic=topic.dlq, service=service, reason=reason,
                          withhold_value=not topic.dlq_keeps_value)


async def dead_letter_event(broker: KafkaBroker, event: CloudEvent, *, dlq_topic: str, service: str,
                            reason: str) -> None:
    """Park an event a service gave up on (e.g. a notification after its last attempt), with the reason."""
    await _park(broker, to_json(event), event.subject.encode(), dlq_topic, service, reason,
                {"dlq-event-id": event.id, "content-type": CLOUDEVENTS_JSON})


async def _park(broker: KafkaBroker, value: bytes, key: bytes | None, dlq_topic: str, service: str, reason: str,
                extra: dict[str, str]) -> None:
    headers = {DLQ_REASON: reason[:1000], DLQ_SERVICE: service, DLQ_TIME: datetime.now(UTC).isoformat(),
               **extra}
    await broker.publish(value, dlq_topic, key=key, headers=headers)
    log.warning("dead_lettered", dlq_topic=dlq_topic, reason=reason)
