"""CloudEvents 1.0 envelope (structured JSON mode) for every event the services exchange.

Each event type is a frozen pydantic model of its `data`, with a versioned type name such as
`vn.gov.dossier.submitted.v1`. `envelope_for(Data)` builds the matching envelope whose `type` is a literal, so a
union of envelopes is discriminated by `type` and the JSON Schema / AsyncAPI documents pin it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar, Literal

import orjson
from pydantic import Field, create_model

from lienthong.contracts.types import Contract, DossierCode, Instant, ShortText


class EventData(Contract):
    """Payload of one event type. Subclasses set EVENT_TYPE (versioned: bump on any contract change)."""

    EVENT_TYPE: ClassVar[str]


class CloudEvent(Contract):
    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents specification version")
    id: str = Field(
        min_length=1, max_length=64, description="Unique event id; consumers deduplicate on it (with `source`)"
    )
    source: ShortText = Field(description="URI-reference of the publishing unit/service, e.g. /units/HACTHANH/intake")
    type: str = Field(description="Versioned event type, e.g. vn.gov.dossier.submitted.v1")
    subject: DossierCode = Field(description="The dossier code; also the Kafka key, so one dossier's events stay ordered")
    time: Instant = Field(description="When the fact happened (RFC 3339, with offset)")
    datacontenttype: Literal["application/json"] = "application/json"
    dossierseq: int = Field(
        ge=1,
        le=1_000_000,
        description="Per-dossier sequence number (extension attribute): ordering and deduplication of a dossier's events",
    )
    data: EventData


_ENVELOPES: dict[str, type[CloudEvent]] = {}


def envelope_for(data_cls: type[EventData]) -> type[CloudEvent]:
    """The envelope model of one event type (built once, cached)."""
    if data_cls.EVENT_TYPE in _ENVELOPES:
        return _ENVELOPES[data_cls.EVENT_TYPE]
    name = data_cls.__name__ + "Event"
    model = create_model(
        name,
        __base__=CloudEvent,
        __doc__=f"CloudEvent carrying {data_cls.__name__}: {(data_cls.__doc__ or '').strip()}",
        type=(Literal[data_cls.EVENT_TYPE], Field(description="Event type (versioned)")),  # type: ignore[valid-type]
        data=(data_cls, Field(description="Event payload")),
    )
    _ENVELOPES[data_cls.EVENT_TYPE] = model
    return model


def registered_envelopes() -> dict[str, type[CloudEvent]]:
    return dict(_ENVELOPES)


def new_event(
    data: EventData, *, subject: str, source: str, seq: int, time: datetime | None = None, event_id: str | None = None
) -> CloudEvent:
    """Wrap a payload in its envelope. `event_id` should be deterministic when the event may be re-emitted."""
    envelope = envelope_for(type(data))
    return envelope(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=data.EVENT_TYPE,
        subject=subject,
        time=time or datetime.now(UTC),
        dossierseq=seq,
        data=data,
    )


def deterministic_id(*parts: object) -> str:
    """A stable event id derived from what caused it, so re-emitting after a crash yields the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "lienthong:" + "/".join(map(str, parts))))


def to_json(event: CloudEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))
