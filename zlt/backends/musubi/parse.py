"""kohya-ss/musubi-tuner console lines -> events. A pure function of one logical line.

The training bar's description is `steps` (postfix `avr_loss=...`). Caching runs in its own processes
(the pipeline knows which step runs), so caching bars never become progress. Log lines come from
`logging.basicConfig` as `LEVEL:logger.name:message`.
"""

from __future__ import annotations

import re

from zlt.core.events import Checkpoint, Event, Phase, Progress
from zlt.run.bars import parse_bar, parse_interval, postfix_values
from zlt.run.parse_common import parse_generic, step_from_name

_INFO = "INFO:"
_SAMPLE_AT = re.compile(r"generating sample images at step[^:]*: (\d+)")


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# musubi's training bar in its usual form: `steps:  50%|█████     | 100/200 [00:23<00:23, 4.23it/s, avr_loss=0.43]`.
_STEPS_BAR = re.compile(
    r"steps: *\d+%\|[^|]*\| *(\d+)/(\d+) \[([\d:]+)<([\d:]+|\?), *(?:\?it/s|([\d.]+)(it/s|s/it))"
    r"(?:, avr_loss=([^\]\s,]+))?\]$"
)


def _fast_progress(line: str) -> Progress | None:
    m = _STEPS_BAR.match(line)
    if m is None:
        return None
    n, total, elapsed, remaining, rate, unit, loss = m.groups()
    it_s = None
    if rate:
        value = float(rate)
        # bars.rate_it_s inlined: this is the per-line hot path that bench/runner.py measures.
        it_s = (1.0 / value if value > 0 else None) if unit == "s/it" else value
    return Progress(int(n), int(total), _float(loss) if loss else None, None, it_s,
                    parse_interval(elapsed), parse_interval(remaining))


def _bar_event(line: str) -> Event | None:
    if line.startswith("steps:"):
        ev = _fast_progress(line)
        if ev is not None:
            return ev
    bar = parse_bar(line)
    if bar is None:
        return None
    if bar.desc == "steps":
        post = bar.postfix
        lr = None
        if post.startswith("avr_loss=") and "," not in post:  # the usual case, fast
            loss = _float(post[9:])
        else:
            values = postfix_values(post)
            loss = values.get("avr_loss", values.get("loss"))
            lr = values.get("lr")
            if lr is None:
                lr = next((v for k, v in values.items() if k.startswith("lr/")), None)
        return Progress(step=bar.n, total=bar.total, loss=loss, lr=lr, it_s=bar.it_s,
                        elapsed_s=bar.elapsed_s, eta_s=bar.remaining_s)
    if bar.desc.lower().startswith(("sampling", "generating")):
        return Phase(phase="sampling", message=bar.desc)
    return None


def _info_event(msg: str) -> Event | None:
    low = msg.lower()
    if low.startswith("saving state at") or low == "saving last state.":
        return Phase(phase="saving", message=msg)
    if low.startswith("resume training from"):
        path = msg.split(":", 1)[1].strip() if ":" in msg else ""
        return Phase(phase="loading_model", message=f"resuming from {path}")
    if low.startswith("generating sample images"):
        return Phase(phase="sampling", message=msg)
    if low.startswith(("loading dit", "loading vae", "loading text encoder", "loading model",
                       "loading weights", "load dit", "load vae")):
        return Phase(phase="loading_model", message=msg)
    return None


def parse_musubi(line: str) -> Event | None:
    """One musubi-tuner line -> an event or None."""
    if "%|" in line:
        return _bar_event(line)
    s = line.strip()
    if not s:
        return None
    if s.startswith(_INFO):
        # INFO:musubi_tuner.training.trainer_base:saving state at step 500
        parts = s.split(":", 2)
        return _info_event(parts[2].strip()) if len(parts) == 3 else None
    if s.startswith("saving checkpoint: "):
        path = s[len("saving checkpoint: "):].strip()
        return Checkpoint(path=path, step=step_from_name(path))
    if s.startswith("running training"):
        return Phase(phase="training", message="running training")
    if s.startswith(("epoch ", "removing old checkpoint", "removing old state", "model saved.")):
        return None
    return parse_generic(s)
