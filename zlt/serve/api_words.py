"""An error as a network client reads it: the API's field names where the library speaks of CLI flags, and no path
of the server's own home.

The library's messages are written for the CLI ("--steps and --more-steps: give one", "--size 17: must be a multiple
of 16"); the HTTP body fields and MCP arguments carry the same names without the dashes (`steps`, `more_steps`,
`size`), so one table turns each flag into its field for both doors. Flags that only the operator has
(`--data-root`, `--output-root`, `--max-upload-mb`, ...) stay: they tell the client what to ask the operator for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# CLI flag -> the request field / tool argument of the same meaning.
FIELDS: dict[str, str] = {
    "--steps": "steps", "--more-steps": "more_steps", "--size": "size", "--limit": "limit",
    "--priority": "priority", "--vram-gb": "vram_gb", "--skip-preflight": "skip_preflight", "--profile": "profile",
    "--backend": "backend", "--dataset": "dataset", "--seed": "seed", "--seeds": "seeds", "--guidance": "guidance",
    "--count": "count", "--scale": "scale", "--checkpoint": "checkpoint", "--checkpoints": "checkpoints",
    "--strength": "strength", "--max-side": "max_side", "--control": "control", "--controlnet": "controlnet",
    "--control-image": "control_images", "--control-scale": "control_scale", "--clip": "clip",
    "--negative-prompt": "negative_prompt", "--prompts": "prompts", "--lora": "loras", "--image": "images",
    "--after": "after_seq",
}
_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)(?![\w-])")
_SET = re.compile(r"--set\s+'?([a-z_][a-z0-9_.]*)=([^\s']+)'?")
_SET_KEY = re.compile(r"--set\s+'?([a-z_][a-z0-9_.]*)'?")


def api_text(text: str, home: Path | None = None) -> str:
    """`text` with CLI flags named as API fields and the server's home folder as <ZLT_HOME>."""
    if not isinstance(text, str) or not text:
        return text
    out = text
    if home is not None:
        for form in {str(home), str(Path(home).resolve())}:
            out = out.replace(form, "<ZLT_HOME>")
    if "--" not in out:
        return out
    out = _SET.sub(lambda m: f"set {m.group(1)} to {m.group(2)} in the spec", out)
    out = _SET_KEY.sub(lambda m: f"set {m.group(1)}", out)
    return _FLAG.sub(lambda m: FIELDS.get(m.group(1), m.group(1)), out)


def api_error(body: dict[str, Any], home: Path | None = None) -> dict[str, Any]:
    """An error body (`message`, `hint`, `detail`, `errors`) with every text in the API's words."""
    out = dict(body)
    for key in ("message", "hint"):
        if isinstance(out.get(key), str):
            out[key] = api_text(out[key], home)
    if isinstance(out.get("detail"), list):
        out["detail"] = [api_text(d, home) if isinstance(d, str) else d for d in out["detail"]]
    if isinstance(out.get("errors"), list):
        out["errors"] = [{**e, **{k: api_text(e[k], home) for k in ("message", "hint") if isinstance(e.get(k), str)}}
                         if isinstance(e, dict) else e for e in out["errors"]]
    return out
