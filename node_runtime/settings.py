"""Node runtime configuration (``HANGAR_NODE_*``), read once and passed in."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from node_runtime import DEFAULT_DATA_DIR


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_NODE_")

    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = 8000
    # How peers of the same tenant reach this node; default http://<hostname>:<port>.
    advertise_url: str | None = None
    # When set, the local API wants "Authorization: Bearer <api_key>".
    api_key: SecretStr = SecretStr("")

    # Air-gapped (default): connect to the control plane and same-tenant peers only.
    air_gapped: bool = True
    # Last fallback when not air-gapped: an OpenAI-compatible base URL (…/v1).
    upstream_url: str = ""
    upstream_api_key: SecretStr = SecretStr("")

    # None: use the interval the control plane hands out.
    heartbeat_seconds: float | None = None
    peers_seconds: float = 30
    retry_seconds: float = 5
    # Heartbeats kept on disk while the control plane is unreachable (oldest dropped).
    outbox_max: int = 10_000

    keep_alive_seconds: float = 300
    max_loaded_models: int = 2
    # Requests that may wait per model behind the one running; more get 503.
    queue_size: int = 8
    n_ctx: int = 2048
    n_threads: int | None = None
    # llama.cpp's repacked weight layouts (AMX, AVX-512 tiles). Some virtual machines
    # advertise AMX without enabling it and the process dies on SIGILL: turn it off there.
    weight_repacking: bool = True
    # Layers offloaded to GPUs; None: all of them when llama.cpp was built with a GPU
    # backend, else 0 (CPU only). -1 means all.
    gpu_layers: int | None = None
    # Memory the fit check compares GGUF estimates with; None: this machine's RAM.
    memory_bytes: int | None = None
    verify_on_start: bool = True
    download_chunk_bytes: int = 1024 * 1024
