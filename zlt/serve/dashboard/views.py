"""The dashboard's view functions: what each page shows, as plain dicts the templates render.

Each reads through the same library calls as the API (`zlt.serve.tools`, the generation and evaluation modules), so
a page and `GET /v1/...` never disagree. They take the home folder and return data; no request, no HTML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zlt.artifacts.promote import current_id
from zlt.core.errors import BadInputError, NotFoundError, ZltError
from zlt.core.kinds import KIND_NAMES, JobKind
from zlt.core.units import duration
from zlt.jobs import job_events
from zlt.jobs.api import job_history
from zlt.run.curve import load_curve
from zlt.run.jobfiles import sample_step
from zlt.serve import generations, tools
from zlt.serve.dashboard.chart import loss_chart

STATES = ("queued", "preparing", "running", "succeeded", "failed", "cancelled")
ACTIVE = frozenset({"queued", "preparing", "running"})
LOG_TAIL_LINES = 80
EVENTS_SHOWN = 300
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _where(job: dict[str, Any]) -> str:
    gpus = ",".join(str(g) for g in job.get("gpus") or [])
    host = job.get("host") or ""
    return f"{host} · GPU {gpus}" if gpus and host else (f"GPU {gpus}" if gpus else host)


def last_seq(job_dir: Path, max_bytes: int = 16 * 1024) -> int:
    """The seq of the last event in the job's events.jsonl (0 when none), read from the file's end: where the page's
    live stream starts, so it does not replay what the page already shows."""
    try:
        with open(job_dir / "events.jsonl", "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - max_bytes))
            lines = fh.read().splitlines()
    except OSError:
        return 0
    for raw in reversed(lines):
        try:
            seq = json.loads(raw).get("seq")
        except (ValueError, AttributeError):
            continue
        if isinstance(seq, int):
            return seq
    return 0


def job_row(job: dict[str, Any]) -> dict[str, Any]:
    """A job's status object (its `kind` included) with what the table shows besides it (an active job: the seq its
    stream goes on from)."""
    active = job["state"] in ACTIVE
    seq = last_seq(Path(job["job_dir"])) if active and job.get("job_dir") else 0
    return {**job, "where": _where(job), "eta": duration(job.get("eta_s"), unknown=""), "active": active,
            "last_seq": seq}


def jobs_view(home: Path, state: str | None = None, kind: str | None = None, limit: int = 200) -> dict[str, Any]:
    """The Jobs page: every job (newest first) with kind, state, phase, progress, loss, it/s, ETA, where, waiting."""
    state = state or None
    kind = kind or None
    if state is not None and state not in STATES:
        raise BadInputError(f"state {state!r}: not a job state", hint=f"one of {', '.join(STATES)}")
    if kind is not None and kind not in KIND_NAMES:
        raise BadInputError(f"kind {kind!r}: not a job kind", hint=f"one of {', '.join(KIND_NAMES)}")
    jobs = tools.jobs(home, state, limit)
    rows = [job_row(j) for j in jobs]
    if kind is not None:
        rows = [r for r in rows if r["kind"] == kind]
    return {"jobs": rows, "state": state, "kind": kind, "states": STATES, "kinds": KIND_NAMES}


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 * 1024) -> list[str]:
    """The last `lines` lines of a log, reading at most `max_bytes` from its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    out = [ln for ln in text.split("\n") if ln.strip()]
    if size > max_bytes and out:
        out = out[1:]  # the first line read is likely cut
    return out[-lines:]


def job_file_url(job_id: str, rel: str) -> str:
    return f"/ui/jobs/{quote(job_id)}/files/{quote(rel)}"


