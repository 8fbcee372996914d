"""`zlt retrain ARTIFACT` as a flow: plan the next version of a style from a finished artifact (zlt/artifacts/
retrain.py says how resume and warm start differ), pass every spec it builds through the gate, queue the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.artifacts.lineage import spec_diff
from zlt.artifacts.resolve import resolve_row
from zlt.artifacts.retrain import RESUME_NEUTRAL, RetrainPlan
from zlt.artifacts.warmstart import init_file, resume_sources, write_init_lora, write_retrain_file
from zlt.core.errors import BadInputError, NotFoundError
from zlt.core.naming import parse_pattern, uses_version
from zlt.flows.fences import Roots
from zlt.flows.gate import LOCAL, admit, backend_sets, same_backend
from zlt.flows.job_artifacts import parent_job
from zlt.jobs.api import submit_job
from zlt.spec.load import load_spec


def plan_retrain(home: Path, ref: str, *, steps: int | None = None, more_steps: int | None = None,
                 dataset: str | None = None, sets: list[str] | None = None, backend: str | None = None,
                 roots: Roots = LOCAL) -> RetrainPlan:
    """Everything `submit_retrain` will do, decided without writing anything. Every spec it builds passes the gate
    with the caller's `roots`: an override that changes a path (in any syntax) is fenced; the parent's own are not."""
    home = Path(home)
    if steps is not None and more_steps is not None:
        raise BadInputError("--steps and --more-steps: give one", hint="--more-steps continues, --steps starts fresh")
    for flag, n in (("--steps", steps), ("--more-steps", more_steps)):
        if n is not None and n < 1:
            raise BadInputError(f"{flag} {n}: must be at least 1")
    if any(x.split("=", 1)[0].strip() == "training.max_steps" for x in sets or []):
        raise BadInputError("--set training.max_steps: a retrain counts its steps with --steps or --more-steps",
                            hint="--more-steps N continues the parent for N steps; --steps N trains N from its weights")
    parent = resolve_row(home, ref)
    folder = Path(parent["path"])
    if not (folder / "spec.yaml").is_file() or not (folder / "lora.safetensors").is_file():
        raise NotFoundError(f"artifact '{parent['id']}' has no spec.yaml or lora.safetensors in {folder}",
                            hint="only artifacts saved with output.save.config and lora_weights can be retrained")
    parent_loaded = load_spec(folder / "spec.yaml")
    parent_spec = parent_loaded.spec.model_dump(mode="json")
    base_step = parent["meta"].get("final_step") or parent_loaded.spec.training.max_steps
    extra = list(sets or [])
    if dataset is not None:  # under a fence, relative to a data root (the fence resolves it); else to here
        extra.append(f"dataset.path={dataset if roots.data is not None else Path(dataset).expanduser().resolve()}")
    extra += backend_sets(backend)
    probe = admit(folder / "spec.yaml", sets=extra, roots=roots, trusted=parent_spec, mode="submit")
    changed = [k for k in spec_diff(parent_spec, probe.spec.model_dump(mode="json"))
               if not k.startswith(RESUME_NEUTRAL)]
    why_warm = None
    copy: dict[str, str] = {}
    if steps is not None:
        why_warm = "--steps starts a new run from the weights"
    elif changed:
        why_warm = "settings changed: " + ", ".join(changed[:6])
    elif not same_backend(probe.spec.training.backend, parent["backend"]):  # the parent ran `zlt train --backend`
        why_warm = f"backend changed ({parent['backend']} -> {probe.spec.training.backend})"
    else:
        listing = (probe.listing or {}).get("listing_sha256")
        lin = parent.get("lineage") or {}
        job_dir, submitted_listing = parent_job(home, parent["job_id"])
        old = submitted_listing or lin.get("listing_sha256")
        if job_dir is None and lin.get("job_dir") and Path(lin["job_dir"]).is_dir():
            job_dir = Path(lin["job_dir"])  # a `zlt train` job: not in the store, its folder still there
        src = resume_sources(job_dir, parent["backend"], parent["name"], base_step) if job_dir else None
        if job_dir is None or old is None:
            why_warm = "the parent's job folder is gone (its trainer state with it)"
        elif listing != old:
            why_warm = "the dataset folder changed since the parent was trained"
        elif src is None:
            why_warm = "the parent's trainer state is no longer in its job folder"
        else:
            copy = src["copy"]
    mode = "warm" if why_warm else "resume"
    n = steps if steps is not None else more_steps if more_steps is not None else parent_loaded.spec.training.max_steps
    total = base_step + n if mode == "resume" else n
    final_sets = [*extra, f"training.max_steps={total}"]
    given = {x.split("=", 1)[0].strip() for x in extra}
    adjusted: list[str] = []
    # A short retrain still keeps a checkpoint and still trains after its warmup (unless the caller said otherwise).
    if total < probe.spec.output.save.every and "output.save.every" not in given:
        adjusted.append(f"output.save.every={total}")
    if total <= probe.spec.training.warmup_steps and "training.warmup_steps" not in given:
        adjusted.append(f"training.warmup_steps={total // 10}")
    loaded = admit(folder / "spec.yaml", sets=final_sets + adjusted, roots=roots, trusted=parent_spec,
                   mode="submit").loaded
    pattern = loaded.spec.output.naming.pattern
    if not uses_version(pattern) and not any(f == "job_id" for _, f, _ in parse_pattern(pattern)):
        raise BadInputError(f"output.naming.pattern: {pattern!r} names every version of '{parent['name']}' alike, so "
                            "the retrained artifact could not be collected",
                            hint="--set 'output.naming.pattern={style_name}_v{version}'")
    lora, plora = loaded.spec.model.lora, parent_loaded.spec.model.lora
    if mode == "warm" and lora.rank != plora.rank:
        raise BadInputError(f"model.lora.rank: {lora.rank} differs from the parent's {plora.rank}",
                            hint="a LoRA can only start from weights of the same rank")
    return RetrainPlan(parent=parent, spec=loaded, mode=mode, base_step=base_step, why_warm=why_warm, copy=copy,
                       parent_spec=parent_spec, adjusted=adjusted)


def submit_retrain(home: Path, ref: str, *, steps: int | None = None, more_steps: int | None = None,
                   dataset: str | None = None, sets: list[str] | None = None, backend: str | None = None,
                   profile: str = "auto", priority: int | None = None, skip_preflight: bool = False,
                   start_worker: bool = True, options: dict | None = None, roots: Roots = LOCAL) -> dict[str, Any]:
    """Queue the retrain job; returns its status plus a `retrain` block (parent, mode, steps)."""
    home = Path(home)
    plan = plan_retrain(home, ref, steps=steps, more_steps=more_steps, dataset=dataset, sets=sets, backend=backend,
                        roots=roots)
    parent = plan.parent

    def prepare(job_dir: Path, loaded: Any) -> None:
        spec = loaded.spec
        if plan.mode == "warm":
            write_init_lora(Path(parent["path"]) / "lora.safetensors", init_file(job_dir, spec.training.backend),
                            backend=spec.training.backend, rank=spec.model.lora.rank, alpha=spec.model.lora.alpha)
        write_retrain_file(job_dir, {
            "parent_id": parent["id"], "parent_spec": plan.parent_spec, "mode": plan.mode, "base_step": plan.base_step,
            "parent_dataset_sha256": parent.get("dataset_sha256"), "copy": plan.copy, "why_warm": plan.why_warm,
        })

    status = submit_job(home, plan.spec, priority=priority, profile=profile, skip_preflight=skip_preflight,
                        start_worker=start_worker, options=options, prepare_dir=prepare)
    return {**status, "retrain": plan.summary()}
