"""GPU facts and the fit budget, from injected nvidia-smi output (no GPU needed)."""

from __future__ import annotations

from node_runtime import facts
from node_runtime.runtime import gpu_layers
from node_runtime.settings import NodeSettings

SMI = "NVIDIA A10, 23028\nNVIDIA A10, 23028\n"


def test_nvidia_smi_output_becomes_gpus_and_the_reported_fact():
    found = facts.parse_nvidia_smi(SMI)
    assert found == [facts.Gpu("NVIDIA A10", 23028 * 1024 * 1024)] * 2
    assert facts.describe(found) == "NVIDIA A10 (24.1 GB) x2"
    assert facts.describe([]) is None
    assert facts.parse_nvidia_smi("garbage\n") == []


def test_the_fit_budget_counts_vram_only_when_layers_are_offloaded(tmp_path):
    found = facts.parse_nvidia_smi(SMI)
    ram = 16 * 10**9
    assert facts.fit_budget(ram, found, gpu_layers=-1) == ram + 2 * 23028 * 1024 * 1024
    assert facts.fit_budget(ram, found, gpu_layers=0) == ram
    assert facts.fit_budget(ram, [], gpu_layers=-1) == ram
    node = facts.gather(tmp_path, api_url=None, memory_bytes=ram, found_gpus=found)
    assert node.gpu == "NVIDIA A10 (24.1 GB) x2" and node.memory_bytes == ram


def test_gpu_layers_default_follows_the_llama_cpp_build():
    import llama_cpp

    expected = -1 if llama_cpp.llama_supports_gpu_offload() else 0
    assert gpu_layers(NodeSettings()) == expected
    assert gpu_layers(NodeSettings(gpu_layers=12)) == 12
