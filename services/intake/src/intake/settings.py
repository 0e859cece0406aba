from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lienthong.settings import CatalogueReaderSettings


class IntakeSettings(CatalogueReaderSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    http_port: int = Field(8081, ge=1, le=65535)
    group_id: str = Field("intake", description="Kafka consumer group of intake.submissions (its purge deletes "
                          "only what this group has taken in)")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="Larger request bodies get 413")
    rate_per_unit_per_s: float = Field(50.0, gt=0, description="Sustained submissions per receiving unit per second")
    rate_burst: int = Field(200, ge=1, description="Submissions a unit may send at once before 429")
    max_group: int = Field(256, ge=1, le=10_000, description="Most filings stored in one group commit (1: each "
                           "on its own, as before; for comparisons)")
    publish_timeout_s: float = Field(5.0, gt=0, description="How long a submit waits for Kafka's acknowledgement")
    outbox_interval_s: float = Field(2.0, gt=0, description="How often the relay looks for unpublished dossiers")
    outbox_grace_s: float = Field(15.0, gt=0, description="Age before the relay takes over a dossier's publication")
    purge_interval_s: float = Field(60.0, gt=0, description="How often submissions taken in from Kafka are deleted "
                                    "from intake.submissions (they hold personal data in clear)")
