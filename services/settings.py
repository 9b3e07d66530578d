"""Configuration, read once from the environment (``HANGAR_*``) and passed in.

Each group has its own prefix so a deployment can set, say, only the S3 group
and keep the embedded defaults for everything else.
"""

from __future__ import annotations

from pathlib import Path

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


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_REGISTRY_")

    # Each S3 part is buffered in memory once; 16 MiB keeps memory flat and parts
    # well above S3's 5 MiB minimum.
    part_size: int = 16 * 1024 * 1024
    # A GGUF header (metadata + tensor index) must be complete within this prefix.
    max_header_bytes: int = 256 * 1024 * 1024
    download_chunk_size: int = 1024 * 1024
    # Upload sessions untouched for this long are aborted by the cleanup job.
    stale_upload_hours: int = 24


class FleetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_FLEET_")

    # Nodes are told to heartbeat this often; a node silent for offline_after_seconds
    # is marked offline by the ``offline`` job (a few missed beats, not one).
    heartbeat_seconds: float = 15
    offline_after_seconds: int = 90


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_")

    operator_token: SecretStr = SecretStr("")
    data_dir: Path = Path(".hangar")
    host: str = "127.0.0.1"
    port: int = 8080
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