def _rel(job_dir: Path, path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    try:
        return p.relative_to(job_dir).as_posix() if p.is_absolute() else None
    except ValueError:
        return None


def samples_by_step(job_id: str, job_dir: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The gallery: the `sample` events' images grouped by step, oldest step first (a later attempt's image of the
    same file replaces the earlier one)."""
    steps: dict[int, dict[str, str]] = {}
    for ev in events:
        if ev.get("type") != "sample":
            continue
        rel = _rel(job_dir, ev.get("path"))
        if rel is None:
            continue
        step = ev.get("step") if isinstance(ev.get("step"), int) else (sample_step(Path(rel).name) or 0)
        steps.setdefault(step, {})[rel] = job_file_url(job_id, rel)
    return [{"step": s, "images": [{"name": Path(r).name, "url": u} for r, u in sorted(steps[s].items())]}
            for s in sorted(steps)]


def event_line(ev: dict[str, Any]) -> str:
    """One readable line per event for the event list."""
    t = ev.get("type")
    if t == "progress":
        loss = ev.get("loss")
        return f"step {ev.get('step')}/{ev.get('total')}" + (f" loss {loss:.4f}" if isinstance(loss, float) else "")
    if t == "phase":
        return f"{ev.get('phase')}" + (f": {ev['message']}" if ev.get("message") else "")
    if t in ("checkpoint", "sample"):
        name = Path(str(ev.get("path") or "")).name
        return f"step {ev['step']}: {name}" if isinstance(ev.get("step"), int) else name
    if t == "finished":
        return f"{ev.get('status')}" + (f": {ev['message']}" if ev.get("message") else "")
    if t == "evaluation":
        keys = ("style_similarity", "prompt_alignment", "memorisation", "diversity")
        who = "base model" if ev.get("base") else f"step {ev.get('step')}"
        nums = " ".join(f"{k} {ev[k]:.3f}" for k in keys if isinstance(ev.get(k), (int, float)))
        return f"{who}: {nums}" + (f" ({ev['decision']})" if ev.get("decision") else "")
    return str(ev.get("message") or ev.get("cause") or "")


def _output_roots(job_dir: Path) -> list[Path]:
    roots = [job_dir / "output"] + sorted(p for p in job_dir.glob("output.*") if p.is_dir())
    return [r for r in roots if r.is_dir()]


def job_view(home: Path, job_id: str) -> dict[str, Any]:
    """The Job page: status, kind, events and history, the loss curve (zlt.run.curve, the one series), samples per
    step, evaluation rows, the log tail, generation outputs, and which actions apply."""
    status = tools.status(home, job_id)
    jid = status["job_id"]
    kind = status["kind"]
    job_dir = Path(status["job_dir"])
    events = job_events(home, jid)
    curve, _notes = load_curve(events, _output_roots(job_dir), job_dir)
    outputs = None
    if kind == JobKind.GENERATE.value and status["state"] == "succeeded":
        try:
            outputs = generations.generation(home, jid)["outputs"]
        except ZltError:
            outputs = None
    shown = events[-EVENTS_SHOWN:]
    return {
        "job": job_row(status),
        "kind": kind,
        "events": [{**ev, "line": event_line(ev)} for ev in shown],
        "events_hidden": len(events) - len(shown),
        "last_seq": events[-1]["seq"] if events else 0,
        "history": job_history(home, jid),
        "chart": loss_chart(curve.steps, curve.loss, total=status.get("total")),
        "curve_source": curve.source,
        "samples": samples_by_step(jid, job_dir, events),
        "evaluations": [ev for ev in events if ev.get("type") == "evaluation"],
        "log": log_tail(job_dir / "train.log"),
        "outputs": outputs,
        "can_cancel": status["state"] in ACTIVE,
        "can_retry": status["state"] in ("failed", "cancelled"),
    }


def job_file(home: Path, job_id: str, rel: str) -> Path:
    """An image of the job folder (a sample) for the gallery; anything else, or outside the folder, is NotFound."""
    status = tools.status(home, job_id)
    root = Path(status["job_dir"]).resolve()
    parts = Path(rel).parts
    path = (root / rel).resolve()
    if (Path(rel).is_absolute() or ".." in parts or not path.is_relative_to(root) or not path.is_file()
            or path.suffix.lower() not in IMAGE_SUFFIXES):
        raise NotFoundError(f"job {status['job_id']} has no image {rel!r}")
    return path


def _eval_summary(folder: Path) -> dict[str, Any] | None:
    """The best checkpoint of the artifact's last evaluation and its scores (eval/report.json), or None."""
    try:
        report = json.loads((folder / "eval" / "report.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    best = report.get("best") or {}
    row = next((r for r in report.get("checkpoints") or []
                if r.get("step") == best.get("step") and not r.get("base")), {})
    metrics = row.get("metrics") or {}
    return {"best_step": best.get("step"), "passed": best.get("passed"), "reason": best.get("reason"),
            "style_similarity": metrics.get("style_similarity"), "prompt_alignment": metrics.get("prompt_alignment"),
            "evaluated_at": report.get("evaluated_at")}


def artifacts_view(home: Path) -> dict[str, Any]:
    """The Artifacts page: the versions of each style, newest first, with parent, step, loss, eval scores and which
    one the style name resolves to (the promoted one, else the newest)."""
    styles: dict[str, list[dict[str, Any]]] = {}
    for a in tools.artifacts(home):
        styles.setdefault(a["name"], []).append(a)
    out = []
    for name in sorted(styles):
        versions = sorted(styles[name], key=lambda a: (a.get("version") is None, a.get("version") or 0, a["id"]))
        promoted = current_id(home, name)
        resolves = promoted or versions[-1]["id"]
        rows = [{**a, "current": a["id"] == resolves, "promoted": a["id"] == promoted,
                 "eval": _eval_summary(Path(a["path"])) if a.get("exists") else None} for a in reversed(versions)]
        out.append({"style": name, "versions": rows, "promoted": promoted, "current": resolves})
    return {"styles": out}


def artifact_file_url(artifact_id: str, rel: str) -> str:
    return f"/v1/artifacts/{quote(artifact_id)}/files/{quote(rel)}"


def artifact_view(home: Path, ref: str) -> dict[str, Any]:
    """The artifact page: files (size, sha256, download), the spec, loss curve, the evaluation's contact sheet and
    curves, samples, its generations, and whether it is its style's current version."""
    art = tools.artifact(home, ref)
    aid, folder = art["id"], Path(art["path"])
    files = [{**f, "url": artifact_file_url(aid, f["path"])} for f in art.get("files") or []]
    names = {f["path"] for f in files}
    pictures = [{"title": title, "url": artifact_file_url(aid, rel)} for rel, title in (
        ("loss.png", "Loss curve"), ("eval/contact_sheet.png", "Evaluation contact sheet"),
        ("eval/curves.png", "Evaluation curves")) if rel in names or (folder / rel).is_file()]
    samples: dict[int, list[dict[str, str]]] = {}
    for f in files:
        if f["path"].startswith("samples/") and f["path"].lower().endswith(IMAGE_SUFFIXES):
            samples.setdefault(sample_step(Path(f["path"]).name) or 0, []).append(
                {"name": Path(f["path"]).name, "url": f["url"]})
    gens = []
    for g in art.get("generations") or []:
        sheet = g.get("contact_sheet")
        rel = f"generations/{g['id']}/{Path(sheet).name}" if sheet else None
        gens.append({**g, "sheet_url": artifact_file_url(aid, rel) if rel and (folder / rel).is_file() else None})
    try:
        spec = (folder / "spec.yaml").read_text(encoding="utf-8")
    except OSError:
        spec = None
    promoted = current_id(home, art["name"])
    versions = artifacts_view_for(home, art["name"])
    return {"artifact": art, "files": files, "pictures": pictures, "spec": spec,
            "samples": [{"step": s, "images": samples[s]} for s in sorted(samples)], "generations": gens,
            "eval": _eval_summary(folder), "promoted": promoted, "versions": versions,
            "current": (promoted or (versions[0]["id"] if versions else None)) == aid}


def artifacts_view_for(home: Path, style: str) -> list[dict[str, Any]]:
    """The versions of one style as on the Artifacts page (newest first)."""
    for s in artifacts_view(home)["styles"]:
        if s["style"] == style:
            return s["versions"]
    return []
