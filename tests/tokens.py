"""Bearer tokens for the tests, from a local issuer whose JWKS every service built by the tests trusts (the
AUTH_* variables are set when the test session starts, before any app is built or process started)."""

from __future__ import annotations

import os
from pathlib import Path

from lienthong.auth import CITIZEN_ASSERTION_HEADER, OPS_READ, OPT_OUT, STATS_READ, SUBMIT, SUBSCRIBE, LocalIssuer

ISSUER = LocalIssuer(Path(__file__).resolve().parents[1] / ".lienthong" / "test-auth")
PORTAL = LocalIssuer.portal(ISSUER.directory / "portal")  # signs citizens' assertions, as the portal would
os.environ.update(ISSUER.env())
os.environ.update(PORTAL.env("CITIZEN_ASSERTION_"))


def bearer(*scopes: str, units: tuple[str, ...] = ("*",), client: str = "test-operator") -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(client, list(scopes), list(units))}"}


# A client allowed everything, for tests about something else than who may do what.
EVERYTHING = bearer(SUBMIT, SUBSCRIBE, OPT_OUT, STATS_READ, OPS_READ)


def citizen(subject: str, event=None, *, act: str | None = None) -> dict[str, str]:  # noqa: ANN001
    """The header of the portal's assertion that citizen `subject` (a receipt's `applicant_subject`) did `event`
    (a citizen's action on Kafka) or `act` (an HTTP action such as "opt-out")."""
    if event is None:
        return {CITIZEN_ASSERTION_HEADER: PORTAL.citizen_assertion(subject, act or "opt-out")}
    return {CITIZEN_ASSERTION_HEADER: PORTAL.citizen_assertion(subject, event.type, dossier=event.subject,
                                                               event_id=event.id)}
