"""The topic catalogue: every topic, its partitions, key, retention, dead-letter topic and the payloads it carries,
in one place. Who writes and reads each topic is the client registry's (`lienthong.identity`, data the broker's ACLs
are made from); `topology()` joins the two, and a test holds the AsyncAPI documents and the README chart to it.

`lienthong infra up` and the docker-compose topic job create topics from this module; services subscribe and
publish only through these names, and type their handlers with `payload_of(topic)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Union

from pydantic import ConfigDict, Field, TypeAdapter

from lienthong.contracts import dossier as d
from lienthong.contracts import notification as n
from lienthong.contracts.envelope import EventData, envelope_for
from lienthong.contracts.intake import DossierSubmission

DAY_MS = 24 * 3600 * 1000
FOREVER = -1  # the dossier log is the system of record: stats rebuilds replay it from offset 0


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int
    description: str
    key: str = "dossier code"
    has_dlq: bool = False
    config: dict[str, str] = field(default_factory=dict)
    dlq_retention_ms: int = 90 * DAY_MS
    shared_dlq: str | None = None  # a family of topics (one per agency) parks in one DLQ
    replication: int = 3  # capped to the cluster's size at creation; two replicas in sync acknowledge a write
    # What a record's value is: the event types (CloudEvents, told apart by `type`), or one plain contract.
    carries: tuple[type, ...] = ()
    dlq_keeps_value: bool = True  # False: a dead letter keeps only why and where from (the bytes may be personal)

    @property
    def dlq(self) -> str:
        if not self.has_dlq:
            raise ValueError(f"{self.name} has no dead-letter topic")
        return self.shared_dlq or f"{self.name}.dlq"

    def kafka_config(self) -> dict[str, str]:
        # min.insync.replicas is capped to the cluster's replication factor at creation time.
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete", **self.config}


# Agency systems file here with the applicant sealed to intake's key; intake still deletes what it has taken in
# (DeleteRecords; hourly segments let deleted records leave the disk), and nothing stays over 3 days.
INTAKE_SUBMISSIONS = Topic(
    "intake.submissions",
    6,
    3 * DAY_MS,
    "Dossier submissions from agency systems that speak Kafka (the body of POST /v1/dossiers, the applicant sealed "
    "to intake's key); deleted once intake has taken them in",
    key="external_ref",
    has_dlq=True,
    dlq_retention_ms=7 * DAY_MS,
    carries=(DossierSubmission,),
    dlq_keeps_value=False,
    config={"segment.ms": str(3600 * 1000)},
)
DOSSIER_LIFECYCLE = Topic(
    "dossier.lifecycle",
    12,
    FOREVER,
    "Every dossier lifecycle CloudEvent (submitted, assigned, steps, pauses, resolved, ...), ordered per dossier",
    has_dlq=True,
    carries=(d.DossierSubmitted, d.DossierAssigned, d.DossierTransferred, d.StepStarted, d.StepCompleted,
             d.SupplementRequested, d.SupplementProvided, d.DossierPaused, d.DossierResumed, d.DeadlineExtended,
             d.DossierResolved, d.DossierRejected, d.DossierWithdrawn, d.ResultReturned, d.DossierDueSoon,
             d.DossierOverdue, d.FeePaid, d.SatisfactionRated),
)
# Each agency system has a topic of its own each way, so the broker's ACLs say who reads whose assignments and the
# topic an outcome arrives on says who sent it (Kafka does not stamp the principal on a record).
WORK_PREFIX, OUTCOMES_PREFIX = "unit.work.", "unit.outcomes."
OUTCOMES_DLQ = "unit.outcomes.dlq"
# Routing reads every agency's outcomes by pattern (new agencies included), never the shared DLQ.
OUTCOMES_PATTERN = r"^unit\.outcomes\.(?!dlq$)[a-z0-9][a-z0-9-]*$"


# What a unit's agency system does (routing refuses anything else), and what the portal does for a citizen.
AGENCY_OUTCOMES = (d.StepStarted, d.StepCompleted, d.SupplementRequested, d.DossierRejected, d.DossierPaused,
                   d.DossierResumed, d.DeadlineExtended, d.ResultReturned, d.FeePaid)
CITIZEN_ACTIONS = (d.SupplementProvided, d.DossierWithdrawn, d.SatisfactionRated)


def work_topic(agency: str) -> Topic:
    return Topic(f"{WORK_PREFIX}{agency}", 3, 30 * DAY_MS,
                 f"Assignments (dossier.assigned) for the units {agency} acts for, their dossiers' resumption "
                 "(resumed), and refusals of the outcomes it sent (outcome-rejected); header `unit` names the unit",
                 carries=(d.DossierAssigned, d.DossierResumed, d.OutcomeRejected))


def outcomes_topic(agency: str) -> Topic:
    return Topic(f"{OUTCOMES_PREFIX}{agency}", 3, 30 * DAY_MS,
                 f"What {agency}'s units did (step started/completed, supplement requested, rejected, fee paid, ...) or, from "
                 "the portal, what citizens did (supplement provided, withdrawn, satisfaction rated)", has_dlq=True, shared_dlq=OUTCOMES_DLQ,
                 carries=AGENCY_OUTCOMES + CITIZEN_ACTIONS)


def agency_of(topic: str) -> str | None:
    """The agency system an outcome came from: the suffix of the topic only it may write."""
    return topic[len(OUTCOMES_PREFIX):] if topic.startswith(OUTCOMES_PREFIX) and topic != OUTCOMES_DLQ else None
NOTIFICATION_EVENTS = Topic(
    "notification.events",
    6,
    30 * DAY_MS,
    "What became of each notification (sent, failed); its DLQ keeps the requests given up on",
    has_dlq=True,
    carries=(n.NotificationSent, n.NotificationFailed),
)
NOTIFICATION_RETRY = Topic(
    "notification.retry",
    3,
    7 * DAY_MS,
    "Notifications waiting for another attempt (header `not-before`), so retries never block other dossiers",
    carries=(n.NotificationRequested,),
    has_dlq=True,
    shared_dlq="notification.events.dlq",  # with the requests notify gave up on
)
OPERATOR_ALERTS = Topic(
    "operator.alerts",
    1,
    90 * DAY_MS,
    "Things an operator must look at: routing failures, rejected outcomes, disabled subscribers",
    key="dossier code or subscriber id",
    carries=(d.RoutingFailed, d.OutcomeRejected, n.SubscriberDisabled),
)

CATALOGUE: tuple[Topic, ...] = (
    INTAKE_SUBMISSIONS,
    DOSSIER_LIFECYCLE,
    NOTIFICATION_EVENTS,
    NOTIFICATION_RETRY,
    OPERATOR_ALERTS,
)


def agency_topics() -> tuple[Topic, ...]:
    """Two per agency system of the client registry (data: `lienthong clients add` makes a new agency's)."""
    from lienthong.identity import registry

    return tuple(t for c in registry().agencies for t in (work_topic(c.name), outcomes_topic(c.name)))


def topics() -> tuple[Topic, ...]:
    """Every topic but the dead-letter ones."""
    return CATALOGUE + agency_topics()


def dead_letter_topics() -> tuple[Topic, ...]:
    sources: dict[str, list[Topic]] = {}
    for t in topics():
        if t.has_dlq:
            sources.setdefault(t.dlq, []).append(t)
    return tuple(Topic(dlq, ts[0].partitions, ts[0].dlq_retention_ms,
                       f"Dead letters of {_names(ts)}, with the reason in headers", key=ts[0].key)
                 for dlq, ts in sources.items())


def _names(ts: list[Topic]) -> str:
    named = list(dict.fromkeys(OUTCOMES_PREFIX + "<agency>" if t.name.startswith(OUTCOMES_PREFIX) else t.name
                               for t in ts))
    return " and ".join(named)


def all_topics() -> tuple[Topic, ...]:
    return topics() + dead_letter_topics()


def topic_named(name: str) -> Topic:
    """The catalogue's topic of that name, an agency's own included (the registry as it is now)."""
    if name.startswith(WORK_PREFIX):
        return work_topic(name[len(WORK_PREFIX):])
    if name.startswith(OUTCOMES_PREFIX) and name != OUTCOMES_DLQ:
        return outcomes_topic(name[len(OUTCOMES_PREFIX):])
    for topic in all_topics():
        if topic.name == name:
            return topic
    raise KeyError(f"no topic {name!r} in the catalogue")


def dlq_of(name: str) -> str | None:
    """Where a record of topic `name` is parked (None: the topic has no DLQ, or is not in the catalogue)."""
    try:
        topic = topic_named(name)
    except KeyError:
        return None
    return topic.dlq if topic.has_dlq else None


def payload_of(topic: Topic, *only: type) -> Any:
    """The type of one record's value on `topic` (or of the `only` types it carries, for a publisher that writes
    some of them): the union of its event types' envelopes, discriminated by `type`, or its plain contract. Handlers
    and publishers are typed with it, so the AsyncAPI documents show each channel's real payloads."""
    kinds = only or topic.carries
    if not set(kinds) <= set(topic.carries):
        raise ValueError(f"{topic.name} does not carry {set(kinds) - set(topic.carries)}")
    if not all(issubclass(k, EventData) for k in kinds):
        (plain,) = kinds
        return plain
    envelopes = tuple(envelope_for(k) for k in kinds)
    if len(envelopes) == 1:
        return envelopes[0]
    return Annotated[Union[envelopes], Field(discriminator="type")]  # noqa: UP007


_ADAPTERS: dict[tuple[type, ...], TypeAdapter[Any]] = {}


def adapter_for(topic: Topic) -> TypeAdapter[Any]:
    """Validates one record's value on `topic` (inputs never echoed in errors)."""
    if topic.carries not in _ADAPTERS:
        payload = payload_of(topic)
        # A contract model hides its inputs itself (and a model takes no config here); a union is told to.
        config = None if isinstance(payload, type) else ConfigDict(hide_input_in_errors=True)
        _ADAPTERS[topic.carries] = TypeAdapter(payload, config=config)
    return _ADAPTERS[topic.carries]


@dataclass(frozen=True)
class Edge:
    """One topic (or family of agency topics, `unit.work.*`) and who writes and reads it."""

    topic: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]


