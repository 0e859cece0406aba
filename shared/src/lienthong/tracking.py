"""The tracking secret printed on a citizen's receipt. Dossier codes are sequential (`<unit>-<yyMMdd>-<NNNN>`), so a
code alone could be walked; public tracking also needs this secret, an HMAC of the code under a key intake, notify
and stats share (`TRACKING_KEY`): no new field in any event, and nothing to store."""

from __future__ import annotations

import base64
import hashlib
import hmac

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_KEY = "lienthong-dev-tracking-key"


class TrackingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKING_", extra="ignore")

    key: SecretStr = Field(SecretStr(DEV_KEY), description="Shared by intake, notify and stats; set it in "
                           "production (changing it invalidates every printed receipt's secret)")

    def secret(self, code: str) -> str:
        """Ten characters of base32 (50 bits): easy to read out from a receipt, impractical to guess."""
        mac = hmac.new(self.key.get_secret_value().encode(), code.encode(), hashlib.sha256).digest()
        return base64.b32encode(mac).decode()[:10]

    def matches(self, code: str, secret: str | None) -> bool:
        return secret is not None and hmac.compare_digest(self.secret(code), secret.strip().upper())
