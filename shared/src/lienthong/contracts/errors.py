"""Validation errors turned into field-level detail that never carries the rejected values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from lienthong.logging import redact_text


def value_free(errors: Iterable[Mapping[str, Any]], skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """[{field, type, message}] from pydantic/FastAPI error dicts — no `input`, no `ctx`; user-chosen keys in the
    path are redacted too. `skip` drops path parts such as FastAPI's leading "body"."""
    return [
        {
            "field": ".".join(redact_text(str(part)) for part in err.get("loc", ()) if part not in skip) or "(body)",
            "type": err.get("type", "invalid"),
            "message": redact_text(str(err.get("msg", "invalid"))),
        }
        for err in errors
    ]


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return value_free(exc.errors(include_url=False, include_input=False, include_context=False))


def summarize(exc: ValidationError, limit: int = 5) -> str:
    """One line for a DLQ header or a log field."""
    errors = field_errors(exc)
    text = "; ".join(f"{e['field']}: {e['type']}" for e in errors[:limit])
    return text + (f" (+{len(errors) - limit} more)" if len(errors) > limit else "")
