"""Learning-rate schedule and optimizer choice."""

from __future__ import annotations

import math

import pytest

from zlt.trainer.config import OptimizerConfig, TrainingConfig
from zlt.trainer.optim import lr_factor


def test_warmup_then_constant():
    f = [lr_factor(i, 4, 20, "constant") for i in range(20)]
    # transformers.optimization._get_constant_schedule_with_warmup_lr_lambda: step / max(1, num_warmup_steps)
    assert f[:4] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert all(x == 1.0 for x in f[4:])


def test_cosine_and_linear_decay_to_zero_without_wasting_steps():
    cos = [lr_factor(i, 0, 10, "cosine") for i in range(10)]
    assert cos[0] == 1.0 and all(a > b for a, b in zip(cos, cos[1:], strict=False)) and cos[-1] > 0
    assert lr_factor(10, 0, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(5, 0, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(7, 2, 12, "linear") == pytest.approx(0.5)
    with pytest.raises(ValueError):
        lr_factor(3, 0, 10, "exponential")


torch = pytest.importorskip("torch")


def _cfg(**opt) -> TrainingConfig:
    return TrainingConfig(max_steps=10, warmup_steps=2, learning_rate=0.1, scheduler="cosine",
                          optimizer=OptimizerConfig(**opt))


def test_8bit_falls_back_with_a_warning_on_cpu():
    from zlt.trainer.optim import build_optimizer

    warnings: list[str] = []
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], _cfg(use_8bit=True), "cpu", warnings.append)
    assert type(opt) is torch.optim.AdamW
    assert len(warnings) == 1 and "needs CUDA" in warnings[0]
    warnings.clear()
    build_optimizer([torch.nn.Parameter(torch.zeros(3))], _cfg(use_8bit=False), "cpu", warnings.append)
    assert warnings == []


@pytest.mark.parametrize("kind,cls_name", [("adafactor", "Adafactor"), ("prodigy", "Prodigy")])
def test_other_optimizers(kind, cls_name):
    from zlt.trainer.optim import build_optimizer

    if kind == "prodigy":
        pytest.importorskip("prodigyopt")
    p = torch.nn.Parameter(torch.ones(4))
    opt = build_optimizer([p], _cfg(type=kind), "cpu", lambda m: None)
    assert type(opt).__name__ == cls_name
    p.grad = torch.ones(4)
    opt.step()
    assert not torch.equal(p.detach(), torch.ones(4))


def test_scheduler_follows_lr_factor():
    from zlt.trainer.optim import build_optimizer, build_scheduler

    cfg = _cfg()
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg, "cpu", lambda m: None)
    sched = build_scheduler(opt, cfg)
    used = []
    for _ in range(10):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx([0.1 * lr_factor(i, 2, 10, "cosine") for i in range(10)])
