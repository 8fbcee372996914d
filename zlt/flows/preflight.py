"""The preflight of a training job: every stage's checks at once (zlt.preflight's, evaluation's, which sits
above preflight and so is passed in here, and the captioner's when `dataset.caption.auto` is on)."""

from __future__ import annotations

from typing import Any

from zlt.eval.preflight import eval_checks
from zlt.preflight import run_preflight
from zlt.preflight.captioner import captioner_checks
from zlt.preflight.report import Check, PreflightReport
from zlt.spec.models import JobSpec


def preflight(spec: JobSpec, **kwargs: Any) -> PreflightReport:
    """`zlt.preflight.run_preflight` with evaluation's checks: what `zlt preflight`, the gate and the runner call."""
    return run_preflight(spec, extra_checks=_stage_checks, **kwargs)


def _stage_checks(spec: JobSpec, profile: Any, report: PreflightReport) -> list[Check]:
    return [*eval_checks(spec, profile, report), *captioner_checks(spec, profile, report)]
