"""`eval.enable`: a training job evaluates its own artifact right after collecting it.

One call from the training run (zlt/flows/training_run.py): a flow, it composes the evaluation (zlt.eval) with the job's
context and GPU. A failed evaluation never fails the training: the artifact is kept,
a warning says why and how to run it again (`zlt eval ID`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zlt.core.errors import ZltError
from zlt.eval.evaluate import evaluate_artifact
from zlt.eval.options import from_spec
from zlt.infer.pipeline import cuda_ordinal


def evaluate_after_training(spec: Any, artifact_id: str, home: Path, ctx: Any,
                            live: Any = None) -> dict[str, Any] | None:
    """`ctx`: the job context (phase_event, warn). `live`: the LiveState of the evaluation while training
    (eval.every): its rows are reused and its loaded models too. Returns the report, or None when off or failed.
    An evaluation while training implies this one: its rows become the artifact's report."""
    if not spec.eval.enable and live is None:
        return None
    ctx.phase_event("evaluating", f"artifact {artifact_id}")
    opts = from_spec(spec)
    opts.gpu = cuda_ordinal(getattr(getattr(ctx, "req", None), "gpus", None))  # the job's GPU, just released
    try:
        report = evaluate_artifact(home, artifact_id, opts,
                                   progress=lambda msg: ctx.phase_event("evaluating", msg),
                                   scorer=live.scorer if live is not None else None,
                                   pipeline_cache=live.cache if live is not None else None,
                                   prior=live.prior() if live is not None else None)
    except ZltError as e:
        ctx.warn(f"evaluation failed: {e.message}" + (f" (hint: {e.hint})" if e.hint else "")
                 + f"; the artifact is kept; run 'zlt eval {artifact_id}' to try again")
        return None
    except Exception as e:  # noqa: BLE001 - the trained artifact must survive any evaluation bug
        ctx.warn(f"evaluation failed: {type(e).__name__}: {e}; the artifact is kept; "
                 f"run 'zlt eval {artifact_id}' to try again")
        return None
    ctx.phase_event("evaluating", f"best checkpoint: {report['best']['reason']}")
    return report
