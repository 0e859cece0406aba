from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from lienthong.settings import CatalogueReaderSettings


class NotifySettings(CatalogueReaderSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    http_port: int = Field(8083, ge=1, le=65535)
    group_id: str = Field("notify", description="Consumer group of the lifecycle and retry subscribers")
    start_from: str = Field("earliest", description="Where a new consumer group starts: earliest or latest")

    # Channels
    smtp_host: str = Field("127.0.0.1", description="SMTP relay host")
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS")
    mail_from: str = Field("Liên Thông Thanh Hóa <khongtraloi@thanhhoa.gov.vn>", description="From header")
    unit_email: str = Field("{code}@thanhhoa.gov.vn", description="A unit's official mailbox; {code} is lower-case")
    sms_gateway_url: str = Field("http://127.0.0.1:9090/v1/sms", description="HTTP SMS gateway endpoint")
    sms_gateway_token: SecretStr = Field(SecretStr(""), description="Bearer token of the SMS gateway")
    tracking_url: str = Field("https://dichvucong.thanhhoa.gov.vn/tra-cuu/{code}?secret={secret}",
                              description="Public tracking link ({code}, and {secret} from the receipt)")
    send_timeout_s: float = Field(10.0, gt=0, description="Per-attempt timeout of every channel")
    secrets_key: SecretStr = Field(SecretStr("lienthong-dev-secrets-key"), description="Seals webhook secrets at "
                                   "rest (AES-GCM); set it in production, and keep it")
    allow_http_webhooks: bool = Field(
        False, description="Accept http:// webhook URLs (tests, closed networks); otherwise only https://"
    )
    allow_private_webhooks: bool = Field(
        False, description="Let webhooks reach loopback and private addresses (tests with local receivers only); "
        "otherwise only public addresses, checked at send time"
    )

    templates_dir: Path | None = Field(
        None, description="Templates here override the packaged ones of the same name (the province edits letters "
        "without a release)"
    )

    concurrency: int = Field(8, ge=1, le=256, description="Dossiers (and due retries) handled at once")

    # Delivery policy
    max_attempts: int = Field(5, ge=1, le=100, description="Attempts per notification before notification.failed")
    backoff_base_s: float = Field(2.0, gt=0, description="First retry delay; doubles per attempt, with jitter")
    backoff_max_s: float = Field(600.0, gt=0)
    retry_after_max_s: float = Field(3600.0, gt=0, description="Longest Retry-After we honour")
    retry_hold_max_s: float = Field(
        5.0, gt=0, description="The retry consumer waits this long at most for a record's not-before; later "
        "records go back to the end of the retry topic"
    )
    lease_s: float = Field(60.0, gt=0, description="How long an attempt owns a delivery before another may take it")
    disable_after_failures: int = Field(
        3, ge=1, description="Failed deliveries in a row after which a webhook subscription is switched off"
    )
    apology_working_days: int = Field(
        3, ge=1, description="New expected date in an apology letter when no later step date is known"
    )
    subscriptions_refresh_s: float = Field(5.0, gt=0, description="How often subscriptions are re-read")
