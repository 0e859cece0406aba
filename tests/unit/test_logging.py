from __future__ import annotations

import io
import json

import structlog

from lienthong.logging import REDACTED, redact_processor

CANARIES = ("079912345678", "0912345678", "+84912345678", "canary.citizen@example.vn")


def render(**fields) -> str:
    out = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[redact_processor, structlog.processors.JSONRenderer()],
    )
    logger.info("event", **fields)
    return out.getvalue()


def test_personal_keys_are_redacted():
    line = json.loads(render(full_name="Ngô Thị Trang", address="phố Trương Hán Siêu", applicant={"x": 1}))
    assert line["full_name"] == line["address"] == line["applicant"] == REDACTED


def test_canaries_are_redacted_wherever_they_hide():
    line = render(
        detail=f"citizen {CANARIES[0]} called from {CANARIES[1]}",
        nested={"items": [CANARIES[2], {"contact": CANARIES[3]}]},
        dossier_code="HACTHANH-251201-0001",
    )
    for canary in CANARIES:
        assert canary not in line
    assert "HACTHANH-251201-0001" in line  # dossier codes are not personal data and must stay readable
