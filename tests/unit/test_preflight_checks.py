"""run_preflight on machines described by a static device list: no driver, enough / too little free memory,
another process holding memory, several GPUs behind CUDA_VISIBLE_DEVICES, a full disk, a missing trainer."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from zlt.core.errors import BadInputError
from zlt.preflight import run_preflight
from zlt.preflight.gpu import GpuInfo, StaticProbe
from zlt.preflight.host import DiskUsage
from zlt.preflight.report import Check, PreflightReport, render_checks, render_explain
from zlt.spec import load_spec_data

GIB = 1 << 30
ROOMY_RAM = SimpleNamespace(available=120 * GIB, total=128 * GIB)


def roomy_disk(path: Path) -> DiskUsage:
    return DiskUsage(2000 * GIB, 100 * GIB, 1900 * GIB)


def full_disk(path: Path) -> DiskUsage:
    return DiskUsage(500 * GIB, int(499.9 * GIB), int(0.1 * GIB))


def card(index: int, name: str, total: float, free: float | None = None, procs: list[dict] | None = None) -> GpuInfo:
    return GpuInfo(index, name, total, total - 0.4 if free is None else free, (8, 9), procs or [], True,
                   uuid=f"GPU-{index}")


def spec(tmp_path: Path, **sets):
    return load_spec_data({"dataset": {"path": str(tmp_path / "data")}},
                          sets=[f"{k}={v}" for k, v in sets.items()]).spec


def run(s, probe=None, **kw):
    kw.setdefault("check_data", False)
    kw.setdefault("check_python", False)
    kw.setdefault("disk_usage", roomy_disk)
    kw.setdefault("memory", ROOMY_RAM)
    return run_preflight(s, probe=probe, **kw)


def by_name(report, name):
    return [c for c in report.checks if c.name == name]


def test_no_driver_is_a_clear_failure(tmp_path: Path):
    r = run(spec(tmp_path), StaticProbe(unavailable="NVML cannot start: NVML Shared Library Not Found"))
    gpu = by_name(r, "gpu")[0]
    assert gpu.status == "fail" and "Shared Library Not Found" in gpu.message and "--assume-gpu" in gpu.fix
    assert by_name(r, "vram")[0].status == "warn" and "no GPU to hold it against" in by_name(r, "vram")[0].message
    assert not r.ok and r.exit_code == 3
    assert r.estimate is not None and r.profile == "24gb"  # still planned, from job.resources.min_vram_gb


def test_one_gpu_with_enough_free_memory(tmp_path: Path):
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), StaticProbe([card(0, "NVIDIA GeForce RTX 4090", 24)]))
    vram = by_name(r, "vram")[0]
    assert vram.status == "pass" and r.profile == "24gb"
    assert f"{r.estimate.total_gb:.1f} GiB of 23.6 GiB free" in vram.message
    assert by_name(r, "gpu")[0].status == "pass"


def test_one_gpu_with_too_little_memory_names_levers_and_a_profile(tmp_path: Path):
    s = spec(tmp_path, **{"training.backend": "ai-toolkit", "model.lora.rank": 64, "model.base.quantize": "none",
                          "job.resources.min_vram_gb": 12})
    r = run(s, StaticProbe([card(0, "NVIDIA GeForce RTX 4070 Ti SUPER", 16)]))
    vram = by_name(r, "vram")[0]
    assert vram.status == "fail" and r.profile == "16gb"
    assert "estimated peak" in vram.message and "16gb" in vram.message
    assert vram.fix.startswith("apply --set model.base.quantize=float8")
    # A bigger profile is no fix for this 16 GB card: it says what card the spec needs as written (issue 13 item 6).
    assert "a GPU with 32 GiB runs it as written (profile 32gb)" in vram.fix and "--profile 32gb" not in vram.fix
    assert [lv["name"] for lv in vram.details["levers"]][0] == "quantize"
    assert r.exit_code == 3


def test_a_resolution_over_the_profile_cap_is_fixed_by_the_cap_not_a_bigger_profile(tmp_path: Path):
    s = spec(tmp_path, **{"training.backend": "lightning", "dataset.resolution": 1024})
    r = run(s, StaticProbe([card(0, "NVIDIA GeForce RTX 3060", 12)]))
    vram = by_name(r, "vram")[0]
    assert vram.status == "fail" and r.profile == "12gb"
    assert "--set dataset.resolution=768" in vram.fix and "--profile 24gb" not in vram.fix


def test_another_process_holding_memory(tmp_path: Path):
    busy = card(0, "NVIDIA GeForce RTX 4090", 24, free=9.0,
                procs=[{"pid": 4242, "name": "python", "used_gb": 14.6}])
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), StaticProbe([busy]))
    vram = by_name(r, "vram")[0]
    assert vram.status == "fail" and "9.0 GiB free" in vram.message
    assert vram.fix.startswith("free the GPU: stop pid 4242 (python, 14.6 GiB)")


def test_several_gpus_and_cuda_visible_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    probe = StaticProbe([card(0, "NVIDIA GeForce RTX 4090", 24, free=2.0, procs=[{"pid": 1, "name": "x", "used_gb": 21.6}]),
                         card(1, "NVIDIA A100 80GB PCIe", 80), card(2, "NVIDIA GeForce RTX 4090", 24)])
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    r = run(spec(tmp_path), probe)
    assert [g.index for g in r.gpus] == [1] and r.profile == "80gb" and by_name(r, "vram")[0].status == "pass"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), probe)
    vram = by_name(r, "vram")[0]
    assert [g.index for g in r.gpus] == [0] and vram.status == "fail"
    assert "CUDA_VISIBLE_DEVICES=2" in vram.fix
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # mixed kinds visible: CUDA's order differs from nvidia-smi's
    assert by_name(run(spec(tmp_path), probe), "cuda_device_order")[0].status == "warn"


def test_more_gpus_asked_than_visible(tmp_path: Path):
    r = run(spec(tmp_path, **{"job.resources.gpu": 2}), StaticProbe([card(0, "NVIDIA L40S", 48)]))
    gpu = by_name(r, "gpu")[0]
    assert gpu.status == "fail" and "asks for 2 GPUs, 1 visible" in gpu.message


def test_min_vram_is_enforced(tmp_path: Path):
    r = run(spec(tmp_path, **{"job.resources.min_vram_gb": 40}), StaticProbe([card(0, "NVIDIA RTX A5000", 24)]))
    check = by_name(r, "min_vram")[0]
    assert check.status == "fail" and "40 GiB" in check.message and not r.ok


def test_assumed_gpu_plans_without_looking_at_this_machine(tmp_path: Path):
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), StaticProbe(unavailable="no driver"),
            assume_gpu="RTX 4090:24")
    assert by_name(r, "gpu")[0].status == "pass" and by_name(r, "vram")[0].status == "pass"
    assert r.profile == "24gb" and r.budget_gb == 24
    small = run(spec(tmp_path, **{"training.backend": "lightning", "job.resources.min_vram_gb": 8}),
                StaticProbe(unavailable="no driver"), assume_gpu="RTX 3060:12")
    # the built-in trainer stores the base in float8 where bf16 does not fit (quantize auto): 16 GB suffices
    assert by_name(small, "vram")[0].status == "fail" and small.smallest_profile == "16gb"


def test_tiny_model_needs_no_gpu(tmp_path: Path):
    s = spec(tmp_path, **{"model.base.name": "zlt/tiny-zimage", "dataset.resolution": 64,
                          "job.resources.min_vram_gb": "null"})
    r = run(s, StaticProbe(unavailable="no driver"))
    assert r.profile == "cpu"
    assert by_name(r, "gpu")[0].status == "pass" and by_name(r, "vram")[0].status == "pass"
    assert by_name(r, "model")[0].status == "pass"
    trainer = by_name(r, "trainer")[0]
    assert trainer.status == ("pass" if trainer.details["ok"] else "fail")


def test_full_disk_fails(tmp_path: Path):
    r = run(spec(tmp_path), StaticProbe([card(0, "NVIDIA H100 80GB HBM3", 80)]), disk_usage=full_disk)
    disk = by_name(r, "disk")
    assert disk and all(d.status == "fail" for d in disk) and not r.ok
    assert "free" in disk[0].fix and disk[0].details["need_gb"] > 0.1


def test_missing_trainer_checkout(tmp_path: Path):
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), StaticProbe([card(0, "NVIDIA L40S", 48)]))
    trainer = by_name(r, "trainer")[0]
    assert trainer.status == "fail" and "no ai-toolkit checkout configured" in trainer.message
    assert "--ai-toolkit PATH" in trainer.fix and trainer.hint == trainer.fix


@pytest.mark.slow
def test_builtin_trainer_with_a_cpu_only_torch_on_a_gpu_machine(tmp_path: Path):
    """zlt's own Python is asked (in a child process) whether torch sees CUDA; this venv's torch is CPU-only."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs the [train] extra")
    r = run(spec(tmp_path), StaticProbe([card(0, "NVIDIA L40S", 48)]), check_python=True)
    trainer = by_name(r, "trainer")[0]
    if trainer.details["cuda"]:
        assert trainer.status == "pass"  # a CUDA build: nothing to report
    else:
        assert trainer.status == "fail" and "cannot use CUDA" in trainer.message and "CUDA build" in trainer.fix


