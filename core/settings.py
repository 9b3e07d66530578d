"""Configuration, read once from the environment (``HANGAR_*``) and passed in.

Each group has its own prefix so a deployment can set, say, only the S3 group
and keep the embedded defaults for everything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_DATABASE_")

    # Empty means "start the embedded Postgres" (``hangar up`` only).
    url: str = ""
    pool_size: int = 10
    echo: bool = False


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_S3_")

    # Empty endpoint means "start the embedded SeaweedFS" (``hangar up`` only).
    endpoint: str = ""
    access_key: str = ""
    secret_key: SecretStr = SecretStr("")
    bucket: str = "hangar"
    region: str = "us-east-1"
    secure: bool = False
    # A stopped (not dead) store accepts connections and then says nothing: without a
    # short limit every client waits minutes. Both limits are per network operation (idle
    # time), never on a whole transfer, so large transfers that progress are unaffected.
    connect_timeout_seconds: float = 3
    timeout_seconds: float = 5


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_REGISTRY_")

    # Each S3 part is buffered in memory once; 16 MiB keeps memory flat and parts
    # well above S3's 5 MiB minimum.
    part_size: int = 16 * 1024 * 1024
    # A GGUF header (metadata + tensor index) must be complete within this prefix.
    # (Large vocabularies take ~10 MB; the prefix is held in memory while it parses.)
    max_header_bytes: int = 64 * 1024 * 1024
    download_chunk_size: int = 1024 * 1024
    # An upload body silent for this long is dropped (its committed parts kept), so a
    # stalled connection cannot hold the upload's lock and block the client's resume.
    body_idle_seconds: float = 30
    # Upload sessions untouched for this long are aborted by the cleanup job.
    stale_upload_hours: int = 24


class FleetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_FLEET_")

    # Nodes are told to heartbeat this often; a node silent for offline_after_seconds
    # is marked offline by the ``offline`` job (a few missed beats, not one).
    heartbeat_seconds: float = 15
    offline_after_seconds: int = 90
    # Past this many heartbeats a second (per API process) nodes are told to beat less
    # often, up to half of offline_after_seconds so a slowed node is never marked offline.
    heartbeats_per_second_target: float = 2000
    # A rolled-out version is unhealthy on a node once errors exceed this share of its
    # requests since the switch (at least one error).
    rollout_error_ratio: float = 0.05
    # A node a rollout moved that stays offline this long, or has not got the new version
    # ready this long after being moved, counts as unhealthy: no rollout waits for ever.
    rollout_offline_seconds: int = 600
    rollout_ready_seconds: int = 3600


class StripeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_STRIPE_")

    api_base: str = "https://api.stripe.com"
    # Empty key means Stripe is not configured: invoices stay in Hangar only.
    api_key: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    # Stripe's own libraries refuse signatures older than five minutes (replays).
    webhook_tolerance_seconds: int = 300
    timeout_seconds: float = 30
    # Network errors and 5xx are retried this many times, backing off exponentially.
    max_retries: int = 3
    backoff_seconds: float = 0.5


class BillingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_BILLING_")

    # A period is finalized this many days after it ends, so late usage still counts.
    grace_days: int = 1
    trial_days: int = 30
    # Days from finalization to the due date for plans without a contract.
    payment_terms_days: int = 14
    invoice_prefix: str = "HGR"
    # The daily device count re-counts this many past days, so a missed run heals.
    device_lookback_days: int = 3
    # Period close also looks this many months back, so a scheduler outage heals.
    close_lookback_months: int = 2
    # Tenants rated per transaction by period close (bounded memory and lock time).
    close_batch_size: int = 500
    # Largest usage import batch accepted in one request.
    import_max_events: int = 100_000


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_METRICS_")

    # Who may read the API's Prometheus metrics (route names, request rates, timings):
    # "token": GET /metrics with 'Authorization: Bearer <token>' (HANGAR_METRICS_TOKEN,
    #          else the operator token); "bind": not on the API port at all, but on their
    #          own listener at ``bind`` (keep it on a private interface); "off": nowhere.
    mode: Literal["token", "bind", "off"] = "token"
    token: SecretStr = SecretStr("")
    bind: str = "127.0.0.1:9464"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_")

    operator_token: SecretStr = SecretStr("")
    data_dir: Path = Path(".hangar")
    # This installation's Ed25519 key: signs bundles and usage statements. Made on first
    # use; empty means DATA_DIR/installation-key.pem. Keep it with the backups.
    installation_key: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @property
    def installation_key_path(self) -> Path:
        return self.installation_key or self.data_dir / "installation-key.pem"
