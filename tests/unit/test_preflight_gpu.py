"""The NVML wrapper: a static device list stands in for machines this box is not; the real binding runs too."""

from __future__ import annotations

import pytest

from zlt.core.errors import BadInputError
from zlt.preflight.gpu import (
    GpuInfo,
    GpuUnavailable,
    NvmlProbe,
    StaticProbe,
    detect_gpus,
    parse_assume_gpu,
    scan_gpus,
)


def gpu(index: int, name: str = "NVIDIA RTX 4090", total: float = 24.0, free: float | None = None,
        procs: list[dict] | None = None, cc: tuple[int, int] = (8, 9)) -> GpuInfo:
    return GpuInfo(index, name, total, total if free is None else free, cc, procs or [], cc[0] >= 8,
                   uuid=f"GPU-{index:04d}aaaa-bbbb")


FOUR = StaticProbe([gpu(0), gpu(1, "NVIDIA A100 80GB PCIe", 80.0), gpu(2, total=16.0), gpu(3)])


def test_no_driver_gives_no_gpus_and_a_reason():
    probe = StaticProbe(unavailable="NVML cannot start: NVML Shared Library Not Found")
    assert detect_gpus(probe, visible=None) == []
    scan = scan_gpus(probe, visible=None)
    assert scan.devices == [] and "Shared Library" in scan.reason


def test_all_devices_without_cuda_visible_devices():
    assert [g.index for g in detect_gpus(FOUR, visible=None)] == [0, 1, 2, 3]


def test_cuda_visible_devices_selects_and_orders():
    assert [g.index for g in detect_gpus(FOUR, visible="2,0")] == [2, 0]
    assert [g.name for g in detect_gpus(FOUR, visible="1")] == ["NVIDIA A100 80GB PCIe"]


def test_cuda_visible_devices_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert [g.index for g in detect_gpus(FOUR)] == [3]


def test_cuda_visible_devices_uuid_prefix():
    assert [g.index for g in detect_gpus(FOUR, visible="GPU-0001")] == [1]


def test_cuda_visible_devices_stops_at_the_first_bad_entry():
    scan = scan_gpus(FOUR, visible="1,7,0")
    assert [g.index for g in scan.devices] == [1]
    assert scan.unknown_ids == ["7"]


def test_cuda_visible_devices_empty_hides_everything():
    scan = scan_gpus(FOUR, visible="")
    assert scan.devices == [] and "hides every GPU" in scan.reason
    assert scan_gpus(FOUR, visible="-1").devices == []


def test_static_probe_returns_copies():
    probe = StaticProbe([gpu(0, procs=[{"pid": 7, "name": "python", "used_gb": 3.0}])])
    first = probe.devices()
    first[0].processes.append({"pid": 8})
    assert len(probe.devices()[0].processes) == 1
    assert first[0].used_by_others_gb == 3.0


@pytest.mark.parametrize("text,name,vram,bf16", [
    ("RTX 4090:24", "RTX 4090", 24.0, True),
    ("NVIDIA H100 80GB HBM3:80", "NVIDIA H100 80GB HBM3", 80.0, True),
    ("Tesla V100:32", "Tesla V100", 32.0, False),
    ("RTX 2080 Ti:11", "RTX 2080 Ti", 11.0, False),
    ("Mystery:16:7.5", "Mystery", 16.0, False),
    (" L4 : 24 : 8.9 ", "L4", 24.0, True),
])
def test_parse_assume_gpu(text: str, name: str, vram: float, bf16: bool):
    g = parse_assume_gpu(text)
    assert (g.name, g.total_gb, g.free_gb, g.bf16, g.assumed) == (name, vram, vram, bf16, True)


@pytest.mark.parametrize("text", ["RTX 4090", "RTX 4090:lots", ":24", "RTX 4090:0", "A:24:x.y", "a:1:2:3"])
def test_parse_assume_gpu_rejects_bad_text(text: str):
    with pytest.raises(BadInputError) as e:
        parse_assume_gpu(text)
    assert "--assume-gpu" in e.value.message and "RTX 4090:24" in e.value.hint


def test_the_real_nvml_binding_answers_or_says_why():
    """On a GPU machine this lists real devices; elsewhere it must fail with a reason, never crash."""
    try:
        devices = NvmlProbe().devices()
    except GpuUnavailable as e:
        assert e.reason
        assert detect_gpus() == []
        return
    assert devices, "NVML started but listed no device"
    for d in devices:
        assert d.total_gb > 0 and 0 <= d.free_gb <= d.total_gb + 1e-6 and d.name
    assert NvmlProbe().driver_version()
