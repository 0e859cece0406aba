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

    @property
    def dlq(self) -> str:
        if not self.has_dlq:
            raise ValueError(f"{self.name} has no dead-letter topic")
        return f"{self.name}.dlq"

    def kafka_config(self) -> dict[str, str]:
        # min.insync.replicas is capped to the cluster's replication factor at creation time.
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete", **self.config}


# The one topic that holds personal data in clear (agency systems file here as they would over HTTPS): kept only
# long enough for intake to take it in after an outage, and its dead letters only long enough to be looked at.
INTAKE_SUBMISSIONS = Topic(
    "intake.submissions",
    6,
    3 * DAY_MS,
    "Raw dossier submissions from agency systems that speak Kafka (same body as POST /v1/dossiers); personal data "
    "in clear, so kept 3 days",
    key="external_ref",
    has_dlq=True,
    dlq_retention_ms=7 * DAY_MS,
)
DOSSIER_LIFECYCLE = Topic(
    "dossier.lifecycle",
    12,
    FOREVER,
    "Every dossier lifecycle CloudEvent (submitted, assigned, steps, pauses, resolved, ...), ordered per dossier",
    has_dlq=True,
)
UNIT_WORK = Topic(
    "unit.work",
    6,
    30 * DAY_MS,
    "Assignments for units' systems (dossier.assigned); header `unit` names the unit that must act",
)
UNIT_OUTCOMES = Topic(
    "unit.outcomes",
    6,
    30 * DAY_MS,
    "What units did: step started/completed, supplement requested, rejected, paused/resumed",
    has_dlq=True,
)
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
    UNIT_WORK,
    UNIT_OUTCOMES,
    NOTIFICATION_EVENTS,
    NOTIFICATION_RETRY,
    OPERATOR_ALERTS,
)


def dead_letter_topics() -> tuple[Topic, ...]:
    return tuple(
        Topic(t.dlq, t.partitions, t.dlq_retention_ms, f"Dead letters of {t.name}, with the reason in headers",
              key=t.key)
        for t in CATALOGUE
        if t.has_dlq
    )


def all_topics() -> tuple[Topic, ...]:
    return CATALOGUE + dead_letter_topics()
