"""ostris/ai-toolkit console lines -> events. A pure function of one logical line.

The training bar's description is the job name (`config.name`); every other bar (caching latents or
text embeddings, sampling, quantising, downloads, loading shards) maps to a phase, never to progress.
"""

from __future__ import annotations

import functools
import re

from zlt.core.events import Checkpoint, Error, Event, Oom, Phase, Progress, Resumed, Warning_
from zlt.run.bars import parse_bar, parse_interval, postfix_values
from zlt.run.parse_common import is_cuda_oom, parse_generic, step_from_name

_OOM_SKIP = re.compile(r"OOM during training step, skipping batch (\d+)/(\d+)")
_FOUND_STEP = re.compile(r"Found step (\d+) in metadata")
_SAVING_AT = re.compile(r"^Saving at step (\d+)")

# Phase lines printed by ai-toolkit's Z-Image model loader and train loop (exact texts).
_PHASE_LINES = {
    "Loading ZImage model": "loading_model",
    "Loading transformer": "loading_model",
    "Loading assistant LoRA": "loading_model",
    "Merging in assistant LoRA": "loading_model",
    "Text Encoder": "loading_model",
    "Loading VAE": "loading_model",
    "Making pipe": "loading_model",
    "Preparing Model": "loading_model",
    "Model Loaded": "loading_model",
    "Moving transformer to CPU": "loading_model",
    "Quantizing Transformer": "quantizing",
    "Quantizing Text Encoder": "quantizing",
    "Generating baseline samples before training": "sampling",
    "Generating first sample from first sample config": "sampling",
}
# Non-training bars, by lower-cased description prefix.
_BAR_PHASES = (
    ("caching latents", "caching_latents"),
    ("caching text", "caching_text"),
    ("caching clip", "caching_text"),
    ("generating samples", "sampling"),
    ("generating images", "sampling"),
    ("sampling", "sampling"),
    ("quantiz", "quantizing"),
    ("attaching quantization", "quantizing"),
    ("loading checkpoint shards", "loading_model"),
    ("loading pipeline components", "loading_model"),
    ("fetching", "loading_model"),
    ("downloading", "loading_model"),
)


@functools.lru_cache(maxsize=16)
def _training_bar(job_name: str) -> re.Pattern[str]:
    """The training bar in its usual form, `NAME: pct%|bar| n/total [el<rem, rate, lr: X loss: Y]`, as one
    regex: the hot path (most lines of a log are its redraws). Anything else takes the general path."""
    return re.compile(
        re.escape(job_name) + r": *\d+%\|[^|]*\| *(\d+)/(\d+) \[([\d:]+)<([\d:]+|\?), *"
        r"(?:\?it/s|([\d.]+)(it/s|s/it))(?:, lr: (\S+) loss: ([^\]\s]+))?\]$"
    )


def _fast_progress(m: re.Match[str]) -> Progress | None:
    n, total, elapsed, remaining, rate, unit, lr, loss = m.groups()
    it_s = None
    if rate:
        value = float(rate)
        # bars.rate_it_s inlined: this is the per-line hot path that bench/runner.py measures.
        it_s = (1.0 / value if value > 0 else None) if unit == "s/it" else value
    try:
        return Progress(int(n), int(total), float(loss) if loss else None, float(lr) if lr else None, it_s,
                        parse_interval(elapsed), parse_interval(remaining))
    except ValueError:
        return None


def _bar_event(line: str, job_name: str | None) -> Event | None:
    if job_name is not None and line.startswith(job_name):
        m = _training_bar(job_name).match(line)
        if m is not None:
            ev = _fast_progress(m)
            if ev is not None:
                return ev
    bar = parse_bar(line)
    if bar is None:
        return None
    desc = bar.desc
    if job_name is not None and desc == job_name:
        pass
    else:
        low = desc.lower()
        for prefix, phase in _BAR_PHASES:
            if low.startswith(prefix):
                return Phase(phase=phase, message=desc)
        # Unknown bar: training only if no job name is known and it carries the lr/loss postfix.
        if job_name is not None or "loss" not in bar.postfix:
            return None
    lr, loss = _lr_loss(bar.postfix)
    return Progress(step=bar.n, total=bar.total, loss=loss, lr=lr, it_s=bar.it_s,
                    elapsed_s=bar.elapsed_s, eta_s=bar.remaining_s)


def _lr_loss(postfix: str) -> tuple[float | None, float | None]:
    """ai-toolkit's postfix is `lr: {lr:.1e}` then ` {key}: {value:.3e}` per loss key."""
    toks = postfix.split()
    if len(toks) == 4 and toks[0] == "lr:" and toks[2] == "loss:":  # the usual case, fast
        try:
            return float(toks[1]), float(toks[3])
        except ValueError:
            pass
    values = postfix_values(postfix)
    loss = values.get("loss")
    if loss is None:
        loss = next((v for k, v in values.items() if k.startswith("loss")), None)
    return values.get("lr"), loss


def parse_aitoolkit(line: str, job_name: str | None = None) -> Event | None:
    """One ai-toolkit line -> an event or None. `job_name` is the config name (the training bar's desc)."""
    if "%|" in line:
        return _bar_event(line, job_name)
    s = line.strip()
    if not s:
        return None
    first = s[0]
    if first == "S":
        if s.startswith("Saved checkpoint to "):
            path = s[len("Saved checkpoint to "):].strip()
            return Checkpoint(path=path, step=step_from_name(path))
        m = _SAVING_AT.match(s)
        if m:
            return Phase(phase="saving", message=f"step {m.group(1)}")
        if s.startswith("Sampling at step"):
            return Phase(phase="sampling", message=s)
        if s.startswith("Saved optimizer to "):
            return None
    elif first == "#":
        if "IMPORTANT RESUMING FROM " in s:
            path = s.split("IMPORTANT RESUMING FROM ", 1)[1].rstrip("# ").strip()
            return Phase(phase="loading_model", message=f"resuming from {path}")
        m = _OOM_SKIP.search(s)
        if m:
            return Oom(fatal=False, message="OOM during training step, batch skipped", attempt=int(m.group(1)))
        return None
    elif first == "F":
        m = _FOUND_STEP.match(s)
        if m:
            return Resumed(step=int(m.group(1)))
    elif first == "E" and s.startswith("Error running job: "):
        msg = s[len("Error running job: "):]
        if "OOM during training step 3 times in a row" in msg or is_cuda_oom(msg):
            return Oom(fatal=True, message=msg)
        return Error(message=msg)
    elif first == "J" and s == "Job stopped":
        return Warning_(message="ai-toolkit: Job stopped (interrupted)")
    phase = _PHASE_LINES.get(s)
    if phase is not None:
        return Phase(phase=phase, message=s)
    if "OOM during training step 3 times in a row" in s:
        return Oom(fatal=True, message=s)
    return parse_generic(s)
