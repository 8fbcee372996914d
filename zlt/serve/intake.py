"""From a client's spec dict to a submitted job: the server's roots for the gate, submit, subscribe the webhook.

Shared by the HTTP API and the MCP server. Resolving, validating and fencing are the gate's (zlt/flows/gate.py, the
function `zlt validate` / `zlt submit` call too); this module adds only what a network client changes: which roots
fence the spec's paths, and the webhook a job's `callback_url` subscribes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.core.callback_url import NOTHING_ALLOWED, CallbackAllow
from zlt.flows.fences import Limits, Roots
from zlt.flows.gate import Admitted, Mode, admit
from zlt.jobs.api import submit_job
from zlt.serve.webhooks import Subscriptions

SOURCE_HTTP = "<http>"


def backend_doc(default: str) -> str:
    """The `backend` argument's description on every route and tool: the registry's choices (the gate judges)."""
    return (f"Trainer: {', '.join(backends.names())} (default: {default}); another name is refused with 422 "
            f"naming {backends.FIELD}.")


def backend_enum(schema: dict[str, Any]) -> None:
    """JSON-schema hook for a `backend` argument typed `str | None`: document the registry's names as the string's
    `enum`. Only documentation: the argument accepts any string, so an unknown name gets the gate's one error
    (422 naming training.backend, the choices in its hint), not a schema validator's."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["enum"] = backends.names()


@dataclass(frozen=True)
class Fence:
    """What a client may name on this server. `data_roots=None` means no fence (a local MCP session)."""

    data_roots: tuple[Path, ...] | None
    output_roots: tuple[Path, ...] | None
    limits: Limits = field(default_factory=Limits)
    source: str = SOURCE_HTTP  # names the client in error messages ('3 problems in <http>')
    # Model files a client may name besides hub ids (zlt/flows/fences.py); None: any (a local MCP session).
    model_roots: tuple[Path, ...] | None = None
    # Callback URLs the operator admits besides public addresses (zlt serve --callback-allow; zlt/core/callback_url.py).
    callback_allow: CallbackAllow = NOTHING_ALLOWED

    def roots(self) -> Roots:
        """The gate's view of this fence; a callback URL is checked by the webhook rule with the allow-list."""
        return Roots(data=self.data_roots, output=self.output_roots, models=self.model_roots, limits=self.limits,
                     check_url=self.callback_allow.check)


def admit_client_spec(data: Any, fence: Fence, *, mode: Mode = "validate", backend: str | None = None,
                      dataset_dir: Path | None = None, base_dir: Path | None = None) -> Admitted:
    """A client's dict through the gate with this server's roots; one SpecError with every problem at once."""
    return admit(data, backend=backend, roots=fence.roots(), mode=mode, base_dir=base_dir, dataset_dir=dataset_dir,
                 label=fence.source)


def load_client_spec(data: Any, fence: Fence, *, dataset_dir: Path | None = None, base_dir: Path | None = None):
    """A `LoadedSpec` from a client's dict (validate mode: the dataset folder must be there)."""
    return admit_client_spec(data, fence, dataset_dir=dataset_dir, base_dir=base_dir).loaded


@dataclass
class SubmitOptions:
    """Per-request submit options (the flags of `zlt submit`)."""

    priority: int | None = None
    backend: str | None = None
    profile: str = "auto"
    skip_preflight: bool = False


def submit_client_spec(home: Path, data: Any, fence: Fence, opts: SubmitOptions, *,
                       dataset_dir: Path | None = None, base_dir: Path | None = None) -> dict[str, Any]:
    """Admit, submit, and subscribe the job's webhook. Returns the job's status plus `warnings`."""
    admitted = admit_client_spec(data, fence, mode="submit", backend=opts.backend, dataset_dir=dataset_dir,
                                 base_dir=base_dir)
    status = submit_job(Path(home), admitted.loaded, priority=opts.priority, profile=opts.profile,
                        skip_preflight=opts.skip_preflight, listing=admitted.listing)
    url = admitted.spec.job.callback_url
    if url:
        Subscriptions(home).subscribe(status["job_id"], url)
    return {**status, "warnings": admitted.warnings}


def resubscribe(home: Path, job_id: str) -> None:
    """After a retry: wake the job's webhook subscription, if it has one."""
    subs = Subscriptions(home)
    sub = subs.load(job_id)
    if sub and sub.get("url"):
        subs.subscribe(job_id, sub["url"])
