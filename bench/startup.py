"""Start-up cost of the CLI, as ratios against `python -c "import yaml"` measured in the same run.

Targets (issue 2): `zlt render` <= 4x; `zlt --help` reported alongside. Best of N runs each.
Usage: python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def best_of(argv: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(yaml.safe_dump({"name": "bench", "training": {"backend": "ai-toolkit"}}))
        base = best_of([py, "-c", "import yaml"], args.runs)
        help_t = best_of([py, "-m", "zlt", "--help"], args.runs)
        render_t = best_of([py, "-m", "zlt", "render", str(spec), "--profile", "24gb"], args.runs)
    print(f"zlt --help / import yaml: {help_t / base:.2f}x")
    print(f"zlt render / import yaml: {render_t / base:.2f}x (target <= 4x)")


if __name__ == "__main__":
    main()