def topology() -> list[Edge]:
    """Who writes and reads every topic, from the client registry (the ACLs' source), services and agencies."""
    from lienthong.identity import registry

    names = [t.name for t in CATALOGUE] + [WORK_PREFIX + "*", OUTCOMES_PREFIX + "*"] + \
        [t.name for t in dead_letter_topics()]
    clients = registry().clients

    def who(topic: str, direction: str) -> tuple[str, ...]:
        family = topic[:-1] if topic.endswith("*") else None
        out = []
        for client in clients:
            listed = getattr(client, direction)
            own = (client.kind == "agency" and family is not None
                   and family == (WORK_PREFIX if direction == "consumes" else OUTCOMES_PREFIX))
            if topic in listed or own:
                out.append("agencies" if client.kind == "agency" else client.name)
        return tuple(dict.fromkeys(out))

    return [Edge(name, who(name, "produces"), who(name, "consumes")) for name in names]


# What the chart shows besides Kafka: how dossiers come in over HTTP, who is told, and who keeps state.
_OUTSIDE_KAFKA = (
    'portal["National portal, counters, post"] -->|HTTP POST /v1/dossiers| intake',
    'notify -->|e-mail, SMS, webhooks| people["Citizens, units, subscribers"]',
    "intake & routing & notify & stats --> mongo[(MongoDB)]",
)


def topology_chart() -> str:
    """The README's system chart (mermaid), from `topology()`: every topic, its writers and readers (tools such as
    the simulator, which plays the agencies, left out)."""
    from lienthong.identity import registry

    tools = {c.name for c in registry().clients if c.kind == "tool"}
    lines = ["flowchart LR", '  agencies["Agency systems (and the portal)"]']
    for i, edge in enumerate(topology()):
        node = f"T{i}"
        lines.append(f'  {node}[("{edge.topic}")]')
        lines += [f"  {w} --> {node}" for w in edge.writers if w not in tools]
        lines += [f"  {node} --> {r}" for r in edge.readers if r not in tools]
    return "\n".join(["```mermaid", *lines, *(f"  {line}" for line in _OUTSIDE_KAFKA), "```"])
