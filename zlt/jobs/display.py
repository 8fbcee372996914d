"""Plain-text renderings of job statuses and events for people (no rich import: `zlt status` stays fast)."""

from __future__ import annotations

from typing import Any

from zlt.core.units import duration, rate_text
from zlt.jobs.view import iso


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def progress_text(st: dict[str, Any]) -> str:
    """`500/2000 (25.0%) loss 0.1234 lr 1.0e-04 2.87 it/s ETA 8m 42s`, or '' before any progress (the rate by
    zlt.core.units.rate_text, as the bar and the summary line say it)."""
    if st.get("step") is None:
        return ""
    parts = [f"{st['step']}/{st.get('total') or '?'}"]
    if st.get("percent") is not None:
        parts[0] += f" ({st['percent']:.1f}%)"
    if st.get("loss") is not None:
        parts.append(f"loss {_num(st['loss'], '.4g')}")
    if st.get("lr") is not None:
        parts.append(f"lr {_num(st['lr'], '.1e')}")
    if st.get("it_s"):
        parts.append(rate_text(st["it_s"]))
    if st.get("eta_s") is not None and st.get("state") == "running":
        parts.append(f"ETA {duration(st['eta_s'])}")
    return "  ".join(parts)


def state_text(st: dict[str, Any]) -> str:
    phase = f" ({st['phase']})" if st.get("phase") and st.get("state") in ("preparing", "running") else ""
    return f"{st['state']}{phase}"


def status_block(st: dict[str, Any], *, queue_position: int | None = None, history: list[dict] | None = None) -> str:
    lines = [f"job {st['job_id']}  {st['name']}  {state_text(st)}"]
    prog = progress_text(st)
    if prog:
        lines.append(f"  {prog}")
    if queue_position is not None:
        lines.append(f"  position {queue_position} in the queue")
    if st.get("waiting"):
        lines.append(f"  {st['waiting']}")
    gpus = ",".join(map(str, st.get("gpus") or [])) or "-"
    if st.get("host") and st.get("gpus") is not None and st["state"] in ("preparing", "running"):
        gpus += f" on {st['host']}"
    faults = f", infrastructure requeues {st['infra_retries']}" if st.get("infra_retries") else ""
    lines.append(
        f"  attempts {st['attempts']} (max retries {st['max_retries']}{faults})  priority {st['priority']}  "
        f"backend {st['backend']}  profile {st['profile'] or 'auto'}  gpus {gpus}"
    )
    times = [f"created {st['created_at']}"]
    if st.get("started_at"):
        times.append(f"started {st['started_at']}")
    if st.get("ended_at"):
        times.append(f"ended {st['ended_at']}")
    lines.append("  " + "  ".join(times))
    if st.get("last_checkpoint"):
        lines.append(f"  last checkpoint: {st['last_checkpoint']}")
    if st.get("artifact_path"):
        # A job that registers no artifact (captioning, evaluation) names only the folder it wrote.
        label = f"artifact: {st['artifact_id']}  " if st.get("artifact_id") else "output: "
        lines.append(f"  {label}{st['artifact_path']}")
    if st.get("error_cause") and st["state"] != "succeeded":
        label = "error" if st["state"] in ("failed", "cancelled") else "last error"
        lines.append(f"  {label}: {st['error_cause']}: {st.get('error_message') or ''}".rstrip())
    lines.append(f"  job dir: {st['job_dir']}")
    if history:
        lines.append("  history:")
        for h in history:
            arrow = h["to_state"] if h["from_state"] in (None, h["to_state"]) else f"{h['from_state']} -> {h['to_state']}"
            lines.append(f"    {h['ts']}  {arrow}  {h.get('message') or ''}".rstrip())
    return "\n".join(lines)


def status_line(st: dict[str, Any], ts: str) -> str:
    prog = progress_text(st)
    extra = f"  {prog}" if prog else ""
    if st["state"] in ("failed", "cancelled") and st.get("error_cause"):
        extra += f"  {st['error_cause']}: {st.get('error_message') or ''}"
    if st["state"] == "succeeded" and st.get("artifact_path"):
        extra += f"  artifact {st['artifact_path']}"
    if st.get("waiting"):
        extra += f"  {st['waiting']}"
    return f"{ts}  {st['job_id']}  {state_text(st)}{extra}".rstrip()


def event_line(ev: dict[str, Any]) -> str:
    """One event for people: `seq time type key=value ...`."""

    skip = {"job_id", "seq", "ts", "type"}
    fields = " ".join(f"{k}={v}" for k, v in ev.items() if k not in skip and v not in (None, [], ""))
    ts = ev.get("ts")
    when = iso(ts) if isinstance(ts, (int, float)) else ""
    return f"{ev.get('seq', '')}\t{when}\t{ev.get('type', '')}\t{fields}".rstrip()


def workers_table(workers: list[dict[str, Any]]) -> str:
    """`zlt workers`: one line per GPU slot of each live worker, with the job on it."""
    rows = [("WORKER", "HOST", "GPU", "NAME", "VRAM", "JOB", "STATE")]
    for w in workers:
        on_gpu = {g: j for j in w["jobs"] for g in j["gpus"]}
        cpu_jobs = [j for j in w["jobs"] if not j["gpus"]]
        for g in w["gpus"] or [{"index": None, "name": None, "vram_gb": None}]:
            job = on_gpu.get(g["index"])
            rows.append((w["worker_id"], w["host"], "-" if g["index"] is None else str(g["index"]), g["name"] or "-",
                         f"{g['vram_gb']:g} GiB" if g["vram_gb"] else "-", job["job_id"] if job else "-",
                         job["state"] if job else "idle"))
        for j in cpu_jobs:
            rows.append((w["worker_id"], w["host"], "cpu", "-", "-", j["job_id"], j["state"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(n) for c, n in zip(r, widths, strict=True)).rstrip() for r in rows)
