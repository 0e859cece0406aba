"""The topic catalogue: every topic, its partitions, key, retention and dead-letter topic, in one place.

`lienthong infra up` and the docker-compose topic job create topics from this module; services subscribe and
publish only through these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    config={"segment.ms": str(3600 * 1000)},
)
DOSSIER_LIFECYCLE = Topic(
    "dossier.lifecycle",
    12,
    FOREVER,
    "Every dossier lifecycle CloudEvent (submitted, assigned, steps, pauses, resolved, ...), ordered per dossier",
    has_dlq=True,
)
# Each agency system has a topic of its own each way, so the broker's ACLs say who reads whose assignments and the
# topic an outcome arrives on says who sent it (Kafka does not stamp the principal on a record).
WORK_PREFIX, OUTCOMES_PREFIX = "unit.work.", "unit.outcomes."
OUTCOMES_DLQ = "unit.outcomes.dlq"
# Routing reads every agency's outcomes by pattern (new agencies included), never the shared DLQ.
OUTCOMES_PATTERN = r"^unit\.outcomes\.(?!dlq$)[a-z0-9][a-z0-9-]*$"


def work_topic(agency: str) -> Topic:
    return Topic(f"{WORK_PREFIX}{agency}", 3, 30 * DAY_MS,
                 f"Assignments (dossier.assigned) for the units {agency} acts for; header `unit` names the unit")


def outcomes_topic(agency: str) -> Topic:
    return Topic(f"{OUTCOMES_PREFIX}{agency}", 3, 30 * DAY_MS,
                 f"What {agency}'s units did (step started/completed, supplement requested, rejected, ...) or, from "
                 "the portal, what citizens did (supplement provided, withdrawn)", has_dlq=True, shared_dlq=OUTCOMES_DLQ)


def agency_of(topic: str) -> str | None:
    """The agency system an outcome came from: the suffix of the topic only it may write."""
    return topic[len(OUTCOMES_PREFIX):] if topic.startswith(OUTCOMES_PREFIX) and topic != OUTCOMES_DLQ else None
NOTIFICATION_EVENTS = Topic(
    "notification.events",
    6,
    30 * DAY_MS,
    "notification.requested/sent/failed",
    has_dlq=True,
)
NOTIFICATION_RETRY = Topic(
    "notification.retry",
    3,
    7 * DAY_MS,
    "Notifications waiting for another attempt (header `not-before`), so retries never block other dossiers",
)
OPERATOR_ALERTS = Topic(
    "operator.alerts",
    1,
    90 * DAY_MS,
    "Things an operator must look at: routing failures, rejected outcomes, disabled subscribers",
    key="dossier code or subscriber id",
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
    dlqs = {t.dlq: Topic(t.dlq, t.partitions, t.dlq_retention_ms,
                         f"Dead letters of {t.shared_dlq and 'every ' + OUTCOMES_PREFIX + '<agency>' or t.name}, "
                         "with the reason in headers", key=t.key) for t in topics() if t.has_dlq}
    return tuple(dlqs.values())


def all_topics() -> tuple[Topic, ...]:
    return topics() + dead_letter_topics()
