"""Bearer tokens on every HTTP edge: OAuth2 client-credentials JWTs, validated against a JWKS, with scopes.

- Production: an identity provider (Keycloak or the province's) issues the tokens; services only validate them
  against its JWKS URL (`AUTH_JWKS_URL`), with `AUTH_ISSUER` and `AUTH_AUDIENCE`.
- Locally (`make run`, tests): `LocalIssuer` keeps an Ed25519 key in the environment's state directory, publishes
  its JWKS as a file (`AUTH_JWKS_FILE`) and issues tokens (`lienthong tokens issue`).
- Revocation takes effect without a restart: `AUTH_REVOKED_FILE` (re-read when it changes) maps a revoked client's
  `sub` to when it was revoked, and every token it was issued until then is refused; tokens are short-lived besides.

Scopes (space-separated `scope` claim): `dossiers:submit` (narrowed by the `units` claim: the receiving units the
client may file for, `*` for all), `subscriptions:manage`, `citizens:opt-out`, `stats:read`, `ops:read`,
`personaldata:read` (narrowed by `units`), `citizens:erase`, `personaldata:audit`.
Answers: 401 without a valid token (missing, expired, badly signed, revoked: the same answer), 403 outside its scope;
neither says what exists.

Citizens' assertions: the portal authenticates citizens (VNeID) and signs, with its own key, a short JWT for each
thing a citizen does through it (withdraw a dossier, provide papers, opt out of a channel): `sub` is the citizen's
pseudonym (the `applicant_subject` of the filing's receipt, never the CCCD: the assertion travels on Kafka), `act` the
action, `dossier` the dossier, `jti` the event it authorizes. Services check it against the portal's JWKS
(`CITIZEN_ASSERTION_JWKS_URL` or `_FILE`); who the citizen is comes from the assertion, never from a body.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SUBMIT, SUBSCRIBE, OPT_OUT, STATS_READ, OPS_READ = (
    "dossiers:submit", "subscriptions:manage", "citizens:opt-out", "stats:read", "ops:read")
# Personal data: read an applicant (narrowed by `units`), erase a citizen, read the access log.
PERSONAL_READ, ERASE, AUDIT_READ = "personaldata:read", "citizens:erase", "personaldata:audit"
ALGORITHMS = ["EdDSA", "RS256", "ES256"]
VERIFIED_TOKENS = 10_000  # tokens whose verification is remembered (LRU)
VERIFIED_FOR_S = 60.0  # at most this long (a remote key set may change without our knowing)
CITIZEN_AUDIENCE = "lienthong:citizen"
CITIZEN_ASSERTION_HEADER = "citizen-assertion"  # a Kafka header of citizens' actions, an HTTP header of opt-outs
ASSERTION_TTL_S = 600


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    jwks_url: str | None = Field(None, description="The identity provider's JWKS (production)")
    jwks_file: Path | None = Field(None, description="A JWKS file (the local issuer's)")
    revoked_file: Path | None = Field(None, description="JSON list of revoked client ids, re-read when changed")
    issuer: str = Field("lienthong-local", description="Expected `iss`")
    audience: str = Field("lienthong", description="Expected `aud`")


@dataclass(frozen=True)
class Caller:
    client: str
    scopes: frozenset[str]
    units: frozenset[str]

    def may_act_for(self, unit: str) -> bool:
        return "*" in self.units or unit in self.units


class CitizenAssertionSettings(AuthSettings):
    model_config = SettingsConfigDict(env_prefix="CITIZEN_ASSERTION_", extra="ignore")

    issuer: str = Field("portal", description="Expected `iss`: the portal, which authenticates citizens")
    audience: str = Field(CITIZEN_AUDIENCE, description="Expected `aud`")


class Verifier:
    """Validates tokens; with no JWKS configured every token is refused (closed by default)."""

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = settings or AuthSettings()
        self._remote = jwt.PyJWKClient(self.settings.jwks_url, cache_keys=True) if self.settings.jwks_url else None
        self._files: dict[Path, tuple[float, Any]] = {}
        # Tokens already verified (a signature check per request was ~14% of intake's CPU under load): their
        # claims, until the token expires, VERIFIED_FOR_S passes, or the key set changes (a key withdrawn
        # withdraws its tokens at once). Revocation is still checked on every request.
        self._verified: OrderedDict[str, tuple[float, Any, dict[str, Any]]] = OrderedDict()

    def _read(self, path: Path | None, parse: Any, default: Any) -> Any:
        """A file's parsed content, re-read whenever it changes (key rotation, revocation)."""
        if path is None or not path.exists():
            return default
        mtime = path.stat().st_mtime
        cached = self._files.get(path)
        if cached is None or cached[0] != mtime:
            cached = (mtime, parse(path.read_text(encoding="utf-8")))
            self._files[path] = cached
        return cached[1]

    def _key(self, token: str) -> Any:
        if self._remote is not None:
            return self._remote.get_signing_key_from_jwt(token).key
        keys = self._read(self.settings.jwks_file, lambda text: jwt.PyJWKSet.from_json(text), None)
        if keys is None:
            raise jwt.InvalidTokenError("no keys configured")
        kid = jwt.get_unverified_header(token).get("kid")
        for key in keys.keys:
            if key.key_id == kid:
                return key.key
        raise jwt.InvalidTokenError("unknown key")

    def claims(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """The verified claims; `now` (a record's timestamp) checks the token as of then, not as of reading."""
        if now is not None:
            return self._decode(token, now)
        keys = self._remote or self._read(self.settings.jwks_file, lambda text: jwt.PyJWKSet.from_json(text), None)
        cached = self._verified.get(token)
        if cached is not None and cached[1] is keys and time.time() < cached[0]:
            self._verified.move_to_end(token)
            return cached[2]
        claims = self._decode(token, None)
        self._verified[token] = (min(claims["exp"], time.time() + VERIFIED_FOR_S), keys, claims)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return claims

    def _decode(self, token: str, now: float | None) -> dict[str, Any]:
        claims = jwt.decode(token, self._key(token), algorithms=ALGORITHMS, audience=self.settings.audience,
                            issuer=self.settings.issuer, options={"require": ["exp", "iat", "sub"],
                                                                  "verify_exp": now is None, "verify_iat": now is None})
        if now is not None and not claims["iat"] - 60 <= now <= claims["exp"]:
            raise jwt.ExpiredSignatureError("not valid at that time")
        return claims

    def verify(self, token: str) -> Caller:
        claims = self.claims(token)
        revoked_at = self._read(self.settings.revoked_file, _revocations, {}).get(claims["sub"])
        if revoked_at is not None and claims["iat"] <= revoked_at:  # tokens issued after a re-registration pass
            raise jwt.InvalidTokenError("revoked")
        units = claims.get("units") or []
        return Caller(claims["sub"], frozenset(str(claims.get("scope", "")).split()),
                      frozenset(units if isinstance(units, list) else [units]))


_bearer = HTTPBearer(auto_error=False)
UNAUTHORIZED = HTTPException(401, detail=[{"field": "authorization", "type": "unauthorized",
                                           "message": "a valid bearer token is required"}],
                             headers={"WWW-Authenticate": "Bearer"})


def require(scope: str) -> Any:
    """A FastAPI dependency: the caller, if its token is valid and carries `scope`."""

    async def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
        verifier: Verifier = request.app.state.verifier
        if credentials is None:
            raise UNAUTHORIZED
        try:
            who = verifier.verify(credentials.credentials)
        except (jwt.PyJWTError, ValueError):
            raise UNAUTHORIZED from None
        if scope not in who.scopes:
            raise HTTPException(403, detail=[{"field": "authorization", "type": "forbidden",
                                              "message": f"this token does not carry the scope {scope}"}])
        return who

    return Depends(caller)


class LocalIssuer:
    """The local environment's token issuer: an Ed25519 key, its JWKS file and a revocation list."""

    def __init__(self, directory: Path, issuer: str = "lienthong-local", audience: str = "lienthong") -> None:
        self.directory, self.issuer, self.audience = directory, issuer, audience
        self.key_file, self.jwks_file = directory / "token-key.pem", directory / "jwks.json"
        self.revoked_file = directory / "revoked-clients.json"
        if not self.key_file.exists():
            directory.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            self.key_file.touch(mode=0o600)
            self.key_file.write_bytes(pem)
        self._key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        self.kid = "local-1"
        if not self.jwks_file.exists():
            self.jwks_file.write_text(json.dumps({"keys": [{**self._public_jwk(), "kid": self.kid}]}))

    def _public_jwk(self) -> dict[str, Any]:
        return json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self._key.public_key()))

    def settings(self, kind: type[AuthSettings] = AuthSettings) -> AuthSettings:
        return kind(jwks_file=self.jwks_file, revoked_file=self.revoked_file, issuer=self.issuer,
                    audience=self.audience)

    def env(self, prefix: str = "AUTH_") -> dict[str, str]:
        return {f"{prefix}JWKS_FILE": str(self.jwks_file), f"{prefix}REVOKED_FILE": str(self.revoked_file),
                f"{prefix}ISSUER": self.issuer, f"{prefix}AUDIENCE": self.audience}

    def issue(self, client: str, scopes: list[str], units: list[str] | None = None, ttl_s: int = 3600,
              now: float | None = None) -> str:
        return self.sign(client, {"scope": " ".join(scopes), "units": units or []}, ttl_s=ttl_s, now=now)

    def sign(self, subject: str, claims: dict[str, Any], *, ttl_s: int = 3600, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"jti": str(uuid.uuid4()), **claims, "iss": self.issuer, "aud": self.audience, "sub": subject,
                  "iat": issued, "exp": issued + ttl_s}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid})

    def citizen_assertion(self, subject: str, act: str, *, dossier: str | None = None, event_id: str | None = None,
                          now: float | None = None) -> str:
        """What the portal signs when citizen `subject` (a pseudonym) does `act` (an event type, or "opt-out")."""
        claims: dict[str, Any] = {"act": act} | ({"dossier": dossier} if dossier else {})
        return self.sign(subject, claims | ({"jti": event_id} if event_id else {}), ttl_s=ASSERTION_TTL_S, now=now)

    @classmethod
    def portal(cls, directory: Path) -> LocalIssuer:
        """The local stand-in for the portal's signing key (its JWKS: `CITIZEN_ASSERTION_JWKS_FILE`)."""
        return cls(directory, issuer="portal", audience=CITIZEN_AUDIENCE)

    def revoke(self, client: str, now: float | None = None) -> None:
        """Every token of `client` issued until now is refused from now on."""
        revoked = _revocations(self.revoked_file.read_text()) if self.revoked_file.exists() else {}
        revoked[client] = int(now if now is not None else time.time())
        self.revoked_file.write_text(json.dumps(revoked, sort_keys=True))


def _revocations(text: str) -> dict[str, float]:
    """The revocation list: client -> when it was revoked (a plain list: revoked for ever)."""
    data = json.loads(text)
    return {name: float("inf") for name in data} if isinstance(data, list) else dict(data)
