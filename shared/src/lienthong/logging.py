"""structlog configured once for every service: JSON off a terminal, console on one.

Personal data must never reach a log line. The redaction processor masks values under personal-data keys
and any substring that looks like a citizen ID, phone number or e-mail, wherever it appears.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

PERSONAL_KEYS = frozenset(
    {
        "citizen_id",
        "full_name",
        "name",
        "phone",
        "email",
        "address",
        "applicant",
        "recipient",
        "to",
    }
)
REDACTED = "[redacted]"
BROKER_LOGGER = "lienthong.broker"

# Order matters: e-mails first (they may contain digits), then 12-digit IDs, then phones.
_PATTERNS = (
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    re.compile(r"(?<!\d)\d{12}(?!\d)"),
    re.compile(r"(?<![\d+])(?:\+84|0)\d{9,10}(?!\d)"),
)


def redact_text(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if k in PERSONAL_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact(v) for v in value]
    return value


def redact_processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: REDACTED if k in PERSONAL_KEYS else redact(v) for k, v in event_dict.items()}


_configured = False


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Idempotent; `json=None` picks JSON unless stderr is a terminal."""
    global _configured
    if _configured:
        return
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiokafka, pymongo, uvicorn) log through stdlib: route them through the same redaction.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(level.upper()), logging.INFO))
    # FastStream's own loggers come with their own handlers (coloured, unredacted, exceptions and all): they go
    # through the one path above instead. Brokers log to BROKER_LOGGER (lienthong.messaging.make_broker).
    for name in ("faststream", "faststream.access", "faststream.access.kafka", BROKER_LOGGER):
        library = logging.getLogger(name)
        library.handlers[:] = []
        library.propagate = True
    _configured = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
