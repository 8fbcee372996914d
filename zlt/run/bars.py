"""tqdm progress bars, recognised by their shape rather than their glyphs.

tqdm's default layout is `{desc}: {pct:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}{postfix}]`.
The bar glyphs differ (ASCII `#`, Unicode blocks) and the rate is `it/s`, `s/it` or `?it/s`, so the
parser anchors on `%|` and on `n/total [elapsed<remaining` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# desc, n, total, elapsed, remaining, rate, rate scale, rate unit, postfix
_BAR = re.compile(
    r"(?:([^\r\n]*?): *)?\d+%\|[^|]*\| *(\d+)/(\d+) \[([\d:]+)<([\d:]+|\?)"
    r"(?:, *(?:\?|([\d.]+)([kMG]?))(it/s|s/it)?)?,? *([^\]]*)\]"
)


@dataclass(slots=True)
class Bar:
    """One redraw of a tqdm bar."""

    desc: str
    n: int
    total: int
    elapsed_s: float | None
    remaining_s: float | None
    it_s: float | None  # iterations per second (s/it is inverted); None for `?it/s`
    postfix: str  # text after the rate, without the leading comma


def _interval(text: str) -> float | None:
    if not text or text == "?":
        return None
    total = 0
    for part in text.split(":"):
        if not part.isdigit():
            return None
        total = total * 60 + int(part)
    return float(total)


_INTERVALS: dict[str, float | None] = {}


def parse_interval(text: str) -> float | None:
    """tqdm's `[H:]MM:SS` (hours may exceed 24) -> seconds; `?` -> None. Memoised: bars repeat them."""
    try:
        return _INTERVALS[text]
    except KeyError:
        value = _interval(text)
        if len(_INTERVALS) < 100_000:
            _INTERVALS[text] = value
        return value


_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


def rate_it_s(value: float, unit: str | None) -> float | None:
    """tqdm's rate in iterations per second: `s/it` is inverted; a zero rate is unknown."""
    if unit == "s/it":
        return 1.0 / value if value > 0 else None
    return value


def parse_bar(line: str) -> Bar | None:
    """A tqdm bar with a known total, or None. Bars without a total (`4it [00:02, 1.8it/s]`) are None."""
    if "%|" not in line:
        return None
    m = _BAR.search(line)
    if m is None:
        return None
    desc, n, total, elapsed, remaining, rate, scale, unit, postfix = m.groups()
    it_s = rate_it_s(float(rate) * _SCALE[scale] if scale else float(rate), unit) if rate else None
    return Bar(desc.strip() if desc else "", int(n), int(total), parse_interval(elapsed), parse_interval(remaining),
               it_s, postfix.rstrip())


def split_glued(line: str) -> list[str]:
    """A bar redrawn without a newline and then followed by other output on the same stream
    (`steps: 50%|...| 5/10 [..]Traceback (most recent call last):`) -> the bar and the rest."""
    if "%|" not in line or line.rstrip().endswith("]"):
        return [line]
    m = _BAR.search(line)
    if m is None or m.end() >= len(line):
        return [line]
    rest = line[m.end():]
    return [line[:m.end()], rest] if rest.strip() else [line]


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def postfix_values(postfix: str) -> dict[str, float]:
    """`lr: 2.0e-04 loss: 3.811e-01` (set_postfix_str) or `avr_loss=0.43, lr=1e-4` (set_postfix)
    -> {'lr': 2e-4, 'loss': 0.3811}. Values that are not numbers are left out."""
    out: dict[str, float] = {}
    if not postfix:
        return out
    for part in postfix.split(","):
        if "=" in part:
            key, _, value = part.partition("=")
            num = _num(value)
            if num is not None:
                out[key.strip()] = num
            continue
        toks = part.split()
        for i in range(len(toks) - 1):
            key = toks[i]
            if key.endswith(":") and len(key) > 1:
                num = _num(toks[i + 1])
                if num is not None:
                    out[key[:-1]] = num
    return out
