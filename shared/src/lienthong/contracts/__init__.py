"""Event contracts: every event the services exchange, as frozen pydantic models in CloudEvents envelopes."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import ConfigDict, Field, TypeAdapter

from lienthong.contracts import dossier, notification  # noqa: F401  (importing registers the envelopes)
from lienthong.contracts.envelope import CloudEvent, EventData, new_event, registered_envelopes, to_json

EVENT_TYPES: dict[str, type[CloudEvent]] = registered_envelopes()

_ANY_EVENT: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[tuple(EVENT_TYPES.values())], Field(discriminator="type")],  # noqa: UP007
    config=ConfigDict(hide_input_in_errors=True),
)


def parse_event(raw: bytes | str | dict[str, Any]) -> CloudEvent:
    """Validate any registered event; raises pydantic.ValidationError (inputs hidden) on bad data."""
    if isinstance(raw, dict):
        return _ANY_EVENT.validate_python(raw)
    return _ANY_EVENT.validate_json(raw)


__all__ = ["EVENT_TYPES", "CloudEvent", "EventData", "new_event", "parse_event", "to_json"]
