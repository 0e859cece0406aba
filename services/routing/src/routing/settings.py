from __future__ import annotations

from pydantic import Field, model_validator
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
    cached_dossiers: int = Field(10_000, ge=0, description="Dossiers kept in memory as last stored (0: each input "
                                 "reads its dossier)")
    cache_ttl_s: float = Field(30.0, gt=0, description="How long a dossier kept in memory is used without reading "
                               "it again")
    keep_superseded_s: float = Field(120.0, ge=0, description="How long a superseded version is kept: longer than "
                                     "any instance's cache_ttl_s plus a batch (see routing.store)")
    max_batch: int = Field(500, ge=1, le=10_000, description="Most records of a partition routed together (1: one "
                           "at a time, for comparisons)")

    @model_validator(mode="after")
    def _versions_outlive_the_cache(self) -> RoutingSettings:
        if self.cached_dossiers and self.keep_superseded_s <= self.cache_ttl_s:
            raise ValueError("keep_superseded_s must exceed cache_ttl_s: a version claimed from a dossier kept in "
                             "memory must find its slot taken, not freed by a delete")
        return self
