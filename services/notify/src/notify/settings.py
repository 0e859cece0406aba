from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lienthong.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    http_port: int = Field(8083, ge=1, le=65535)
