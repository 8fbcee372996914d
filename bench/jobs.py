"""Job store latency, as ratios against `zlt --help` measured in the same run.

    python bench/jobs.py [--jobs 10000] [--rounds 15]

Fills a fresh ZLT_HOME with N jobs (mixed states, progress, history), then times, interleaved round by
round so machine load hits all three alike: `zlt --help`, `zlt status JOB --json` (which also runs the
reaper) and `zlt submit spec.yaml --no-worker --json`. Prints medians as ratios to `zlt --help`.
Targets: status <= 2x, submit <= 3x.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATES = ["succeeded"] * 6 + ["failed", "cancelled", "queued"]


def fill(home: Path, n: int) -> str:
    """N jobs written in one transaction through the store's own connection; returns one job id."""
    from zlt.jobs.store import JobStore

    store = JobStore(home)
    now = time.time()
    rng = random.Random(0)
    rows, events = [], []
    for i in range(n):
        jid = f"20250101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:06x}"
        state = STATES[rng.randrange(len(STATES))]
        prog = json.dumps({"step": 2000, "total": 2000, "loss": 0.1, "lr": 1e-4, "it_s": 2.5, "ts": now})
        rows.append((jid, "bench", state, rng.randint(-5, 5), now - n + i, now - n + i, "ai-toolkit", "24gb", "{}",
                     str(home / "jobs" / jid), 1, "0", 2, 1, prog))
        events.append((jid, now - n + i, None, "queued", "submitted"))
        events.append((jid, now - n + i + 1, "queued", state, "bench"))
    with store.tx() as db:
        db.executemany(
            "INSERT INTO jobs (id, name, state, priority, created_at, updated_at, backend, profile, spec_json, job_dir, "
            "gpus_needed, gpus, attempts, max_retries, progress_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany("INSERT INTO job_events (job_id, ts, from_state, to_state, message) VALUES (?, ?, ?, ?, ?)", events)
    store.close()
    return rows[n // 2][0]


def write_spec(root: Path) -> Path:
    from PIL import Image

    ds = root / "ds"
    ds.mkdir()
    for i in range(20):
        Image.new("RGB", (64, 64), (i * 10, 0, 0)).save(ds / f"{i}.png")
        (ds / f"{i}.txt").write_text("a red square")
    spec = root / "spec.yaml"
    spec.write_text("name: bench\ndataset: {path: ds, resolution: 512}\ntraining: {backend: ai-toolkit}\n")
    return spec


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {r.stderr.decode()[-500:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000, help="jobs in the store")
    ap.add_argument("--rounds", type=int, default=15, help="timed runs of each command")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="zlt-bench-jobs-") as tmp:
        root = Path(tmp)
        home = root / "home"
        t0 = time.perf_counter()
        job_id = fill(home, args.jobs)
        fill_s = time.perf_counter() - t0
        spec = write_spec(root)
        env = {**os.environ, "ZLT_HOME": str(home), "ZLT_CONFIG": str(root / "config.toml")}
        zlt = [sys.executable, "-m", "zlt"]
        cmds = {
            "help": zlt + ["--help"],
            "status": zlt + ["status", job_id, "--json"],
            "submit": zlt + ["submit", str(spec), "--no-worker", "--json"],
        }
        for argv in cmds.values():  # warm the OS page cache and .pyc files
            timed(argv, env)
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.rounds):
            for name, argv in cmds.items():
                times[name].append(timed(argv, env))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"store: {args.jobs} jobs (+{args.rounds + 1} submitted), filled in one transaction "
              f"({fill_s / max(args.jobs, 1) * 1e6:.0f} us/job)")
        print(f"rounds: {args.rounds}, medians relative to `zlt --help` in this run")
        for name, target in (("status", 2.0), ("submit", 3.0)):
            ratio = med[name] / med["help"]
            verdict = "ok" if ratio <= target else "OVER TARGET"
            print(f"  zlt {name:<7} {ratio:5.2f}x   (target <= {target:.0f}x)  {verdict}")
        spread = {k: (max(v) - min(v)) / med["help"] for k, v in times.items()}
        print("  spread (max-min)/help: " + ", ".join(f"{k} {s:.2f}x" for k, s in spread.items()))


if __name__ == "__main__":
    main()
