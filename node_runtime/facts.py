"""What this machine is and has free, as the heartbeat reports it."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`` (MiB)."""
    gpus = []
    for line in text.strip().splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append(Gpu(name.strip(), int(float(mib.strip()) * 1024 * 1024)))
        except ValueError:
            continue
    return gpus


def gpus() -> list[Gpu]:
    # Only what the local system exposes; nothing is probed over the network.
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def describe(found: list[Gpu]) -> str | None:
    """What the heartbeat reports, e.g. ``NVIDIA A10 (22.5 GB) x2``."""
    if not found:
        return None
    first = found[0]
    return f"{first.name} ({first.memory_bytes / 1e9:.1f} GB) x{len(found)}"


def fit_budget(memory_bytes: int, found: list[Gpu], *, gpu_layers: int) -> int:
    """The memory a model may use: RAM, plus VRAM when layers are offloaded to GPUs."""
    return memory_bytes + (sum(g.memory_bytes for g in found) if gpu_layers else 0)


def gather(
    data_dir: Path,
    *,
    api_url: str | None,
    memory_bytes: int | None,
    found_gpus: list[Gpu] | None = None,
) -> NodeFacts:
    data_dir.mkdir(parents=True, exist_ok=True)
    return NodeFacts(
        hostname=socket.gethostname(),
        os=f"{platform.system()} {platform.release()}",
        arch=platform.machine(),
        cpu_cores=os.cpu_count() or 0,
        memory_bytes=memory_bytes or total_memory(),
        disk_free_bytes=shutil.disk_usage(data_dir).free,
        gpu=describe(found_gpus or []),
        runtime_version=__version__,
        api_url=api_url,
    )


def resources(data_dir: Path, *, loaded_models: int) -> Resources:
    return Resources(
        memory_available_bytes=_meminfo("MemAvailable"),
        disk_free_bytes=shutil.disk_usage(data_dir).free,
        loaded_models=loaded_models,
    )
