from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lienthong.settings import CatalogueReaderSettings


class StatsSettings(CatalogueReaderSettings):
    model_config = SettingsConfigDict(env_prefix="STATS_", extra="ignore")

    http_port: int = Field(8084, ge=1, le=65535)
    group_id: str = Field("stats-v5", description="Kafka consumer group (v5: the open dossiers too; a new group "
                          "replays the log into the v5 collections)")
    window_fresh_s: float = Field(0.25, gt=0, description="A window of fetched events still small at this age (the "
                                  "steady stream) is projected then: figures stay fresh")
    window_bulk_events: int = Field(2_000, ge=1, description="A window this large by then is a burst: it waits for "
                                    "the stream to pause, so the burst is written once")
    window_idle_s: float = Field(0.5, gt=0, description="A burst's window is projected once no fetch has brought "
                                 "anything for this long")
    window_settle_s: float = Field(0.1, gt=0, description="... or once no fetch has brought anything for this long "
                                   "and the broker holds nothing past the window (asked then)")
    window_max_s: float = Field(3.0, gt=0, description="... or once its oldest event has waited this long")
    window_dossiers_s: float = Field(3.0, ge=0, description="A steady stream's dossier documents are written "
                                     "behind, several windows' together, once the oldest has waited this long (0: "
                                     "with their rows). The figures are fresh meanwhile; committed offsets trail "
                                     "them by as much")
    window_max_events: int = Field(100_000, ge=1, description="Any window is projected once it holds this many "
                                   "events (memory)")
    cached_dossiers: int = Field(2_000, ge=0, description="Dossier documents kept in memory per partition between "
                                 "windows (a dossier's next events mostly come within seconds); 0 reads each time")
    index_table: str | None = Field(None, description="The service index's scoring table (JSON, as "
                                    "stats/data/index-766.json); default: Decision 766 as we read it")
    dashboard_sample_s: float = Field(5.0, gt=0, description="How often the dashboard samples topic offsets and lag")
