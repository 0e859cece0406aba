from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lienthong.settings import ServiceSettings


class StatsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="STATS_", extra="ignore")

    http_port: int = Field(8084, ge=1, le=65535)
    group_id: str = Field("stats-v3", description="Kafka consumer group (v3: grouped, packed rows; a new group "
                          "replays the log into the v3 collections)")
    dashboard_sample_s: float = Field(5.0, gt=0, description="How often the dashboard samples topic offsets and lag")
