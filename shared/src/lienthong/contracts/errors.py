"""Validation errors turned into field-level detail that never carries the rejected values."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from lienthong.logging import redact_text


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """[{field, type, message}] — no `input`, no `ctx`; user-chosen keys in the path are redacted too."""
    return [
        {
            "field": ".".join(redact_text(str(part)) for part in err["loc"]) or "(body)",
            "type": err["type"],
            "message": redact_text(err["msg"]),
        }
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def summarize(exc: ValidationError, limit: int = 5) -> str:
    """One line for a DLQ header or a log field."""
    errors = field_errors(exc)
    text = "; ".join(f"{e['field']}: {e['type']}" for e in errors[:limit])
    return text + (f" (+{len(errors) - limit} more)" if len(errors) > limit else "")
