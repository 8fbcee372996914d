"""Runner benchmarks (prints ratios against the targets, plus the counts they come from).

1. Parse throughput on a 1M-line ai-toolkit-style log (bar redraws with \\r, timer blocks, saves,
   warnings), fed as 64 KiB chunks through the runner's real path: LineSplitter -> LogInterpreter
   (superseded redraws skipped) -> ProgressThrottle -> a sink. Also the bare parser, line by line.
   Rates use CPU time of this process, so other load on the machine counts less. Target >= 500k lines/s.
2. Wall time of a stand-in trainer run (tests/fixtures/fake_aitoolkit) under the runner vs run bare
   (output to a file, as a person would): the supervisor alone (`supervise` + parsing + events), and the
   whole `zlt train` (start-up, dataset, render, artifact). Target <= 1.02x.

    python bench/runner.py [--lines 1000000] [--steps 300] [--step-s 0.1] [--skip-wall]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FAKE = REPO / "tests" / "fixtures" / "fake_aitoolkit"


def make_log(n_lines: int, name: str = "zstyle") -> bytes:
    """A train.log as ai-toolkit writes it: two bar redraws per step, a timer block every 10 steps,
    a save every 250 steps, a warning now and then."""
    out: list[str] = []
    total = n_lines // 2  # more than the steps this log reaches
    step = 0
    count = 0
    while count < n_lines:
        step += 1
        pct = step * 100 // total
        for loss in (0.41 + (step % 7) * 0.01, 0.40 + (step % 5) * 0.01):
            out.append(f"\r{name}: {pct:3d}%|##5       | {step}/{total} [12:{step % 60:02d}<1:{step % 60:02d}:54, "
                       f"2.87s/it, lr: 1.0e-04 loss: {loss:.3e}]")
            count += 1
        if step % 10 == 0:
            out.append(f"\nTimer '{name} Timer':\n - 2.8512s avg - train_loop, num = 10\n - 0.0101s avg - batch_cleanup, num = 10\n")
            count += 3
        if step % 250 == 0:
            out.append(f"\nSaving at step {step}\nSaved checkpoint to /o/{name}/{name}_{step:09d}.safetensors\n"
                       f"Saved optimizer to /o/{name}/optimizer.pt\n")
            count += 3
        if step % 1000 == 0:
            out.append("/venv/lib/python3.11/site-packages/torch/utils/checkpoint.py:87: UserWarning: None of the inputs have requires_grad=True\n")
            count += 1
    return "".join(out).encode()


def bench_parse(n_lines: int) -> None:
    from zlt.backends.aitoolkit.parse import parse_aitoolkit
    from zlt.run.interpret import LogInterpreter
    from zlt.run.lines import LineSplitter, split_text
    from zlt.run.throttle import ProgressThrottle

    data = make_log(n_lines)
    events: list = []
    throttle = ProgressThrottle(events.append)
    interp = LogInterpreter(lambda line: parse_aitoolkit(line, "zstyle"), throttle.push)
    splitter = LineSplitter()
    lines_seen = 0
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(0, len(data), 1 << 16):
        lines = splitter.feed(data[i:i + (1 << 16)])
        lines_seen += len(lines)
        interp.feed_lines(lines, "stderr")
        throttle.tick()
    rest = splitter.flush()
    lines_seen += len(rest)
    interp.feed_lines(rest, "stderr")
    interp.finish()
    throttle.flush()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    runner_rate = lines_seen / cpu
    print(f"parse: {lines_seen} lines, {len(data) / 1e6:.1f} MB, {len(events)} events")
    print(f"  runner path (split + interpret + throttle): {runner_rate:,.0f} lines/s CPU "
          f"({lines_seen / wall:,.0f} wall) -> {runner_rate / 500_000:.2f}x the 500k target")
    all_lines = split_text(data.decode())
    c0 = time.process_time()
    for line in all_lines:
        parse_aitoolkit(line, "zstyle")
    cpu = time.process_time() - c0
    print(f"  bare parser, every line:                    {len(all_lines) / cpu:,.0f} lines/s CPU "
          f"-> {len(all_lines) / cpu / 500_000:.2f}x the 500k target")
    c0 = time.process_time()
    n = 0
    for _ in range(2_000_000):
        n += 1
    print(f"  (this machine: {2_000_000 / (time.process_time() - c0) / 1e6:.0f}M empty loop iterations/s CPU)")


def _spec(tmp: Path, steps: int) -> Path:
    import yaml
    from PIL import Image

    ds = tmp / "ds"
    ds.mkdir()
    for i in range(3):
        Image.new("RGB", (256, 256), (60 * i, 100, 200)).save(ds / f"{i}.png")
    spec = {"name": "bench", "dataset": {"path": "ds", "resolution": 512},
            "training": {"backend": "ai-toolkit", "max_steps": steps, "warmup_steps": 0},
            "output": {"save": {"every": max(steps // 4, 1), "keep": 2}}}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp / "spec.yaml"


def bench_wall(steps: int, step_s: float) -> None:
    from zlt.backends.aitoolkit.parse import parse_aitoolkit
    from zlt.run.interpret import LogInterpreter
    from zlt.run.supervise import supervise
    from zlt.run.throttle import ProgressThrottle

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        spec = _spec(tmp, steps)
        env = {**os.environ, "ZLT_HOME": str(tmp / "home"), "FAKE_TRAINER_STEP_S": str(step_s),
               "PYTHONUNBUFFERED": "1"}
        os.environ.update({"FAKE_TRAINER_STEP_S": str(step_s)})
        # zlt train once: it renders the config the bare runs use, and is the full-path measurement.
        argv = [sys.executable, "-m", "zlt", "train", str(spec), "--skip-preflight", "--json",
                "--ai-toolkit", str(FAKE), "--workdir", str(tmp / "job")]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        full = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit("zlt train failed")
        config = str(tmp / "job" / "render" / "ai_toolkit.yaml")

        def fresh_output() -> None:
            import shutil

            shutil.rmtree(tmp / "job" / "output", ignore_errors=True)

        fresh_output()
        t0 = time.perf_counter()
        with open(tmp / "bare.log", "wb") as log:
            subprocess.run([sys.executable, "run.py", config], cwd=FAKE, stdout=log, stderr=log, env=env, check=True)
        bare = time.perf_counter() - t0

        fresh_output()
        events: list = []
        throttle = ProgressThrottle(events.append)
        interp = LogInterpreter(lambda line: parse_aitoolkit(line, "bench"), throttle.push)
        t0 = time.perf_counter()
        with open(tmp / "supervised.log", "wb") as log:
            res = supervise([sys.executable, "run.py", config], cwd=FAKE, env=env, log=log,
                            on_lines=interp.feed_lines, on_tick=throttle.tick, busy=lambda: interp.saving)
        supervised = time.perf_counter() - t0
        assert res.returncode == 0
    overhead = full - bare
    print(f"wall: stand-in trainer, {steps} steps x {step_s}s")
    print(f"  supervised / bare:  {supervised / bare:.3f}x (target <= 1.02x)")
    print(f"  zlt train / bare:   {full / bare:.3f}x (target <= 1.02x); fixed cost {overhead / bare:.1%} of this run, "
          f"so <= 1.02x from runs {max(overhead / 0.02, 0) / bare:.1f}x as long as this one")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--step-s", type=float, default=0.1)
    ap.add_argument("--skip-wall", action="store_true")
    args = ap.parse_args()
    bench_parse(args.lines)
    if not args.skip_wall:
        bench_wall(args.steps, args.step_s)


if __name__ == "__main__":
    main()
