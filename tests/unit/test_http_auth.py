"""Bearer tokens on the HTTP edges, without servers: what is refused is refused before any store or broker is
touched. (Valid tokens going through are exercised by every integration test, which all carry one.)"""

from __future__ import annotations

import importlib

import time
import uuid

import httpx
import pytest

from lienthong.auth import (
    AUDIT_READ,
    ERASE,
    OPS_READ,
    OPT_OUT,
    PERSONAL_READ,
    STATS_READ,
    SUBMIT,
    SUBSCRIBE,
    LocalIssuer,
)
from tests.tokens import ISSUER, bearer

FILING = {"procedure_code": "HT-KS", "channel": "online", "receiving_unit": "HACTHANH", "external_ref": "R-1",
          "applicant": {"citizen_id": "038099001122", "full_name": "Lê Văn A", "address": "Số 1",
                        "residence_unit": "HOANGSON"},
          "documents": [{"kind": "to-khai", "name": "a.pdf", "sha256": "a" * 64},
                        {"kind": "giay-chung-sinh", "name": "b.pdf", "sha256": "b" * 64}]}


def app_of(service: str):  # noqa: ANN201
    return importlib.import_module(f"{service}.main").bootstrap().app


async def call(service: str, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
    transport = httpx.ASGITransport(app_of(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc", headers=headers or {}) as http:
        return await http.request(method, path, **kw)


PROTECTED = [  # (service, method, path, request, the scope it needs)
    ("intake", "POST", "/v1/dossiers", {"json": FILING}, SUBMIT),
    ("intake", "GET", "/v1/units", {}, SUBMIT),
    ("intake", "GET", "/v1/submission-key", {}, SUBMIT),
    ("intake", "GET", "/metrics", {}, OPS_READ),
    ("intake", "GET", "/v1/dossiers/HACTHANH-251201-0001/applicant?purpose=check", {}, PERSONAL_READ),
    ("intake", "POST", "/v1/citizens/erasure", {"json": {"citizen_id": "038099001122"}}, ERASE),
    ("intake", "GET", "/v1/personal-data/access", {}, AUDIT_READ),
    ("notify", "POST", "/v1/subscriptions", {"json": {"url": "https://x.example/h"}}, SUBSCRIBE),
    ("notify", "GET", "/v1/subscriptions", {}, SUBSCRIBE),
    ("notify", "PUT", "/v1/opt-outs", {"json": {"channel": "sms", "opted_out": True}},
     OPT_OUT),
    ("stats", "GET", "/v1/stats/summary?from=2025-07-01&to=2025-07-31", {}, STATS_READ),
    ("stats", "GET", "/v1/stats/units?from=2025-07-01&to=2025-07-31", {}, STATS_READ),
    ("stats", "GET", "/dashboard", {}, STATS_READ),
    ("stats", "GET", "/v1/ops/topics", {}, OPS_READ),
    ("routing", "GET", "/metrics", {}, OPS_READ),
]


@pytest.mark.parametrize(("service", "method", "path", "kw", "scope"), PROTECTED)
async def test_no_token_is_401_and_says_nothing_else(service, method, path, kw, scope):
    resp = await call(service, method, path, **kw)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json() == {"detail": [{"field": "authorization", "type": "unauthorized",
                                       "message": "a valid bearer token is required"}]}


@pytest.mark.parametrize("token", ["expired", "other-key", "other-audience", "garbage", "revoked"])
async def test_expired_badly_signed_foreign_or_revoked_tokens_are_401(token, tmp_path):
    if token == "expired":
        value = ISSUER.issue("c1", [STATS_READ], now=1_000_000)
    elif token == "other-key":
        value = LocalIssuer(tmp_path / "other").issue("c1", [STATS_READ])
    elif token == "other-audience":
        value = LocalIssuer(ISSUER.directory, audience="someone-else").issue("c1", [STATS_READ])
    elif token == "garbage":
        value = "not.a.token"
    else:
        client = f"revoked-{uuid.uuid4().hex[:8]}"
        value = ISSUER.issue(client, [STATS_READ])
        assert (await call("stats", "GET", "/v1/ops/topics", {"Authorization": f"Bearer {value}"})).status_code \
            == 403  # valid until revoked (stats:read only: the topics need ops:read)
        ISSUER.revoke(client)  # no restart: the list is re-read when it changes
    resp = await call("stats", "GET", "/v1/ops/topics", {"Authorization": f"Bearer {value}"})
    assert resp.status_code == 401


@pytest.mark.parametrize(("service", "method", "path", "kw", "scope"), PROTECTED)
async def test_a_token_outside_its_scope_is_403(service, method, path, kw, scope):
    other = STATS_READ if scope != STATS_READ else SUBMIT
    resp = await call(service, method, path, bearer(other), **kw)
    assert resp.status_code == 403


async def test_a_client_files_and_subscribes_only_for_its_own_units():
    resp = await call("intake", "POST", "/v1/dossiers", bearer(SUBMIT, units=("BIMSON",)), json=FILING)
    assert resp.status_code == 403 and resp.json()["detail"][0]["field"] == "receiving_unit"
    resp = await call("notify", "POST", "/v1/subscriptions", bearer(SUBSCRIBE, units=("BIMSON",)),
                      json={"url": "https://agency.example/hook", "unit_codes": ["HACTHANH"]})
    assert resp.status_code == 403
    resp = await call("notify", "POST", "/v1/subscriptions", bearer(SUBSCRIBE, units=("BIMSON",)),
                      json={"url": "https://agency.example/hook"})  # every unit: not for a one-unit client
    assert resp.status_code == 403


async def test_health_and_readiness_need_no_token():
    assert (await call("intake", "GET", "/healthz")).status_code == 200


async def test_public_tracking_is_rate_limited_per_address():
    from stats.api import LookupLimit

    limit = LookupLimit(per_minute=3)
    assert [limit.retry_after("10.1.2.3") for _ in range(3)] == [0, 0, 0]
    assert limit.retry_after("10.1.2.3") > 0  # the fourth lookup this minute waits
    assert limit.retry_after("10.9.9.9") == 0  # another address is not held back


def test_a_citizens_assertion_is_checked_as_of_the_records_time_and_only_with_the_portals_key(tmp_path):
    """Routing reads a citizen's action maybe hours after the portal wrote it (an outage): the assertion must have
    been valid when the record was written, not when it is read; a key other than the portal's proves nothing."""
    from lienthong.auth import CITIZEN_AUDIENCE, CitizenAssertionSettings, Verifier
    from tests.tokens import PORTAL

    verifier = Verifier(CitizenAssertionSettings(jwks_file=PORTAL.jwks_file))
    written = int(time.time()) - 2 * 3600  # two hours ago
    token = PORTAL.citizen_assertion("p-abc", "vn.gov.dossier.withdrawn.v1", dossier="D-1", event_id="e-1",
                                     now=written)
    claims = verifier.claims(token, now=written + 60)
    assert (claims["sub"], claims["act"], claims["dossier"], claims["jti"]) == (
        "p-abc", "vn.gov.dossier.withdrawn.v1", "D-1", "e-1")
    import jwt

    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.claims(token, now=written + 3600)  # written long after it was signed
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.claims(token)  # as of now: long expired
    forger = LocalIssuer.portal(tmp_path)
    with pytest.raises(jwt.InvalidTokenError):
        verifier.claims(forger.citizen_assertion("p-abc", "opt-out", now=written), now=written)
    ordinary = ISSUER.issue("portal", [SUBMIT], now=written)  # a bearer token is not an assertion
    with pytest.raises(jwt.InvalidTokenError):
        Verifier(CitizenAssertionSettings(jwks_file=ISSUER.jwks_file)).claims(ordinary, now=written)
    assert CITIZEN_AUDIENCE != ISSUER.audience


def test_revocation_refuses_the_tokens_issued_until_then_and_a_re_registered_client_starts_afresh(tmp_path):
    import jwt

    from lienthong.auth import Verifier

    issuer = LocalIssuer(tmp_path)
    verifier = Verifier(issuer.settings())
    before = issuer.issue("xa-1", [SUBMIT], now=time.time() - 10)
    issuer.revoke("xa-1", now=time.time() - 5)
    after = issuer.issue("xa-1", [SUBMIT])  # registered again, with new credentials
    with pytest.raises(jwt.InvalidTokenError):
        verifier.verify(before)
    assert verifier.verify(after).client == "xa-1"
    (tmp_path / "revoked-clients.json").write_text('["xa-1"]')  # the earlier format: revoked for ever
    with pytest.raises(jwt.InvalidTokenError):
        Verifier(issuer.settings()).verify(after)


def test_a_verified_token_is_remembered_but_revocation_and_a_withdrawn_key_still_refuse_it(tmp_path, monkeypatch):
    import os

    import jwt

    from lienthong import auth

    issuer = LocalIssuer(tmp_path)
    verifier = auth.Verifier(issuer.settings())
    token = issuer.issue("xa-2", [SUBMIT], now=time.time() - 10)
    decodes = []
    real_decode = jwt.decode
    monkeypatch.setattr(auth.jwt, "decode", lambda *a, **kw: decodes.append(1) or real_decode(*a, **kw))
    for _ in range(50):
        assert verifier.verify(token).client == "xa-2"
    assert len(decodes) == 1  # one signature check, then remembered
    issuer.revoke("xa-2", now=time.time() - 5)
    with pytest.raises(jwt.InvalidTokenError):  # revocation is checked on every request
        verifier.verify(token)

    other = issuer.issue("xa-3", [SUBMIT])
    assert verifier.verify(other).client == "xa-3"
    rotated = LocalIssuer(tmp_path / "rotated").jwks_file.read_text().replace("local-1", "local-2")
    issuer.jwks_file.write_text(rotated)  # the key withdrawn (compromised) for a new one: its tokens with it
    stat = issuer.jwks_file.stat()
    os.utime(issuer.jwks_file, (stat.st_atime, stat.st_mtime + 1))
    with pytest.raises(jwt.InvalidTokenError):
        verifier.verify(other)
