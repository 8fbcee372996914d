"""Held-out evaluation prompts: varied subjects that are not the training captions, each with the trigger token.

The trigger goes where '[trigger]' stands, else before the prompt. Prompt alignment is scored against the prompt
*without* the trigger: the question is whether the LoRA still draws what was asked for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from zlt.core.errors import BadInputError
from zlt.spec.yaml_text import load_yaml

# Subjects a style LoRA is rarely trained on, spread over people, animals, objects, places, light and weather.
DEFAULT_PROMPTS: tuple[str, ...] = (
    "[trigger] a lighthouse on a rocky coast under a stormy sky",
    "[trigger] a bowl of ramen on a wooden table, steam rising",
    "[trigger] a portrait of an old fisherman wearing a knitted cap",
    "[trigger] a city street at night in the rain with neon signs",
    "[trigger] a red fox standing in a snowy forest",
    "[trigger] a vintage bicycle leaning against a brick wall",
    "[trigger] a mountain lake at sunrise with pine trees",
    "[trigger] a child flying a kite on a windy beach",
)
PLACEHOLDER = "[trigger]"
MAX_PROMPTS = 64


@dataclass(frozen=True)
class EvalPrompt:
    text: str  # what the pipeline gets (trigger inserted)
    plain: str  # what alignment is scored against (no trigger)


def _clean(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip(" ,")


def with_trigger(prompt: str, trigger: str | None) -> EvalPrompt:
    plain = _clean(prompt.replace(PLACEHOLDER, ""))
    if not trigger:
        return EvalPrompt(text=plain, plain=plain)
    if PLACEHOLDER in prompt:
        text = _clean(prompt.replace(PLACEHOLDER, trigger))
    elif trigger in prompt:
        text, plain = _clean(prompt), _clean(prompt.replace(trigger, ""))
    else:
        text = f"{trigger} {plain}"
    return EvalPrompt(text=text, plain=plain)


def read_prompts_file(path: Path) -> list[str]:
    """One prompt a line ('#' starts a comment), or a JSON/YAML list of strings."""
    path = Path(path).expanduser()
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"--prompts {path}: cannot read it ({e})", hint="give a UTF-8 text file, one prompt a line") from None
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        try:  # bounded: a prompts file with nested aliases cannot expand past zlt.spec.yaml_text's limits
            data = json.loads(raw) if path.suffix.lower() == ".json" else load_yaml(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise BadInputError(f"--prompts {path}: not valid {path.suffix[1:].upper()} ({e})",
                                hint="give a list of strings") from None
        if not isinstance(data, list) or not all(isinstance(p, str) for p in data):
            raise BadInputError(f"--prompts {path}: expected a list of strings", hint='e.g. ["a cat", "a house"]')
        prompts = data
    else:
        prompts = [line for line in raw.splitlines() if not line.lstrip().startswith("#")]
    return [p.strip() for p in prompts if p.strip()]


def build_prompts(prompts: list[str] | None, trigger: str | None, *, field: str = "--prompts") -> list[EvalPrompt]:
    chosen = list(prompts) if prompts else list(DEFAULT_PROMPTS)
    if len(chosen) > MAX_PROMPTS:
        raise BadInputError(f"{field}: {len(chosen)} prompts; at most {MAX_PROMPTS}",
                            hint="every prompt is drawn for every checkpoint and seed: keep the grid small")
    out = [with_trigger(p, trigger) for p in chosen]
    empty = [i for i, p in enumerate(out) if not p.plain]
    if empty:
        raise BadInputError(f"{field}: prompt {empty[0] + 1} is empty without the trigger token",
                            hint="describe a subject, e.g. '[trigger] a lighthouse at dusk'")
    return out


def training_overlap(prompts: list[EvalPrompt], captions: list[str], trigger: str | None = None) -> list[str]:
    """Evaluation prompts that are (both without the trigger) one of the training captions."""
    norm = {with_trigger(c.replace(trigger, "") if trigger else c, None).plain.lower() for c in captions}
    return [p.plain for p in prompts if p.plain.lower() in norm]