def test_broken_user_config_is_reported(tmp_path: Path, zlt_home: Path):
    (zlt_home / "config.toml").write_text("ai_toolkit = [\n")
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), StaticProbe([card(0, "NVIDIA L40S", 48)]))
    assert by_name(r, "config")[0].status == "fail"


def test_model_missing_with_hf_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    r = run(spec(tmp_path), StaticProbe([card(0, "NVIDIA L40S", 48)]))
    models = by_name(r, "model")
    assert models[0].status == "fail" and "HF_HUB_OFFLINE=1" in models[0].message


def test_dataset_errors_block(tmp_path: Path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 64), (i * 60, 10, 10)).save(data / f"ok{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    probe = StaticProbe([card(0, "NVIDIA L40S", 48)])
    # by default an unreadable image is skipped: a warning naming it, and the hint checks with the job's spec
    r = run(spec(tmp_path), probe, check_data=True, spec_path=tmp_path / "my spec.yaml")
    ds = by_name(r, "dataset")[0]
    assert ds.status == "warn" and "3 usable images" in ds.message and "skips 1 unreadable image(s): broken.png" in ds.message
    assert f"zlt dataset check {data} --spec '{tmp_path}/my spec.yaml' lists them all" in ds.fix
    assert "dataset" not in {c.name for c in r.failed()}
    # dataset.strict: it blocks, and a failed dataset is bad input (exit 2), not an unready machine (3)
    r = run(spec(tmp_path, **{"dataset.strict": "true"}), probe, check_data=True)
    ds = by_name(r, "dataset")[0]
    assert ds.status == "fail" and "dataset.strict: 1 image(s) cannot be read: broken.png" in ds.message
    assert "--spec SPEC" in ds.fix
    assert PreflightReport([ds], "24gb", None).exit_code == 2
    from zlt.flows.training_helpers import preflight_error

    refused = preflight_error(PreflightReport([ds], "24gb", None))  # what `zlt train` / a job raise: exit 2, not 3
    assert isinstance(refused, BadInputError) and refused.exit_code == 2 and "broken.png" in refused.message
    assert PreflightReport([ds, Check("gpu", "fail", "no GPU")], "24gb", None).exit_code == 3


def test_unknown_backend_and_profile_are_bad_input(tmp_path: Path):
    with pytest.raises(BadInputError):
        run(spec(tmp_path), StaticProbe([]), backend="kohya")
    with pytest.raises(BadInputError):
        run(spec(tmp_path), StaticProbe([]), profile="7gb")
    with pytest.raises(BadInputError):
        run(spec(tmp_path), StaticProbe([]), assume_gpu="RTX 4090")


def test_report_serialises_and_renders(tmp_path: Path):
    r = run(spec(tmp_path, **{"training.backend": "ai-toolkit"}), StaticProbe([card(0, "NVIDIA GeForce RTX 4090", 24)]))
    d = json.loads(json.dumps(r.to_dict()))
    assert d["exit_code"] == r.exit_code and d["profile"] == "24gb" and d["estimate"]["total_gb"] > 5
    assert {c["name"] for c in d["checks"]} >= {"gpu", "vram", "ram", "disk", "cpu", "trainer", "model"}
    text = "\n".join(render_checks(r))
    assert "vram" in text and ("not ready" in text or "ready" in text)
    explain = "\n".join(render_explain(r))
    assert "transformer weights" in explain and "total" in explain and "budget 23.60 GiB" in explain
