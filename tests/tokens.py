"""Bearer tokens for the tests, from a local issuer whose JWKS every service built by the tests trusts (the
AUTH_* variables are set when the test session starts, before any app is built or process started)."""

from __future__ import annotations

import os
from pathlib import Path

from lienthong.auth import OPS_READ, OPT_OUT, STATS_READ, SUBMIT, SUBSCRIBE, LocalIssuer

ISSUER = LocalIssuer(Path(__file__).resolve().parents[1] / ".lienthong" / "test-auth")
os.environ.update(ISSUER.env())


def bearer(*scopes: str, units: tuple[str, ...] = ("*",), client: str = "test-operator") -> dict[str, str]:
    return {"Authorization": f"Bearer {ISSUER.issue(client, list(scopes), list(units))}"}


# A client allowed everything, for tests about something else than who may do what.
EVERYTHING = bearer(SUBMIT, SUBSCRIBE, OPT_OUT, STATS_READ, OPS_READ)
