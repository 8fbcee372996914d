"""The operations HTTP routes and MCP tools share, each a thin call into the library (`zlt.spec`, `zlt.render`,
`zlt.jobs`, `zlt.artifacts`) that returns plain data. Errors stay `ZltError`s; each interface maps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.artifacts import artifact_file, get_artifact, list_artifacts
from zlt.backends import render_spec
from zlt.flows.retry import retry as retry_job
from zlt.jobs import cancel_job, job_events, job_status, list_jobs
from zlt.preflight.select import select_profile
from zlt.serve.intake import (
    Fence,
    SubmitOptions,
    admit_client_spec,
    resubscribe,
    submit_client_spec,
)


def validate_spec(data: Any, fence: Fence, *, backend: str | None = None,
                  base_dir: Path | None = None) -> dict[str, Any]:
    """What `zlt validate --json` prints: the resolved spec (preset defaults filled in) and warnings.

    The gate checks the dataset folder and `backend` as submit does: ok here means submit will not refuse the spec."""
    loaded = admit_client_spec(data, fence, backend=backend, base_dir=base_dir).loaded
    return {"ok": True, "source": loaded.source, "warnings": loaded.warnings, "spec": loaded.resolved()}


def render_config(data: Any, fence: Fence, *, backend: str | None = None, profile: str = "auto",
                  vram_gb: float | None = None, base_dir: Path | None = None) -> dict[str, Any]:
    """What `zlt render --json` prints: the trainer's config files and argv for a spec x hardware profile.

    A spec without `dataset.path` still renders (against the placeholder folder 'dataset'), so an agent can
    preview a config before it has data; `backend` is judged by the spec's rules (the tiny model trains only on
    lightning), through the gate as every door does.
    """
    loaded = admit_client_spec(data, fence, mode="render", backend=backend, base_dir=base_dir).loaded
    be = loaded.spec.training.backend
    prof, notes = select_profile(loaded.spec, be, profile or "auto", vram_gb)
    result = render_spec(loaded.spec, be, prof)
    return {**result.to_dict(), "warnings": loaded.warnings + notes + result.warnings}


def submit(home: Path, data: Any, fence: Fence, opts: SubmitOptions, *, dataset_dir: Path | None = None,
           base_dir: Path | None = None) -> dict[str, Any]:
    """Validate and queue a job (`zlt submit --json`); subscribes `job.callback_url` for webhooks."""
    return submit_client_spec(home, data, fence, opts, dataset_dir=dataset_dir, base_dir=base_dir)


def status(home: Path, job_id: str) -> dict[str, Any]:
    return job_status(home, job_id)


def jobs(home: Path, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    return list_jobs(home, state=state, limit=limit)


def cancel(home: Path, job_id: str) -> dict[str, Any]:
    return cancel_job(home, job_id)


def retry(home: Path, job_id: str) -> dict[str, Any]:
    result = retry_job(home, job_id)
    resubscribe(home, result["job_id"])
    return result


def events(home: Path, job_id: str, after_seq: int = 0, limit: int = 500) -> dict[str, Any]:
    """The job's events after `after_seq` (at most `limit`), its state, and whether more are waiting."""
    status = job_status(home, job_id)
    evs = job_events(home, status["job_id"], after_seq)
    return {"job_id": status["job_id"], "state": status["state"], "events": evs[:limit], "more": len(evs) > limit,
            "last_seq": evs[:limit][-1]["seq"] if evs else after_seq}


def artifacts(home: Path) -> list[dict[str, Any]]:
    return list_artifacts(home)


def artifact(home: Path, artifact_id: str) -> dict[str, Any]:
    return get_artifact(home, artifact_id)


def artifact_path(home: Path, artifact_id: str, name: str) -> Path:
    return artifact_file(home, artifact_id, name)
