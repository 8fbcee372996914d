"""From a client's spec dict to a submitted job: fence its paths, validate it, submit it, subscribe its webhook.

Shared by the HTTP API and the MCP server. Validation and submission are `zlt.spec.load_spec_data` and
`zlt.jobs.submit_job`, the same functions `zlt validate` / `zlt submit` call; this module adds only what a
network client changes: where a dataset may come from and where outputs may go.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlt.core.errors import BadInputError, FieldError, SpecError
from zlt.serve.uploads import Limits, fence_dataset_path, fence_output_path

SOURCE_HTTP = "<http>"


@dataclass(frozen=True)
class Fence:
    """What a client may name on this server. `data_roots=None` means no fence (a local MCP session)."""

    data_roots: tuple[Path, ...] | None
    output_roots: tuple[Path, ...] | None
    limits: Limits = field(default_factory=Limits)
    source: str = SOURCE_HTTP  # names the client in error messages ('3 problems in <http>')
    # Model files a client may name besides hub ids (zlt/serve/model_fence.py); None: any (a local MCP session).
    model_roots: tuple[Path, ...] | None = None


def _field_error(err: BadInputError, path: str) -> FieldError:
    """A path-fence error as a field error (its message already starts with the field path)."""
    msg = err.message
    prefix = f"{path}: "
    return FieldError(path, msg[len(prefix):] if msg.startswith(prefix) else msg, err.hint)


def prepare_spec_data(data: Any, fence: Fence, *, dataset_dir: Path | None = None,
                      base_dir: Path | None = None) -> tuple[dict[str, Any], list[FieldError], list[str]]:
    """(spec dict with fenced absolute paths, fence errors, warnings). Pure apart from resolving paths."""
    if not isinstance(data, dict):
        raise SpecError([FieldError("", "the spec must be a JSON object with sections model, dataset, training, job, "
                                        "output")], fence.source)
    data = copy.deepcopy(data)
    errors: list[FieldError] = []
    warnings: list[str] = []
    ds = data.get("dataset")
    if ds is None:
        ds = data["dataset"] = {}
    if isinstance(ds, dict):
        raw = ds.get("path")
        if dataset_dir is not None:
            if raw is not None:
                warnings.append(f"dataset.path {raw!r} replaced by the uploaded dataset")
            ds["path"] = str(dataset_dir)
        elif raw is None:
            errors.append(FieldError("dataset.path", "required: name a folder on the server or upload a zip",
                                     "set dataset.path to a folder inside a data root, or send multipart with a "
                                     "'dataset' zip"))
        elif isinstance(raw, str):
            if fence.data_roots is not None:
                try:
                    ds["path"] = str(fence_dataset_path(raw, list(fence.data_roots), fence.limits))
                except BadInputError as e:
                    errors.append(_field_error(e, "dataset.path"))
            elif base_dir is not None and not Path(raw).expanduser().is_absolute():
                ds["path"] = str((base_dir / raw).resolve())
    out = data.get("output")
    reg = out.get("registry") if isinstance(out, dict) else None
    if isinstance(reg, dict) and isinstance(reg.get("path"), str) and fence.output_roots is not None:
        try:
            reg["path"] = str(fence_output_path(reg["path"], list(fence.output_roots)))
        except BadInputError as e:
            errors.append(_field_error(e, "output.registry.path"))
    if fence.model_roots is not None:
        from zlt.serve.model_fence import fence_model_paths

        errors.extend(fence_model_paths(data, list(fence.model_roots)))
    job = data.get("job")
    url = job.get("callback_url") if isinstance(job, dict) else None
    if isinstance(url, str):
        from zlt.serve.webhooks import check_callback_url

        try:
            job["callback_url"] = check_callback_url(url)
        except BadInputError as e:
            errors.append(_field_error(e, "job.callback_url"))
    return data, errors, warnings


def load_client_spec(data: Any, fence: Fence, *, dataset_dir: Path | None = None, base_dir: Path | None = None):
    """A `LoadedSpec` from a client's dict; one SpecError with every problem (schema and fence) at once."""
    from zlt.spec import load_spec_data

    source = fence.source
    prepared, errors, warnings = prepare_spec_data(data, fence, dataset_dir=dataset_dir, base_dir=base_dir)
    try:
        loaded = load_spec_data(prepared, source=source)
    except SpecError as e:
        known = {(x.path, x.message) for x in errors}
        raise SpecError(errors + [x for x in e.errors if (x.path, x.message) not in known], source) from None
    if errors:
        raise SpecError(errors, source)
    loaded.warnings = warnings + loaded.warnings
    return loaded


@dataclass
class SubmitOptions:
    """Per-request submit options (the flags of `zlt submit`)."""

    priority: int | None = None
    backend: str | None = None
    profile: str = "auto"
    skip_preflight: bool = False


def submit_client_spec(home: Path, data: Any, fence: Fence, opts: SubmitOptions, *,
                       dataset_dir: Path | None = None, base_dir: Path | None = None) -> dict[str, Any]:
    """Validate, submit, and subscribe the job's webhook. Returns the job's status plus `warnings`."""
    from zlt.jobs import submit_job
    from zlt.serve.webhooks import Subscriptions

    loaded = load_client_spec(data, fence, dataset_dir=dataset_dir, base_dir=base_dir)
    status = submit_job(Path(home), loaded, priority=opts.priority, backend=opts.backend, profile=opts.profile,
                        skip_preflight=opts.skip_preflight)
    url = loaded.spec.job.callback_url
    if url:
        Subscriptions(home).subscribe(status["job_id"], url)
    return {**status, "warnings": loaded.warnings}


def resubscribe(home: Path, job_id: str) -> None:
    """After a retry: wake the job's webhook subscription, if it has one."""
    from zlt.serve.webhooks import Subscriptions

    subs = Subscriptions(home)
    sub = subs.load(job_id)
    if sub and sub.get("url"):
        subs.subscribe(job_id, sub["url"])
