"""bench/gpu_trainer.py keeps working on the CPU at tiny size (its GPU run is the same code at real size)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bench():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_trainer

        yield gpu_trainer
    finally:
        sys.path.remove(str(REPO / "bench"))


@pytest.mark.slow
def test_ci_mode_prints_the_whole_table(bench, tmp_path: Path, capsys):
    assert bench.main(["--ci", "--steps", "1", "--warmup", "0", "--resolutions", "32", "--json",
                       str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert "tiny (CI) Z-Image transformer on CPU" in out and "no GPU" not in out
    rows = json.loads((tmp_path / "rows.json").read_text())
    combos = {(r["base"], r["compile"], r["gradient_checkpointing"]) for r in rows}
    # {fp32, float8} x {compile on, off} x {checkpointing on, off}, less float8 + compile (never compiled)
    assert len(rows) == 6 and len(combos) == 6
    assert not any(r["base"] == "float8" and r["compile"] for r in rows) and "skipped" in out
    assert all(r["it_s"] > 0 and r["peak_gib"] is None and r["mfu"] is None for r in rows)  # no GPU figure on a CPU


def test_flop_formula_counts_linear_and_attention_work(bench):
    from diffusers import ZImageTransformer2DModel

    from zlt.trainer.tiny import TRANSFORMER_CONFIG

    model = ZImageTransformer2DModel(**TRANSFORMER_CONFIG)
    img, cap = 4, 32

    def linear(block) -> int:
        return sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))

    dim = model.config.dim
    work = lambda blocks, t: sum(4 * linear(b) * t + 12 * t * t * dim for b in blocks)  # noqa: E731
    expected = work(model.layers, img + cap) + work(model.noise_refiner, img) + work(model.context_refiner, cap)
    assert linear(model.context_refiner[0]) < linear(model.layers[0])  # the context refiners have no adaLN
    assert bench.block_flops(model, img, cap) == pytest.approx(expected)
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and bench.peak_tflops("Some GPU") is None
