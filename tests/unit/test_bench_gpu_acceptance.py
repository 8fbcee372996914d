"""bench/gpu_acceptance.sh --dry-run prints its plan on a CPU machine; bench/realsize.py's bookkeeping (issue 27)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STAGES = ["env", "trainer", "write", "bf16", "float8", "generate"]


def test_dry_run_prints_the_plan_within_ten_minutes(tmp_path: Path):
    r = subprocess.run(["bash", str(REPO / "bench/gpu_acceptance.sh"), "--dry-run"], capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out"), "PYTHON": "python3"})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    rows = re.findall(r"^  (\w+)\s+budget\s+(\d+) s .*?  (.*)$", out, re.M)
    assert [s for s, _, _ in rows] == STAGES
    budgets = {s: int(b) for s, b, _ in rows}
    total = int(re.search(r"total budget (\d+) s", out).group(1))
    assert sum(budgets.values()) <= total <= 600  # one device-tool call: 10 minutes
    cmds = {s: c for s, _, c in rows}
    assert "gpu_trainer.py --resolutions 512,1024" in cmds["trainer"]
    for stage in ("bf16", "float8", "generate"):
        assert "realsize.py --scale real --device cuda" in cmds[stage] and f"--stages {stage}" in cmds[stage]
        assert f"--json {tmp_path / 'out'}/realsize.json" in cmds[stage]
    assert not (tmp_path / "out").exists()  # a dry run measures and writes nothing
    assert "no GPU figure is written" in out


def test_unknown_argument_is_refused():
    r = subprocess.run(["bash", str(REPO / "bench/gpu_acceptance.sh"), "--bogus"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "usage" in r.stderr


def _realsize():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import realsize

        return realsize
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_realsize_comparison_and_verdict_from_recorded_figures():
    rs = _realsize()
    gib = 1 << 30
    marks = [{"mark": "start", "rss_bytes": 1 * gib, "peak_rss_bytes": 1 * gib},
             {"mark": "cached", "rss_bytes": 1 * gib, "peak_rss_bytes": 9 * gib},
             {"mark": "model_ready", "rss_bytes": 1 * gib, "peak_rss_bytes": 9 * gib, "rss_anon_bytes": gib // 2},
             {"mark": "end", "rss_bytes": 12 * gib, "peak_rss_bytes": 13 * gib}]
    est = {"parts_gib": {"transformer": 11.46, "vae": 0.16, "lora_train_state": 0.25, "activations": 0.47},
           "text_encoder_load_gib": 7.49, "lora_bytes_per_param": 16.0, "allocated_gib": 12.34, "total_gib": 14.5}
    res = {"model": {"components": {"transformer": {"bytes": 12_310_000_000}, "text_encoder": {"bytes": 8_044_000_000},
                                    "vae": {"bytes": 167_000_000}}},
           "bf16": {"estimate": est, "trainer_memory": {"marks": marks, "tensor_bytes": {
               "transformer": {"torch.bfloat16": 12_310_000_000, "torch.float32": 4 * 1_000_000},
               "lora_trainable_params": 1_000_000}},
                    "peak_rss_anon_by_process": {"trainer 7": 2 * gib, "zlt train 6": gib},
                    "peak_rss_by_phase": {"caching_text: x": {"trainer": 9 * gib}, "step 1": {"trainer": 13 * gib}}}}
    rows = {r["component"]: r for r in rs.comparison(res)}
    tr = rows["transformer weights"]
    assert abs(tr["measured_gib"] - 12_310_000_000 / gib) < 1e-9  # the LoRA's fp32 bytes are not the base's
    assert abs(tr["error"] - (11.46 / (12_310_000_000 / gib) - 1)) < 1e-9
    assert rows["activations + LoRA state + upcast copies (CPU: see the text)"]["measured_gib"] == 1.5  # anonymous rise
    assert rows["tensors at the training peak"]["measured_gib"] == 12  # the steps' peak, not the caching pass's
    assert not any(k.startswith("CUDA") for k in rows)  # no GPU figure unless the trainer measured one
    v = rs.verdict(res)["bf16"]
    assert v == {"peak_rss_gib": 13.0, "fits_24_gib": True, "rss_after_caching_gib": 1.0, "never_together": True}
    table = rs.markdown({**res, "comparison": list(rows.values())})
    assert "| bf16 | transformer weights | 11.46 | 11.46 |" in table
    json.dumps(res)
