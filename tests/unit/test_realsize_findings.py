"""What bench/realsize.py found at real size, kept on small models (issue 27). The trainer's findings live beside
their code: tests/unit/test_trainer_accel.py (float8 with bf16 compute and no autocast; float8 releasing the mapped
weight files) and tests/unit/test_trainer_config.py (a real base stays bf16 on the CPU)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_generation_on_a_cpu_host_plans_bf16_for_a_real_model(monkeypatch):
    """In fp32 the real-size pipeline needs ~41 GB of host memory (6.15 B + 4.02 B parameters x 4 B): zlt generate
    could never load it on a CPU host. bf16 halves it; the tiny model keeps fp32."""
    from zlt.infer.pipeline import plan_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    real = plan_device({"name": "/models/z-image", "source": "local"})
    assert (real.device, real.dtype, real.offload) == ("cpu", "bf16", False)
    assert plan_device({"name": "zlt/tiny-zimage", "source": "builtin"}).dtype == "fp32"
