"""tqdm progress bars, recognised by their shape rather than their glyphs.

tqdm's default layout is `{desc}: {pct:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}{postfix}]`.
The bar glyphs differ (ASCII `#`, Unicode blocks) and the rate is `it/s`, `s/it` or `?it/s`, so the
parser anchors on `%|` and on `n/total [elapsed<remaining` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TAIL = re.compile(
    r"\s*(\d+)/(\d+) \[([\d:]+)<([\d:]+|\?)"
    r"(?:, *(?:(\?)|([\d.]+)([kMG]?))(it/s|s/it)?)?"
    r"(.*)\]\s*$"
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


def parse_interval(text: str) -> float | None:
    """tqdm's `[H:]MM:SS` (hours may exceed 24) -> seconds; `?` -> None."""
    if not text or text == "?":
        return None
    total = 0
    for part in text.split(":"):
        if not part.isdigit():
            return None
        total = total * 60 + int(part)
    return float(total)


_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


def parse_bar(line: str) -> Bar | None:
    """A tqdm bar with a known total, or None. Bars without a total (`4it [00:02, 1.8it/s]`) are None."""
    i = line.find("%|")
    if i < 0:
        return None
    j = line.find("|", i + 2)
    if j < 0:
        return None
    m = _TAIL.match(line, j + 1)
    if m is None:
        return None
    n_s, total_s, el, rem, unknown, rate, scale, unit, post = m.groups()
    head = line[:i]
    colon = head.rfind(":")
    desc = head[:colon].strip() if colon >= 0 else ""
    it_s = None
    if rate and not unknown:
        value = float(rate) * _SCALE[scale]
        if unit == "s/it":
            it_s = 1.0 / value if value > 0 else None
        else:
            it_s = value
    post = post.strip()
    if post.startswith(","):
        post = post[1:].strip()
    return Bar(desc, int(n_s), int(total_s), parse_interval(el), parse_interval(rem), it_s, post)


_KV = re.compile(r"([A-Za-z_][\w/]*)\s*[:=]\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)")


def postfix_values(postfix: str) -> dict[str, float]:
    """`lr: 2.0e-04 loss: 3.811e-01` or `avr_loss=0.43, lr=1e-4` -> {'lr': 2e-4, 'loss': 0.3811}."""
    if not postfix:
        return {}
    return {k: float(v) for k, v in _KV.findall(postfix)}
