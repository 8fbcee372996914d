"""Job store figures on both dialects: status/submit latency as ratios against `zlt --help` measured in
the same run, and claim throughput with contending workers.

    python bench/jobs.py [--jobs 100000] [--rounds 15] [--dialect both|sqlite|postgresql]
                         [--claimers 8] [--claim-jobs 2000]

Latency: fills a fresh store with N jobs (mixed states, progress, history), then times, interleaved
round by round so machine load hits all alike: `zlt --help`, `zlt status JOB --json` (which also runs
the reaper) and `zlt submit spec.yaml --no-worker --json`. Prints medians as ratios to `zlt --help`.
Targets: status <= 2x, submit <= 3x.

Claims: K worker processes, each playing its own host with one GPU, claim and finish jobs from a queue
of M until it is empty; prints claims per second (every job claimed exactly once is checked).

PostgreSQL: `ZLT_STORE=postgresql://...`, else a throwaway server from the installed binaries
(tests/pgserver.py), one fresh schema per measurement.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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


def _claimer(home: str, host: str, store_env: str, go: mp.Event, out: mp.Queue) -> None:
    os.environ["ZLT_STORE"] = store_env
    from zlt.jobs.states import JobStatus
    from zlt.jobs.store import JobStore

    store = JobStore(Path(home), host=host)
    got: list[str] = []
    go.wait()
    while (c := store.claim(f"w-{host}", [0])) is not None:
        store.transition(c.job_id, JobStatus.SUCCEEDED, token=c.token)
        got.append(c.job_id)
    store.close()
    out.put(got)


def claim_throughput(home: Path, store_env: str, claimers: int, jobs: int) -> float:
    """Claims per second with `claimers` processes (distinct hosts, one GPU each) emptying a queue of `jobs`."""
    os.environ["ZLT_STORE"] = store_env
    from zlt.jobs.store import JobStore

    store = JobStore(home)
    with store.tx() as db:
        now = time.time()
        db.executemany(
            "INSERT INTO jobs (id, name, state, priority, created_at, updated_at, backend, spec_json, job_dir) "
            "VALUES (?, 'bench', 'queued', 0, ?, ?, 'ai-toolkit', '{}', ?)",
            [(f"c{i:06d}", now + i * 1e-6, now, str(home / "jobs" / f"c{i:06d}")) for i in range(jobs)],
        )
    store.close()
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(home), f"bench-{i}", store_env, go, out)) for i in range(claimers)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # every process has imported zlt and opened the store
    t0 = time.perf_counter()
    go.set()
    got = [out.get() for _ in procs]
    dt = time.perf_counter() - t0
    for p in procs:
        p.join()
    claimed = [j for g in got for j in g]
    if sorted(claimed) != [f"c{i:06d}" for i in range(jobs)]:
        raise SystemExit(f"claims went wrong: {len(claimed)} claims, {len(set(claimed))} distinct, {jobs} jobs")
    return jobs / dt


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {r.stderr.decode()[-500:]}")
    return dt


def latency(root: Path, store_env: str, n: int, rounds: int) -> dict[str, float]:
    """Median of each command, and the fill time per job."""
    home = root / "home"
    os.environ["ZLT_STORE"] = store_env
    t0 = time.perf_counter()
    job_id = fill(home, n)
    fill_s = time.perf_counter() - t0
    spec = root / "spec.yaml" if (root / "spec.yaml").exists() else write_spec(root)
    env = {**os.environ, "ZLT_HOME": str(home), "ZLT_CONFIG": str(root / "config.toml"), "ZLT_STORE": store_env}
    zlt = [sys.executable, "-m", "zlt"]
    cmds = {
        "help": zlt + ["--help"],
        "status": zlt + ["status", job_id, "--json"],
        "submit": zlt + ["submit", str(spec), "--no-worker", "--json"],
    }
    for argv in cmds.values():  # warm the OS page cache and .pyc files
        timed(argv, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for name, argv in cmds.items():
            times[name].append(timed(argv, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    med["fill_us"] = fill_s / max(n, 1) * 1e6
    med["spread"] = {k: (max(v) - min(v)) / med["help"] for k, v in times.items()}  # type: ignore[assignment]
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100_000, help="jobs in the store for the latency figures")
    ap.add_argument("--rounds", type=int, default=15, help="timed runs of each command")
    ap.add_argument("--dialect", choices=["both", "sqlite", "postgresql"], default="both")
    ap.add_argument("--claimers", type=int, default=8, help="contending worker processes")
    ap.add_argument("--claim-jobs", type=int, default=2000, help="queued jobs they claim")
    args = ap.parse_args()
    dialects = ["sqlite", "postgresql"] if args.dialect == "both" else [args.dialect]
    server = None
    base = os.environ.get("ZLT_STORE", "")
    if "postgresql" in dialects and not base.startswith("postgres"):
        from tests.pgserver import PgServer, pg_bindir

        bindir = pg_bindir()
        if bindir is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql), and ZLT_STORE is not set")
        server = PgServer(bindir).start()
        base = server.url
    try:
        for dialect in dialects:
            def fresh(dialect: str = dialect) -> str:
                if dialect == "sqlite":
                    return "sqlite"
                from tests.pgserver import new_schema_url

                return new_schema_url(base)

            with tempfile.TemporaryDirectory(prefix="zlt-bench-jobs-") as tmp:
                root = Path(tmp)
                med = latency(root, fresh(), args.jobs, args.rounds)
                rate = claim_throughput(root / "claims", fresh(), args.claimers, args.claim_jobs)
            print(f"[{dialect}] store: {args.jobs} jobs (+{args.rounds + 1} submitted), filled in one transaction "
                  f"({med['fill_us']:.0f} us/job)")
            print(f"[{dialect}] rounds: {args.rounds}, medians relative to `zlt --help` in this run")
            for name, target in (("status", 2.0), ("submit", 3.0)):
                ratio = med[name] / med["help"]
                verdict = "ok" if ratio <= target else "OVER TARGET"
                print(f"[{dialect}]   zlt {name:<7} {ratio:5.2f}x   (target <= {target:.0f}x)  {verdict}")
            print(f"[{dialect}]   spread (max-min)/help: " + ", ".join(f"{k} {s:.2f}x" for k, s in med["spread"].items()))
            print(f"[{dialect}] claims: {args.claimers} contending workers emptied {args.claim_jobs} queued jobs: "
                  f"{rate:.0f} claims/s (claim + finish, each job exactly once)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
