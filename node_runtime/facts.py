"""What this machine is and has free, as the heartbeat reports it."""

from __future__ import annotations

import os
import platform
import shutil
import socket
from pathlib import Path

from node_runtime import __version__
from wire.contract import NodeFacts, Resources


def _meminfo(field: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def total_memory() -> int:
    return _meminfo("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gpu() -> str | None:
    # Only what the local system exposes; nothing is probed over the network.
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir():
        names = sorted(p.name for p in nvidia.iterdir())
        return f"nvidia x{len(names)}" if names else None
    return None


def gather(data_dir: Path, *, api_url: str | None, memory_bytes: int | None) -> NodeFacts:
    data_dir.mkdir(parents=True, exist_ok=True)
    return NodeFacts(
        hostname=socket.gethostname(),
        os=f"{platform.system()} {platform.release()}",
        arch=platform.machine(),
        cpu_cores=os.cpu_count() or 0,
        memory_bytes=memory_bytes or total_memory(),
        disk_free_bytes=shutil.disk_usage(data_dir).free,
        gpu=_gpu(),
        runtime_version=__version__,
        api_url=api_url,
    )


def resources(data_dir: Path, *, loaded_models: int) -> Resources:
    return Resources(
        memory_available_bytes=_meminfo("MemAvailable"),
        disk_free_bytes=shutil.disk_usage(data_dir).free,
        loaded_models=loaded_models,
    )
