from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lienthong.settings import ServiceSettings


class RoutingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTING_", extra="ignore")

    http_port: int = Field(8082, ge=1, le=65535)
    tick_interval_s: float = Field(60.0, gt=0, description="How often due-soon/overdue are checked")
    group_id: str = Field("routing", description="Kafka consumer group")
    start_from: str = Field("earliest", pattern="^(earliest|latest)$",
                            description="Where a new consumer group starts (earliest: nothing is missed)")
    outbox_clear_interval_s: float = Field(1.0, gt=0, description="How often the dossiers' heads and the "
                                           "published outboxes are written behind, in bulk")
    max_batch: int = Field(500, ge=1, le=10_000, description="Most records of a partition routed together (1: one "
                           "at a time, for comparisons)")
