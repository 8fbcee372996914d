"""The preflight check for `eval.enable`: the metric model must be loadable when training ends, so it is checked
before training starts (a missing one fails the job at once, not hours later)."""

from __future__ import annotations

from typing import Any


def eval_model_check(spec: Any) -> Any:
    """A preflight Check named `eval_model` (pass, warn when it would be downloaded, fail when it cannot load)."""
    from zlt.eval.clip import check_clip
    from zlt.preflight.report import Check

    c = check_clip(spec.eval.models.clip)
    status = "fail" if not c.ok else "warn" if c.source == "download" else "pass"
    return Check("eval_model", status, f"eval.models.clip: {c.message}", c.hint if not c.ok else "",
                 details={"model": c.name, "source": c.source})
