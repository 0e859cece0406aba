from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lienthong.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")

    http_port: int = Field(8082, ge=1, le=65535)
